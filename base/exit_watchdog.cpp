#include "base/exit_watchdog.hpp"

#include <cstdlib>
#include <iostream>

namespace troupe {

exit_watchdog::~exit_watchdog() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    disarmed_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable())
    thread_.join();
}

void exit_watchdog::arm(std::string who, std::chrono::milliseconds bound, int exit_code,
                        std::function<void()> last_words) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (thread_.joinable() || disarmed_)
    return;
  thread_ = std::thread{[this, who = std::move(who), bound, exit_code,
                         last_words = std::move(last_words)] {
    std::unique_lock<std::mutex> lock{mtx_};
    if (cv_.wait_for(lock, bound, [this] { return disarmed_; }))
      return;
    std::cerr << who << ": the shutdown did not finish within " << bound.count()
              << " ms (an actor, a job or a child process that does not answer); "
                 "exiting without it"
              << std::endl;
    if (last_words)
      last_words();
    std::_Exit(exit_code);
  }};
}

} // namespace troupe
