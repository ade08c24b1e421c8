#include "runtime/ops.hpp"
#include "runtime/detail/op_sides.hpp"

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

using namespace detail;

namespace detail {

op_message make_op_message(op_id id, uint8_t kind, size_t index, typed_message payload) {
  op_message m;
  m.id = id;
  m.kind = kind;
  m.index = static_cast<uint32_t>(index);
  m.payload = std::move(payload);
  return m;
}

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

} // namespace detail

// -- default handlers -----------------------------------------------------------------

namespace {

step unexpected(const char* what) {
  return step::fail(
    make_error(errc::provider_failed, std::string{"the op does not handle "} + what));
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
  std::shared_ptr<detail::inline_origin> inline_origin;
  {
    std::lock_guard<std::mutex> guard{state_->mtx};
    inline_origin = state_->inline_origin.lock();
  }
  if (inline_origin)
    inline_origin->trigger(m);
  else if (auto origin = this->origin())
    caf::anon_send(origin, op_trigger_atom::value, std::move(m));
}

// -- the op runtime -------------------------------------------------------------------

op_runtime::op_runtime() = default;
op_runtime::~op_runtime() = default;

void op_runtime::track(const caf::actor& side_actor, std::string name,
                       const char* side, clock_type::time_point deadline) {
  track_entry(side_actor.id(),
              {side_actor, nullptr, std::move(name), side, "started", clock_type::now()},
              deadline);
}

void op_runtime::track_inline(std::shared_ptr<detail::inline_origin> origin,
                              uint64_t mailbox, std::string name,
                              clock_type::time_point deadline) {
  track_entry(mailbox,
              {nullptr, std::move(origin), std::move(name), "origin", "started",
               clock_type::now()},
              deadline);
}

void op_runtime::track_entry(uint64_t mailbox, tracked entry,
                             clock_type::time_point deadline) {
  caf::actor ticker; // set when this deadline is earlier than the pending tick
  {
    std::lock_guard<std::mutex> guard{mtx_};
    inflight_[mailbox] = std::move(entry);
    deadlines_.emplace(deadline, mailbox);
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

std::shared_ptr<detail::inline_origin> op_runtime::inline_side(uint64_t mailbox) const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = inflight_.find(mailbox);
  return i == inflight_.end() ? nullptr : i->second.inline_origin;
}

bool op_runtime::take_expired(
  clock_type::time_point now, clock_type::time_point tick_for,
  std::vector<caf::actor>& expired,
  std::vector<std::shared_ptr<detail::inline_origin>>& expired_inline,
  clock_type::time_point& next) {
  std::lock_guard<std::mutex> guard{mtx_};
  while (!deadlines_.empty() && deadlines_.top().first <= now) {
    auto i = inflight_.find(deadlines_.top().second);
    if (i != inflight_.end()) {
      if (i->second.actor)
        expired.push_back(i->second.actor);
      else if (i->second.inline_origin)
        expired_inline.push_back(i->second.inline_origin);
    }
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
  // Released after the lock (a side's last reference: see track).
  caf::actor side;
  std::shared_ptr<detail::inline_origin> inline_origin;
  std::lock_guard<std::mutex> guard{mtx_};
  if (auto it = inflight_.find(mailbox); it != inflight_.end()) {
    side = std::move(it->second.actor);
    inline_origin = std::move(it->second.inline_origin);
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

void op_runtime::start(node& n) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    kept_ = std::make_shared<kept_bytes>(n.config().ops.store_max_bytes);
  }
  if (transport::runs_progress_scheduler(n.system())) {
    std::unique_lock<std::shared_mutex> guard{gate_->mutex};
    gate_->transport = &n.transport();
  }
  auto ticker = spawn_deadline_ticker(n.system(), this);
  auto dispatcher = spawn_dispatcher(n.system(), this, n.address());
  auto directory = spawn_directory(n.system(), this, n.locator());
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
  std::vector<std::pair<std::string, std::shared_ptr<detail::inline_origin>>> inline_running;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    for (const auto& [mailbox, t] : inflight_)
      if (t.actor)
        running.push_back(t.actor);
      else if (t.inline_origin)
        inline_running.emplace_back(t.name, t.inline_origin);
  }
  for (const auto& h : running)
    caf::anon_send_exit(h, caf::exit_reason::user_shutdown);
  for (const auto& [name, origin] : inline_running)
    origin->stop(make_error(errc::provider_failed,
                            "op " + name + " ended before its result: its node stops"));
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
  std::vector<std::shared_ptr<detail::inline_origin>> inline_sides;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    for (const auto& [mailbox, t] : inflight_)
      if (t.actor)
        sides.push_back(t.actor);
      else if (t.inline_origin)
        inline_sides.push_back(t.inline_origin);
  }
  for (auto& side : sides)
    caf::anon_send(side, op_node_down_atom::value, dispatcher, reason);
  for (auto& origin : inline_sides)
    origin->node_down(dispatcher, reason, nullptr);
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
  cfg.add_message_type<op_message>("troupe::transport::op_frame");
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
  auto on_caller_thread = transport::runs_progress_scheduler(n.system())
                          && transport::current_progress_worker() == nullptr;
  if (logic->runs_inline()) {
    // Without an actor once every target's dispatcher is known (the first op to a
    // node has its origin actor ask the directory).
    std::vector<caf::actor> dispatchers;
    for (const auto& uri : targets) {
      dispatchers.push_back(rt.known_dispatcher(uri));
      if (!dispatchers.back())
        break;
    }
    if (dispatchers.size() == targets.size() && dispatchers.back()) {
      std::shared_ptr<detail::inline_origin> started;
      if (on_caller_thread) {
        // Sends to this node's dispatcher run it here, at the unit's run.
        transport::blocking_waiter here{n.transport()};
        started = start_inline_origin(n.system(), &here.unit(), &rt, entry,
                                      std::move(logic), std::move(targets),
                                      std::move(dispatchers), state, deadline);
        here.unit().run();
      } else {
        started = start_inline_origin(n.system(), transport::current_progress_worker(),
                                      &rt, entry, std::move(logic), std::move(targets),
                                      std::move(dispatchers), state, deadline);
      }
      std::lock_guard<std::mutex> guard{state->mtx};
      state->inline_origin = started;
      return handle;
    }
  }
  caf::actor actor;
  if (on_caller_thread) {
    // From a caller's own thread: the origin's first step (on_start, its first sends)
    // runs here and now, instead of on a worker that would have to be woken for it.
    transport::blocking_waiter here{n.transport()};
    actor = spawn_origin(n.system(), true, &rt, entry, std::move(logic),
                         std::move(targets), state, deadline);
    caf::actor_cast<caf::abstract_actor*>(actor)->enqueue(
      caf::make_mailbox_element(nullptr, caf::make_message_id(), {},
                                caf::make_message(op_begin_atom::value)),
      &here.unit());
    here.unit().run();
  } else {
    actor = spawn_origin(n.system(), false, &rt, entry, std::move(logic),
                         std::move(targets), state, deadline);
  }
  std::lock_guard<std::mutex> guard{state->mtx};
  state->origin = std::move(actor);
  return handle;
}

} // namespace troupe::ops
