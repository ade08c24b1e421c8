// Origin sides (runtime/ops.hpp): one state machine per op, `origin_core`, run by
// whoever hosts it: its own actor, or, for an origin_side that runs_inline, nobody
// (an `inline_origin`, run where its events happen, one at a time under its mutex).
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

// -- the state machine ----------------------------------------------------------------

/// What runs an origin_core: its actor, or the inline origin's wrapper.
class origin_host {
public:
  virtual ~origin_host() = default;
  virtual uint64_t mailbox() const = 0;
  virtual void send(const caf::actor& dest, op_message m) = 0;
  /// Asks the directory for target `i`'s dispatcher; the answer comes back as
  /// origin_core::located or origin_core::finish (only actors locate: an inline
  /// origin starts only once every target's dispatcher is known).
  virtual void locate(size_t i) = 0;
  virtual void start_timer(std::chrono::milliseconds delay, uint64_t id) = 0;
  virtual caf::event_based_actor* self() = 0;
  /// The op's result for its caller, exactly once.
  virtual void deliver(op_result result) = 0;
  /// The op is over and every target it started has been told: the side goes.
  virtual void quit() = 0;
};

struct origin_peer {
  caf::actor dispatcher; // of the target's node, once located
  uint64_t mailbox = 0;  // the target side's, once it answered
  bool locating = false;
  bool started = false;
  bool ended = false;
  std::vector<typed_message> queue; // waiting for the dispatcher or the mailbox
};

class origin_core {
public:
  /// `dispatchers`: the targets' nodes' dispatchers where known (empty: none yet).
  origin_core(origin_host& host, op_runtime* rt, const op_registry::entry* entry,
              std::shared_ptr<origin_side> logic, std::vector<std::string> targets,
              clock_type::time_point deadline, std::vector<caf::actor> dispatchers = {})
    : host_(host),
      rt_(rt),
      own_dispatcher_(rt->dispatcher()),
      entry_(entry),
      logic_(std::move(logic)),
      targets_(std::move(targets)),
      peers_(targets_.size()),
      deadline_(deadline) {
    for (size_t i = 0; i < dispatchers.size() && i < peers_.size(); ++i)
      peers_[i].dispatcher = std::move(dispatchers[i]);
  }

  const op_registry::entry& entry() const { return *entry_; }
  const std::vector<std::string>& targets() const { return targets_; }
  clock_type::time_point deadline() const { return deadline_; }
  op_runtime& runtime() const { return *rt_; }
  origin_host& host() const { return host_; }
  bool finished() const { return finished_; }

  void start();
  void receive(op_message& m);
  void located(size_t i, caf::actor dispatcher);
  void deadline_passed();
  void node_down(const caf::actor_addr& dispatcher, const caf::error& why);
  void timer(uint64_t id);
  void trigger(const caf::message& m);
  void other(caf::message& m);
  void finish(step s);

  void queue_for(size_t i, typed_message m) { outbox_.emplace_back(i, std::move(m)); }

  /// The error the caller gets when target `i` failed the op, or could not be reached.
  caf::error target_error(size_t i, errc code, const std::string& what) const {
    return make_error(code, "op " + entry_->name + ": target " + std::to_string(i) + " ("
                              + targets_[i] + "): " + what);
  }

private:
  template <class F>
  void run(F&& handler);
  op_message to_target(uint8_t kind, size_t i, uint64_t mailbox = 0,
                       typed_message payload = {}) const {
    auto m = make_op_message(entry_->id, kind, i, std::move(payload));
    m.to = mailbox;
    m.from = host_.mailbox();
    return m;
  }
  void pump(size_t i);
  void flush();
  void quit_if_drained();

  origin_host& host_;
  op_runtime* rt_;
  caf::actor own_dispatcher_; // this node's, for targets to watch this node
  const op_registry::entry* entry_;
  std::shared_ptr<origin_side> logic_;
  std::vector<std::string> targets_;
  std::vector<origin_peer> peers_;
  clock_type::time_point deadline_;
  bool finished_ = false;
  bool quit_ = false;
  std::vector<std::pair<size_t, typed_message>> outbox_; // sent when a handler returns
};

