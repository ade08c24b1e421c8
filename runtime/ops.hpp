#pragma once
// Ops (DESIGN.md, "Ops"; FAODEL OpBox's model): a protocol among nodes written as two
// state machines, an origin side and a target side, each with a mailbox: an actor
// whose actor id is its mailbox, or, for a side that `runs_inline`, no actor at all.
//
//   struct ping_op {                                  // one op type
//     static constexpr const char* name = "ping";     // its id: op_id_of(name)
//     using origin = ping_origin;                     // : origin_side
//     using target = ping_target;                     // : target_side
//   };
//   node.ops().add<ping_op>();                        // on every node taking part
//   auto h = ops::launch<ping_op>(node, {"ucx://10.0.0.2:7100"}, "hello");
//   caf::expected<caf::message> r = h.get();          // or h.then(callback)
//
// How an op runs: `launch` spawns the origin actor, which calls `on_start` (from a
// thread that is not a scheduler worker, right there in `launch`, and `get()` polls
// the transport so the origin also finishes on that thread); an origin that
// `runs_inline` gets no actor once its targets' dispatchers are known: `on_start` runs
// in `launch` and its later handlers where their events arrive. Every op message
// (transport::op_frame: it crosses nodes in the envelope, its payload read in place)
// goes to the receiving node's op dispatcher (published as "troupe.ops"), naming the
// side it is for by its mailbox: the first one to a node starts a target side for the op id
// (`on_start`; a side that `runs_inline` runs in the dispatcher without an actor),
// later ones, both ways, are handed to the side with that mailbox. A
// side's handlers run one at a time and each returns a `step`: wait (stay alive),
// done (the side ends; for the origin with the op's result) or fail (the side ends;
// the origin's caller gets the error). Messages a handler sends leave when it returns,
// the last one to a peer marked as its sender's last.
//
// Failure: every op has a deadline (`op_options`, else the node's `ops.deadline_ms`);
// when it passes, or a node taking part dies, or a target cannot run the op (unknown
// op id there, a handler failed), the origin's caller gets the error, exactly once,
// and every side's actor ends. No side outlives its op: targets end with the origin's
// end message (an origin waits, until the deadline, to tell a target that has not
// answered yet), with the death of the origin's node, or at the deadline they were
// given.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <atomic>
#include <map>
#include <memory>
#include <stdexcept>
#include <typeindex>
#include <mutex>
#include <optional>
#include <queue>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>
#include <caf/message.hpp>
#include <caf/meta/type_name.hpp>

#include "transport/op_frame.hpp"
#include "transport/typed_message.hpp"

namespace troupe::transport {
class middleman;
} // namespace troupe::transport

namespace troupe {
class node;
} // namespace troupe

namespace troupe::ops {

class op_runtime;

namespace detail {
class inline_origin;
} // namespace detail

using op_id = uint32_t;

/// An op type's id: FNV-1a (32 bit) of its name, as OpBox hashes names. Never 0.
constexpr op_id op_id_of(std::string_view name) {
  uint32_t h = 2166136261u;
  for (char c : name) {
    h ^= static_cast<uint8_t>(c);
    h *= 16777619u;
  }
  return h == 0 ? 1 : h;
}

/// How a handler ends: the side waits for more, is done, or failed.
class step {
public:
  enum class kind { wait, done, fail };

  static step wait() { return step{kind::wait, {}, {}}; }
  /// For the origin, `result` is what the op's caller gets.
  static step done(caf::message result = {}) {
    return step{kind::done, std::move(result), {}};
  }
  static step fail(caf::error why) { return step{kind::fail, {}, std::move(why)}; }

