#pragma once
// What the op framework's pieces share (runtime/ops.cpp: registry, handles, launch and
// the runtime's bookkeeping; op_origin.cpp: origin sides; op_target.cpp: target sides,
// the dispatcher, the directory and the deadline ticker). Not part of the public API.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/behavior.hpp>
#include <caf/event_based_actor.hpp>
#include <kj/exception.h>

#include "base/error.hpp"
#include "runtime/ops.hpp"

namespace troupe::ops {

struct op_handle::shared {
  mutable std::mutex mtx;
  std::condition_variable done_cv;
  std::optional<op_result> result;                            // guarded by mtx
  std::vector<std::function<void(const op_result&)>> waiting; // guarded by mtx
  caf::actor origin;                                          // guarded by mtx
  std::weak_ptr<detail::inline_origin> inline_origin;        // or, guarded by mtx
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

namespace detail {

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

/// The longest deadline a target side accepts (a day, as `ops.deadline_ms` allows).
constexpr uint64_t max_deadline_ms = 86400 * 1000;

op_message make_op_message(op_id id, uint8_t kind, size_t index, typed_message payload);

/// Sends `m` to `dest` without a sender: the receiver needs no proxy of the sending
/// side (the message names it by its mailbox), and the sending actor's context runs
/// a local receiver next on the same thread.
void send_op(caf::local_actor* self, const caf::actor& dest, op_message m);

/// An op id as text: 0x and hex digits.
std::string hex_id(op_id id);

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

/// Spawns an origin side's actor; with `lazy`, it starts with its first message.
caf::actor spawn_origin(caf::actor_system& sys, bool lazy, op_runtime* rt,
                        const op_registry::entry* entry, std::shared_ptr<origin_side> logic,
                        std::vector<std::string> targets,
                        std::shared_ptr<op_handle::shared> handle,
                        std::chrono::milliseconds deadline);

/// An origin side that runs without an actor (origin_side::runs_inline): its events
/// come from whoever has them (the dispatcher, the ticker, the directory, a trigger)
/// and run one at a time on the thread that brings them, sending with `ctx`.
class inline_origin {
public:
  virtual ~inline_origin() = default;
  /// An op message for it (through the dispatcher).
  virtual void receive(op_message& m, caf::execution_unit* ctx) = 0;
  /// Its deadline passed: fails the op if it is not over, and the side goes.
  virtual void expire(caf::execution_unit* ctx) = 0;
  /// The node of `dispatcher` is gone.
  virtual void node_down(const caf::actor_addr& dispatcher, const caf::error& why,
                         caf::execution_unit* ctx) = 0;
  virtual void trigger(const caf::message& m) = 0;
  /// The node stops: fails the op with `why` if it is not over, and the side goes.
  virtual void stop(const caf::error& why) = 0;
};

/// Makes an inline origin (mailbox from `sys`'s actor ids), tracks it and runs its
/// on_start here, its first sends through `ctx`. `dispatchers`: every target's node's
/// dispatcher, known beforehand (an inline origin never asks the directory).
std::shared_ptr<inline_origin>
start_inline_origin(caf::actor_system& sys, caf::execution_unit* ctx, op_runtime* rt,
                    const op_registry::entry* entry, std::shared_ptr<origin_side> logic,
                    std::vector<std::string> targets, std::vector<caf::actor> dispatchers,
                    const std::shared_ptr<op_handle::shared>& handle,
                    std::chrono::milliseconds deadline);

/// The node's op dispatcher (published as dispatcher_key), the directory of other
/// nodes' dispatchers, and the deadline ticker.
caf::actor spawn_dispatcher(caf::actor_system& sys, op_runtime* rt, std::string address);
caf::actor spawn_directory(caf::actor_system& sys, op_runtime* rt, caf::actor locator);
caf::actor spawn_deadline_ticker(caf::actor_system& sys, op_runtime* rt);

} // namespace detail

} // namespace troupe::ops
