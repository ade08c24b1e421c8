// The barrier actor (barrier.hpp): every rank passes entries to the root; the root
// counts them and fails waiting barriers when a member dies.

#include "actors/barrier/barrier.hpp"

#include <chrono>
#include <functional>
#include <map>
#include <utility>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/group/follow.hpp"
#include "actors/group/group.hpp"
#include "actors/group/peer_providers.hpp"
#include "actors/service_config.hpp"
#include "base/error.hpp"
#include "base/log.hpp"
#include "runtime/json_reader.hpp"
#include "runtime/provider_registry.hpp"

namespace troupe::barrier {

namespace {

using std::chrono::milliseconds;

using root_enter_atom = caf::atom_constant<caf::atom("brroot")>;
using expire_atom = caf::atom_constant<caf::atom("brexpire")>;

/// Beyond the barrier's own time, for the way to the root and back.
constexpr milliseconds way_to_root{2000};

struct barrier_settings {
  milliseconds timeout{60000};
};

/// A barrier the root is counting entries of.
struct waiting_barrier {
  uint32_t count = 0;
  uint64_t generation = 0;
  milliseconds timeout{0};
  std::vector<caf::response_promise> entries;
};

struct barrier_state {
  static inline const char* name = "troupe.barrier";
  barrier_settings settings;
  caf::actor group;
  caf::actor locator;
  std::string address;
  uint16_t provider_id = 0;
  group::group_view view;
  uint32_t rank = UINT32_MAX;
  /// The root's barrier, looked up once per root; a rank's entries reach the root in
  /// the order they came, even during the lookup.
  group::peer_providers roots{"barrier", 1};
  // As the root:
  std::map<std::string, waiting_barrier> waiting;
  std::map<std::string, uint64_t> generations;
};

using barrier_actor = caf::stateful_actor<barrier_state>;

void adopt(barrier_actor* self, group::group_view view) {
  auto& st = self->state;
  group::adopt_view(st.view, st.rank, std::move(view), st.address);
}

void refresh_view(barrier_actor* self) {
  self->request(self->state.group, std::chrono::seconds{10}, caf::get_atom::value)
    .then([self](group::group_view& v) { adopt(self, std::move(v)); },
          [](caf::error& err) {
            TROUPE_LOG_WARNING("barrier", "cannot read the group's view: " << describe(err));
          });
}

/// The root: fails every waiting barrier with `why` (a member went away).
void fail_all(barrier_actor* self, const std::string& why) {
  auto waiting = std::move(self->state.waiting);
  self->state.waiting.clear();
  for (auto& [name, b] : waiting) {
    auto err = make_error(errc::unreachable,
                          "barrier '" + name + "': " + why + " while it waited ("
                            + std::to_string(b.entries.size()) + " of "
                            + std::to_string(b.count) + " entered)");
    for (auto& rp : b.entries)
      rp.deliver(err);
  }
}

/// A member left the view: which rank it had, and its address.
void member_gone(barrier_actor* self, const group::member& m, const char* how) {
  auto& st = self->state;
  std::string who = m.address;
  for (size_t i = 0; i < st.view.members.size(); ++i)
    if (st.view.members[i].member_id == m.member_id)
      who = "rank " + std::to_string(i) + " (" + m.address + ")";
  fail_all(self, who + " " + how);
  refresh_view(self);
}

void root_enter(barrier_actor* self, const std::string& name, uint32_t count,
                milliseconds timeout, caf::response_promise rp) {
  auto& st = self->state;
  auto& b = st.waiting[name];
  if (b.entries.empty()) {
    b.count = count;
    b.generation = ++st.generations[name];
    b.timeout = timeout;
    self->delayed_send(self, timeout, expire_atom::value, name, b.generation);
  } else if (b.count != count) {
    rp.deliver(make_error(errc::invalid_argument,
                          "barrier '" + name + "' waits for " + std::to_string(b.count)
                            + " entries, this one counts " + std::to_string(count)));
    return;
  }
  b.entries.push_back(std::move(rp));
  if (b.entries.size() < b.count)
    return;
  barrier_done done{name, b.count, b.generation};
  auto entries = std::move(b.entries);
  st.waiting.erase(name);
  for (auto& e : entries)
    e.deliver(done);
}

/// Calls `then` with the root's barrier actor (looked up once per root), in the
/// order of the calls.
template <class F>
void with_root(barrier_actor* self, F then) {
  auto& st = self->state;
  st.roots.with(self, st.locator, st.view.members.front(), std::chrono::seconds{10},
                std::move(then));
}

caf::result<barrier_done> enter(barrier_actor* self, std::string& name, uint32_t count,
                                uint32_t timeout_ms) {
  auto& st = self->state;
  if (count == 0)
    return make_error(errc::invalid_argument, "barrier '" + name + "': a count of 0");
  if (st.rank == UINT32_MAX || st.view.members.empty())
    return make_error(errc::refused, "the barrier at " + st.address
                                       + " is not in a view of its group yet");
  auto timeout = timeout_ms > 0 ? milliseconds{timeout_ms} : st.settings.timeout;
  auto rp = self->make_response_promise<barrier_done>();
  if (st.rank == 0) {
    root_enter(self, name, count, timeout, rp);
    return rp;
  }
  auto root_member = st.view.members.front();
  auto root_address = root_member.address;
  with_root(self, [self, rp, name, count, timeout, root_address,
                   root_member](caf::expected<caf::actor> root) mutable {
    if (!root) {
      rp.deliver(make_error(errc::unreachable, "barrier '" + name + "': the root (rank 0, "
                                                 + root_address + "): "
                                                 + describe(root.error())));
      return;
    }
    self
      ->request(*root, timeout + way_to_root, root_enter_atom::value, name, count,
                static_cast<uint32_t>(timeout.count()))
      .then([rp](barrier_done& done) mutable { rp.deliver(done); },
            [self, rp, name, root_address, root_member](caf::error& err) mutable {
              if (err.category() == error_category_atom) {
                rp.deliver(std::move(err)); // the root's (or the transport's) own words
                return;
              }
              if (err != caf::sec::request_timeout)
                self->state.roots.forget(root_member); // gone: look it up again
              rp.deliver(make_error(errc::unreachable,
                                    "barrier '" + name + "': the root (rank 0, "
                                      + root_address + ") did not answer: "
                                      + describe(err)));
            });
  });
  return rp;
}

caf::behavior barrier_behavior(barrier_actor* self) {
  return {
    [self](enter_atom, std::string& name, uint32_t count) {
      return enter(self, name, count, 0);
    },
    [self](enter_atom, std::string& name, uint32_t count, uint32_t timeout_ms) {
      return enter(self, name, count, timeout_ms);
    },
    [self](root_enter_atom, std::string& name, uint32_t count,
           uint32_t timeout_ms) -> caf::result<barrier_done> {
      if (self->state.rank != 0)
        return make_error(errc::refused, self->state.address
                                           + " is not the instance's root (rank 0) any more");
      auto rp = self->make_response_promise<barrier_done>();
      root_enter(self, name, count, milliseconds{timeout_ms}, rp);
      return rp;
    },
    [self](expire_atom, const std::string& name, uint64_t generation) {
      auto& st = self->state;
      auto i = st.waiting.find(name);
      if (i == st.waiting.end() || i->second.generation != generation)
        return; // completed (or failed) already
      auto b = std::move(i->second);
      st.waiting.erase(i);
      auto err = make_error(errc::timeout,
                            "barrier '" + name + "': " + std::to_string(b.entries.size())
                              + " of " + std::to_string(b.count) + " entered within "
                              + std::to_string(b.timeout.count()) + " ms");
      for (auto& rp : b.entries)
        rp.deliver(err);
    },
    [self](group::member_joined_atom, const group::member&, const group::view_version&) {
      refresh_view(self);
    },
    [self](group::member_left_atom, const group::member& m, const group::view_version&) {
      member_gone(self, m, "left");
    },
    [self](group::member_died_atom, const group::member& m, const group::view_version&) {
      member_gone(self, m, "died");
    },
    [](group::metadata_changed_atom, const std::string&, const std::string&, bool,
       const group::view_version&) {},
  };
}

caf::behavior barrier_actor_fn(barrier_actor* self, barrier_settings settings,
                               caf::actor group, caf::actor locator, std::string address,
                               uint16_t provider_id) {
  auto& st = self->state;
  st.settings = settings;
  st.group = group;
  st.locator = std::move(locator);
  st.address = std::move(address);
  st.provider_id = provider_id;
  st.roots = group::peer_providers{"barrier", provider_id};
  group::follow_group(self, group, "barrier",
                      [self](group::group_view v) { adopt(self, std::move(v)); });
  return barrier_behavior(self);
}

caf::expected<caf::actor> make_barrier(const provider_context& ctx) {
  barrier_settings settings;
  auto err = actors::read_service_config(
    ctx, {"timeout_ms"}, [&](json_reader& r, const nlohmann::json& cfg) {
      if (auto t = cfg.find("timeout_ms"); t != cfg.end())
        settings.timeout =
          milliseconds{r.read_integer("config.timeout_ms", *t, 1, 24 * 3600 * 1000)};
    });
  if (err)
    return err;
  auto group = actors::dependency(ctx, "group");
  if (!group)
    return group.error();
  if (!ctx.locator || ctx.node_address.empty())
    return make_error(errc::invalid_config,
                      ctx.spec.origin + ": the barrier needs a node with a transport");
  return ctx.system.spawn(barrier_actor_fn, settings, *group, ctx.locator,
                          ctx.node_address, ctx.spec.provider_id);
}

} // namespace

void register_barrier_provider(provider_registry& registry) {
  registry.add_type("barrier", make_barrier);
}

void register_barrier_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<barrier_done>("troupe::barrier::barrier_done");
}

} // namespace troupe::barrier