  kind what() const { return what_; }
  caf::message& result() { return result_; }
  caf::error& error() { return error_; }

private:
  step(kind k, caf::message r, caf::error e)
    : what_(k), result_(std::move(r)), error_(std::move(e)) {}
  kind what_;
  caf::message result_;
  caf::error error_;
};

/// What every side's handlers can use.
class side_context {
public:
  virtual ~side_context() = default;
  virtual const std::string& op_name() const = 0;
  /// This side's mailbox: its actor id.
  virtual uint64_t mailbox() const = 0;
  /// Time left until the op's deadline.
  virtual std::chrono::milliseconds remaining() const = 0;
  /// What introspection (`actorsh ops`) shows as this side's state.
  virtual void set_state(std::string state) = 0;
  /// Calls `on_timeout(id)` after `delay` (a step's own timer; the deadline is apart).
  virtual void start_timer(std::chrono::milliseconds delay, uint64_t id) = 0;
  /// The side's actor, e.g. for RDMA requests, whose completions come as messages.
  virtual caf::event_based_actor* self() = 0;
  /// The op framework of this side's node, e.g. for its node-local state (`local`).
  virtual op_runtime& runtime() = 0;
};

class origin_context : public side_context {
public:
  /// The nodes the op was launched on.
  virtual const std::vector<std::string>& targets() const = 0;
  /// Sends `m` to target `i`: the first message starts the target side on that node,
  /// later ones go to its mailbox.
  virtual void send(size_t i, typed_message m) = 0;
};

class target_context : public side_context {
public:
  /// Sends `m` to the origin's mailbox.
  virtual void reply(typed_message m) = 0;
  /// Which of the origin's targets this side is.
  virtual size_t index() const = 0;
};

/// The origin side of an op type: subclass it. Handlers run in the origin actor.
class origin_side {
public:
  virtual ~origin_side() = default;
  virtual step on_start(origin_context& ctx) = 0;
  /// A message from target `from`.
  virtual step on_message(origin_context& ctx, size_t from, const typed_message& m) = 0;
  /// Target `from` ended without an error (its last message, if any, came before).
  virtual step on_target_done(origin_context& ctx, size_t from);
  virtual step on_timeout(origin_context& ctx, uint64_t timer_id);
  /// A user trigger (`op_handle::trigger`).
  virtual step on_trigger(origin_context& ctx, const caf::message& m);
  /// Any other message the actor receives (e.g. RDMA completions).
  virtual step on_other(origin_context& ctx, caf::message& m);
  /// True for an origin that needs no actor of its own: it uses no timers, no self()
  /// and gets no other messages (ping's). Launched once every target's node has been
  /// reached before (its dispatcher is known), it then runs without one: on_start in
  /// `launch`, on the launching thread; later handlers on the thread that brings their
  /// event (the one that receives a target's answer: a caller polling in `get()`
  /// included), one at a time. No spawn, no scheduler hop, no actor's teardown (which
  /// in CAF 0.17 wakes the clock thread). Its context has no self() and no timers
  /// (asking for them fails the op); otherwise it behaves as an actor origin does.
  virtual bool runs_inline() const { return false; }
};

/// The target side of an op type: subclass it (default-constructible: the dispatcher
/// makes it). Handlers run in the target actor.
class target_side {
public:
  virtual ~target_side() = default;
  /// The origin's first message to this node.
  virtual step on_start(target_context& ctx, const typed_message& m) = 0;
  virtual step on_message(target_context& ctx, const typed_message& m);
  virtual step on_timeout(target_context& ctx, uint64_t timer_id);
  virtual step on_other(target_context& ctx, caf::message& m);
  /// True for a side that finishes in on_start (answers its first message at once)
  /// and uses no timers and no self(): the dispatcher then runs it on the receiving
  /// thread, with no actor of its own (ping's target). Its context has mailbox 0;
  /// returning wait from on_start, or asking for a timer or self(), fails the op.
  virtual bool runs_inline() const { return false; }
};

/// The result of an op, once: the origin's `step::done` message or the error.
using op_result = caf::expected<caf::message>;

/// A launched op: wait for it, or attach a continuation. Copies share the op.
class op_handle {
public:
  struct shared;
  explicit op_handle(std::shared_ptr<shared> state);
  /// A handle whose op is already over, e.g. work done locally without an op.
  static op_handle finished(op_result result);

  /// Blocks until the op has its result.
  op_result get() const;
  /// Blocks up to `timeout`; nothing if the op is still running.
  std::optional<op_result> get_for(std::chrono::milliseconds timeout) const;
  bool ready() const;
  /// Calls `continuation` with the result once it is there: at once if it already
  /// is, else on the thread that completes the op (keep it short; do not block).
  /// From an actor, deliver to a response promise or send yourself a message.
  void then(std::function<void(const op_result&)> continuation) const;
  /// The origin actor (its mailbox); null if the op could not start, or if its
  /// origin runs without an actor (origin_side::runs_inline).
  caf::actor origin() const;
  /// Sends `m` to the origin side's `on_trigger`.
  void trigger(caf::message m) const;

private:
  std::shared_ptr<shared> state_;
};

struct op_options {
  /// 0: the node's `ops.deadline_ms`.
  std::chrono::milliseconds deadline{0};
};

/// The op types a node knows. Lookups take no lock (types can be added after start;
/// they are never removed).
class op_registry {
public:
  using target_factory = std::function<std::unique_ptr<target_side>()>;

  op_registry();
  ~op_registry();
  op_registry(const op_registry&) = delete;
  op_registry& operator=(const op_registry&) = delete;

  /// Adds an op type. Adding the same name again changes nothing; a different name
  /// with the same id is an error that names both.
  caf::error add(std::string name, target_factory make_target);

