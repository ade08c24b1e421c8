#pragma once
// The `events` provider: publish and subscribe across an instance (flux-core's
// events), over its tree overlay (actors/overlay/).
//
// Every rank runs one, with the same name, beside its overlay:
//   {"type": "events", "name": "events", "provider_id": 1,
//    "dependencies": {"overlay": "overlay"},
//    "config": {"gap_wait_ms": 500}}
// A publish at any rank goes to the root (rank 0), which numbers the event (per topic
// and over all topics) and broadcasts it down the tree; every rank hands it to its
// subscribers whose prefix the topic starts with. Every subscriber sees events in the
// root's order. A rank that misses an event (a lost message) waits `gap_wait_ms` for
// it, then goes on: its subscribers see the topic's sequence number jump, and its
// stats count the gap. A new root (rank 0 died) numbers from 1 again; `root` tells.
//
// Protocol:
//   (publish_atom, topic, payload)           -> publish_receipt (once every rank
//                                               reachable got it)
//   (caf::subscribe_atom, prefix, caf::actor) -> caf::unit; the actor then receives
//                                               each `event` whose topic starts with
//                                               prefix ("" for all), once per prefix
//   (caf::unsubscribe_atom, caf::actor)       -> caf::unit (all its prefixes)
//   (caf::get_atom)                           -> events_stats
// A subscriber that exits is dropped. States: one. Owner: the provider registry.

#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>

namespace troupe {
class provider_registry;
} // namespace troupe

namespace troupe::events {

using publish_atom = caf::atom_constant<caf::atom("evpublish")>;

struct event {
  std::string topic;
  std::string payload;
  uint64_t seq = 0;       ///< per topic, from 1
  uint64_t global = 0;    ///< over all topics, from 1
  std::string root;       ///< the rank that numbered it (changes with the root)
  std::string publisher;  ///< the address of the node it was published at

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, event& x) {
    return f(caf::meta::type_name("troupe::events::event"), x.topic, x.payload, x.seq,
             x.global, x.root, x.publisher);
  }
};

struct publish_receipt {
  uint64_t seq = 0;
  uint64_t global = 0;
  uint32_t ranks = 0; ///< ranks that got it

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, publish_receipt& x) {
    return f(caf::meta::type_name("troupe::events::publish_receipt"), x.seq, x.global,
             x.ranks);
  }
};

struct events_stats {
  uint64_t delivered = 0;   ///< events handed to subscribers (one per subscriber)
  uint64_t received = 0;    ///< events this rank got from the tree
  uint64_t gaps = 0;        ///< events given up on (waited gap_wait_ms)
  uint64_t subscribers = 0; ///< (subscriber, prefix) pairs
  uint64_t published = 0;   ///< events this rank numbered (the root)

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, events_stats& x) {
    return f(caf::meta::type_name("troupe::events::events_stats"), x.delivered,
             x.received, x.gaps, x.subscribers, x.published);
  }
};

/// Registers provider type "events".
void register_events_provider(provider_registry& registry);

/// Registers the event message types (before the actor system starts).
void register_events_types(caf::actor_system_config& cfg);

} // namespace troupe::events
