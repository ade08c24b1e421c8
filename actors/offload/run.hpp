#pragma once
// One run of the offload tree from the root's node: build the tree under a root
// instance, submit the jobs, collect every completion (or fail), stop the tree. Used by
// troupe-offload and troupe-bench offload.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>

#include "actors/offload/hierarchy.hpp"
#include "actors/offload/job.hpp"
#include "actors/offload/offload.hpp"

namespace troupe {
class node;
} // namespace troupe

namespace troupe::offload {

struct tree_options {
  std::vector<level> levels;       ///< below the root
  std::string run_dir;             ///< child configs, address files, logs
  std::string actorhost_path;      ///< "" = the actorhost beside this program
  std::chrono::seconds timeout{600};
  /// The bound on silence between parents and children (instance_spec::silence_ms).
  unsigned silence_ms = 5000;
  /// Called about every `progress_every` with (completed, total, seconds so far), and
  /// once more at the end.
  std::function<void(uint64_t, uint64_t, double)> progress;
  std::chrono::milliseconds progress_every{1000};
  /// Called about every 50 ms while the run waits for completions, with how many came
  /// so far (e.g. to kill a child mid-run).
  std::function<void(uint64_t completed)> during;
};

struct run_outcome {
  std::vector<job_result> results; ///< one per job, in arrival order
  uint64_t duplicates = 0;         ///< completions of a job already seen (dropped)
  std::string failure;             ///< empty when every job completed
  double elapsed_s = 0;            ///< submission to the last completion
  int64_t start_ns = 0;            ///< wall clock at submission
  instance_status root;            ///< the root's counters at the end
};

/// Runs `jobs` through a tree rooted on `node` (started, with a transport). The root
/// is published as provider ("offload", offload_provider_id) so child processes find
/// it; the tree is stopped before this returns.
run_outcome run_tree(node& root_node, std::vector<job> jobs, const tree_options& options);

} // namespace troupe::offload
