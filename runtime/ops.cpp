#include "runtime/ops.hpp"

#include <array>
#include <atomic>
#include <deque>
#include <map>
#include <sstream>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <kj/exception.h>

#include "base/error.hpp"
#include "runtime/locator.hpp"
#include "runtime/node.hpp"
#include "transport/blocking_wait.hpp"
#include "transport/middleman.hpp"
#include "transport/scheduler.hpp"

namespace troupe::ops {

using op_deadline_atom = caf::atom_constant<caf::atom("opdeadline")>;
using op_timer_atom = caf::atom_constant<caf::atom("optimer")>;
using op_trigger_atom = caf::atom_constant<caf::atom("optrigger")>;
using op_tick_atom = caf::atom_constant<caf::atom("optick")>;
/// An origin's first message when it is launched from a caller's thread: it makes the
/// (lazily spawned) origin run there.
using op_begin_atom = caf::atom_constant<caf::atom("opbegin")>;
/// (op_node_down_atom, caf::actor_addr dispatcher, caf::error): to every side of this
/// node when a node's dispatcher is gone (that node died). The runtime watches each
/// node once; a monitor per op on a remote proxy costs ~10 us here.
using op_node_down_atom = caf::atom_constant<caf::atom("opnodedwn")>;

using clock_type = std::chrono::steady_clock;

// -- default handlers -----------------------------------------------------------------

namespace {

step unexpected(const char* what) {
  return step::fail(
    make_error(errc::provider_failed, std::string{"the op does not handle "} + what));
}

/// The longest deadline a target side accepts (a day, as `ops.deadline_ms` allows).
constexpr uint64_t max_deadline_ms = 86400 * 1000;

op_message make_op_message(op_id id, uint8_t kind, size_t index, typed_message payload) {
  op_message m;
  m.id = id;
  m.kind = kind;
  m.index = static_cast<uint32_t>(index);
  m.payload = std::move(payload);
  return m;
}

/// Sends `m` to `dest` without a sender: the receiver needs no proxy of the sending
/// side (the message names it by its mailbox), and the sending actor's context runs
/// a local receiver next on the same thread.
void send_op(caf::local_actor* self, const caf::actor& dest, op_message m) {
  if (!dest)
    return;
  caf::actor_cast<caf::abstract_actor*>(dest)->enqueue(
    caf::make_mailbox_element(nullptr, caf::make_message_id(), {},
                              caf::make_message(std::move(m))),
    self->context());
}

std::string hex_id(op_id id) {
  std::ostringstream os;
  os << "0x" << std::hex << id;
  return os.str();
}

} // namespace

step origin_side::on_target_done(origin_context&, size_t) {
  return step::wait();
}
step origin_side::on_timeout(origin_context&, uint64_t) {
  return unexpected("timers");
}
step origin_side::on_trigger(origin_context&, const caf::message&) {
  return unexpected("triggers");
}
step origin_side::on_other(origin_context&, caf::message& m) {
  return unexpected(("the message " + caf::to_string(m)).c_str());
}
step target_side::on_message(target_context&, const typed_message&) {
  return unexpected("a second message from the origin");
}
step target_side::on_timeout(target_context&, uint64_t) {
  return unexpected("timers");
}
step target_side::on_other(target_context&, caf::message& m) {
  return unexpected(("the message " + caf::to_string(m)).c_str());
}

// -- the registry ---------------------------------------------------------------------

// Open addressing over atomic slots: readers probe without a lock; writers (rare) take
// the mutex and publish an entry with one release store. Entries are never removed.
struct op_registry::table {
  static constexpr size_t capacity = 4096; // a power of two
  std::array<std::atomic<const entry*>, capacity> slots{};
  mutable std::mutex write_mtx;
  std::deque<entry> entries; // guarded by write_mtx; stable addresses
};

op_registry::op_registry() : table_(std::make_unique<table>()) {
}
op_registry::~op_registry() = default;

caf::error op_registry::add(std::string name, target_factory make_target) {
  auto id = op_id_of(name);
  std::lock_guard<std::mutex> guard{table_->write_mtx};
  if (const auto* known = find(id)) {
    if (known->name == name)
      return caf::none;
    return make_error(errc::refused, "op \"" + name + "\" has the op id " + hex_id(id)
                                       + " of the registered op \"" + known->name
                                       + "\": rename one of them");
  }
  if (table_->entries.size() * 2 >= table::capacity)
    return make_error(errc::refused, "op \"" + name + "\": the op registry is full ("
                                       + std::to_string(table_->entries.size())
                                       + " op types)");
  table_->entries.push_back({std::move(name), id, std::move(make_target)});
  for (size_t i = id & (table::capacity - 1);; i = (i + 1) & (table::capacity - 1)) {
    if (table_->slots[i].load(std::memory_order_relaxed) == nullptr) {
      table_->slots[i].store(&table_->entries.back(), std::memory_order_release);
      break;
    }
  }
  return caf::none;
}

const op_registry::entry* op_registry::find(op_id id) const {
  for (size_t i = id & (table::capacity - 1);; i = (i + 1) & (table::capacity - 1)) {
    const auto* e = table_->slots[i].load(std::memory_order_acquire);
    if (e == nullptr || e->id == id)
      return e;
  }
}

std::vector<const op_registry::entry*> op_registry::all() const {
  std::lock_guard<std::mutex> guard{table_->write_mtx};
  std::vector<const entry*> result;
  for (const auto& e : table_->entries)
    result.push_back(&e);
  return result;
}

// -- handles --------------------------------------------------------------------------

struct op_handle::shared {
  mutable std::mutex mtx;
  std::condition_variable done_cv;
  std::optional<op_result> result;                            // guarded by mtx
  std::vector<std::function<void(const op_result&)>> waiting; // guarded by mtx
  caf::actor origin;                                          // guarded by mtx
  std::atomic<bool> done{false}; // result is set: a waiter may spin on it unlocked
  /// How long a waiting thread spins before it sleeps: the node's spin window (being
  /// woken costs more than most ops here).
  std::chrono::microseconds spin{0};
  /// Through it a waiting caller polls the transport itself (null: it only spins).
  std::shared_ptr<op_runtime::poll_gate> gate;

