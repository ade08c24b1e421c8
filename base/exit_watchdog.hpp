#pragma once
// A bound on a process's shutdown. A node stops by waiting for every actor to end, and
// an actor that never ends (a job type stuck in a loop, a handler blocked on I/O) would
// hold the process forever; a daemon must not hang on exit for that. Arm the watchdog
// when the shutdown starts: if the process still runs `bound` later, it says so on
// stderr and ends with `exit_code`, without running destructors (they would wait for
// the same actor).

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace troupe {

class exit_watchdog {
public:
  exit_watchdog() = default;
  exit_watchdog(const exit_watchdog&) = delete;
  exit_watchdog& operator=(const exit_watchdog&) = delete;
  /// Disarms: the shutdown finished in time.
  ~exit_watchdog();

  /// Starts the countdown; `who` starts the message ("actorhost"); `last_words` runs
  /// just before the exit (e.g. kill the child processes that an orderly stop would
  /// have stopped). Arming twice keeps the first countdown.
  void arm(std::string who, std::chrono::milliseconds bound, int exit_code,
           std::function<void()> last_words = {});

private:
  std::mutex mtx_;
  std::condition_variable cv_;
  bool disarmed_ = false;
  std::thread thread_;
};

} // namespace troupe
