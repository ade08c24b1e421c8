// The overlay actor (overlay.hpp): one per rank; follows the group's view, routes
// requests hop by hop and runs reductions over its subtree.

#include "actors/overlay/overlay.hpp"

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <utility>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/group/follow.hpp"
#include "actors/group/group.hpp"
#include "actors/service_config.hpp"
#include "base/error.hpp"
#include "base/log.hpp"
#include "runtime/json_reader.hpp"
#include "runtime/locator.hpp"
#include "runtime/provider_registry.hpp"

namespace troupe::overlay::detail {
/// A type nobody sends: the answer handler of `relay` that never matches.
struct never_answered {};
} // namespace troupe::overlay::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::overlay::detail::never_answered)

namespace troupe::overlay {

namespace {

using std::chrono::milliseconds;

struct overlay_settings {
  uint32_t fanout = 8;
  milliseconds timeout{5000};
};

struct overlay_state {
  static inline const char* name = "troupe.overlay";
  overlay_settings settings;
  caf::actor group;
  caf::actor locator;
  std::weak_ptr<provider_registry> providers;
  std::string address;
  uint16_t provider_id = 0;
  group::group_view view;
  uint32_t rank = no_rank;
  uint64_t rebuilds = 0;
  /// The overlay providers of other ranks, by peer_key (a node restarted at the same
  /// address is a new member, with a new incarnation, and a new actor).
  std::map<std::string, caf::actor> peers;
  /// Work waiting for a peer's lookup, in the order it came: everything this rank
  /// sends a peer leaves in the order it was asked for (a broadcast's events too),
  /// even while the first lookup of that peer is under way.
  std::map<std::string, std::vector<std::function<void(caf::expected<caf::actor>)>>>
    waiting_for_peer;
};

using overlay_actor = caf::stateful_actor<overlay_state>;

std::string peer_key(const group::member& m) {
  return m.address + "#" + std::to_string(m.incarnation);
}

uint32_t size_of(const overlay_state& st) {
  return static_cast<uint32_t>(st.view.members.size());
}

status status_of(const overlay_state& st) {
  status s;
  s.rank = st.rank;
  s.size = size_of(st);
  s.fanout = st.settings.fanout;
  if (st.rank != no_rank) {
    s.parent = parent_of(st.rank, st.settings.fanout);
    s.children = children_of(st.rank, s.size, st.settings.fanout);
  }
  s.address = st.address;
  s.view_epoch = st.view.version.epoch;
  s.view_seq = st.view.version.seq;
  s.rebuilds = st.rebuilds;
  return s;
}

/// Takes a view: this node's rank in it, the tree, and peers no longer in it dropped.
void adopt(overlay_actor* self, group::group_view view) {
  auto& st = self->state;
  if (!group::adopt_view(st.view, st.rank, std::move(view), st.address))
    return; // an older view overtaken by a newer one
  for (auto i = st.peers.begin(); i != st.peers.end();) {
    bool kept = std::any_of(st.view.members.begin(), st.view.members.end(),
                            [&](const group::member& m) { return peer_key(m) == i->first; });
    i = kept ? std::next(i) : st.peers.erase(i);
  }
  ++st.rebuilds;
}

/// Calls `then` with the overlay of `rank` (this actor for its own rank), in the
/// order of the calls for the same rank.
template <class F>
void with_peer(overlay_actor* self, uint32_t rank, milliseconds timeout, F then) {
  auto& st = self->state;
  if (rank == st.rank)
    return then(caf::expected<caf::actor>{caf::actor{self}});
  if (rank >= size_of(st))
    return then(caf::expected<caf::actor>{make_error(
      errc::not_found, "rank " + std::to_string(rank) + " is not in the view ("
                         + std::to_string(size_of(st)) + " ranks)")});
  auto address = st.view.members[rank].address;
  auto key = peer_key(st.view.members[rank]);
  if (auto i = st.peers.find(key); i != st.peers.end())
    return then(caf::expected<caf::actor>{i->second});
  auto& queue = st.waiting_for_peer[key];
  queue.emplace_back(std::move(then));
  if (queue.size() > 1)
    return; // its lookup is under way
  auto finish = [self, key](caf::expected<caf::actor> peer) {
    auto& st = self->state;
    if (peer)
      st.peers[key] = *peer;
    auto waiting = std::move(st.waiting_for_peer[key]);
    st.waiting_for_peer.erase(key);
    for (auto& f : waiting)
      f(peer);
  };
  self
    ->request(st.locator, timeout, locate_atom::value, address, std::string{"overlay"},
              st.provider_id)
    .then([finish](const caf::actor& peer) { finish(caf::expected<caf::actor>{peer}); },
          [finish, address](caf::error& err) {
            finish(caf::expected<caf::actor>{make_error(
              errc::unreachable, "no overlay at " + address + ": " + describe(err))});
          });
}

caf::expected<caf::actor> local_provider(overlay_actor* self, const std::string& name) {
  auto registry = self->state.providers.lock();
  if (!registry)
    return make_error(errc::not_found, "this node has no provider registry");
  auto found = registry->find(name);
  if (!found)
    return make_error(errc::not_found, "rank " + std::to_string(self->state.rank)
                                         + " runs no provider named \"" + name + "\"");
  return found->handle;
}

/// Asks `dest` and answers `rp` with whatever comes back, of any type. (The middleman
/// does not let a request that came from another node be delegated to a third: each
/// hop asks the next and passes the answer back, as flux-core's overlay does. CAF
/// 0.17 hands an answer no handler takes to the error handler as
/// sec::unexpected_response, with the answer as the error's context.)
void relay(overlay_actor* self, caf::response_promise rp, const caf::actor& dest,
           milliseconds timeout, caf::message request) {
  self->request(dest, timeout, std::move(request))
    .then([](detail::never_answered&) {},
          [rp](caf::error& err) mutable {
            if (err == caf::sec::unexpected_response)
              rp.deliver(err.context());
            else
              rp.deliver(std::move(err));
          });
}

/// One reduction over this node's subtree, waiting for its own contribution and its
/// children's results.
struct subtree_reduction {
  reduction spec;
  reduction_result acc;
  size_t waiting = 0;
  caf::response_promise promise;