  /// Sets the result; false if there already was one (it arrives exactly once).
  bool complete(op_result r) {
    std::vector<std::function<void(const op_result&)>> callbacks;
    {
      std::lock_guard<std::mutex> guard{mtx};
      if (result)
        return false;
      result = std::move(r);
      callbacks.swap(waiting);
      done.store(true);
    }
    done_cv.notify_all();
    for (auto& f : callbacks)
      f(*result); // set once, never changed again: safe to read unlocked
    return true;
  }
};

op_handle::op_handle(std::shared_ptr<shared> state) : state_(std::move(state)) {
}

op_handle op_handle::finished(op_result result) {
  auto state = std::make_shared<shared>();
  state->complete(std::move(result));
  return op_handle{state};
}

namespace {

/// Waits up to `window` for the op to be done without sleeping: a result that comes
/// meanwhile needs no wakeup of the waiting thread. A caller that is not a scheduler
/// worker polls the transport itself, and the origin runs on its thread when the
/// answer arrives: no thread is woken on the way. Others spin (yielding the core).
void wait_briefly(const op_handle::shared& state, std::chrono::microseconds window) {
  if (state.done.load() || window.count() == 0)
    return;
  if (state.gate && transport::current_progress_worker() == nullptr) {
    std::shared_lock<std::shared_mutex> running{state.gate->mutex};
    if (auto* mm = state.gate->transport) {
      transport::blocking_waiter here{*mm};
      here.poll_until([&] { return state.done.load(); });
      return;
    }
  }
  auto until = std::chrono::steady_clock::now() + window;
  while (!state.done.load() && std::chrono::steady_clock::now() < until)
    std::this_thread::yield();
}

} // namespace

op_result op_handle::get() const {
  wait_briefly(*state_, state_->spin);
  std::unique_lock<std::mutex> guard{state_->mtx};
  state_->done_cv.wait(guard, [&] { return state_->result.has_value(); });
  return *state_->result;
}

std::optional<op_result> op_handle::get_for(std::chrono::milliseconds timeout) const {
  wait_briefly(*state_, std::min<std::chrono::microseconds>(state_->spin, timeout));
  std::unique_lock<std::mutex> guard{state_->mtx};
  if (!state_->done_cv.wait_for(guard, timeout,
                                [&] { return state_->result.has_value(); }))
    return std::nullopt;
  return *state_->result;
}

bool op_handle::ready() const {
  std::lock_guard<std::mutex> guard{state_->mtx};
  return state_->result.has_value();
}

void op_handle::then(std::function<void(const op_result&)> continuation) const {
  {
    std::lock_guard<std::mutex> guard{state_->mtx};
    if (!state_->result) {
      state_->waiting.push_back(std::move(continuation));
      return;
    }
  }
  continuation(*state_->result);
}

caf::actor op_handle::origin() const {
  std::lock_guard<std::mutex> guard{state_->mtx};
  return state_->origin;
}

void op_handle::trigger(caf::message m) const {
  if (auto origin = this->origin())
    caf::anon_send(origin, op_trigger_atom::value, std::move(m));
}

// -- the op runtime -------------------------------------------------------------------

op_runtime::op_runtime() = default;
op_runtime::~op_runtime() = default;

void op_runtime::track(const caf::actor& side_actor, std::string name,
                       const char* side, clock_type::time_point deadline) {
  caf::actor ticker; // set when this deadline is earlier than the pending tick
  {
    std::lock_guard<std::mutex> guard{mtx_};
    inflight_[side_actor.id()] = {side_actor, std::move(name), side, "started",
                                  clock_type::now()};
    deadlines_.emplace(deadline, side_actor.id());
    // Entries of sides that ended stay until their time; with long deadlines and
    // many short ops, drop them now and then.
    if (deadlines_.size() > 2 * inflight_.size() + 4096) {
      std::vector<deadline_entry> live;
      for (; !deadlines_.empty(); deadlines_.pop())
        if (inflight_.count(deadlines_.top().second) > 0)
          live.push_back(deadlines_.top());
      deadlines_ = decltype(deadlines_){std::greater<>{}, std::move(live)};
    }
    if (deadline < ticker_due_ && ticker_) {
      ticker_due_ = deadline;
      ticker = ticker_;
    }
  }
  // Rare: deadlines mostly come later than the pending tick (same default), and a
  // timer per side would wake CAF's clock thread for every op.
  if (ticker)
    caf::delayed_anon_send(
      ticker, std::max(clock_type::duration::zero(), deadline - clock_type::now()),
      op_tick_atom::value, deadline.time_since_epoch().count());
}

bool op_runtime::take_expired(clock_type::time_point now, clock_type::time_point tick_for,
                              std::vector<caf::actor>& expired,
                              clock_type::time_point& next) {
  std::lock_guard<std::mutex> guard{mtx_};
  while (!deadlines_.empty() && deadlines_.top().first <= now) {
    auto i = inflight_.find(deadlines_.top().second);
    if (i != inflight_.end())
      if (i->second.actor)
        expired.push_back(i->second.actor);
    deadlines_.pop();
  }
  next = deadlines_.empty() ? clock_type::time_point::max() : deadlines_.top().first;
  // Only the pending tick (or one for an earlier time) goes on scheduling.
  if (tick_for != ticker_due_ && next >= ticker_due_)
    return false;
  ticker_due_ = next;
  return next != clock_type::time_point::max();
}

void op_runtime::set_state(uint64_t mailbox, std::string state) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (auto it = inflight_.find(mailbox); it != inflight_.end())
    it->second.state = std::move(state);
}

