#pragma once
// The unit of work of the offload service (actors/offload/README.md): a job as it is
// submitted to the root instance and leased down the tree, and its completion as it
// travels back up. Both cross nodes (CAF-serialized; registered by
// `register_offload_types`).

#include <cstdint>
#include <string>

#include <caf/meta/type_name.hpp>

namespace troupe::offload {

/// What a job does when a leaf runs it.
enum class job_kind : uint8_t {
  noop = 0,  ///< nothing: measures the distribution itself
  sleep = 1, ///< waits `duration_us` without using its core
  shell = 2, ///< `/bin/sh -c command`: exit status and output captured
  custom = 3 ///< a C++ job type registered under `command` by a module; `argument` is its input
};

const char* to_string(job_kind kind);

/// A job. Idempotent jobs may run again after the leaf running them died; the others
/// run at most once (a non-idempotent job caught running on a dead leaf is reported
/// failed, never re-run). noop and sleep jobs are idempotent by default.
struct job {
  uint64_t id = 0;
  uint8_t kind = static_cast<uint8_t>(job_kind::noop);
  uint64_t duration_us = 0; ///< sleep
  std::string command;      ///< shell: the command line; custom: the job type's name
  std::string argument;     ///< custom: the input handed to the job type
  bool idempotent = true;
  int64_t submit_ns = 0; ///< wall clock (ns since the epoch) when the root accepted it
  uint32_t runs_before = 0; ///< how often it started before (re-queued after a failure)

  job_kind what() const { return static_cast<job_kind>(kind); }

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, job& x) {
    return f(caf::meta::type_name("troupe::offload::job"), x.id, x.kind, x.duration_us,
             x.command, x.argument, x.idempotent, x.submit_ns, x.runs_before);
  }
};

/// How a job ended.
enum class job_outcome : uint8_t {
  succeeded = 0, ///< ran and reported success (exit status 0)
  failed = 1,    ///< ran and reported failure (non-zero exit status, an error)
  lost = 2       ///< was running on an instance that died and is not idempotent
};

/// A job's completion, sent up the tree to the root.
struct job_result {
  uint64_t id = 0;
  uint8_t outcome = static_cast<uint8_t>(job_outcome::succeeded);
  int32_t exit_status = 0; ///< shell: the exit code (128 + n for signal n); else 0 or 1
  std::string output;      ///< shell: stdout and stderr, truncated; else an error text
  std::string path;        ///< the instances it went through, root first ("0/1/3")
  int64_t submit_ns = 0;   ///< wall clock, ns since the epoch
  int64_t start_ns = 0;
  int64_t end_ns = 0;
  uint32_t runs = 1; ///< how often it was started (> 1: re-run after a failure)
  uint8_t kind = 0;  ///< the job's job_kind

  job_outcome how() const { return static_cast<job_outcome>(outcome); }

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, job_result& x) {
    return f(caf::meta::type_name("troupe::offload::job_result"), x.id, x.outcome,
             x.exit_status, x.output, x.path, x.submit_ns, x.start_ns, x.end_ns, x.runs,
             x.kind);
  }
};

} // namespace troupe::offload
