#pragma once
// The locator: finds actors published on other nodes without blocking the asker, so
// actors (group members, ops) can look peers up from inside their handlers.
//
// Protocol:
//   (locate_atom, uri, key)               -> caf::actor
//   (locate_atom, uri, type, provider_id) -> caf::actor   (a provider by (type, id))
//   Errors: troupe.unreachable (the address cannot be reached or its node died),
//   troupe.not_found (nothing published under that key there), troupe.timeout (no
//   answer within the locator's deadline).
// States: one. Owner: troupe::node, which spawns it at start.

#include <chrono>
#include <cstdint>

#include <caf/atom.hpp>
#include <caf/fwd.hpp>

namespace troupe::transport {
class middleman;
} // namespace troupe::transport

namespace troupe {

using locate_atom = caf::atom_constant<caf::atom("locate")>;

/// Spawns a locator using `transport`, which must outlive it. Each lookup gives up
/// after `deadline`.
caf::actor spawn_locator(caf::actor_system& system, transport::middleman& transport,
                         std::chrono::milliseconds deadline);

} // namespace troupe