/// What an origin_side's handlers see.
class origin_ctx final : public origin_context {
public:
  explicit origin_ctx(origin_core& core) : core_(core) {}
  const std::string& op_name() const override { return core_.entry().name; }
  uint64_t mailbox() const override { return core_.host().mailbox(); }
  std::chrono::milliseconds remaining() const override {
    auto left = core_.deadline() - clock_type::now();
    return std::max(std::chrono::milliseconds{0},
                    std::chrono::duration_cast<std::chrono::milliseconds>(left));
  }
  void set_state(std::string state) override {
    core_.runtime().set_state(mailbox(), std::move(state));
  }
  void start_timer(std::chrono::milliseconds delay, uint64_t id) override {
    core_.host().start_timer(delay, id);
  }
  caf::event_based_actor* self() override { return core_.host().self(); }
  op_runtime& runtime() override { return core_.runtime(); }
  const std::vector<std::string>& targets() const override { return core_.targets(); }
  void send(size_t i, typed_message m) override {
    if (i >= core_.targets().size())
      throw std::out_of_range("op " + op_name() + ": no target " + std::to_string(i));
    core_.queue_for(i, std::move(m));
  }

private:
  origin_core& core_;
};

template <class F>
void origin_core::run(F&& handler) {
  if (finished_)
    return;
  origin_ctx ctx{*this};
  auto s = guarded(entry_->name, "origin", [&] { return handler(ctx); });
  if (s.what() == step::kind::wait)
    flush();
  else
    finish(std::move(s));
}

void origin_core::start() {
  run([&](origin_ctx& ctx) { return logic_->on_start(ctx); });
}

/// Sends what can go to target `i` now: the start message once its dispatcher is
/// known, the rest once its mailbox is.
void origin_core::pump(size_t i) {
  auto& peer = peers_[i];
  if (peer.ended)
    return;
  if (!peer.started && !peer.queue.empty()) {
    if (!peer.dispatcher)
      peer.dispatcher = rt_->known_dispatcher(targets_[i]);
    if (!peer.dispatcher) {
      if (!peer.locating) {
        peer.locating = true;
        host_.locate(i);
      }
      return;
    }
    auto m = to_target(op_kind::start, i, 0, std::move(peer.queue.front()));
    peer.queue.erase(peer.queue.begin());
    auto left = deadline_ - clock_type::now();
    m.deadline_ms = static_cast<uint64_t>(std::max<int64_t>(
      1, std::chrono::duration_cast<std::chrono::milliseconds>(left).count()));
    m.watch = own_dispatcher_;
    host_.send(peer.dispatcher, std::move(m));
    peer.started = true;
  }
  if (peer.mailbox != 0) {
    for (auto& payload : peer.queue)
      host_.send(peer.dispatcher,
                 to_target(op_kind::data, i, peer.mailbox, std::move(payload)));
    peer.queue.clear();
  }
}

void origin_core::located(size_t i, caf::actor dispatcher) {
  if (finished_)
    return; // over (draining for another target): start nothing new
  auto& peer = peers_[i];
  peer.locating = false;
  peer.dispatcher = std::move(dispatcher); // its node's death: node_down
  pump(i);
}

void origin_core::flush() {
  auto outbox = std::move(outbox_);
  outbox_.clear();
  std::vector<bool> touched(peers_.size());
  for (auto& [i, payload] : outbox) {
    peers_[i].queue.push_back(std::move(payload));
    touched[i] = true;
  }
  for (size_t i = 0; i < peers_.size(); ++i)
    if (touched[i])
      pump(i);
}

/// Once the op is over, the origin stays only until every target it started has
/// been told so (see finish).
void origin_core::quit_if_drained() {
  if (quit_)
    return;
  for (const auto& peer : peers_)
    if (peer.started && !peer.ended)
      return;
  quit_ = true;
  host_.quit();
}