void op_runtime::untrack(uint64_t mailbox) {
  caf::actor side; // released after the lock (a side's last reference: see track)
  std::lock_guard<std::mutex> guard{mtx_};
  if (auto it = inflight_.find(mailbox); it != inflight_.end()) {
    side = std::move(it->second.actor);
    inflight_.erase(it);
  }
}

std::vector<inflight_op> op_runtime::inflight() const {
  auto now = clock_type::now();
  std::vector<inflight_op> result;
  std::lock_guard<std::mutex> guard{mtx_};
  for (const auto& [mailbox, t] : inflight_)
    result.push_back(
      {t.name, mailbox, t.side, t.state,
       std::chrono::duration_cast<std::chrono::milliseconds>(now - t.started)});
  return result;
}

void op_runtime::count(const char* what) {
  std::lock_guard<std::mutex> guard{mtx_};
  ++counts_[what];
}

std::map<std::string, uint64_t> op_runtime::counters() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return counts_;
}

namespace {

/// Fills in what a handler can use; one per handler call, on the actor's stack.
template <class Base, class Actor>
class context_base : public Base {
public:
  explicit context_base(Actor* self) : self_(self) {}
  const std::string& op_name() const override { return self_->state.entry->name; }
  uint64_t mailbox() const override { return self_->id(); }
  std::chrono::milliseconds remaining() const override {
    auto left = self_->state.deadline - clock_type::now();
    return std::max(std::chrono::milliseconds{0},
                    std::chrono::duration_cast<std::chrono::milliseconds>(left));
  }
  void set_state(std::string state) override {
    self_->state.rt->set_state(self_->id(), std::move(state));
  }
  void start_timer(std::chrono::milliseconds delay, uint64_t id) override {
    self_->delayed_send(self_, delay, op_timer_atom::value, id);
  }
  caf::event_based_actor* self() override { return self_; }
  op_runtime& runtime() override { return *self_->state.rt; }

protected:
  Actor* self_;
};

/// Runs a handler; exceptions (a malformed peer message read by typed_reader throws
/// kj::Exception) become failures of the side.
template <class F>
step guarded(const std::string& op, const char* side, F&& handler) {
  try {
    return handler();
  } catch (const kj::Exception& e) {
    return step::fail(make_error(errc::provider_failed,
                                 "op " + op + " (" + side
                                   + "): " + std::string{e.getDescription().cStr()}));
  } catch (const std::exception& e) {
    return step::fail(
      make_error(errc::provider_failed, "op " + op + " (" + side + "): " + e.what()));
  }
}

// -- origin side ----------------------------------------------------------------------

struct origin_peer {
  caf::actor dispatcher; // of the target's node, once located
  uint64_t mailbox = 0;  // the target side's, once it answered
  bool locating = false;
  bool started = false;
  bool ended = false;
  std::vector<typed_message> queue; // waiting for the dispatcher or the mailbox
};

struct origin_state {
  static inline const char* name = "troupe.op.origin";
  op_runtime* rt = nullptr;
  caf::actor directory;      // copies: the runtime's own handles go at stop
  caf::actor own_dispatcher; // this node's, for targets to watch this node
  const op_registry::entry* entry = nullptr;
  std::shared_ptr<origin_side> logic;
  std::vector<std::string> targets;
  std::vector<origin_peer> peers;
  std::shared_ptr<op_handle::shared> handle;
  clock_type::time_point deadline;
  bool finished = false;
  std::vector<std::pair<size_t, typed_message>> outbox; // sent when the handler returns
};

using origin_actor = caf::stateful_actor<origin_state>;

class origin_ctx final : public context_base<origin_context, origin_actor> {
public:
  using context_base::context_base;
  const std::vector<std::string>& targets() const override {
    return self_->state.targets;
  }
  void send(size_t i, typed_message m) override {
    if (i >= self_->state.targets.size())
      throw std::out_of_range("op " + op_name() + ": no target " + std::to_string(i));
    self_->state.outbox.emplace_back(i, std::move(m));
  }
};

void origin_finish(origin_actor* self, step s);

/// The error the caller gets when target `i` failed the op, or could not be reached.
caf::error target_error(const origin_state& st, size_t i, errc code,
                        const std::string& what) {
  return make_error(code, "op " + st.entry->name + ": target " + std::to_string(i) + " ("
                            + st.targets[i] + "): " + what);
}

op_message to_target(origin_actor* self, uint8_t kind, size_t i, uint64_t mailbox = 0,
                     typed_message payload = {}) {
  auto m = make_op_message(self->state.entry->id, kind, i, std::move(payload));
  m.to = mailbox;
  m.from = self->id();
  return m;
}

/// Sends what can go to target `i` now: the start message once its dispatcher is
/// known, the rest once its mailbox is.
void origin_pump(origin_actor* self, size_t i) {
  auto& st = self->state;
  auto& peer = st.peers[i];
  if (peer.ended)
    return;
  if (!peer.started && !peer.queue.empty()) {
    if (!peer.dispatcher)
      peer.dispatcher = st.rt->known_dispatcher(st.targets[i]);
    if (!peer.dispatcher) {
      if (peer.locating)
        return;
      peer.locating = true;
      self->request(st.directory, caf::infinite, locate_atom::value, st.targets[i])
        .then(
          [self, i](caf::actor& dispatcher) {
            if (self->state.finished)
              return; // over (draining for another target): start nothing new
            auto& peer = self->state.peers[i];
            peer.locating = false;
            peer.dispatcher = dispatcher; // its node's death: op_node_down_atom
            origin_pump(self, i);
          },
          [self, i](caf::error& err) {
            origin_finish(self, step::fail(target_error(self->state, i, errc::unreachable,
                                                        context_text(err))));
          });
      return;
    }
    auto m = to_target(self, op_message::start, i, 0, std::move(peer.queue.front()));
    peer.queue.erase(peer.queue.begin());
    auto left = st.deadline - clock_type::now();
    m.deadline_ms = static_cast<uint64_t>(std::max<int64_t>(
      1, std::chrono::duration_cast<std::chrono::milliseconds>(left).count()));
    m.watch = st.own_dispatcher;
    m.from = self->id();
    send_op(self, peer.dispatcher, std::move(m));
    peer.started = true;
  }
  if (peer.mailbox != 0) {
    for (auto& payload : peer.queue)
      send_op(self, peer.dispatcher,
              to_target(self, op_message::data, i, peer.mailbox, std::move(payload)));
    peer.queue.clear();
  }
}

void origin_flush(origin_actor* self) {
  auto& st = self->state;
  auto outbox = std::move(st.outbox);
  st.outbox.clear();
  std::vector<bool> touched(st.peers.size());
  for (auto& [i, payload] : outbox) {
    st.peers[i].queue.push_back(std::move(payload));
    touched[i] = true;
  }
  for (size_t i = 0; i < st.peers.size(); ++i)
    if (touched[i])
      origin_pump(self, i);
}

/// Once the op is over, the origin stays only until every target it started has
/// been told so (see origin_finish).
void origin_quit_if_drained(origin_actor* self) {
  for (const auto& peer : self->state.peers)
    if (peer.started && !peer.ended)
      return;
  self->quit();
}

void origin_finish(origin_actor* self, step s) {
  auto& st = self->state;
  if (st.finished)
    return;
  st.finished = true;
  origin_flush(self);
  // Targets still waiting learn that the op is over.
  for (size_t i = 0; i < st.peers.size(); ++i) {
    auto& peer = st.peers[i];
    if (peer.mailbox != 0 && !peer.ended) {
      send_op(self, peer.dispatcher, to_target(self, op_message::end, i, peer.mailbox));
      peer.ended = true;
    }
  }
  if (s.what() == step::kind::done) {
    st.rt->count("completed");
    st.handle->complete(std::move(s.result()));
  } else {
    st.rt->count("failed");
    st.handle->complete(std::move(s.error()));
  }
  // A target started but not heard from yet has no mailbox to tell: it watches the
  // origin's node, not the origin, so the origin waits for its first message (and
  // answers it with the end) or for the deadline.
  st.rt->set_state(self->id(), "over; waiting to tell targets that never answered");
  origin_quit_if_drained(self);
}

template <class F>
void origin_run(origin_actor* self, F&& handler) {
  auto& st = self->state;
  if (st.finished)
    return;
  origin_ctx ctx{self};
  auto s = guarded(st.entry->name, "origin", [&] { return handler(ctx); });
  if (s.what() == step::kind::wait)
    origin_flush(self);
  else
    origin_finish(self, std::move(s));
}

caf::behavior origin_behavior(origin_actor* self, op_runtime* rt,
                              const op_registry::entry* entry,
                              std::shared_ptr<origin_side> logic,
                              std::vector<std::string> targets,
                              std::shared_ptr<op_handle::shared> handle,
                              std::chrono::milliseconds deadline) {
  auto& st = self->state;
  st.rt = rt;
  st.directory = rt->directory();
  st.own_dispatcher = rt->dispatcher();
  st.entry = entry;
  st.logic = std::move(logic);
  st.targets = std::move(targets);
  st.peers.resize(st.targets.size());
  st.handle = handle;
  st.deadline = clock_type::now() + deadline;
  rt->track(caf::actor_cast<caf::actor>(self), entry->name, "origin", st.deadline);
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
    origin_run(self,
               [&](origin_ctx& ctx) { return self->state.logic->on_other(ctx, m); });
    return caf::result<caf::message>{caf::message{}};
  });
  origin_run(self, [&](origin_ctx& ctx) { return self->state.logic->on_start(ctx); });
  return {
    [self](op_message& m) {
      auto& st = self->state;
      if (m.index >= st.peers.size() || m.id != st.entry->id) {
        st.rt->count("stray_messages");
        return;
      }
      auto i = m.index;
      auto& peer = st.peers[i];
      if (st.finished) {
        // Draining: the first word from a target that never answered gets the end.
        if (!peer.ended && !m.last && m.kind == op_message::data && m.from != 0)
          send_op(self, peer.dispatcher, to_target(self, op_message::end, i, m.from));
        peer.ended = true;
        return origin_quit_if_drained(self);
      }
      if (m.last || m.kind == op_message::end)
        peer.ended = true;
      if (peer.mailbox == 0 && m.kind != op_message::failure && m.from != 0) {
        peer.mailbox = m.from;
        if (peer.ended)
          peer.queue.clear(); // nobody there to read them any more
        else
          origin_pump(self, i);
      }
      switch (m.kind) {
        case op_message::failure: {
          peer.ended = true;
          auto code = m.code == 0 ? errc::provider_failed : static_cast<errc>(m.code);
          return origin_finish(self, step::fail(target_error(st, i, code, m.error)));
        }
        case op_message::data:
          origin_run(self, [&](origin_ctx& ctx) {
            return self->state.logic->on_message(ctx, i, m.payload);
          });
          break;
        default:
          break;
      }
      if (peer.ended)
        origin_run(self, [&](origin_ctx& ctx) {
          return self->state.logic->on_target_done(ctx, i);
        });
    },
    [self](op_deadline_atom) {
      auto& st = self->state;
      if (st.finished)
        return self->quit(); // targets not heard from end at their own deadline
      std::string waiting;
      for (size_t i = 0; i < st.peers.size(); ++i)
        if (!st.peers[i].ended)
          waiting += (waiting.empty() ? "" : ", ") + st.targets[i];
      origin_finish(
        self, step::fail(make_error(errc::timeout,
                                    "op " + st.entry->name + " passed its deadline ("
                                      + (waiting.empty() ? std::string{"no target open"}
                                                         : "waiting for " + waiting)
                                      + ")")));
      self->quit(); // targets not heard from end at their own deadline, now too
    },
    [self](op_timer_atom, uint64_t id) {
      origin_run(self,
                 [&](origin_ctx& ctx) { return self->state.logic->on_timeout(ctx, id); });
    },
    [self](op_trigger_atom, caf::message& m) {
      origin_run(self,
                 [&](origin_ctx& ctx) { return self->state.logic->on_trigger(ctx, m); });
    },
    [](op_begin_atom) {
      // Nothing: it only made the origin start (on_start ran when it initialized).
    },
    [self](op_node_down_atom, const caf::actor_addr& dispatcher, const caf::error& why) {
      auto& st = self->state;
      for (size_t i = 0; i < st.peers.size(); ++i)
        if (st.peers[i].dispatcher && st.peers[i].dispatcher.address() == dispatcher
            && !st.peers[i].ended) {
          st.peers[i].ended = true; // nobody left there to tell
          if (st.finished)
            return origin_quit_if_drained(self);
          return origin_finish(self, step::fail(target_error(st, i, errc::unreachable,
                                                             "its node is gone: "
                                                               + caf::to_string(why))));
        }
    },
  };
}

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
    auto m = message(op_message::data, std::move(outbox[k]));
    m.last = last && k + 1 == outbox.size();
    send_op(self, to.node, std::move(m));
  }
  if (last && outbox.empty()) {
    auto m = message(op_message::end, {});
    m.last = true;
    send_op(self, to.node, std::move(m));
  }
}

