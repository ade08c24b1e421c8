#pragma once
// The `node` service: one actor on every node, published under "troupe.node", that
// answers questions about the node over the transport.
//
// Protocol:
//   (stats_atom) -> std::map<std::string, uint64_t>: transport counters
//       "messages_in", "messages_out", "bytes_in", "bytes_out", "peers", and one
//       "drop:<reason>" entry per reason input was dropped for.
// States: one. Owner: troupe::node, which spawns it at start and stops it last.

#include <cstdint>
#include <map>
#include <string>

#include <caf/atom.hpp>
#include <caf/fwd.hpp>

namespace troupe {

using stats_atom = caf::atom_constant<caf::atom("stats")>;
using stats_map = std::map<std::string, uint64_t>;

/// The key the node service is published under.
constexpr const char* node_service_key = "troupe.node";

/// Spawns the node service of `system` (whose middleman must be loaded).
caf::actor spawn_node_service(caf::actor_system& system);

} // namespace troupe