void origin_core::finish(step s) {
  if (finished_)
    return;
  finished_ = true;
  flush();
  // Targets still waiting learn that the op is over.
  for (size_t i = 0; i < peers_.size(); ++i) {
    auto& peer = peers_[i];
    if (peer.mailbox != 0 && !peer.ended) {
      host_.send(peer.dispatcher, to_target(op_kind::end, i, peer.mailbox));
      peer.ended = true;
    }
  }
  if (s.what() == step::kind::done) {
    rt_->count("completed");
    host_.deliver(std::move(s.result()));
  } else {
    rt_->count("failed");
    host_.deliver(std::move(s.error()));
  }
  // A target started but not heard from yet has no mailbox to tell: it watches the
  // origin's node, not the origin, so the origin waits for its first message (and
  // answers it with the end) or for the deadline.
  rt_->set_state(host_.mailbox(), "over; waiting to tell targets that never answered");
  quit_if_drained();
}

void origin_core::receive(op_message& m) {
  if (m.index >= peers_.size() || m.id != entry_->id) {
    rt_->count("stray_messages");
    return;
  }
  auto i = m.index;
  auto& peer = peers_[i];
  if (finished_) {
    // Draining: the first word from a target that never answered gets the end.
    if (!peer.ended && !m.last && m.kind == op_kind::data && m.from != 0)
      host_.send(peer.dispatcher, to_target(op_kind::end, i, m.from));
    peer.ended = true;
    return quit_if_drained();
  }
  if (m.last || m.kind == op_kind::end)
    peer.ended = true;
  if (peer.mailbox == 0 && m.kind != op_kind::failure && m.from != 0) {
    peer.mailbox = m.from;
    if (peer.ended)
      peer.queue.clear(); // nobody there to read them any more
    else
      pump(i);
  }
  switch (m.kind) {
    case op_kind::failure: {
      peer.ended = true;
      auto code = m.code == 0 ? errc::provider_failed : static_cast<errc>(m.code);
      return finish(step::fail(target_error(i, code, m.error)));
    }
    case op_kind::data:
      run([&](origin_ctx& ctx) { return logic_->on_message(ctx, i, m.payload); });
      break;
    default:
      break;
  }
  if (peer.ended)
    run([&](origin_ctx& ctx) { return logic_->on_target_done(ctx, i); });
}

void origin_core::deadline_passed() {
  if (!finished_) {
    std::string waiting;
    for (size_t i = 0; i < peers_.size(); ++i)
      if (!peers_[i].ended)
        waiting += (waiting.empty() ? "" : ", ") + targets_[i];
    finish(step::fail(make_error(errc::timeout,
                                 "op " + entry_->name + " passed its deadline ("
                                   + (waiting.empty() ? std::string{"no target open"}
                                                      : "waiting for " + waiting)
                                   + ")")));
  }
  // Targets not heard from end at their own deadline, now too.
  if (!quit_) {
    quit_ = true;
    host_.quit();
  }
}

void origin_core::node_down(const caf::actor_addr& dispatcher, const caf::error& why) {
  for (size_t i = 0; i < peers_.size(); ++i)
    if (peers_[i].dispatcher && peers_[i].dispatcher.address() == dispatcher
        && !peers_[i].ended) {
      peers_[i].ended = true; // nobody left there to tell
      if (finished_)
        return quit_if_drained();
      return finish(step::fail(
        target_error(i, errc::unreachable, "its node is gone: " + caf::to_string(why))));
    }
}

void origin_core::timer(uint64_t id) {
  run([&](origin_ctx& ctx) { return logic_->on_timeout(ctx, id); });
}

void origin_core::trigger(const caf::message& m) {
  run([&](origin_ctx& ctx) { return logic_->on_trigger(ctx, m); });
}

void origin_core::other(caf::message& m) {
  run([&](origin_ctx& ctx) { return logic_->on_other(ctx, m); });
}

// -- origins with an actor ------------------------------------------------------------

struct origin_state;
using origin_actor = caf::stateful_actor<origin_state>;

class actor_host final : public origin_host {
public:
  actor_host(origin_actor* self, std::shared_ptr<op_handle::shared> handle)
    : self_(self), directory_(nullptr), handle_(std::move(handle)) {}
  void set_core(origin_core* core, caf::actor directory) {
    core_ = core;
    directory_ = std::move(directory);
  }
  uint64_t mailbox() const override;
  void send(const caf::actor& dest, op_message m) override;
  void locate(size_t i) override;
  void start_timer(std::chrono::milliseconds delay, uint64_t id) override;
  caf::event_based_actor* self() override;
  void deliver(op_result result) override { handle_->complete(std::move(result)); }
  void quit() override;

private:
  origin_actor* self_;
  origin_core* core_ = nullptr;
  caf::actor directory_; // a copy: the runtime's own handle goes at stop
  std::shared_ptr<op_handle::shared> handle_;
};