/// Tells the origin that the side failed with `why`; the side ends.
void fail_to_origin(caf::local_actor* self, const origin_route& to, const caf::error& why) {
  auto m = make_op_message(to.id, op_message::failure, to.index, {});
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
      if (m.kind == op_message::end)
        return target_finish(self, step::done(), false);
      if (m.kind == op_message::data)
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
        // For a side of this node: handed on, to run next on this thread.
        if (auto side = rt->side(m.to))
          send_op(self, side, std::move(m));
        else
          rt->count("stray_messages"); // it ended (a late message) or never was
        return;
      }
      if (m.kind != op_message::start || !m.watch || m.from == 0) {
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

} // namespace

/// Sends every side its deadline message when it is due: one timer for the node.
caf::behavior deadline_ticker(caf::event_based_actor* self, op_runtime* rt) {
  return {
    [self, rt](op_tick_atom, clock_type::rep due) {
      auto now = clock_type::now();
      std::vector<caf::actor> expired;
      clock_type::time_point next;
      auto again = rt->take_expired(
        now, clock_type::time_point{clock_type::duration{due}}, expired, next);
      for (auto& side : expired)
        self->send(side, op_deadline_atom::value);
      if (again)
        self->delayed_send(self, std::max(clock_type::duration::zero(), next - now),
                           op_tick_atom::value, next.time_since_epoch().count());
    },
  };
}

