#pragma once
// Job types: named C++ functions a module registers (`ctx.job_types.add`) for the
// offload service's leaves to run as jobs of kind "custom" (actors/offload/). A job
// type runs on a thread of its own and may block; what it returns is the job's exit
// status and output. A job that runs long should look at `stop_requested()` now and
// then: once its leaf stops (the run ended, its deadline passed, its parent died),
// its result is not wanted, and its process cannot exit while it runs (actorhost and
// troupe-offload end themselves 30 s and 10 s after a stop that does not finish).

#include <atomic>
#include <functional>
#include <memory>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <caf/error.hpp>

namespace troupe {

/// What a job type is given.
struct job_call {
  uint64_t job_id = 0;
  std::string argument; ///< the job's "argument"
  std::string instance; ///< the leaf running it ("0/1/3")
  /// Set when the leaf stops; null for a call made outside a leaf.
  std::shared_ptr<const std::atomic<bool>> stop;

  /// Whether the job should return now (whatever it returns is dropped).
  bool stop_requested() const { return stop && stop->load(std::memory_order_relaxed); }
};

/// What a job type returns: exit status 0 is success.
struct job_outcome_of_type {
  int exit_status = 0;
  std::string output;
};

using job_function = std::function<job_outcome_of_type(const job_call&)>;

/// The job types a node knows. Thread-safe.
class job_type_registry {
public:
  /// Registers `name`. Registering a name twice is an error (troupe.duplicate_provider
  /// naming it).
  caf::error add(const std::string& name, job_function fn);

  std::optional<job_function> find(const std::string& name) const;
  std::vector<std::string> names() const;
  /// Unregisters `name` (a module being unloaded). False if there is none.
  bool remove(const std::string& name);

private:
  mutable std::mutex mtx_;
  std::map<std::string, job_function> types_;
};

} // namespace troupe
