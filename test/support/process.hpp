#pragma once
// A child process for multi-process tests: started by the process's keeper
// (base/process_keeper), its stdout and stderr captured through pipes, killed with
// SIGKILL if the test forgets or fails (and by the kernel if the test process itself
// dies: the keeper's parent-death signal), so no test leaves an orphan behind.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace troupe::test {

class child_process {
public:
  /// Starts `argv[0]` with `argv`, stdin /dev/null. Throws std::runtime_error if fork
  /// or exec fails (exec's reason in the text).
  explicit child_process(std::vector<std::string> argv,
                         std::vector<std::string> extra_env = {});
  ~child_process();
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  int pid() const { return pid_; }

  /// Waits up to `timeout` for a stdout line containing `needle`; returns the line.
  std::optional<std::string> wait_for_line(const std::string& needle,
                                           std::chrono::milliseconds timeout);

  /// Waits up to `timeout` until stderr contains `needle`.
  bool wait_for_text_on_stderr(const std::string& needle,
                               std::chrono::milliseconds timeout);

  /// Sends a signal.
  void signal(int signo);

  /// Waits up to `timeout` for the process to end; returns its exit code, or
  /// 128 + signal number if a signal ended it; nothing if still running.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);

  /// Everything read so far.
  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }

private:
  void pump(std::chrono::milliseconds timeout); // reads what is ready on the pipes

  int pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::string out_;
  std::string err_;
  std::optional<int> status_;
};

/// Checks `condition` every 10 ms until it holds or `deadline` passes; whether it held.
/// Tests wait for conditions this way, never with fixed sleeps.
bool eventually(std::chrono::milliseconds deadline,
                const std::function<bool()>& condition);

/// True when process `pid` has ended: gone, or a zombie (a process that lost its
/// parent waits for whoever adopts it to reap it, which is not the test).
bool process_gone(int pid);

/// True when every thread of process `pid` is stopped (SIGSTOP takes effect
/// asynchronously: a thread may still run for a moment after the signal is sent).
bool process_stopped(int pid);

/// True when process `pid` ignores signal `signo` (its SigIgn mask in /proc).
bool process_ignores(int pid, int signo);

/// A loopback TCP port held for one test: a socket bound to it (SO_REUSEADDR) but not
/// listening. While it is held the OS gives the port to nobody else (a bind to port 0
/// and an outgoing connection skip a port with a bound socket), yet an actorhost can
/// listen on it (UCX binds with SO_REUSEADDR too). So a test can name addresses before
/// its nodes start (view files, bootstrap "view"), give a restarted node its old port,
/// or name an address where nobody listens, and suites can run in parallel. Nodes that
/// need no fixed address bind port 0 and report theirs (address files) instead.
class reserved_port {
public:
  /// Throws std::runtime_error if no port can be bound.
  reserved_port();
  ~reserved_port();
  reserved_port(const reserved_port&) = delete;
  reserved_port& operator=(const reserved_port&) = delete;

  uint16_t number() const { return number_; }
  /// ucx://127.0.0.1:PORT
  std::string address() const;

private:
  int fd_ = -1;
  uint16_t number_ = 0;
};

/// Runs a program to completion (with a deadline) and collects its output.
struct run_result {
  int exit_code = -1;
  std::string out;
  std::string err;
};
run_result run_to_end(std::vector<std::string> argv, std::chrono::milliseconds timeout);

/// Path of a program built into build/bin.
std::string bin_path(const std::string& name);

/// A fresh directory under the system temp dir, removed with its contents on scope exit.
class temp_dir {
public:
  temp_dir();
  ~temp_dir();
  const std::string& path() const { return path_; }
  /// Writes `content` to `path()/name` and returns the full path.
  std::string write(const std::string& name, const std::string& content) const;

private:
  std::string path_;
};

} // namespace troupe::test

namespace troupe::test {

/// An `actorhost` started from config text, with its address read from its address
/// file once it is ready. Throws std::runtime_error if it does not come up in time.
class host_process {
public:
  explicit host_process(const std::string& config_json,
                        std::vector<std::string> extra_env = {});

  struct no_wait_t {};
  /// Starts the process without waiting for it (to start many at the same moment);
  /// call `wait_ready()` before `address()`.
  host_process(no_wait_t, const std::string& config_json,
               std::vector<std::string> extra_env = {});

  /// Waits until it is ready and reads its address. Throws std::runtime_error.
  void wait_ready();
  const std::string& address() const { return address_; }
  child_process& process() { return *child_; }
  /// SIGKILL, and wait for it to be gone.
  void kill_hard();
  /// SIGSTOP, and wait until every thread is stopped (it answers nothing from then
  /// on). Throws std::runtime_error if it does not stop in time.
  void stop_answering();

private:
  temp_dir dir_;
  std::unique_ptr<child_process> child_;
  std::string address_;
};

/// The path of a test module library in build/lib.
std::string test_library(const std::string& name);

/// `actorhost --size N` with its instance directory: N nodes forming one centralized
/// group; its view file, and its nodes' pids and addresses (in the launcher's order,
/// which need not be their group ranks) from its output. Throws
/// std::runtime_error if it does not start in time.
struct actorhost_instance {
  temp_dir dir;
  std::string view_file = dir.path() + "/inst/group.json";
  std::unique_ptr<child_process> launcher;
  std::vector<int> pids;
  std::vector<std::string> addresses;

  /// `config`: the node config every node starts from (the launcher adds the group,
  /// and the overlay unless the config has one).
  explicit actorhost_instance(unsigned size,
                              const std::string& config = "// one scheduler thread per "
                                                          "node\n{\"threads\": 1}");
  bool all_gone() const;
};

} // namespace troupe::test