void op_runtime::start(node& n) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    kept_ = std::make_shared<kept_bytes>(n.config().ops.store_max_bytes);
  }
  if (transport::runs_progress_scheduler(n.system())) {
    std::unique_lock<std::shared_mutex> guard{gate_->mutex};
    gate_->transport = &n.transport();
  }
  auto ticker = n.system().spawn(deadline_ticker, this);
  auto dispatcher = n.system().spawn(dispatcher_behavior, this, n.address());
  auto directory = n.system().spawn(directory_behavior, this, n.locator());
  transport::middleman::of(n.system()).publish(dispatcher_key, dispatcher);
  std::lock_guard<std::mutex> guard{mtx_};
  ticker_ = std::move(ticker);
  dispatcher_ = std::move(dispatcher);
  directory_ = std::move(directory);
}

caf::error kept_bytes::reserve(uint64_t bytes) {
  auto used = used_.load();
  do {
    if (bytes > limit_ || used > limit_ - bytes)
      return make_error(errc::refused, "this node keeps " + std::to_string(used)
                                         + " bytes for ops and may keep "
                                         + std::to_string(limit_)
                                         + " (ops.store_max_bytes); "
                                         + std::to_string(bytes) + " more do not fit");
  } while (!used_.compare_exchange_weak(used, used + bytes));
  return caf::none;
}

