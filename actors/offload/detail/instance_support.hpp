#pragma once
// Between the instance actor and how its children are started (child_start.cpp).

#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <nlohmann/json_fwd.hpp>

#include "actors/offload/offload.hpp"
#include "actors/supervisor/supervisor.hpp"

namespace troupe {
class process_keeper;
} // namespace troupe

namespace troupe::offload::detail {

/// A child in a process of its own -> its parent, once it found it: (hello_atom, path).
/// The parent hands it on to the MPI job waiting for its ranks:
/// (hello_atom, path, caf::actor).
using hello_atom = caf::atom_constant<caf::atom("ohello")>;
/// An MPI job's start -> the parent: (expect_job_atom, caf::actor job): hand it the
/// hellos of its ranks.
using expect_job_atom = caf::atom_constant<caf::atom("oexpectjob")>;
/// The parent -> its MPI job: (fail_rank_atom, caf::error): a rank went silent.
using fail_rank_atom = caf::atom_constant<caf::atom("ofailrank")>;

/// How the supervisor of `parent`'s children starts all of them (`lvl.num_children`
/// ranks, with `lvl.mpirun_args`) as one `mpirun` job; `tmpl` is the parent's path,
/// cores per child and first core.
supervision::child_spec mpi_job_spec(const caf::actor& parent, instance_spec tmpl,
                                     const level& lvl, const std::shared_ptr<environment>& env);

const environment_options& options_of(const environment& env);
process_keeper& env_processes(environment& env);

/// "instance-0-1" for path "0/1": the stem of its files in the run directory.
std::string instance_file_stem(const std::string& path);

/// The node config an actorhost child instance starts from.
nlohmann::json child_node_config(const environment& env, const instance_spec& child);

/// How the supervisor of `parent`'s children starts child instance `child`: spawned in
/// this process (in_process), or an actorhost process that finds `parent` through the
/// environment's node address (process).
supervision::child_spec child_instance_spec(const caf::actor& parent, instance_spec child,
                                            placement where,
                                            const std::shared_ptr<environment>& env);

/// The node's locator (for an instance that finds its parent by address).
caf::actor locator_of(const environment& env);

/// Where this process's node is reached ("" without a transport).
const std::string& address_of(const environment& env);

/// This node's job types (null: none).
job_type_registry* job_types_of(const environment& env);

} // namespace troupe::offload::detail