  void add(uint32_t rank, const value& v) {
    if (auto err = combine(spec.op, acc.result, v))
      acc.errors[rank] = describe(err);
    else
      ++acc.contributors;
  }

  void add(uint32_t rank, const caf::error& err) { acc.errors[rank] = describe(err); }

  void add(const reduction_result& part) {
    if (auto err = combine(spec.op, acc.result, part.result)) {
      acc.errors[no_rank] = describe(err);
      return;
    }
    acc.contributors += part.contributors;
    acc.missing.insert(acc.missing.end(), part.missing.begin(), part.missing.end());
    for (const auto& [rank, text] : part.errors)
      acc.errors[rank] = text;
  }

  void one_done() {
    if (--waiting > 0)
      return;
    std::sort(acc.missing.begin(), acc.missing.end());
    promise.deliver(acc);
  }
};

/// This node's own contribution; `done` gets a value or an error.
template <class F>
void contribute(overlay_actor* self, const reduction& spec, milliseconds budget, F done) {
  auto& st = self->state;
  const auto& what = spec.contribution;
  if (what == "rank")
    return done(caf::expected<value>{value::of_integer(st.rank)});
  if (what == "one")
    return done(caf::expected<value>{value::of_integer(1)});
  if (what == "status")
    return done(caf::expected<value>{value::of_text(st.rank, status_json(status_of(st)))});
  if (what != "query" && what != "deliver")
    return done(caf::expected<value>{make_error(
      errc::invalid_argument, "unknown contribution \"" + what
                                + "\" (rank, one, status, query, deliver)")});
  auto target = local_provider(self, spec.provider);
  if (!target)
    return done(caf::expected<value>{std::move(target.error())});
  if (what == "deliver") {
    caf::anon_send(*target, spec.content);
    return done(caf::expected<value>{value::of_integer(1)});
  }
  auto rank = st.rank;
  auto failed = [done](caf::error& err) mutable { done(caf::expected<value>{err}); };
  auto request = self->request(*target, budget, spec.content);
  switch (spec.answer) {
    case value::real:
      request.then([done](double x) mutable { done(caf::expected<value>{value::of_real(x)}); },
                   failed);
      break;
    case value::texts:
      request.then(
        [done, rank](std::string& x) mutable {
          done(caf::expected<value>{value::of_text(rank, std::move(x))});
        },
        failed);
      break;
    default:
      request.then(
        [done](int64_t x) mutable { done(caf::expected<value>{value::of_integer(x)}); },
        failed);
  }
}

/// Runs `spec` over this node's subtree within `budget`; answers through `promise`.
void reduce_subtree(overlay_actor* self, reduction spec, milliseconds budget,
                    caf::response_promise promise) {
  auto& st = self->state;
  auto run = std::make_shared<subtree_reduction>();
  run->spec = std::move(spec);
  run->promise = std::move(promise);
  run->acc.size = size_of(st);
  run->acc.view_seq = st.view.version.seq;
  auto children = children_of(st.rank, size_of(st), st.settings.fanout);
  run->waiting = 1 + children.size();
  auto rank = st.rank;
  contribute(self, run->spec, budget, [run, rank](caf::expected<value> v) {
    if (v)
      run->add(rank, *v);
    else
      run->add(rank, v.error());
    run->one_done();
  });
  // Children get less time than this node waits for them, so that a slow grandchild
  // is reported missing by its parent rather than the whole child by us.
  auto child_budget = std::max(milliseconds{1}, budget * 3 / 4);
  for (auto child : children) {
    auto below = subtree_of(child, size_of(st), st.settings.fanout);
    with_peer(self, child, budget, [self, run, child_budget, budget, below](
                                     caf::expected<caf::actor> peer) {
      auto lost = [run, below] {
        run->acc.missing.insert(run->acc.missing.end(), below.begin(), below.end());
        run->one_done();
      };
      if (!peer)
        return lost();
      self
        ->request(*peer, budget, reduce_atom::value, run->spec,
                  static_cast<uint32_t>(child_budget.count()))
        .then(
          [run](const reduction_result& part) {
            run->add(part);
            run->one_done();
          },
          [lost](caf::error&) { lost(); });
    });
  }
}

caf::error not_in_view(const overlay_state& st) {
  return make_error(errc::refused, "the overlay at " + st.address
                                     + " is not in a view of its group yet");
}

/// Why a route to `to` cannot start here, or none.
caf::error cannot_route(const overlay_state& st, uint32_t to) {
  if (st.rank == no_rank)
    return not_in_view(st);
  if (to >= size_of(st))
    return make_error(errc::not_found, "rank " + std::to_string(to)
                                         + " is not in the view ("
                                         + std::to_string(size_of(st)) + " ranks)");
  return caf::none;
}

/// Sends `request` to the next hop towards `to` and its answer to `rp`.
void pass_on(overlay_actor* self, caf::response_promise rp, uint32_t to,
             caf::message request) {
  auto& st = self->state;
  auto timeout = st.settings.timeout;
  with_peer(self, next_hop(st.rank, to, st.settings.fanout), timeout,
            [self, rp, timeout, request](caf::expected<caf::actor> peer) mutable {
              if (!peer)
                rp.deliver(std::move(peer.error()));
              else
                relay(self, rp, *peer, timeout, std::move(request));
            });
}

caf::behavior overlay_behavior(overlay_actor* self) {
  // The group's news: any change means a new view.
  auto updates = group::view_updates(self, self->state.group, [self](group::group_view v) {
    adopt(self, std::move(v));
  });
  return updates.or_else(caf::message_handler{
    [self](status_atom) { return status_of(self->state); },
    // Routing: pass it on to the next hop, or hand it to the named provider.
    [self](route_atom, uint32_t to, const std::string& provider,
           caf::message& content) -> caf::result<caf::message> {
      if (auto err = cannot_route(self->state, to))
        return err;
      auto rp = self->make_response_promise();
      if (to != self->state.rank) {
        pass_on(self, rp, to, caf::make_message(route_atom::value, to, provider,
                                                std::move(content)));
      } else if (auto target = local_provider(self, provider); !target) {
        rp.deliver(std::move(target.error()));
      } else {
        rp.delegate(*target, std::move(content));
      }
      return rp;
    },
    [self](route_atom, uint32_t to,
           std::vector<uint32_t>& path) -> caf::result<std::vector<uint32_t>> {
      if (auto err = cannot_route(self->state, to))
        return err;
      path.push_back(self->state.rank);
      if (to == self->state.rank)
        return path;
      auto rp = self->make_response_promise();
      pass_on(self, rp, to, caf::make_message(route_atom::value, to, std::move(path)));
      return rp;
    },
    // A reduction asked here: run from the root.
    [self](reduce_atom, reduction& spec) -> caf::result<reduction_result> {
      auto& st = self->state;
      if (st.rank == no_rank)
        return not_in_view(st);
      auto budget = spec.timeout_ms > 0 ? milliseconds{spec.timeout_ms} : st.settings.timeout;
      auto rp = self->make_response_promise();
      if (st.rank == 0) {
        reduce_subtree(self, std::move(spec), budget, rp);
        return rp;
      }
      // (The root answers within the budget; the margin covers the hop to it.)
      with_peer(self, 0, budget,
                [self, rp, spec, budget](caf::expected<caf::actor> root) mutable {
                  if (!root)
                    rp.deliver(std::move(root.error()));
                  else
                    relay(self, rp, *root, budget + std::chrono::seconds{1},
                          caf::make_message(reduce_atom::value, std::move(spec)));
                });
      return rp;
    },
    // A parent's share of a reduction: this subtree.
    [self](reduce_atom, reduction& spec, uint32_t budget_ms) -> caf::result<reduction_result> {
      if (self->state.rank == no_rank)
        return not_in_view(self->state);
      auto rp = self->make_response_promise();
      reduce_subtree(self, std::move(spec), milliseconds{budget_ms}, rp);
      return rp;
    },
    [self](broadcast_atom, std::string& provider, caf::message& content) {
      reduction spec;
      spec.op = "sum";
      spec.contribution = "deliver";
      spec.provider = std::move(provider);
      spec.content = std::move(content);
      return self->delegate(caf::actor{self}, reduce_atom::value, std::move(spec));
    },
  });
}

caf::behavior overlay_actor_fn(overlay_actor* self, overlay_settings settings,
                               caf::actor group, caf::actor locator,
                               std::weak_ptr<provider_registry> providers,
                               std::string address, uint16_t provider_id) {
  auto& st = self->state;
  st.settings = settings;
  st.group = group;
  st.locator = std::move(locator);
  st.providers = std::move(providers);
  st.address = std::move(address);
  st.provider_id = provider_id;
  group::follow_group(self, group, "overlay",
                      [self](group::group_view v) { adopt(self, std::move(v)); });
  return overlay_behavior(self);
}

caf::expected<caf::actor> make_overlay(const provider_context& ctx) {
  overlay_settings settings;
  auto err = actors::read_service_config(
    ctx, {"fanout", "timeout_ms"}, [&](json_reader& r, const nlohmann::json& cfg) {
      if (auto f = cfg.find("fanout"); f != cfg.end())
        settings.fanout = static_cast<uint32_t>(r.read_integer("config.fanout", *f, 1, 1024));
      if (auto t = cfg.find("timeout_ms"); t != cfg.end())
        settings.timeout =
          milliseconds{r.read_integer("config.timeout_ms", *t, 1, 3600 * 1000)};
    });
  if (err)
    return err;
  auto group = actors::dependency(ctx, "group");
  if (!group)
    return group.error();
  if (!ctx.locator || ctx.node_address.empty())
    return make_error(errc::invalid_config,
                      ctx.spec.origin + ": the overlay needs a node with a transport");
  return ctx.system.spawn(overlay_actor_fn, settings, *group, ctx.locator,
                          ctx.providers, ctx.node_address, ctx.spec.provider_id);
}

} // namespace

void register_overlay_provider(provider_registry& registry) {
  registry.add_type("overlay", make_overlay);
}

void register_overlay_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<status>("troupe::overlay::status");
  cfg.add_message_type<value>("troupe::overlay::value");
  cfg.add_message_type<reduction>("troupe::overlay::reduction");
  cfg.add_message_type<reduction_result>("troupe::overlay::reduction_result");
  cfg.add_message_type<std::vector<uint32_t>>("std::vector<uint32_t>");
}

} // namespace troupe::overlay
