// Target sides (actors, or inline in the dispatcher), the node's op dispatcher, the
// directory of other nodes' dispatchers and the deadline ticker (runtime/ops.hpp).
#include "runtime/detail/op_sides.hpp"

#include <algorithm>
#include <map>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "base/error.hpp"
#include "runtime/locator.hpp"

namespace troupe::ops::detail {

namespace {

// -- target side ----------------------------------------------------------------------

struct target_state {
  static inline const char* name = "troupe.op.target";
  op_runtime* rt = nullptr;
  const op_registry::entry* entry = nullptr;
  std::shared_ptr<target_side> logic;
  caf::actor origin_node;     // the origin node's dispatcher: messages to the origin
  uint64_t origin_mailbox = 0;
  uint32_t index = 0;
  clock_type::time_point deadline;
  bool finished = false;
  std::vector<typed_message> outbox;
};

using target_actor = caf::stateful_actor<target_state>;

class target_ctx final : public context_base<target_context, target_actor> {
public:
  using context_base::context_base;
  void reply(typed_message m) override { self_->state.outbox.push_back(std::move(m)); }
  size_t index() const override { return self_->state.index; }
};

/// When a target side started by `start` must end: the origin's budget, bounded as the
/// config bounds deadlines (it comes off the network).
clock_type::time_point target_deadline(const op_message& start) {
  return clock_type::now()
         + std::chrono::milliseconds{std::min(start.deadline_ms, max_deadline_ms)};
}

/// Where a target side's messages go: the origin, through its node's dispatcher.
struct origin_route {
  op_id id = 0;
  uint32_t index = 0;
  caf::actor node;      // the origin node's dispatcher
  uint64_t mailbox = 0; // the origin's
  uint64_t from = 0;    // the target side's own (0: it ran inline and is gone)
};

/// Sends `outbox` to the origin; with `last`, the side ends with it (an empty outbox
/// then sends an end).
void answer_origin(caf::local_actor* self, const origin_route& to,
                   std::vector<typed_message> outbox, bool last) {
  auto message = [&](uint8_t kind, typed_message payload) {
    auto m = make_op_message(to.id, kind, to.index, std::move(payload));
    m.to = to.mailbox;
    m.from = to.from;
    return m;
  };
  for (size_t k = 0; k < outbox.size(); ++k) {
    auto m = message(op_kind::data, std::move(outbox[k]));
    m.last = last && k + 1 == outbox.size();
    send_op(self, to.node, std::move(m));
  }
  if (last && outbox.empty()) {
    auto m = message(op_kind::end, {});
    m.last = true;
    send_op(self, to.node, std::move(m));
  }
}

/// Tells the origin that the side failed with `why`; the side ends.
void fail_to_origin(caf::local_actor* self, const origin_route& to, const caf::error& why) {
  auto m = make_op_message(to.id, op_kind::failure, to.index, {});
  m.to = to.mailbox;
  m.from = to.from;
  m.last = true;
  m.error = context_text(why);
  if (why.category() == error_category_atom)
    m.code = why.code();
  send_op(self, to.node, std::move(m));
}

origin_route route_of(target_actor* self) {
  auto& st = self->state;
  return {st.entry->id, st.index, st.origin_node, st.origin_mailbox, self->id()};
}

void target_flush(target_actor* self, bool last) {
  answer_origin(self, route_of(self), std::exchange(self->state.outbox, {}), last);
}

/// Ends the target side; `tell_origin` is false when the origin is gone or said end.
void target_finish(target_actor* self, step s, bool tell_origin) {
  auto& st = self->state;
  if (st.finished)
    return;
  st.finished = true;
  if (tell_origin) {
    if (s.what() == step::kind::fail) {
      st.outbox.clear();
      fail_to_origin(self, route_of(self), s.error());
    } else {
      target_flush(self, true);
    }
  }
  self->quit();
}

template <class F>
void target_run(target_actor* self, F&& handler) {
  auto& st = self->state;
  if (st.finished)
    return;
  target_ctx ctx{self};
  auto s = guarded(st.entry->name, "target", [&] { return handler(ctx); });
  if (s.what() == step::kind::wait)
    target_flush(self, false);
  else
    target_finish(self, std::move(s), true);
}

caf::behavior target_behavior(target_actor* self, op_runtime* rt,
                              const op_registry::entry* entry,
                              std::shared_ptr<target_side> logic, caf::actor origin_watch,
                              op_message first) {
  auto& st = self->state;
  st.rt = rt;
  st.entry = entry;
  st.logic = std::move(logic);
  st.origin_node = first.watch;
  st.origin_mailbox = first.from;
  st.index = first.index;
  st.deadline = target_deadline(first);
  rt->track(caf::actor_cast<caf::actor>(self), entry->name, "target", st.deadline);
  rt->count("targets_started");
  self->attach_functor([rt, id = self->id()] { rt->untrack(id); });
  // The origin's death ends this side too (the origin's own end comes as an end
  // message): a local origin is monitored (that costs nothing), a remote one's node
  // is watched by the dispatcher, once for all its ops (op_node_down_atom).
  if (origin_watch)
    self->monitor(origin_watch);
  self->set_down_handler(
    [self](caf::down_msg&) { target_finish(self, step::fail(caf::error{}), false); });
  self->set_default_handler([self](caf::scheduled_actor*, caf::message_view& view) {
    auto m = view.move_content_to_message();
    target_run(self,
               [&](target_ctx& ctx) { return self->state.logic->on_other(ctx, m); });
    return caf::result<caf::message>{caf::message{}};
  });
  target_run(self, [&](target_ctx& ctx) {
    return self->state.logic->on_start(ctx, first.payload);
  });
  return {
    [self](op_message& m) {
      if (m.kind == op_kind::end)
        return target_finish(self, step::done(), false);
      if (m.kind == op_kind::data)
        target_run(self, [&](target_ctx& ctx) {
          return self->state.logic->on_message(ctx, m.payload);
        });
    },
    // The origin fails the op at the deadline; this side just goes.
    [self](op_deadline_atom) { target_finish(self, step::fail(caf::error{}), false); },
    [self](op_node_down_atom, const caf::actor_addr& dispatcher, const caf::error&) {
      if (self->state.origin_node && self->state.origin_node.address() == dispatcher)
        target_finish(self, step::fail(caf::error{}), false);
    },
    [self](op_timer_atom, uint64_t id) {
      target_run(self,
                 [&](target_ctx& ctx) { return self->state.logic->on_timeout(ctx, id); });
    },
  };
}

// -- inline target sides --------------------------------------------------------------

/// The context of a target side that runs inline (target_side::runs_inline): in the
/// dispatcher, on the receiving thread, for its first message only. It has no actor,
/// so no mailbox, timers or self().
class inline_target_ctx final : public target_context {
public:
  inline_target_ctx(op_runtime& rt, const op_registry::entry& entry, uint32_t index,
                    clock_type::time_point deadline)
    : rt_(rt), entry_(entry), index_(index), deadline_(deadline) {}
  const std::string& op_name() const override { return entry_.name; }
  uint64_t mailbox() const override { return 0; }
  std::chrono::milliseconds remaining() const override {
    return std::max(std::chrono::milliseconds{0},
                    std::chrono::duration_cast<std::chrono::milliseconds>(
                      deadline_ - clock_type::now()));
  }
  void set_state(std::string) override {} // over before anyone could look
  void start_timer(std::chrono::milliseconds, uint64_t) override { refuse("timers"); }
  caf::event_based_actor* self() override { refuse("self()"); }
  op_runtime& runtime() override { return rt_; }
  void reply(typed_message m) override { outbox.push_back(std::move(m)); }
  size_t index() const override { return index_; }

