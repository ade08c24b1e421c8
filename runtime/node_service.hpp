#pragma once
// The `node` service: one actor on every node, published under "troupe.node", that
// answers questions about the node over the transport (what `actorsh` talks to).
//
// Protocol:
//   (stats_atom) -> std::map<std::string, uint64_t>: transport counters
//       "messages_in", "messages_out", "bytes_in", "bytes_out", "peers", and one
//       "drop:<reason>" entry per reason input was dropped for.
//   (get_atom, what) -> std::string, a JSON document; `what` is one of
//       "info"      node id, address, pid, uptime, version
//       "providers" [{type, provider_id, name}, ...]
//       "stats"     the counters above as an object
//       "topology"  packages, NUMA nodes, cores, hardware threads, bound cores
//       "config"    the node's effective config
//       "ops"       {"inflight": [{name, mailbox, side, state, age_ms}, ...],
//                    "counters": {launched, completed, failed, ...},
//                    "registered": [{name, op_id}, ...]}
//     an unknown `what` is answered with a troupe.not_found error naming the known ones.
//   (ping_atom, payload) -> payload (round-trip measurements).
//   (shutdown_atom) -> "ok", then the node's owner is asked to shut down gracefully.
//   (fault_atom, "drop-in", type_name, count) -> "ok": fault injection, the next
//       `count` messages from other nodes holding a `type_name` are dropped
//       (transport::middleman::drop_incoming); another fault kind is troupe.not_found.
//   (module_atom, "list") -> JSON text: [{path, at_start, provider_types, job_types,
//       op_types, message_types}, ...]
//   (module_atom, "load", path) -> JSON text: that module's entry; a failed load
//       (troupe.module_load_failed: bad path, not a module, another ABI, its init
//       failed, message types) leaves the node as it was.
//   (module_atom, "remove", name, force) -> JSON text {"removed": path, "stopped":
//       [provider names]}: refused (troupe.refused) while providers of its types run
//       unless `force`, which stops them first (and waits until they ended), and
//       always for a module with op, job or message types.
// States: one. Owner: troupe::node, which spawns it at start and stops it last.

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include <caf/atom.hpp>
#include <caf/fwd.hpp>

namespace troupe {

class node;

using stats_atom = caf::atom_constant<caf::atom("stats")>;
using ping_atom = caf::atom_constant<caf::atom("ping")>;
using shutdown_atom = caf::atom_constant<caf::atom("shutdown")>;
using fault_atom = caf::atom_constant<caf::atom("fault")>;
using module_atom = caf::atom_constant<caf::atom("module")>;
using stats_map = std::map<std::string, uint64_t>;

/// The key the node service is published under.
constexpr const char* node_service_key = "troupe.node";

/// The questions (get_atom, what) the node service answers.
constexpr const char* node_service_topics[] = {"info",     "providers", "stats",
                                               "topology", "config",    "ops"};

/// Spawns the node service of `owner`, which must outlive it (the node stops it).
caf::actor spawn_node_service(node& owner);

} // namespace troupe