struct origin_state {
  static inline const char* name = "troupe.op.origin";
  std::unique_ptr<actor_host> host;
  std::unique_ptr<origin_core> core;
};

uint64_t actor_host::mailbox() const {
  return self_->id();
}

void actor_host::send(const caf::actor& dest, op_message m) {
  send_op(self_, dest, std::move(m));
}

void actor_host::locate(size_t i) {
  auto* self = self_;
  self->request(directory_, caf::infinite, locate_atom::value, core_->targets()[i])
    .then(
      [self, i](caf::actor& dispatcher) {
        self->state.core->located(i, std::move(dispatcher));
      },
      [self, i](caf::error& err) {
        auto& core = *self->state.core;
        core.finish(step::fail(core.target_error(i, errc::unreachable, context_text(err))));
      });
}

void actor_host::start_timer(std::chrono::milliseconds delay, uint64_t id) {
  self_->delayed_send(self_, delay, op_timer_atom::value, id);
}

caf::event_based_actor* actor_host::self() {
  return self_;
}

void actor_host::quit() {
  self_->quit();
}

caf::behavior origin_behavior(origin_actor* self, op_runtime* rt,
                              const op_registry::entry* entry,
                              std::shared_ptr<origin_side> logic,
                              std::vector<std::string> targets,
                              std::shared_ptr<op_handle::shared> handle,
                              std::chrono::milliseconds deadline) {
  auto& st = self->state;
  st.host = std::make_unique<actor_host>(self, handle);
  st.core = std::make_unique<origin_core>(*st.host, rt, entry, std::move(logic),
                                          std::move(targets), clock_type::now() + deadline);
  st.host->set_core(st.core.get(), rt->directory());
  rt->track(caf::actor_cast<caf::actor>(self), entry->name, "origin", st.core->deadline());
  // Whatever ends this actor, the caller hears of it once.
  self->attach_functor(
    [rt, handle, id = self->id(), name = entry->name](const caf::error& reason) {
      rt->untrack(id);
      if (handle->complete(make_error(
            errc::provider_failed,
            "op " + name + " ended before its result: " + caf::to_string(reason))))
        rt->count("failed");
    });
  self->set_default_handler([self](caf::scheduled_actor*, caf::message_view& view) {
    auto m = view.move_content_to_message();
    self->state.core->other(m);
    return caf::result<caf::message>{caf::message{}};
  });
  st.core->start();
  return {
    [self](op_message& m) { self->state.core->receive(m); },
    [self](op_deadline_atom) { self->state.core->deadline_passed(); },
    [self](op_timer_atom, uint64_t id) { self->state.core->timer(id); },
    [self](op_trigger_atom, caf::message& m) { self->state.core->trigger(m); },
    [](op_begin_atom) {
      // Nothing: it only made the origin start (on_start ran when it initialized).
    },
    [self](op_node_down_atom, const caf::actor_addr& dispatcher, const caf::error& why) {
      self->state.core->node_down(dispatcher, why);
    },
  };
}

// -- origins without an actor ---------------------------------------------------------

/// An origin_side that runs_inline: its core runs on whichever thread brings it an
/// event, one event at a time (`mtx_`); its sends use that thread's execution unit.
/// The result is delivered after the lock is released (a continuation may launch or
/// trigger ops).
class inline_origin_impl final : public inline_origin, public origin_host {
public:
  inline_origin_impl(op_runtime* rt, const op_registry::entry* entry,
                     std::shared_ptr<origin_side> logic, std::vector<std::string> targets,
                     std::shared_ptr<op_handle::shared> handle,
                     clock_type::time_point deadline, uint64_t mailbox,
                     std::vector<caf::actor> dispatchers)
    : core_(*this, rt, entry, std::move(logic), std::move(targets), deadline,
            std::move(dispatchers)),
      handle_(std::move(handle)),
      mailbox_(mailbox) {}

  void start(caf::execution_unit* ctx) {
    with(ctx, [&] { core_.start(); });
  }