std::shared_ptr<kept_bytes> op_runtime::kept() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return kept_;
}

caf::actor op_runtime::directory() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return directory_;
}

caf::actor op_runtime::dispatcher() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return dispatcher_;
}

void op_runtime::stop() {
  {
    // Waits for callers polling the transport now; later ones only spin.
    std::unique_lock<std::shared_mutex> guard{gate_->mutex};
    gate_->transport = nullptr;
  }
  // Ops still running end now (their callers get an error): a node that stops must
  // not wait for their deadlines.
  std::vector<caf::actor> running;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    for (const auto& [mailbox, t] : inflight_)
      running.push_back(t.actor);
  }
  for (const auto& h : running)
    if (h)
      caf::anon_send_exit(h, caf::exit_reason::user_shutdown);
  std::vector<caf::actor> services(3);
  {
    std::lock_guard<std::mutex> guard{mtx_};
    services[0].swap(ticker_);
    services[1].swap(dispatcher_);
    services[2].swap(directory_);
    ticker_due_ = clock_type::time_point::max();
  }
  for (auto& a : services)
    if (a)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  // Node-local state (stores holding registered memory) goes while the transport
  // that registered it still runs.
  std::map<std::string, local_slot> locals;
  std::map<std::string, caf::actor> dispatchers;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    locals.swap(locals_);
    dispatchers.swap(dispatchers_);
  }
}

