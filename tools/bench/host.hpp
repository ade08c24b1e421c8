#pragma once
// troupe-bench: real actorhost processes for the benchmarks that need nodes (groups,
// ops).

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "tools/bench/bench.hpp"

namespace troupe::bench {

/// An actorhost process (started by the process's keeper): stdout discarded, stderr to
/// a log file (read for errors and for the joiners' "waiting" line), killed with us.
class host {
public:
  /// Writes `config_json` to `dir/name.json` and starts actorhost on it.
  host(const std::string& actorhost, const std::string& dir, const std::string& name,
       const std::string& config_json);
  ~host() { stop(); }
  host(const host&) = delete;
  host& operator=(const host&) = delete;

  /// Waits for the address file; throws with the log's text if the process fails.
  const std::string& wait_address(std::chrono::milliseconds timeout);
  /// From fork to the address file (after wait_address).
  double start_ms() const;
  std::string log() const;
  bool exited();
  void signal(int signo);
  /// SIGTERM, then SIGKILL if it is still there after `grace`.
  void stop(std::chrono::milliseconds grace = std::chrono::seconds{5});

private:
  int pid_ = -1;
  std::string address_file_;
  std::string log_file_;
  std::string address_;
  clock_type::time_point started_;
  clock_type::time_point ready_;
};

/// Stops every host at once (graceful leaves overlap), then waits for each.
void stop_all(std::vector<std::unique_ptr<host>>& hosts);

/// Milliseconds from `from` to `to`.
inline double millis_between(clock_type::time_point from, clock_type::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

} // namespace troupe::bench
