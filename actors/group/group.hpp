#pragma once
// The `group` provider: Flock-style group membership as an actor.
//
// Config (the provider's "config" object):
//   {"bootstrap": "self" | "file",
//    "group": {"type": "static", "config": {}},
//    "file": "group.json"}
//   bootstrap "self": a one-member group of this provider; the view is written to
//     `file` (atomically) when one is given.
//   bootstrap "file": every member starts from the same view file; this provider must
//     be in it (matched by node address and provider id).
//   Backends: "static" (fixed membership). The "centralized" backend and the "view",
//   "mpi" and "join" bootstraps are not in this build yet: asking for them is a
//   config error that says so.
//
// Protocol:
//   (get_atom)                 -> group_view
//   (join_atom, member)        -> static: error troupe.refused
//   (leave_atom, member_id)    -> static: error troupe.refused
// States: one (static). Owner: the node's provider registry.

#include <caf/atom.hpp>
#include <caf/fwd.hpp>

namespace troupe {
class provider_registry;
} // namespace troupe

namespace troupe::group {

using join_atom = caf::atom_constant<caf::atom("join")>;
using leave_atom = caf::atom_constant<caf::atom("leave")>;

/// Registers provider type "group".
void register_group_provider(provider_registry& registry);

/// Registers the group message types (views, members). Every node that sends or
/// receives them calls this before its actor system starts.
void register_group_types(caf::actor_system_config& cfg);

} // namespace troupe::group