void op_runtime::tell_sides_node_down(const caf::actor_addr& dispatcher,
                                      const caf::error& reason) {
  std::vector<caf::actor> sides;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    for (const auto& [mailbox, t] : inflight_)
      sides.push_back(t.actor);
  }
  for (auto& side : sides)
    caf::anon_send(side, op_node_down_atom::value, dispatcher, reason);
}

caf::actor op_runtime::side(uint64_t mailbox) const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = inflight_.find(mailbox);
  return i == inflight_.end() ? caf::actor{} : i->second.actor;
}

caf::actor op_runtime::known_dispatcher(const std::string& uri) const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = dispatchers_.find(uri);
  return i == dispatchers_.end() ? caf::actor{} : i->second;
}

void op_runtime::remember_dispatcher(const std::string& uri, caf::actor dispatcher) {
  std::lock_guard<std::mutex> guard{mtx_};
  dispatchers_[uri] = std::move(dispatcher);
}

void op_runtime::forget_dispatcher(const caf::actor_addr& dispatcher) {
  std::lock_guard<std::mutex> guard{mtx_};
  for (auto it = dispatchers_.begin(); it != dispatchers_.end();)
    it = it->second.address() == dispatcher ? dispatchers_.erase(it) : std::next(it);
}

void register_op_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<op_message>("troupe::ops::op_message");
}

