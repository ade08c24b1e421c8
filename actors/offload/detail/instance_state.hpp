#pragma once
// The instance actor's state and the pieces of its behaviour, shared by instance.cpp
// (lifecycle, supervision of children, heartbeats, status), instance_queue.cpp (the
// queue, pulls and leases) and instance_leaf.cpp (the jobs a leaf runs).

#include <chrono>
#include <csignal>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/actor.hpp>
#include <caf/duration.hpp>
#include <caf/response_promise.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/event_based_actor.hpp>

#include "actors/offload/offload.hpp"

namespace troupe::offload::detail {

using finish_atom = caf::atom_constant<caf::atom("ofinish")>;
using flush_atom = caf::atom_constant<caf::atom("oflush")>;
using sleep_done_atom = caf::atom_constant<caf::atom("oslept")>;
using tick_atom = caf::atom_constant<caf::atom("otick")>;

// How long completions wait to be sent up with others, and how many make a batch.
constexpr auto flush_delay = std::chrono::milliseconds{2};
constexpr size_t flush_batch = 512;
// A pull (or a start grant) the parent holds until it has jobs: no timeout; the
// parent's death answers it (the transport fails requests to a dead node at once).
const caf::duration pull_timeout{caf::infinite};

struct lease {
  job leased;
  bool started = false;
};

struct running_job {
  job what;
  int64_t start_ns = 0;        // wall clock, for the CSV
  int64_t steady_start_ns = 0; // for sleeps
};

struct held_pull {
  caf::response_promise promise;
  caf::actor_addr child;
  uint32_t credits = 0;
};

// The process groups of the shell jobs a leaf runs, so that they stop with it.
struct shell_groups {
  std::mutex mutex;
  std::set<int> running;

  void add(int pgid) {
    std::lock_guard<std::mutex> guard{mutex};
    running.insert(pgid);
  }
  void remove(int pgid) {
    std::lock_guard<std::mutex> guard{mutex};
    running.erase(pgid);
  }
  void kill_all() {
    std::lock_guard<std::mutex> guard{mutex};
    for (int pgid : running)
      ::kill(-pgid, SIGKILL);
  }
};

struct instance_state {
  instance_spec spec;
  std::shared_ptr<environment> env;
  caf::actor parent;    // empty at the root
  caf::actor report_to; // the root's completions go here
  // Shared with the functor that runs when the actor is gone (after its state was
  // destroyed): the supervisor still goes with it.
  std::shared_ptr<caf::actor> children_supervisor = std::make_shared<caf::actor>();
  caf::actor mpi_job; // the MPI job whose ranks are this instance's children, if any
  std::set<caf::actor_addr> mpi_ranks; // the ranks that said hello: its children
  bool exit_process = false;
  bool stopping = false; // told to exit; waiting for the children's supervisor
  caf::error stop_reason;
  bool drained = false;  // no job will come from above any more (the root: closed)
  bool pull_pending = false;
  std::deque<std::pair<job, int64_t>> queue; // with the time it was queued here
  std::unordered_map<caf::actor_addr, std::unordered_map<uint64_t, lease>> leases;
  std::deque<held_pull> held;
  // Leaf: what runs here; the window of jobs it asks for adapts (see want()).
  std::unordered_map<uint64_t, running_job> running;
  unsigned window_factor = 2;
  // Going up, batched.
  std::vector<job_result> out_results;
  std::vector<uint64_t> out_started;
  bool flush_scheduled = false;
  bool in_run_more = false;
  // The bound on silence: when each child was last heard from; children taken for
  // dead for their silence, whose messages are dropped from then on.
  std::unordered_map<caf::actor_addr, std::chrono::steady_clock::time_point> last_heard;
  std::set<caf::actor_addr> silenced;
  double timer_lateness_us = 0; // how late CAF's timer fires, on average (sleep jobs)
  std::shared_ptr<shell_groups> shells = std::make_shared<shell_groups>();
  /// Set when the instance ends: custom jobs still running see it (job_call::stop).
  std::shared_ptr<std::atomic<bool>> jobs_stop = std::make_shared<std::atomic<bool>>(false);
  instance_status status;

  bool is_leaf() const { return spec.below.empty(); }
  bool is_root() const { return !parent && spec.parent_uri.empty(); }

  static inline const char* name = "troupe.offload";
};

using instance_actor = caf::stateful_actor<instance_state>;

/// Wall clock in ns since the epoch (what the CSV reports).
inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

// Steady time in ns: sleeps are timed with it (a wall clock step must not end one early).
inline int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

/// The completion of `what` as this instance reports it (times: start and end, wall
/// clock, 0 when it never ran here).
inline job_result result_of(const job& what, job_outcome how, int exit_status,
                            std::string output, const std::string& path) {
  job_result r;
  r.id = what.id;
  r.outcome = static_cast<uint8_t>(how);
  r.exit_status = exit_status;
  r.output = std::move(output);
  r.path = path;
  r.submit_ns = what.submit_ns;
  r.runs = what.runs_before + 1;
  r.kind = what.kind;
  return r;
}

// instance_queue.cpp
void flush(instance_actor* self);
void schedule_flush(instance_actor* self);
uint64_t want(instance_actor* self);
void accept_jobs(instance_actor* self, std::vector<job> jobs);
void maybe_pull(instance_actor* self);
bool leases_outstanding(const instance_state& st);
void serve_held(instance_actor* self);
caf::result<job_batch> on_need_job(instance_actor* self, uint32_t credits);
caf::result<bool> on_may_start(instance_actor* self, uint64_t id);
void on_child_done(instance_actor* self, std::vector<job_result>& results);
void on_child_started(instance_actor* self, const std::vector<uint64_t>& ids);
void on_child_down(instance_actor* self, const caf::actor_addr& child);

// instance_leaf.cpp
void finish_job(instance_actor* self, uint64_t id, job_outcome how, int exit_status,
                std::string output);
void run_more(instance_actor* self);
void on_sleep_done(instance_actor* self, uint64_t id, int64_t due_ns);

} // namespace troupe::offload::detail
