// The heartbeat actor (heartbeat.hpp): the root beats, every rank watches.

#include "actors/heartbeat/heartbeat.hpp"

#include <algorithm>
#include <chrono>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/group/follow.hpp"
#include "actors/overlay/overlay.hpp"
#include "actors/service_config.hpp"
#include "base/error.hpp"
#include "base/log.hpp"
#include "runtime/json_reader.hpp"
#include "runtime/provider_registry.hpp"

namespace troupe::heartbeat {

namespace {

using std::chrono::milliseconds;
using clock_type = std::chrono::steady_clock;

using tick_atom = caf::atom_constant<caf::atom("hbtick")>;

struct heartbeat_settings {
  milliseconds period{1000};
  uint32_t missed_beats = 3;
};

struct heartbeat_state {
  static inline const char* name = "troupe.heartbeat";
  heartbeat_settings settings;
  caf::actor group;
  caf::actor overlay;
  std::string provider_name;
  std::string address;
  group::group_view view; // the latest the group gave
  uint32_t rank = UINT32_MAX;
  uint64_t beats_sent = 0; // as the root
  uint64_t last_seq = 0;
  clock_type::time_point last_beat{};
  clock_type::time_point watching_since = clock_type::now();
  bool missed = false;
  std::vector<caf::actor> subscribers;
};

using heartbeat_actor = caf::stateful_actor<heartbeat_state>;

/// Every period: the root beats; every rank checks when it last heard one.
void tick(heartbeat_actor* self) {
  auto& st = self->state;
  self->delayed_send(self, st.settings.period, tick_atom::value);
  if (st.rank == 0) {
    // (The broadcast's answer, how many ranks got it, is not needed: a rank that did
    // not get it tells by itself.)
    self
      ->request(st.overlay, st.settings.period * (st.settings.missed_beats + 1),
                overlay::broadcast_atom::value, st.provider_name,
                caf::make_message(beat_atom::value, ++st.beats_sent))
      .then([](const overlay::reduction_result&) {}, [](caf::error&) {});
  }
  auto since = st.last_seq > 0 ? st.last_beat : st.watching_since;
  bool late = clock_type::now() - since > st.settings.period * st.settings.missed_beats;
  if (late && !st.missed)
    TROUPE_LOG_WARNING("heartbeat", st.address << " (rank " << st.rank << ") missed "
                                               << st.settings.missed_beats
                                               << " heartbeats (last beat "
                                               << st.last_seq << ")");
  st.missed = late;
}

caf::behavior heartbeat_behavior(heartbeat_actor* self) {
  auto adopt = [self](const group::group_view& v) {
    group::adopt_view(self->state.view, self->state.rank, v, self->state.address);
  };
  return group::view_updates(self, self->state.group, adopt).or_else(caf::message_handler{
    [self](tick_atom) { tick(self); },
    [self](beat_atom, uint64_t seq) {
      auto& st = self->state;
      if (st.missed)
        TROUPE_LOG_WARNING("heartbeat", st.address << " (rank " << st.rank
                                                   << ") hears heartbeats again (beat "
                                                   << seq << ")");
      st.missed = false;
      st.last_seq = seq;
      st.last_beat = clock_type::now();
      for (const auto& s : st.subscribers)
        self->send(s, beat_atom::value, seq);
    },
    [self](status_atom) {
      auto& st = self->state;
      nlohmann::json j;
      j["rank"] = st.rank;
      j["seq"] = st.last_seq;
      j["age_ms"] = st.last_seq == 0 ? int64_t{-1}
                                     : std::chrono::duration_cast<milliseconds>(
                                         clock_type::now() - st.last_beat)
                                         .count();
      j["missed"] = st.missed;
      return j.dump();
    },
    [self](caf::subscribe_atom, const caf::actor& who) {
      auto& subs = self->state.subscribers;
      if (std::find(subs.begin(), subs.end(), who) == subs.end()) {
        self->monitor(who);
        subs.push_back(who);
      }
      return caf::unit;
    },
    [self](caf::unsubscribe_atom, const caf::actor& who) {
      auto& subs = self->state.subscribers;
      subs.erase(std::remove(subs.begin(), subs.end(), who), subs.end());
      return caf::unit;
    },
  });
}

caf::behavior heartbeat_actor_fn(heartbeat_actor* self, heartbeat_settings settings,
                                 caf::actor group, caf::actor overlay,
                                 std::string provider_name, std::string address) {
  auto& st = self->state;
  st.settings = settings;
  st.group = group;
  st.overlay = std::move(overlay);
  st.provider_name = std::move(provider_name);
  st.address = std::move(address);
  group::follow_group(self, group, "heartbeat", [self](const group::group_view& v) {
    group::adopt_view(self->state.view, self->state.rank, v, self->state.address);
  });
  // This replaces follow_group's down handler, so it ends the actor with its group as
  // that one would, and drops subscribers that exit.
  self->set_down_handler([self, group](const caf::down_msg& dm) {
    if (dm.source == group.address()) {
      self->quit(dm.reason);
      return;
    }
    auto& subs = self->state.subscribers;
    subs.erase(std::remove_if(subs.begin(), subs.end(),
                              [&](const caf::actor& s) { return s.address() == dm.source; }),
               subs.end());
  });
  self->delayed_send(self, settings.period, tick_atom::value);
  return heartbeat_behavior(self);
}

caf::expected<caf::actor> make_heartbeat(const provider_context& ctx) {
  heartbeat_settings settings;
  auto err = actors::read_service_config(
    ctx, {"period_ms", "missed_beats"}, [&](json_reader& r, const nlohmann::json& cfg) {
      if (auto p = cfg.find("period_ms"); p != cfg.end())
        settings.period = milliseconds{r.read_integer("config.period_ms", *p, 10, 3600000)};
      if (auto m = cfg.find("missed_beats"); m != cfg.end())
        settings.missed_beats =
          static_cast<uint32_t>(r.read_integer("config.missed_beats", *m, 1, 1000));
    });
  if (err)
    return err;
  auto deps = actors::group_and_overlay_of(ctx);
  if (!deps)
    return deps.error();
  return ctx.system.spawn(heartbeat_actor_fn, settings, deps->group, deps->overlay, ctx.spec.name,
                          ctx.node_address);
}

} // namespace

void register_heartbeat_provider(provider_registry& registry) {
  registry.add_type("heartbeat", make_heartbeat);
}

} // namespace troupe::heartbeat
