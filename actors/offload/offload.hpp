#pragma once
// The offload service: one instance actor per instance of a tree of nested instances
// (DESIGN.md, "Nested instances and the offload demo"). Jobs are submitted to the root;
// every other instance pulls them from its parent with credits, leaves run them, and
// completions travel back up, aggregated. A parent supervises its child instances
// (actors/supervisor/) and leases jobs to them: a child that dies has its leased jobs
// re-queued at the parent.
//
// Protocol of an instance actor:
//   (need_job_atom, uint32_t credits)    -> job_batch          child -> parent: up to
//        `credits` jobs, leased to the asker; held until there are jobs, or answered
//        with `drained` once no job will come any more
//   (may_start_atom, uint64_t job id)    -> bool               child -> parent: a job
//        that is not idempotent starts only once every instance above has recorded
//        that it started (at most once, even when instances die)
//   (started_atom, std::vector<uint64_t>)                      child -> parent: these
//        idempotent jobs started (for the re-run count after a failure)
//   (done_atom, std::vector<job_result>)                       child -> parent, and
//        root -> its report_to actor: completions, batched
//   (submit_atom, std::vector<job>)      -> uint64_t queued    to the root
//   (close_atom)                                               to the root: no more jobs
//   (heartbeat_atom)                     -> caf::unit         child -> parent, every
//        silence_ms / 4: a child silent for silence_ms is taken for dead (its leases
//        come back, its supervisor kills and restarts it); a parent that does not
//        answer within silence_ms is taken for dead (the child stops)
//   (status_atom)                        -> instance_status
//   (tree_atom)                          -> instance_tree      this instance, its parent
//        and its children with their supervision state and counters (actorsh `tree`)
// States: one. An instance quits when its parent dies (and, in a process of its own,
// stops that process) or when the supervisor of its children gave up (escalating).
// Owner: its parent's supervisor; the root's owner is the application.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>

#include "actors/offload/hierarchy.hpp"
#include "actors/offload/job.hpp"

namespace troupe {
class provider_registry;
class job_type_registry;
} // namespace troupe

namespace troupe::offload {

using need_job_atom = caf::atom_constant<caf::atom("needjob")>;
using may_start_atom = caf::atom_constant<caf::atom("maystart")>;
using started_atom = caf::atom_constant<caf::atom("started")>;
using done_atom = caf::atom_constant<caf::atom("jobsdone")>;
using submit_atom = caf::atom_constant<caf::atom("submit")>;
using close_atom = caf::atom_constant<caf::atom("close")>;
using status_atom = caf::atom_constant<caf::atom("ostatus")>;
using tree_atom = caf::atom_constant<caf::atom("otree")>;
using heartbeat_atom = caf::atom_constant<caf::atom("oheartbt")>;

/// The answer to need_job: leased jobs, or `drained` (no job will come any more).
struct job_batch {
  std::vector<job> jobs;
  bool drained = false;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, job_batch& x) {
    return f(caf::meta::type_name("troupe::offload::job_batch"), x.jobs, x.drained);
  }
};

/// What an instance reports about itself (actorsh `offload`, the demo's report).
struct instance_status {
  std::string path;      ///< root first, e.g. "0/1/3"
  std::string address;   ///< the node it runs on ("" without a transport)
  uint32_t children = 0; ///< child instances running now
  uint64_t queued = 0;   ///< here, not yet leased
  uint64_t leased = 0;   ///< leased to children, not completed
  uint64_t running = 0;  ///< leaves: running here now
  uint64_t done = 0;     ///< completions that passed through here
  uint64_t requeued = 0; ///< leased jobs taken back from a dead child
  uint64_t reruns = 0;   ///< of those, idempotent ones that had started
  uint64_t lost = 0;     ///< non-idempotent ones that had started (reported failed)
  uint64_t child_restarts = 0;
  int64_t queue_wait_ns = 0; ///< summed over the jobs that left the queue here
  uint64_t dequeued = 0;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, instance_status& x) {
    return f(caf::meta::type_name("troupe::offload::instance_status"), x.path, x.address,
             x.children,
             x.queued, x.leased, x.running, x.done, x.requeued, x.reruns, x.lost,
             x.child_restarts, x.queue_wait_ns, x.dequeued);
  }
};

