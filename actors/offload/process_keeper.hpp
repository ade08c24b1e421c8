#pragma once
// Child processes of a node (child instances placed as actorhost processes): started,
// signalled and reaped by one long-lived thread, because PR_SET_PDEATHSIG fires when
// the *thread* that forked exits, and a child must die with its parent process, not
// with whichever short-lived thread asked for it.

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <caf/expected.hpp>

namespace troupe::offload {

class process_keeper {
public:
  process_keeper();
  /// Stops every child still running: SIGTERM, up to `grace`, then SIGKILL; reaps all.
  ~process_keeper();
  process_keeper(const process_keeper&) = delete;
  process_keeper& operator=(const process_keeper&) = delete;

  /// Starts `argv` with `env` added to this process's environment, its stdout and
  /// stderr going to `log_path` (appended). Returns the pid, or troupe.refused (the
  /// node is stopping) or troupe.io (the program could not be started) saying why.
  caf::expected<int> launch(const std::vector<std::string>& argv,
                            const std::vector<std::pair<std::string, std::string>>& env,
                            const std::string& log_path);

  /// Sends `signo` to child `pid` if it is still one of ours (and not yet reaped).
  void signal(int pid, int signo);

  /// Whether child `pid` still runs (not yet reaped).
  bool running(int pid);

  /// SIGTERM to child `pid` now and SIGKILL if it still runs after `grace`; returns at
  /// once. (mpirun must get its SIGTERM and the time to pass it on: SIGKILLed, it
  /// leaves its ranks behind.)
  void terminate(int pid, std::chrono::milliseconds grace);

  static constexpr std::chrono::milliseconds grace{3000};

  /// SIGKILL to every child of every keeper of this process, now: the last thing a
  /// process does before it exits without its orderly stop (exit_watchdog), so that no
  /// child outlives it (PR_SET_PDEATHSIG's SIGTERM does not reach a stopped child).
  static void kill_all_children();

private:
  struct request {
    std::vector<std::string> argv;
    std::vector<std::pair<std::string, std::string>> env;
    std::string log_path;
    int pid = 0;
    std::string error;
    bool done = false;
  };

  void loop();
  void fork_one(request& req);
  void reap();

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<request*> requests_;
  std::set<int> children_;
  std::vector<std::pair<int, std::chrono::steady_clock::time_point>> kill_at_;
  bool stopping_ = false;
  std::thread thread_; // last: started after everything it uses
};

} // namespace troupe::offload