  template <class Op>
  caf::error add() {
    return add(Op::name, [] { return std::make_unique<typename Op::target>(); });
  }

  struct entry {
    std::string name;
    op_id id;
    target_factory make_target;
  };
  /// The op type with id `id`, or null.
  const entry* find(op_id id) const;
  /// Every registered op type, in registration order (a snapshot).
  std::vector<const entry*> all() const;

private:
  struct table;
  std::unique_ptr<table> table_;
};

/// Launches an op whose origin side is `origin` on `targets`. Fails (in the handle)
/// when the op type is not registered on this node or the node is not running.
op_handle launch(node& n, std::string_view name, std::unique_ptr<origin_side> origin,
                 std::vector<std::string> targets, op_options options = {});

template <class Op, class... Args>
op_handle launch(node& n, std::vector<std::string> targets, Args&&... args) {
  return launch(n, Op::name,
                std::make_unique<typename Op::origin>(std::forward<Args>(args)...),
                std::move(targets));
}

template <class Op, class... Args>
op_handle launch_with(node& n, op_options options, std::vector<std::string> targets,
                      Args&&... args) {
  return launch(n, Op::name,
                std::make_unique<typename Op::origin>(std::forward<Args>(args)...),
                std::move(targets), options);
}

/// One op side running on this node, for introspection.
struct inflight_op {
  std::string name;
  uint64_t mailbox = 0;
  std::string side; ///< "origin" or "target"
  std::string state;
  std::chrono::milliseconds age{0};
};

// -- wiring (used by troupe::node) ------------------------------------------------

/// The message both sides and the dispatcher exchange: the transport's op frame,
/// which crosses nodes in the envelope itself (no CAF serialization; its payload is read
/// in place). Messages go to the receiving node's dispatcher, which hands them to the
/// side named by `to` (0: a start, for the dispatcher), and without a sender: no proxy
/// of a short-lived side actor is made on either node. A start's `watch` is the origin
/// node's dispatcher (answers go there); a failure's `code` is a troupe::errc (0:
/// provider_failed).
using op_message = transport::op_frame;

/// What an op_message is (its `kind`).
namespace op_kind {
constexpr uint8_t start = 1;
constexpr uint8_t data = 2;
constexpr uint8_t end = 3;
constexpr uint8_t failure = 4;
} // namespace op_kind

/// Registers op_message; every node calls it before its actor system starts.
void register_op_types(caf::actor_system_config& cfg);

/// The key a node's op dispatcher is published under.
constexpr const char* dispatcher_key = "troupe.ops";

/// Bytes op types keep on a node beyond single ops (scatter's windows, DHT values),
/// against the node's `ops.store_max_bytes`: reserved before the bytes come (so a
/// refusal comes before anything moves), released when they go.
class kept_bytes {
public:
  explicit kept_bytes(uint64_t limit) : limit_(limit) {}
  /// An error (troupe.refused, naming the config key) if `bytes` more do not fit.
  caf::error reserve(uint64_t bytes);
  void release(uint64_t bytes) { used_ -= bytes; }
  uint64_t used() const { return used_.load(); }
  uint64_t limit() const { return limit_; }

private:
  std::atomic<uint64_t> used_{0};
  uint64_t limit_;
};

/// The op framework of one node: its registry, its dispatcher, the ops in flight.
class op_runtime {
public:
  op_runtime();
  ~op_runtime();
  op_registry& registry() { return registry_; }

  /// Spawns the dispatcher and the directory of other nodes' dispatchers.
  void start(node& n);

  /// What a blocking caller polls the transport through while it waits for an op
  /// (op_handle::get): the middleman while the node runs, null once it stops. Hold
  /// `mutex` shared while using it; stop() takes it exclusively.
  struct poll_gate {
    std::shared_mutex mutex;
    transport::middleman* transport = nullptr;
  };
  std::shared_ptr<poll_gate> gate() const { return gate_; }
  /// Stops them (in-flight ops are failed by their actors' ends).
  void stop();

  /// What op types keep on this node (null before start).
  std::shared_ptr<kept_bytes> kept() const;

  /// Copies (null once stopped): op actors read them while the node may be stopping.
  caf::actor directory() const;
  caf::actor dispatcher() const;

  /// Node-local state op types share across their instances (a store, a cache):
  /// the `T` under `key`, default-constructed on first use, dropped when the node
  /// stops. Thread-safe. Asking for `key` as another type is a logic error (thrown).
  template <class T>
  std::shared_ptr<T> local(const std::string& key) {
    std::lock_guard<std::mutex> guard{mtx_};
    auto& slot = locals_[key];
    if (!slot.object) {
      slot.type = typeid(T);
      slot.object = std::make_shared<T>();
    } else if (slot.type != typeid(T)) {
      throw std::logic_error("op-local state \"" + key + "\" has another type");
    }
    return std::static_pointer_cast<T>(slot.object);
  }

