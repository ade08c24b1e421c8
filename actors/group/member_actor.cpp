#include "actors/group/member_actor.hpp"

#include <algorithm>
#include <map>
#include <random>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/response_promise.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/group/group.hpp"
#include "base/error.hpp"
#include "base/log.hpp"
#include "runtime/locator.hpp"
#include "runtime/node_service.hpp"

namespace troupe::group::detail {

namespace {

constexpr const char* log_component = "group";

using tick_atom = caf::atom_constant<caf::atom("gtick")>;
using flush_atom = caf::atom_constant<caf::atom("gflush")>;

/// What the leader knows of another member.
struct peer_state {
  caf::actor handle;   ///< null until located (file bootstrap) or joined
  unsigned misses = 0; ///< consecutive pings (or lookups) that failed
  bool busy = false;   ///< a ping or lookup is under way
};

struct member_state {
  member_settings settings;
  group_view view;
  uint64_t self_id = 0;        ///< 0 while joining
  bool removed_logged = false; // also set when we leave: no warning then

  // Leader side.
  std::map<uint64_t, peer_state> peers; // by member id
  uint64_t next_member_id = 1;
  bool file_dirty = false;
  std::minstd_rand rng{std::random_device{}()};

  // Member side.
  caf::actor leader;

  std::map<caf::actor_addr, caf::actor> subscribers;