/// A child instance as its parent's supervisor sees it.
struct child_entry {
  std::string path;
  std::string state;     ///< the supervisor's: running, starting, waiting, stopping
  uint32_t restarts = 0; ///< how often its supervisor restarted it
  bool answered = false; ///< `status` holds its counters (it answered in time)
  instance_status status;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, child_entry& x) {
    return f(caf::meta::type_name("troupe::offload::child_entry"), x.path, x.state,
             x.restarts, x.answered, x.status);
  }
};

/// An instance's place in the tree (actorsh `tree`).
struct instance_tree {
  instance_status self;
  std::string parent;   ///< the parent's path ("" at the root)
  std::string parent_address;
  std::vector<child_entry> children;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, instance_tree& x) {
    return f(caf::meta::type_name("troupe::offload::instance_tree"), x.self, x.parent,
             x.parent_address, x.children);
  }
};

/// Where an instance sits and what it manages.
struct instance_spec {
  std::string path = "0";
  std::vector<level> below; ///< the levels under this instance; empty: a leaf
  unsigned cores = 1;       ///< the cores it manages (a leaf runs that many jobs at once)
  /// The first of its cores (modulo the machine's CPUs): a leaf binds its shell jobs
  /// to cores first_cpu .. first_cpu + cores - 1.
  unsigned first_cpu = 0;
  /// An instance in a process of its own finds its parent here (provider "offload"
  /// there) instead of being handed it.
  std::string parent_uri;
  /// A rank of an MPI job: the job's token, sent with its hello (a rank of an earlier
  /// job is told apart).
  std::string job_token;
  /// Restarts of a child instance allowed within 10 s before its parent gives up.
  unsigned max_restarts = 5;
  /// The bound on silence between parent and child (0: none; only the transport's
  /// death notices then).
  unsigned silence_ms = 5000;
};

/// What instances in one process share: how to start child instances in processes of
/// their own. Made once per process (`make_environment`).
class environment;
/// What instances in one process use: `node_address`, where children reach this
/// process; `locator`, the node's locator; `actorhost_path`, the program child
/// processes run ("" = the actorhost next to this executable); `run_dir`, where their
/// configs, address files and logs go; `libraries`, the modules every child process
/// loads (job types); `job_types`, this node's (null: no custom jobs here).
struct environment_options {
  caf::actor locator;
  std::string node_address;
  std::string actorhost_path;
  std::string run_dir;
  std::vector<std::string> libraries;
  job_type_registry* job_types = nullptr;
};
std::shared_ptr<environment> make_environment(environment_options options);

/// Spawns an instance. `parent` is empty for the root, whose completions go to
/// `report_to`. An instance in a process of its own (`exit_process`) raises SIGTERM in
/// its process when it ends, so the node stops with it.
caf::actor spawn_instance(caf::actor_system& system, instance_spec spec, caf::actor parent,
                          caf::actor report_to, std::shared_ptr<environment> env,
                          bool exit_process = false);

/// Registers provider type "offload": a child instance in an actorhost process, config
/// {"parent": URI (default: $TROUPE_PARENT_URI), "parent_provider_id": 1, "path": "0/1",
///  "cores": N, "cpus": "0", "levels": [...] (as in the hierarchy file),
///  "run_dir": DIR, "actorhost": PATH, "max_restarts": 5, "silence_ms": 5000}; job
///  types come from the
///  node's "libraries", which child processes load too.
void register_offload_provider(provider_registry& registry);

/// Registers the offload message types on every node that takes part.
void register_offload_types(caf::actor_system_config& cfg);

/// The provider id instances publish themselves under in their processes.
constexpr uint16_t offload_provider_id = 1;

} // namespace troupe::offload
