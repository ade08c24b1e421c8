#pragma once
// The `echo` provider: replies to every message with the message itself.
//
// Protocol:
//   any message M        -> replies M (a request gets M as its response)
//   (echo_count_atom)    -> uint64_t: how many messages it has echoed
// States: one. Owner: the node's provider registry. Config: an empty object.

#include <caf/atom.hpp>

namespace troupe {
class provider_registry;
} // namespace troupe

namespace troupe::actors {

using echo_count_atom = caf::atom_constant<caf::atom("echocount")>;

/// Registers provider type "echo".
void register_echo_provider(provider_registry& registry);

} // namespace troupe::actors
