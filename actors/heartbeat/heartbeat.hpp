#pragma once
// The `heartbeat` provider: the root's beat, broadcast down an instance's tree
// (flux-core's heartbeat module), and every rank's watch on it.
//
// Every rank runs one beside its group and overlay:
//   {"type": "heartbeat", "name": "heartbeat", "provider_id": 1,
//    "dependencies": {"group": "group", "overlay": "overlay"},
//    "config": {"period_ms": 1000, "missed_beats": 3}}
// The root (rank 0) broadcasts beat 1, 2, 3, ... every period. A rank that has had no
// beat for `missed_beats` periods logs it once (a warning; again when beats return)
// and says so in its status, which `actorsh overlay` shows.
//
// Protocol:
//   (caf::subscribe_atom, caf::actor)   -> caf::unit; the actor then receives
//                                          (beat_atom, seq) at every beat
//   (caf::unsubscribe_atom, caf::actor) -> caf::unit
//   (status_atom)                       -> std::string, one line of JSON:
//       {"rank", "seq" (last beat), "age_ms" (since it; -1: none yet), "missed"}
// States: one. Owner: the node's provider registry.

#include <caf/atom.hpp>

namespace troupe {
class provider_registry;
} // namespace troupe

namespace troupe::heartbeat {

using beat_atom = caf::atom_constant<caf::atom("hbbeat")>;
using status_atom = caf::atom_constant<caf::atom("hbstatus")>;

/// Registers provider type "heartbeat".
void register_heartbeat_provider(provider_registry& registry);

} // namespace troupe::heartbeat
