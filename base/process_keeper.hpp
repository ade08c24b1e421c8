#pragma once
// Child processes: started, watched, stopped and reaped by one piece, for every part
// of Troupe that runs programs (actorhost --size's nodes, the offload tree's child
// instances and mpirun jobs, the benchmarks' hosts and servers, the tests' processes).
//
// One long-lived thread of the keeper forks them all, because PR_SET_PDEATHSIG fires
// when the *thread* that forked exits: a child must die with its parent process, not
// with whichever short-lived thread asked for it. The keeper also ends its children on
// every way out of its owner: its destructor (SIGTERM, a grace, SIGKILL), the
// parent-death signal when the process dies, and kill_all_children for a process that
// exits without its orderly stop (a SIGSTOPped child takes no parent-death signal).
//
// (The offload shell runner forks its commands itself: it needs a process group per
// command, CPU binding and a capped capture, and it waits for each on the thread that
// started it, which therefore outlives the command.)

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <caf/expected.hpp>

namespace troupe {

/// Where a child's stdout or stderr goes. stdin is always /dev/null: no child reads
/// its parent's terminal.
struct child_output {
  enum class kind { inherit, discard, append_to_file, replace_file, pipe, same_as_stdout };
  kind to = kind::inherit;
  std::string path; // for append_to_file and replace_file

  static child_output inherit() { return {kind::inherit, {}}; }
  static child_output discard() { return {kind::discard, {}}; }
  static child_output append_to(std::string file) {
    return {kind::append_to_file, std::move(file)};
  }
  static child_output replace(std::string file) {
    return {kind::replace_file, std::move(file)};
  }
  /// A pipe whose read end the launcher hands back (started_child).
  static child_output pipe() { return {kind::pipe, {}}; }
  /// For stderr only: wherever stdout goes (one log for both).
  static child_output same_as_stdout() { return {kind::same_as_stdout, {}}; }
};

/// What to start.
struct child_spec {
  /// The arguments; argv[0] is also the program to run unless `program` is set. A path:
  /// the PATH is not searched.
  std::vector<std::string> argv;
  std::string program;
  /// Set in the child's environment (over this process's own variables of that name).
  std::vector<std::pair<std::string, std::string>> env;
  child_output out;
  child_output err;
  /// What the child gets when this process dies: SIGTERM lets an actorhost or mpirun
  /// stop what it started in turn; SIGKILL for children that need no last words.
  int death_signal = SIGTERM;
};

/// A started child: its pid and the read ends of the pipes asked for (-1 otherwise;
/// close-on-exec, and the caller's to close).
struct started_child {
  int pid = -1;
  int out_fd = -1;
  int err_fd = -1;
};

/// How a child ended.
struct child_exit {
  int code = 0;   // its exit code, when it exited
  int signal = 0; // the signal that killed it, or 0
  bool unknown = false; // reaped by someone else in this process: no status

  /// The shell's convention: the exit code, or 128 + the signal.
  int status() const { return signal != 0 ? 128 + signal : code; }
  /// "exited with code 3", "was killed by Killed".
  std::string describe() const;
};

class process_keeper {
public:
  process_keeper();
  /// Stops every child still running: SIGTERM, up to `grace`, then SIGKILL; reaps all.
  ~process_keeper();
  process_keeper(const process_keeper&) = delete;
  process_keeper& operator=(const process_keeper&) = delete;

  /// One keeper for the whole process, for users that need no keeper of their own (the
  /// tests, the benchmarks); it lives until the process exits.
  static process_keeper& shared();

  /// Starts `spec`. Returns the child, or troupe.refused (the keeper is stopping) or
  /// troupe.io (a file or pipe could not be opened, fork failed, or the program could
  /// not be run: the child reports exec's error) saying why.
  caf::expected<started_child> launch(child_spec spec);

  /// Sends `signo` to child `pid` if it is still one of ours (and not yet reaped).
  void signal(int pid, int signo);

  /// Whether child `pid` still runs (not yet reaped).
  bool running(int pid);

  /// SIGTERM to child `pid` now and SIGKILL if it still runs after `grace`; returns at
  /// once. (mpirun must get its SIGTERM and the time to pass it on: SIGKILLed, it
  /// leaves its ranks behind.)
  void terminate(int pid, std::chrono::milliseconds grace);

  /// Waits up to `timeout` for child `pid` to end; how it ended, or nothing if it still
  /// runs (or was never ours). The last 1024 ends are remembered.
  std::optional<child_exit> wait_exit(int pid, std::chrono::milliseconds timeout);

  /// SIGTERM (and SIGCONT: a stopped process cannot act on SIGTERM) to every child now,
  /// SIGKILL to those still running after `grace`; returns when all are reaped, with
  /// the pids that had to be killed.
  std::vector<int> stop_all(std::chrono::milliseconds grace);

  static constexpr std::chrono::milliseconds grace{3000};

  /// SIGKILL to every child of every keeper of this process, now: the last thing a
  /// process does before it exits without its orderly stop (exit_watchdog), so that no
  /// child outlives it (PR_SET_PDEATHSIG's signal does not reach a stopped child).
  static void kill_all_children();

private:
  struct request {
    child_spec spec;
    started_child child;
    caf::error error;
    bool done = false;
  };

  void loop();
  void fork_one(request& req);
  // Reaps `pid` if it ended (mutex held); whether it did.
  bool reap_one(int pid);
  void reap_all(); // mutex held
  void remember(int pid, child_exit how); // mutex held

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<request*> requests_;
  std::set<int> children_;
  std::map<int, child_exit> ended_;
  std::deque<int> ended_order_;
  std::vector<std::pair<int, std::chrono::steady_clock::time_point>> kill_at_;
  bool stopping_ = false;
  std::thread thread_; // last: started after everything it uses
};

} // namespace troupe
