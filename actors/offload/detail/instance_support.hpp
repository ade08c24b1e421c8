#pragma once
// Between the instance actor and how its children are started (child_start.cpp).

#include <memory>
#include <string>

#include <caf/actor.hpp>

#include "actors/offload/offload.hpp"
#include "actors/supervisor/supervisor.hpp"

namespace troupe::offload::detail {

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
