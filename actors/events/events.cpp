// The events actor (events.hpp): numbers events at the root, hands them to local
// subscribers in the root's order.

#include "actors/events/events.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <utility>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/overlay/overlay.hpp"
#include "actors/service_config.hpp"
#include "base/error.hpp"
#include "base/log.hpp"
#include "runtime/json_reader.hpp"
#include "runtime/provider_registry.hpp"

namespace troupe::events {

namespace {

using std::chrono::milliseconds;

using sequence_atom = caf::atom_constant<caf::atom("evsequence")>;
using deliver_atom = caf::atom_constant<caf::atom("evdeliver")>;
using gap_check_atom = caf::atom_constant<caf::atom("evgapchk")>;

struct events_settings {
  milliseconds gap_wait{500};
  milliseconds timeout{10000}; // a publish's way to the root and the broadcast
};

struct subscription {
  std::string prefix;
  caf::actor subscriber;
};

struct events_state {
  static inline const char* name = "troupe.events";
  events_settings settings;
  caf::actor overlay;
  std::string provider_name; // every rank's events provider has this name
  std::string address;
  std::string root_id; // this actor as a root: address and a nonce
  // As the root: the numbers given so far.
  std::map<std::string, uint64_t> topic_seq;
  uint64_t global_seq = 0;
  // As a receiver: the root whose order is followed, the next number expected from
  // it, and events that came ahead of it.
  std::string following;
  uint64_t next_global = 0;
  std::map<uint64_t, event> ahead;
  bool gap_check_pending = false; // one check at a time, not one per early event
  std::vector<subscription> subscriptions;
  events_stats stats;
};

using events_actor = caf::stateful_actor<events_state>;

void hand_to_subscribers(events_actor* self, const event& ev) {
  for (const auto& s : self->state.subscriptions)
    if (ev.topic.compare(0, s.prefix.size(), s.prefix) == 0) {
      self->send(s.subscriber, ev);
      ++self->state.stats.delivered;
    }
}

/// Hands on every event that is next in order.
void flush(events_actor* self) {
  auto& st = self->state;
  for (auto i = st.ahead.begin(); i != st.ahead.end() && i->first == st.next_global;
       i = st.ahead.erase(i)) {
    hand_to_subscribers(self, i->second);
    ++st.next_global;
  }
  if (!st.ahead.empty() && !st.gap_check_pending) {
    st.gap_check_pending = true;
    self->delayed_send(self, st.settings.gap_wait, gap_check_atom::value, st.following,
                       st.next_global);
  }
}

void receive_event(events_actor* self, event& ev) {
  auto& st = self->state;
  ++st.stats.received;
  if (ev.root != st.following) {
    // A new root (or the first event here): its numbering starts where it stands.
    st.following = ev.root;
    st.next_global = ev.global;
    st.ahead.clear();
  }
  if (ev.global < st.next_global)
    return; // had it already
  st.ahead.emplace(ev.global, std::move(ev));
  flush(self);
}

caf::behavior events_behavior(events_actor* self) {
  return {
    // Any rank: to the root, through the tree.
    [self](publish_atom, std::string& topic,
           std::string& payload) -> caf::result<publish_receipt> {
      auto& st = self->state;
      if (topic.empty())
        return make_error(errc::invalid_argument, "an event needs a topic");
      auto rp = self->make_response_promise<publish_receipt>();
      self
        ->request(st.overlay, st.settings.timeout, overlay::route_atom::value, uint32_t{0},
                  st.provider_name,
                  caf::make_message(sequence_atom::value, std::move(topic),
                                    std::move(payload), st.address))
        .then([rp](publish_receipt& r) mutable { rp.deliver(r); },
              [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    // The root: number it, broadcast it.
    [self](sequence_atom, std::string& topic, std::string& payload,
           std::string& publisher) -> caf::result<publish_receipt> {
      auto& st = self->state;
      event ev;
      ev.seq = ++st.topic_seq[topic];
      ev.global = ++st.global_seq;
      ev.topic = std::move(topic);
      ev.payload = std::move(payload);
      ev.root = st.root_id;
      ev.publisher = std::move(publisher);
      ++st.stats.published;
      publish_receipt receipt{ev.seq, ev.global, 0};
      auto rp = self->make_response_promise<publish_receipt>();
      self
        ->request(st.overlay, st.settings.timeout, overlay::broadcast_atom::value,
                  st.provider_name, caf::make_message(deliver_atom::value, std::move(ev)))
        .then(
          [rp, receipt](const overlay::reduction_result& r) mutable {
            receipt.ranks = static_cast<uint32_t>(r.result.i);
            rp.deliver(receipt);
          },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [self](deliver_atom, event& ev) { receive_event(self, ev); },
    [self](gap_check_atom, const std::string& root, uint64_t expected) {
      auto& st = self->state;
      st.gap_check_pending = false;
      if (st.ahead.empty())
        return; // it came meanwhile
      if (root != st.following || st.next_global != expected) {
        flush(self); // some came, more is missing: wait again for the rest
        return;
      }
      // Give up on what is missing: go on from the first event held.
      st.stats.gaps += st.ahead.begin()->first - st.next_global;
      TROUPE_LOG_WARNING("events", "events " << st.next_global << " to "
                                             << st.ahead.begin()->first - 1
                                             << " never came; going on without them");
      st.next_global = st.ahead.begin()->first;
      flush(self);
    },
    [self](caf::subscribe_atom, std::string& prefix, const caf::actor& who) {
      auto& subs = self->state.subscriptions;
      for (const auto& s : subs)
        if (s.subscriber == who && s.prefix == prefix)
          return caf::unit;
      self->monitor(who);
      subs.push_back({std::move(prefix), who});
      self->state.stats.subscribers = subs.size();
      return caf::unit;
    },
    [self](caf::unsubscribe_atom, const caf::actor& who) {
      auto& subs = self->state.subscriptions;
      subs.erase(std::remove_if(subs.begin(), subs.end(),
                                [&](const subscription& s) { return s.subscriber == who; }),
                 subs.end());
      self->state.stats.subscribers = subs.size();
      return caf::unit;
    },
    [self](caf::get_atom) { return self->state.stats; },
  };
}

caf::behavior events_actor_fn(events_actor* self, events_settings settings,
                              caf::actor overlay, std::string provider_name,
                              std::string address) {
  auto& st = self->state;
  st.settings = settings;
  st.overlay = std::move(overlay);
  st.provider_name = std::move(provider_name);
  st.address = address;
  std::random_device rd;
  st.root_id = address + "#" + std::to_string(rd());
  self->monitor(st.overlay);
  self->set_down_handler([self](const caf::down_msg& dm) {
    auto& st = self->state;
    if (dm.source == st.overlay) {
      self->quit(dm.reason);
      return;
    }
    auto& subs = st.subscriptions;
    subs.erase(std::remove_if(subs.begin(), subs.end(),
                              [&](const subscription& s) {
                                return s.subscriber.address() == dm.source;
                              }),
               subs.end());
    st.stats.subscribers = subs.size();
  });
  return events_behavior(self);
}

caf::expected<caf::actor> make_events(const provider_context& ctx) {
  events_settings settings;
  auto err = actors::read_service_config(
    ctx, {"gap_wait_ms", "timeout_ms"}, [&](json_reader& r, const nlohmann::json& cfg) {
      if (auto g = cfg.find("gap_wait_ms"); g != cfg.end())
        settings.gap_wait =
          milliseconds{r.read_integer("config.gap_wait_ms", *g, 1, 600 * 1000)};
      if (auto t = cfg.find("timeout_ms"); t != cfg.end())
        settings.timeout =
          milliseconds{r.read_integer("config.timeout_ms", *t, 1, 3600 * 1000)};
    });
  if (err)
    return err;
  auto overlay = actors::dependency(ctx, "overlay");
  if (!overlay)
    return overlay.error();
  return ctx.system.spawn(events_actor_fn, settings, *overlay, ctx.spec.name,
                          ctx.node_address);
}

} // namespace

void register_events_provider(provider_registry& registry) {
  registry.add_type("events", make_events);
}

void register_events_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<event>("troupe::events::event");
  cfg.add_message_type<publish_receipt>("troupe::events::publish_receipt");
  cfg.add_message_type<events_stats>("troupe::events::events_stats");
}

} // namespace troupe::events