  // inline_origin
  void receive(op_message& m, caf::execution_unit* ctx) override {
    with(ctx, [&] { core_.receive(m); });
  }
  void expire(caf::execution_unit* ctx) override {
    with(ctx, [&] { core_.deadline_passed(); });
  }
  void node_down(const caf::actor_addr& dispatcher, const caf::error& why,
                 caf::execution_unit* ctx) override {
    with(ctx, [&] { core_.node_down(dispatcher, why); });
  }
  void trigger(const caf::message& m) override {
    with(nullptr, [&] { core_.trigger(m); });
  }
  void stop(const caf::error& why) override {
    with(nullptr, [&] {
      if (!core_.finished())
        core_.finish(step::fail(why));
      if (!gone_) {
        gone_ = true;
        core_.runtime().untrack(mailbox_);
      }
    });
  }

  // origin_host
  uint64_t mailbox() const override { return mailbox_; }
  void send(const caf::actor& dest, op_message m) override {
    if (dest)
      caf::actor_cast<caf::abstract_actor*>(dest)->enqueue(
        caf::make_mailbox_element(nullptr, caf::make_message_id(), {},
                                  caf::make_message(std::move(m))),
        ctx_);
  }
  void locate(size_t i) override {
    // Started with every target's dispatcher known: this one was forgotten since (its
    // node died), which ends the op as the node's death does.
    core_.finish(step::fail(core_.target_error(i, errc::unreachable, "its node is gone")));
  }
  void start_timer(std::chrono::milliseconds, uint64_t) override { refuse("timers"); }
  caf::event_based_actor* self() override { refuse("self()"); }
  void deliver(op_result result) override { result_ = std::move(result); }
  void quit() override {
    if (!gone_) {
      gone_ = true;
      core_.runtime().untrack(mailbox_);
    }
  }

private:
  template <class F>
  void with(caf::execution_unit* ctx, F&& f) {
    std::optional<op_result> result;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      ctx_ = ctx;
      f();
      ctx_ = nullptr;
      result.swap(result_);
    }
    if (result)
      handle_->complete(std::move(*result));
  }

  [[noreturn]] void refuse(const char* what) const {
    throw std::logic_error("its origin side runs inline (runs_inline), so it has no "
                           + std::string{what});
  }

  std::mutex mtx_;
  origin_core core_;                           // guarded by mtx_
  std::shared_ptr<op_handle::shared> handle_;
  uint64_t mailbox_;
  caf::execution_unit* ctx_ = nullptr;         // guarded by mtx_
  std::optional<op_result> result_;            // guarded by mtx_
  bool gone_ = false;                          // guarded by mtx_
};

} // namespace

caf::actor spawn_origin(caf::actor_system& sys, bool lazy, op_runtime* rt,
                        const op_registry::entry* entry, std::shared_ptr<origin_side> logic,
                        std::vector<std::string> targets,
                        std::shared_ptr<op_handle::shared> handle,
                        std::chrono::milliseconds deadline) {
  if (lazy)
    return sys.spawn<caf::lazy_init>(origin_behavior, rt, entry, std::move(logic),
                                     std::move(targets), std::move(handle), deadline);
  return sys.spawn(origin_behavior, rt, entry, std::move(logic), std::move(targets),
                   std::move(handle), deadline);
}

std::shared_ptr<inline_origin>
start_inline_origin(caf::actor_system& sys, caf::execution_unit* ctx, op_runtime* rt,
                    const op_registry::entry* entry, std::shared_ptr<origin_side> logic,
                    std::vector<std::string> targets, std::vector<caf::actor> dispatchers,
                    const std::shared_ptr<op_handle::shared>& handle,
                    std::chrono::milliseconds deadline) {
  auto mailbox = sys.next_actor_id(); // no actor gets this id: mailboxes stay unique
  auto until = clock_type::now() + deadline;
  auto origin = std::make_shared<inline_origin_impl>(rt, entry, std::move(logic),
                                                     std::move(targets), handle, until,
                                                     mailbox, std::move(dispatchers));
  rt->track_inline(origin, mailbox, entry->name, until);
  origin->start(ctx);
  return origin;
}

} // namespace troupe::ops::detail
