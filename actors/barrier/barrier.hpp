#pragma once
// The `barrier` provider: named, counted barriers across an instance (flux-core's
// barrier module).
//
// Every rank runs one, with the same provider id, beside its group provider:
//   {"type": "barrier", "name": "barrier", "provider_id": 1,
//    "dependencies": {"group": "group"},
//    "config": {"timeout_ms": 60000}}
// Entries go straight to the root's (rank 0's) barrier, which answers all of a
// barrier's entries once `count` have come. A name may be used again once its
// barrier completed or failed (`generation` counts its uses).
//
// Protocol:
//   (enter_atom, name, count)              -> barrier_done, once `count` entered
//   (enter_atom, name, count, timeout_ms)  -> the same, failing after timeout_ms
// Errors: troupe.unreachable naming the rank when a member of the instance dies or
// leaves while the barrier waits (every waiter gets it: a dead member may have been a
// participant that will never enter), or when the root itself dies; troupe.timeout
// naming how many entered; troupe.invalid_argument for a count of 0 or a count that
// differs from the one the waiting entries gave.
// States: one. Owner: the node's provider registry.

#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>

namespace troupe {
class provider_registry;
} // namespace troupe

namespace troupe::barrier {

using enter_atom = caf::atom_constant<caf::atom("brenter")>;

struct barrier_done {
  std::string name;
  uint32_t count = 0;
  uint64_t generation = 0; ///< 1 for the first use of the name, then 2, ...

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, barrier_done& x) {
    return f(caf::meta::type_name("troupe::barrier::barrier_done"), x.name, x.count,
             x.generation);
  }
};

/// Registers provider type "barrier".
void register_barrier_provider(provider_registry& registry);

/// Registers the barrier's message types (before the actor system starts).
void register_barrier_types(caf::actor_system_config& cfg);

} // namespace troupe::barrier