  bool is_leader() const { return self_id != 0 && view.leader == self_id; }
  static inline const char* name = "troupe.group.member"; // CAF's actor name
};

using member_actor = caf::stateful_actor<member_state>;

caf::error refused(member_actor* self, const std::string& what) {
  return make_error(errc::refused, "group \"" + self->state.settings.group_name
                                     + "\" is static: " + what
                                     + " is refused (membership is fixed)");
}

// -- events -------------------------------------------------------------------------

template <class... Ts>
void tell_subscribers(member_actor* self, const Ts&... xs) {
  for (const auto& [addr, subscriber] : self->state.subscribers)
    self->send(subscriber, xs...);
}

void announce(member_actor* self, const view_change& change) {
  const auto& v = self->state.view.version;
  switch (change.what()) {
    case change_kind::joined:
      tell_subscribers(self, member_joined_atom::value, change.subject, v);
      break;
    case change_kind::left:
      tell_subscribers(self, member_left_atom::value, change.subject, v);
      break;
    case change_kind::died:
      tell_subscribers(self, member_died_atom::value, change.subject, v);
      break;
    case change_kind::metadata:
      tell_subscribers(self, metadata_changed_atom::value, change.key, change.value,
                       change.removed, v);
      break;
    case change_kind::sync:
      break;
  }
}

/// Events for a jump over several versions: what differs between the two views. A
/// member that is gone is reported as having left (the jump hides why).
void announce_difference(member_actor* self, const group_view& before) {
  const auto& after = self->state.view;
  for (const auto& m : after.members)
    if (!before.find(m.member_id))
      announce(self, view_change::of_member(change_kind::joined, m));
  for (const auto& m : before.members)
    if (!after.find(m.member_id))
      announce(self, view_change::of_member(change_kind::left, m));
  for (const auto& [key, value] : after.metadata) {
    auto old = before.metadata.find(key);
    if (old == before.metadata.end() || old->second != value)
      announce(self, view_change::of_metadata(key, value, false));
  }
  for (const auto& [key, value] : before.metadata)
    if (!after.metadata.count(key))
      announce(self, view_change::of_metadata(key, {}, true));
}

/// This member's id in `view`, or 0 when it is not (or not yet) in it.
uint64_t own_id_in(member_actor* self, const group_view& view) {
  const auto& me = self->state.settings.self;
  auto rank = view.rank_of(me.address, me.provider_id);
  return rank ? view.members[*rank].member_id : 0;
}

/// Keeps the leader's handle (the first one learned) and watches it.
void set_leader(member_actor* self, const caf::actor& handle) {
  if (self->state.leader || !handle)
    return;
  self->state.leader = handle;
  self->monitor(handle);
}

/// Looks up the group provider of another member, without blocking.
auto locate_member(member_actor* self, const std::string& address, uint16_t provider_id,
                   std::chrono::milliseconds timeout) {
  return self->request(self->state.settings.locator, timeout, locate_atom::value, address,
                       std::string{"group"}, provider_id);
}

/// Takes a view the leader sent, if it is newer than ours.
void adopt(member_actor* self, group_view view, const view_change& change) {
  auto& st = self->state;
  if (!(st.view.version < view.version))
    return;
  auto before = std::move(st.view);
  st.view = std::move(view);
  if (st.self_id == 0)
    st.self_id = own_id_in(self, st.view);
  if (before.version.followed_by(st.view.version) && change.what() != change_kind::sync)
    announce(self, change);
  else
    announce_difference(self, before);
  if (st.self_id != 0 && !st.view.find(st.self_id) && !st.removed_logged) {
    st.removed_logged = true;
    TROUPE_LOG_WARNING(log_component,
                       "group \"" << st.settings.group_name << "\": member " << st.self_id
                                  << " was removed from the group by its leader (view "
                                  << to_string(st.view.version) << ")");
  }
}

// -- leader side --------------------------------------------------------------------

void schedule_flush(member_actor* self) {
  auto& st = self->state;
  if (st.settings.file.empty() || st.file_dirty)
    return;
  st.file_dirty = true;
  // Sent to ourselves, so it queues behind requests already waiting: a burst of joins
  // costs one file write, not one per join.
  self->send(self, flush_atom::value);
}

/// Applies a change the leader decided: new version, file, pushes, events.
void commit(member_actor* self, const view_change& change) {
  auto& st = self->state;
  ++st.view.version.seq;
  schedule_flush(self);
  for (auto& [id, peer] : st.peers)
    if (peer.handle)
      self->send(peer.handle, caf::update_atom::value, st.view, change);
  // A member that was removed learns it (it may only have been silent, not dead).
  if (change.what() == change_kind::left || change.what() == change_kind::died)
    if (auto it = st.peers.find(change.subject.member_id); it != st.peers.end()) {
      // The loop above already sent it the view without it; only forget it now.
      if (it->second.handle)
        self->demonitor(it->second.handle);
      st.peers.erase(it);
    }
  announce(self, change);
}

void remove_member(member_actor* self, uint64_t member_id, change_kind why,
                   const std::string& reason) {
  auto& st = self->state;
  auto it = std::find_if(st.view.members.begin(), st.view.members.end(),
                         [&](const member& m) { return m.member_id == member_id; });
  if (it == st.view.members.end())
    return;
  auto change = view_change::of_member(why, *it);
  st.view.members.erase(it);
  TROUPE_LOG_INFO(log_component, "group \"" << st.settings.group_name << "\": member "
                                            << member_id << " (" << change.subject.address
                                            << ") " << reason);
  commit(self, change);
}

void add_peer_handle(member_actor* self, uint64_t member_id, const caf::actor& handle) {
  auto& peer = self->state.peers[member_id];
  if (peer.handle == handle)
    return;
  if (peer.handle)
    self->demonitor(peer.handle);
  peer.handle = handle;
  peer.misses = 0;
  // The transport turns a dead node into a DOWN message at once: no ping timeouts.
  self->monitor(handle);
}

void missed(member_actor* self, uint64_t member_id, const caf::error& err) {
  auto& st = self->state;
  auto it = st.peers.find(member_id);
  if (it == st.peers.end())
    return;
  it->second.busy = false;
  if (++it->second.misses < st.settings.ping.max_timeouts)
    return;
  remove_member(self, member_id, change_kind::died,
                "died: " + std::to_string(it->second.misses)
                  + " pings in a row failed (last: " + describe(err) + ")");
}

void ping_members(member_actor* self) {
  auto& st = self->state;
  for (const auto& m : st.view.members) {
    if (m.member_id == st.self_id)
      continue;
    auto& peer = st.peers[m.member_id];
    if (peer.busy)
      continue;
    peer.busy = true;
    auto id = m.member_id;
    if (!peer.handle) {
      locate_member(self, m.address, m.provider_id, st.settings.ping.timeout)
        .then(
          [self, id](caf::actor& handle) {
            auto it = self->state.peers.find(id);
            if (it == self->state.peers.end())
              return;
            it->second.busy = false;
            add_peer_handle(self, id, handle);
            self->send(handle, caf::update_atom::value, self->state.view, view_change{});
          },
          [self, id](caf::error& err) { missed(self, id, err); });
      continue;
    }
    self
      ->request(peer.handle, st.settings.ping.timeout, ping_atom::value, st.view.version)
      .then(
        [self, id](const view_version& theirs) {
          auto it = self->state.peers.find(id);
          if (it == self->state.peers.end())
            return;
          it->second.busy = false;
          it->second.misses = 0;
          if (theirs < self->state.view.version) // it missed an update: catch it up
            self->send(it->second.handle, caf::update_atom::value, self->state.view,
                       view_change{});
        },
        [self, id](caf::error& err) { missed(self, id, err); });
  }
}

void schedule_tick(member_actor* self) {
  auto& p = self->state.settings.ping;
  auto span = (p.interval_max - p.interval_min).count();
  auto delay = p.interval_min;
  if (span > 0)
    delay += std::chrono::milliseconds{
      std::uniform_int_distribution<long>{0, static_cast<long>(span)}(self->state.rng)};
  self->delayed_send(self, delay, tick_atom::value);
}

caf::result<group_view> leader_join(member_actor* self, member candidate,
                                    const caf::actor& handle) {
  auto& st = self->state;
  if (auto rank = st.view.rank_of(candidate.address, candidate.provider_id)) {
    auto& known = st.view.members[*rank];
    if (known.incarnation == candidate.incarnation) {
      // The same member asking again (its answer was lost): nothing changes.
      add_peer_handle(self, known.member_id, handle);
      return st.view;
    }
    if (known.member_id == st.self_id)
      return make_error(errc::refused, candidate.address + " provider "
                                         + std::to_string(candidate.provider_id)
                                         + " is the leader of group \""
                                         + st.settings.group_name + "\"");
    // A new run of a node that was a member: the old run is gone.
    remove_member(self, known.member_id, change_kind::died,
                  "died: it rejoined with a new incarnation");
  }
  candidate.member_id = st.next_member_id++;
  st.view.members.push_back(candidate);
  add_peer_handle(self, candidate.member_id, handle);
  TROUPE_LOG_INFO(log_component, "group \"" << st.settings.group_name << "\": member "
                                            << candidate.member_id << " ("
                                            << candidate.address << ") joined");
  commit(self, view_change::of_member(change_kind::joined, candidate));
  return st.view;
}

// -- member side --------------------------------------------------------------------

/// Relays a change request to the leader and its answer back. A relay, not a CAF
/// delegation: the answer then travels only between nodes that are connected.
template <class Answer, class... Ts>
caf::response_promise forward_to_leader(member_actor* self, Ts... xs) {
  auto rp = self->make_response_promise();
  auto& st = self->state;
  auto relay = [self, rp, xs...](const caf::actor& leader) mutable {
    self->request(leader, self->state.settings.join_timeout, std::move(xs)...)
      .then([rp](Answer& answer) mutable { rp.deliver(std::move(answer)); },
            [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
  };
  if (st.leader) {
    relay(st.leader);
    return rp;
  }
  const member* leader = st.view.find(st.view.leader);
  if (leader == nullptr) {
    rp.deliver(make_error(errc::unreachable, "group \"" + st.settings.group_name
                                               + "\": this member has no leader yet"));
    return rp;
  }
  auto where = leader->address;
  locate_member(self, where, leader->provider_id, st.settings.join_timeout)
    .then(
      [self, relay](caf::actor& handle) mutable {
        set_leader(self, handle);
        relay(handle);
      },
      [self, rp, where](caf::error& err) mutable {
        rp.deliver(
          make_error(errc::unreachable, "group \"" + self->state.settings.group_name
                                          + "\": its leader at " + where
                                          + " cannot be reached: " + describe(err)));
      });
  return rp;
}

/// Learns the leader's handle from a message it sent.
void note_leader(member_actor* self) {
  set_leader(self, caf::actor_cast<caf::actor>(self->current_sender()));
}

/// Joining: try the contacts in order until one lets us in.
void try_join(member_actor* self, caf::response_promise rp,
              std::shared_ptr<std::vector<std::string>> contacts, size_t index,
              std::string errors) {
  auto& st = self->state;
  if (index == contacts->size()) {
    rp.deliver(
      make_error(errc::unreachable, "cannot join group \"" + st.settings.group_name
                                      + "\": no member answered (" + errors + ")"));
    return;
  }
  const auto& contact = (*contacts)[index];
  auto next = [self, rp, contacts, index, errors,
               contact](const caf::error& err) mutable {
    auto text = errors.empty() ? "" : errors + "; ";
    try_join(self, std::move(rp), contacts, index + 1,
             text + contact + ": " + describe(err));
  };
  // Any member can be asked: its view names the leader, which takes the join.
  auto timeout = st.settings.join_timeout;
  auto join_at = [self, rp, next](const caf::actor& leader) mutable {
    auto& st = self->state;
    self
      ->request(leader, st.settings.join_timeout, join_atom::value, st.settings.self,
                caf::actor{self})
      .then(
        [self, rp, leader](group_view& view) mutable {
          auto& st = self->state;
          adopt(self, std::move(view), view_change{});
          if (st.self_id == 0) {
            rp.deliver(make_error(errc::refused, "the join was answered with a view "
                                                 "that does not hold us"));
            return;
          }
          set_leader(self, leader);
          TROUPE_LOG_INFO(log_component,
                          "group \"" << st.settings.group_name << "\": joined as member "
                                     << st.self_id << ", view "
                                     << to_string(st.view.version) << " with "
                                     << st.view.members.size() << " members");
          rp.deliver(st.view);
        },
        [rp, next](caf::error& err) mutable {
          if (has_code(err, errc::refused))
            rp.deliver(std::move(err)); // a definite no: asking others won't help
          else
            next(err);
        });
  };
  locate_member(self, contact, st.settings.self.provider_id, timeout)
    .then(
      [self, rp, next, timeout, join_at, contact](caf::actor& member_handle) mutable {
        self
          ->request(member_handle, self->state.settings.join_timeout,
                    caf::get_atom::value)
          .then(
            [self, rp, next, timeout, join_at, member_handle,
             contact](const group_view& view) mutable {
              const member* leader = view.find(view.leader);
              if (leader == nullptr) {
                rp.deliver(make_error(errc::refused,
                                      "group \"" + self->state.settings.group_name
                                        + "\" at " + contact
                                        + " is static: join is refused (membership is "
                                          "fixed)"));
                return;
              }
              if (leader->address == contact
                  && leader->provider_id == self->state.settings.self.provider_id) {
                join_at(member_handle);
                return;
              }
              locate_member(self, leader->address, leader->provider_id, timeout)
                .then([join_at](caf::actor& handle) mutable { join_at(handle); }, next);
            },
            next);
      },
      next);
}

caf::behavior member_behavior(member_actor* self, member_settings settings,
                              group_view view) {
  auto& st = self->state;
  st.settings = std::move(settings);
  st.view = std::move(view);
  st.self_id = own_id_in(self, st.view);
  for (const auto& m : st.view.members)
    st.next_member_id = std::max(st.next_member_id, m.member_id + 1);
  if (st.is_leader()) {
    schedule_flush(self);
    schedule_tick(self);
  }
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    st.subscribers.erase(dm.source);
    if (st.leader && st.leader.address() == dm.source) {
      TROUPE_LOG_WARNING(log_component, "group \"" << st.settings.group_name
                                                   << "\": the leader is unreachable ("
                                                   << describe(dm.reason)
                                                   << "); membership is frozen");
      st.leader = nullptr;
      return;
    }
    for (auto& [id, peer] : st.peers)
      if (peer.handle && peer.handle.address() == dm.source) {
        auto member_id = id;
        peer.handle = nullptr;
        remove_member(self, member_id, change_kind::died,
                      "died: its node is gone (" + describe(dm.reason) + ")");
        return;
      }
  });
  // Leaving on shutdown: a member that stops tells the leader, so it is gone from the
  // view at once instead of after the ping timeouts.
  self->set_exit_handler([self](caf::exit_msg& msg) {
    auto& st = self->state;
    if (st.is_leader() || st.self_id == 0 || !st.leader || !st.view.find(st.self_id)) {
      self->quit(msg.reason);
      return;
    }
    auto reason = msg.reason;
    st.removed_logged = true;
    self->request(st.leader, st.settings.ping.timeout, leave_atom::value, st.self_id)
      .then([self, reason](const group_view&) { self->quit(reason); },
            [self, reason](const caf::error&) { self->quit(reason); });
  });
  return {
    [self](caf::get_atom) { return self->state.view; },
    [self](refresh_atom, const view_version& known) {
      view_refresh answer;
      answer.changed = known != self->state.view.version;
      if (answer.changed)
        answer.view = self->state.view;
      return answer;
    },
    [self](caf::subscribe_atom, const caf::actor& subscriber) {
      if (subscriber
          && self->state.subscribers.emplace(subscriber.address(), subscriber).second)
        self->monitor(subscriber);
      return self->state.view;
    },
    [self](caf::unsubscribe_atom, const caf::actor& subscriber) {
      if (subscriber && self->state.subscribers.erase(subscriber.address()) > 0)
        self->demonitor(subscriber);
    },
    [self](join_atom, member& candidate, caf::actor& handle) -> caf::result<group_view> {
      auto& st = self->state;
      if (!st.settings.centralized)
        return refused(self, "join");
      if (!handle)
        return make_error(errc::refused, "a join needs the joiner's actor");
      if (st.is_leader())
        return leader_join(self, std::move(candidate), handle);
      // Joiners ask the leader themselves (they learn it from any member's view), so
      // the leader talks to them directly.
      return make_error(errc::refused, "joins go to the leader of group \""
                                         + st.settings.group_name + "\" (member "
                                         + std::to_string(st.view.leader) + ")");
    },
    [self](leave_atom, uint64_t member_id) -> caf::result<group_view> {
      auto& st = self->state;
      if (!st.settings.centralized)
        return refused(self, "leave");
      if (!st.is_leader())
        return forward_to_leader<group_view>(self, leave_atom::value, member_id);
      if (member_id == st.self_id)
        return make_error(errc::refused,
                          "member " + std::to_string(member_id)
                            + " is the leader of group \"" + st.settings.group_name
                            + "\" and cannot leave (a centralized group has one leader)");
      if (!st.view.find(member_id))
        return make_error(errc::not_found, "group \"" + st.settings.group_name
                                             + "\" has no member "
                                             + std::to_string(member_id));
      remove_member(self, member_id, change_kind::left, "left");
      return st.view;
    },
    [self](caf::put_atom, std::string& key,
           std::string& value) -> caf::result<view_version> {
      auto& st = self->state;
      if (!st.settings.centralized)
        return refused(self, "a metadata change");
      if (!st.is_leader())
        return forward_to_leader<view_version>(self, caf::put_atom::value, std::move(key),
                                               std::move(value));
      if (key.empty())
        return make_error(errc::invalid_config, "a metadata key cannot be empty");
      st.view.metadata[key] = value;
      commit(self, view_change::of_metadata(key, value, false));
      return st.view.version;
    },
    [self](caf::delete_atom, std::string& key) -> caf::result<view_version> {
      auto& st = self->state;
      if (!st.settings.centralized)
        return refused(self, "a metadata change");
      if (!st.is_leader())
        return forward_to_leader<view_version>(self, caf::delete_atom::value,
                                               std::move(key));
      if (st.view.metadata.erase(key) == 0)
        return make_error(errc::not_found, "group \"" + st.settings.group_name
                                             + "\" has no metadata key \"" + key + "\"");
      commit(self, view_change::of_metadata(key, {}, true));
      return st.view.version;
    },
    [self](caf::update_atom, group_view& view, const view_change& change) {
      if (self->state.is_leader())
        return; // a stale leader's push; ours is the newer truth
      note_leader(self);
      adopt(self, std::move(view), change);
    },
    [self](ping_atom, const view_version&) {
      note_leader(self);
      return self->state.view.version;
    },
    [self](connect_atom, std::vector<std::string>& contacts) {
      auto rp = self->make_response_promise();
      try_join(self, rp, std::make_shared<std::vector<std::string>>(std::move(contacts)),
               0, {});
      return rp;
    },
    [self](tick_atom) {
      ping_members(self);
      schedule_tick(self);
    },
    [self](flush_atom) {
      auto& st = self->state;
      st.file_dirty = false;
      if (auto err = write_view_file(st.settings.file, st.view))
        TROUPE_LOG_ERROR(log_component, "group \""
                                          << st.settings.group_name
                                          << "\": cannot write the view file: "
                                          << context_text(err));
    },
  };
}

} // namespace

caf::actor spawn_member(caf::actor_system& system, member_settings settings,
                        group_view view) {
  return system.spawn(member_behavior, std::move(settings), std::move(view));
}

} // namespace troupe::group::detail
