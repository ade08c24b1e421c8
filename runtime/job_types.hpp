#pragma once
// Job types: named C++ functions a module registers (`ctx.job_types.add`) for the
// offload service's leaves to run as jobs of kind "custom" (actors/offload/). A job
// type runs on a thread of its own and may block; what it returns is the job's exit
// status and output.

#include <functional>
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

private:
  mutable std::mutex mtx_;
  std::map<std::string, job_function> types_;
};

} // namespace troupe