  /// The `T` under `key` if there is one (of that type), else null: for keys that
  /// come off the network, which must not create state.
  template <class T>
  std::shared_ptr<T> find_local(const std::string& key) {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = locals_.find(key);
    if (i == locals_.end() || i->second.type != typeid(T))
      return nullptr;
    return std::static_pointer_cast<T>(i->second.object);
  }

  std::vector<inflight_op> inflight() const;

  /// For the deadline ticker: the sides whose deadline has passed at `now`; sets
  /// `next` to the earliest deadline still pending (time_point::max() if none).
  /// `tick_for` is when the calling tick was due; whether the ticker should schedule
  /// a tick for `next` (only one chain of ticks runs).
  bool take_expired(std::chrono::steady_clock::time_point now,
                    std::chrono::steady_clock::time_point tick_for,
                    std::vector<caf::actor>& expired,
                    std::vector<std::shared_ptr<detail::inline_origin>>& expired_inline,
                    std::chrono::steady_clock::time_point& next);

  /// Other nodes' dispatchers the directory has located and whose nodes live: an
  /// origin takes one from here without a request to the directory.
  caf::actor known_dispatcher(const std::string& uri) const;
  /// A node's dispatcher is gone (that node died): every side of this node is told,
  /// and those with a peer there end (sides do not monitor remote nodes per op).
  void tell_sides_node_down(const caf::actor_addr& dispatcher, const caf::error& reason);
  /// The op side (origin or target actor) of this node with mailbox `mailbox`, or null
  /// (it ended, or it is no op side).
  caf::actor side(uint64_t mailbox) const;
  void remember_dispatcher(const std::string& uri, caf::actor dispatcher);
  /// Its node is gone (the directory monitors every dispatcher it located).
  void forget_dispatcher(const caf::actor_addr& dispatcher);

  /// Called by the op actors. `deadline`: when the side receives its deadline
  /// message (one timer per node for all sides: see deadline_ticker in ops.cpp).
  /// Keeps `side_actor` alive until untrack (its own end): messages reach a side by
  /// its mailbox, through the dispatcher, so nobody else holds a reference to it.
  void track(const caf::actor& side_actor, std::string name, const char* side,
             std::chrono::steady_clock::time_point deadline);
  /// The same for an origin without an actor (origin_side::runs_inline).
  void track_inline(std::shared_ptr<detail::inline_origin> origin, uint64_t mailbox,
                    std::string name, std::chrono::steady_clock::time_point deadline);
  /// The inline origin with mailbox `mailbox`, or null.
  std::shared_ptr<detail::inline_origin> inline_side(uint64_t mailbox) const;
  void set_state(uint64_t mailbox, std::string state);
  void untrack(uint64_t mailbox);

  /// Counters: "launched", "completed", "failed", "targets_started",
  /// "unknown_op_id", "stray_messages".
  void count(const char* what);
  std::map<std::string, uint64_t> counters() const;

private:
  struct tracked {
    caf::actor actor; // strong (see track); stop() ends the op actors still running
    std::shared_ptr<detail::inline_origin> inline_origin; // or this, without an actor
    std::string name;
    const char* side;
    std::string state;
    std::chrono::steady_clock::time_point started;
  };
  void track_entry(uint64_t mailbox, tracked entry,
                   std::chrono::steady_clock::time_point deadline);
  op_registry registry_;
  caf::actor dispatcher_;
  caf::actor directory_;
  caf::actor ticker_;
  std::shared_ptr<kept_bytes> kept_; // guarded by mtx_
  std::shared_ptr<poll_gate> gate_ = std::make_shared<poll_gate>();
  mutable std::mutex mtx_;
  std::map<uint64_t, tracked> inflight_;   // guarded by mtx_
  std::map<std::string, uint64_t> counts_; // guarded by mtx_
  struct local_slot {
    std::type_index type = typeid(void);
    std::shared_ptr<void> object;
  };
  std::map<std::string, local_slot> locals_;      // guarded by mtx_
  std::map<std::string, caf::actor> dispatchers_; // guarded by mtx_
  // Deadlines by time (mailbox ids: a finished side's entry just finds nothing).
  using deadline_entry = std::pair<std::chrono::steady_clock::time_point, uint64_t>;
  std::priority_queue<deadline_entry, std::vector<deadline_entry>, std::greater<>>
    deadlines_; // guarded by mtx_
  /// When the ticker's pending tick is due (max: none pending).
  std::chrono::steady_clock::time_point ticker_due_ =
    std::chrono::steady_clock::time_point::max(); // guarded by mtx_
};

} // namespace troupe::ops