  std::vector<typed_message> outbox;

private:
  [[noreturn]] void refuse(const char* what) const {
    throw std::logic_error("its target side runs inline (runs_inline), so it has no "
                           + std::string{what});
  }
  op_runtime& rt_;
  const op_registry::entry& entry_;
  uint32_t index_;
  clock_type::time_point deadline_;
};

/// Runs a target side that answers its first message at once, in the dispatcher: no
/// actor is spawned, tracked or monitored for it.
void run_inline_target(caf::local_actor* dispatcher, op_runtime& rt,
                       const op_registry::entry& entry, target_side& logic,
                       const op_message& start) {
  rt.count("targets_started");
  inline_target_ctx ctx{rt, entry, start.index, target_deadline(start)};
  auto s = guarded(entry.name, "target", [&] { return logic.on_start(ctx, start.payload); });
  origin_route to{entry.id, start.index, start.watch, start.from, 0};
  if (s.what() == step::kind::wait)
    s = step::fail(make_error(errc::provider_failed,
                              "op " + entry.name
                                + " (target): its target side runs inline (runs_inline) "
                                  "but did not finish at its first message"));
  if (s.what() == step::kind::fail)
    fail_to_origin(dispatcher, to, s.error());
  else
    answer_origin(dispatcher, to, std::move(ctx.outbox), true);
}

// -- the dispatcher (mailbox 0 of a node) ---------------------------------------------

struct dispatcher_state {
  static inline const char* name = "troupe.ops";
  /// Per origin node, a proxy of its dispatcher that target sides monitor: it dies
  /// with the node.
  std::map<caf::node_id, caf::actor> node_watches;
};

/// Makes sure the origin's node is watched: its dispatcher is monitored once per node
/// (its proxy asks that node once for its down notice), and its death is told to every
/// side (op_node_down_atom). Returns what the target side itself monitors: a local
/// origin (null if it is gone already), or nothing.
caf::actor origin_watch(caf::stateful_actor<dispatcher_state>* self, op_runtime* rt,
                        const op_message& start, bool& origin_gone) {
  origin_gone = false;
  if (start.watch.node() == self->system().node()) {
    auto origin = rt->side(start.from);
    origin_gone = !origin;
    return origin;
  }
  auto& known = self->state.node_watches[start.watch.node()];
  if (!known) {
    // The proxy came with the message (made where the transport makes proxies).
    known = start.watch;
    self->monitor(known);
  }
  return {};
}

caf::behavior dispatcher_behavior(caf::stateful_actor<dispatcher_state>* self,
                                  op_runtime* rt, std::string address) {
  self->set_down_handler([self, rt](caf::down_msg& down) {
    auto& watches = self->state.node_watches;
    for (auto it = watches.begin(); it != watches.end();)
      it = it->second.address() == down.source ? watches.erase(it) : std::next(it);
    rt->tell_sides_node_down(down.source, down.reason);
  });
  return {
    [self, rt, address](op_message& m) {
      if (m.to != 0) {
        // For a side of this node: handed on, to run next on this thread; an origin
        // without an actor runs here and now.
        if (auto origin = rt->inline_side(m.to))
          origin->receive(m, self->context());
        else if (auto side = rt->side(m.to))
          send_op(self, side, std::move(m));
        else
          rt->count("stray_messages"); // it ended (a late message) or never was
        return;
      }
      if (m.kind != op_kind::start || !m.watch || m.from == 0) {
        rt->count("stray_messages");
        return;
      }
      const auto* entry = rt->registry().find(m.id);
      if (entry == nullptr) {
        rt->count("unknown_op_id");
        std::string known;
        for (const auto* e : rt->registry().all())
          known += (known.empty() ? "" : ", ") + e->name;
        fail_to_origin(self, {m.id, m.index, m.watch, m.from, 0},
                       make_error(errc::not_found,
                                  "unknown op id " + hex_id(m.id) + " on " + address
                                    + " (registered there: "
                                    + (known.empty() ? "none" : known) + ")"));
        return;
      }
      auto logic = entry->make_target();
      if (logic->runs_inline())
        return run_inline_target(self, *rt, *entry, *logic, m);
      bool origin_gone = false;
      auto watch = origin_watch(self, rt, m, origin_gone);
      if (origin_gone) {
        rt->count("stray_messages"); // a local origin that is gone already
        return;
      }
      self->spawn(target_behavior, rt, entry, std::shared_ptr<target_side>{std::move(logic)},
                  std::move(watch), std::move(m));
    },
  };
}

// -- the directory: other nodes' dispatchers, located once ------------------------------

struct directory_state {
  static inline const char* name = "troupe.op.directory";
  op_runtime* rt = nullptr;
  // What it located is in rt's dispatcher cache, which origins read directly.
  std::map<std::string, std::vector<caf::response_promise>> pending;
};

caf::behavior directory_behavior(caf::stateful_actor<directory_state>* self,
                                 op_runtime* rt, caf::actor locator) {
  self->state.rt = rt;
  self->set_down_handler([self](caf::down_msg& down) {
    self->state.rt->forget_dispatcher(down.source);
    self->state.rt->tell_sides_node_down(down.source, down.reason);
  });
  return {
    [self, locator](locate_atom, const std::string& uri) -> caf::result<caf::actor> {
      auto& st = self->state;
      if (auto known = st.rt->known_dispatcher(uri))
        return known;
      auto rp = self->make_response_promise();
      auto& waiting = st.pending[uri];
      waiting.push_back(rp);
      if (waiting.size() == 1)
        self->request(locator, caf::infinite, locate_atom::value, uri, dispatcher_key)
          .then(
            [self, uri](caf::actor& dispatcher) {
              auto& st = self->state;
              st.rt->remember_dispatcher(uri, dispatcher);
              self->monitor(dispatcher);
              for (auto& p : st.pending[uri])
                p.deliver(dispatcher);
              st.pending.erase(uri);
            },
            [self, uri](caf::error& err) {
              auto& st = self->state;
              for (auto& p : st.pending[uri])
                p.deliver(err);
              st.pending.erase(uri);
            });
      return rp;
    },
  };
}

/// Sends every side its deadline message when it is due: one timer for the node.
caf::behavior deadline_ticker(caf::event_based_actor* self, op_runtime* rt) {
  return {
    [self, rt](op_tick_atom, clock_type::rep due) {
      auto now = clock_type::now();
      std::vector<caf::actor> expired;
      std::vector<std::shared_ptr<inline_origin>> expired_inline;
      clock_type::time_point next;
      auto again =
        rt->take_expired(now, clock_type::time_point{clock_type::duration{due}}, expired,
                         expired_inline, next);
      for (auto& side : expired)
        self->send(side, op_deadline_atom::value);
      for (auto& origin : expired_inline)
        origin->expire(self->context());
      if (again)
        self->delayed_send(self, std::max(clock_type::duration::zero(), next - now),
                           op_tick_atom::value, next.time_since_epoch().count());
    },
  };
}

} // namespace

caf::actor spawn_dispatcher(caf::actor_system& sys, op_runtime* rt, std::string address) {
  return sys.spawn(dispatcher_behavior, rt, std::move(address));
}

caf::actor spawn_directory(caf::actor_system& sys, op_runtime* rt, caf::actor locator) {
  return sys.spawn(directory_behavior, rt, std::move(locator));
}

caf::actor spawn_deadline_ticker(caf::actor_system& sys, op_runtime* rt) {
  return sys.spawn(deadline_ticker, rt);
}

} // namespace troupe::ops::detail
