#pragma once
// The offload demo's report: a summary of the completions, the per-job CSV and the
// plot of completions over time (gnuplot), from the results the root collected.

#include <cstdint>
#include <string>
#include <vector>

#include "actors/offload/hierarchy.hpp"
#include "actors/offload/job.hpp"

namespace troupe::offload {

/// "2 x 4 leaves (8 leaves, 8 cores); placement process, in_process"
std::string describe_tree(const hierarchy_config& config);

/// "noop x3, sleep 2 ms x1, shell \"true\" x1"
std::string describe_mix(const job_spec& spec);

struct run_summary {
  uint64_t jobs = 0;
  uint64_t succeeded = 0, failed = 0, lost = 0;
  uint64_t reruns = 0;     ///< completed after more than one start
  uint64_t duplicates = 0; ///< completions of a job seen before (a bug if > 0)
  uint64_t child_restarts = 0;
  double elapsed_s = 0;  ///< submission to the last completion
  double makespan_s = 0; ///< first start to last end
  double mean_wait_ms = 0; ///< submit -> start
  double mean_run_ms = 0;  ///< start -> end
  /// Completions per child of the root ("0/1" -> count): how the work spread.
  std::vector<std::pair<std::string, uint64_t>> per_subtree;
  /// Completions per leaf instance, and how many distinct leaves ran jobs.
  uint64_t leaves_used = 0;
};

run_summary summarize(const std::vector<job_result>& results, int64_t run_start_ns,
                      double elapsed_s);

std::string format_report(const run_summary& summary, const hierarchy_config& config);

/// Writes the CSV (times in seconds since `run_start_ns`; the output quoted, its line
/// ends written as \n); returns "" or an error text.
std::string write_csv(const std::string& path, const std::vector<job_result>& results,
                      int64_t run_start_ns);

/// Plots cumulative completions over time, total and per child of the root, from the
/// CSV into `stem`.png and `stem`.svg with gnuplot; returns the line the report prints
/// ("plot: ..." or why there is none).
std::string plot_completions(const std::string& csv_path, const std::string& stem);

} // namespace troupe::offload