op_handle launch(node& n, std::string_view name, std::unique_ptr<origin_side> origin,
                 std::vector<std::string> targets, op_options options) {
  auto state = std::make_shared<op_handle::shared>();
  op_handle handle{state};
  auto fail = [&](errc code, std::string what) {
    state->complete(make_error(code, std::move(what)));
    return handle;
  };
  if (!n.running())
    return fail(errc::refused,
                "cannot launch op " + std::string{name} + ": the node is not running");
  auto& rt = n.ops();
  const auto* entry = rt.registry().find(op_id_of(name));
  if (entry == nullptr || entry->name != name)
    return fail(errc::not_found,
                "op \"" + std::string{name} + "\" is not registered on this node");
  if (targets.empty())
    return fail(errc::refused, "op " + std::string{name} + ": no target nodes");
  auto deadline = options.deadline.count() > 0
                    ? options.deadline
                    : std::chrono::milliseconds{n.config().ops.deadline_ms};
  rt.count("launched");
  state->spin = n.transport().spin_window();
  state->gate = rt.gate();
  auto logic = std::shared_ptr<origin_side>{std::move(origin)};
  caf::actor actor;
  if (transport::runs_progress_scheduler(n.system())
      && transport::current_progress_worker() == nullptr) {
    // From a caller's own thread: the origin's first step (on_start, its first sends)
    // runs here and now, instead of on a worker that would have to be woken for it.
    transport::blocking_waiter here{n.transport()};
    actor = n.system().spawn<caf::lazy_init>(origin_behavior, &rt, entry, std::move(logic),
                                             std::move(targets), state, deadline);
    caf::actor_cast<caf::abstract_actor*>(actor)->enqueue(
      caf::make_mailbox_element(nullptr, caf::make_message_id(), {},
                                caf::make_message(op_begin_atom::value)),
      &here.unit());
    here.unit().run();
  } else {
    actor = n.system().spawn(origin_behavior, &rt, entry, std::move(logic),
                             std::move(targets), state, deadline);
  }
  std::lock_guard<std::mutex> guard{state->mtx};
  state->origin = std::move(actor);
  return handle;
}

} // namespace troupe::ops
