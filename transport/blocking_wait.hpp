#pragma once
// Blocking callers (a scoped_actor on a thread of its own: tools, tests, the group
// client handle) wait for an answer on a condition variable, and being woken costs
// tens of microseconds on a small VM: more than a round trip. A caller that waits
// through a `blocking_waiter` polls the transport itself for a short while instead;
// an answer that comes meanwhile is delivered on the caller's own thread, and no
// thread sleeps or is woken on the way (transport/README.md, "Threads").

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

#include <caf/after.hpp>
#include <caf/blocking_actor.hpp>
#include <caf/execution_unit.hpp>
#include <caf/fwd.hpp>

namespace troupe::transport {

class middleman;

/// An execution unit that runs actors on a blocking caller's own thread. An event-based
/// actor that gets a message through it (an op's origin, launched from this thread or
/// answered while this thread polls) runs here at the next safe point (`run`), instead
/// of being handed to the scheduler, whose worker would have to be woken for it. A job
/// is never run inside the enqueue (which may happen with the transport's lock held).
class caller_execution_unit final : public caf::execution_unit {
public:
  explicit caller_execution_unit(caf::actor_system& sys);
  /// Hands what it did not run to the scheduler.
  ~caller_execution_unit() override;
  caller_execution_unit(const caller_execution_unit&) = delete;
  caller_execution_unit& operator=(const caller_execution_unit&) = delete;

  void exec_later(caf::resumable* job) override;

  /// Runs the jobs handed to it, and the jobs those hand to it, up to a bound (then
  /// the rest goes to the scheduler: a caller's thread is not a worker). True if it
  /// ran any.
  bool run();

  /// This thread's unit for `sys` (the innermost blocking_waiter's), or null.
  static caller_execution_unit* on_this_thread(caf::actor_system& sys);

private:
  std::vector<caf::resumable*> jobs_;
  bool running_ = false;
};

/// Scope a request in it: `blocking_waiter w{mm}; auto h = self->request(...);
/// w.wait_for_mail(*self.ptr()); h.receive(...)`. While it lives, this thread's sends
/// wake no scheduler worker to poll for the answer: the waiter polls.
class blocking_waiter {
public:
  explicit blocking_waiter(middleman& mm);
  ~blocking_waiter();
  blocking_waiter(const blocking_waiter&) = delete;
  blocking_waiter& operator=(const blocking_waiter&) = delete;

  /// Polls the transport until something is in `self`'s mailbox, for at most the
  /// transport's spin window. Call it on `self`'s own thread, between sending a
  /// request and receiving its answer; the receive then blocks only if nothing came.
  void wait_for_mail(caf::blocking_actor& self);

  /// Polls the transport, running on this thread what arrives for actors that the
  /// caller unit runs, until `done()` holds or the spin window passes. Returns done().
  bool poll_until(const std::function<bool()>& done);

  /// Receives the response `response_id` (a response handle's id()) to a request that
  /// `self` sent without a CAF timeout (caf::infinite): polls as wait_for_mail does,
  /// then blocks, `timeout` in all, and calls `on_value` or `on_error` once. A request
  /// with a CAF timeout has CAF's clock thread take part in it: ~18 us more per
  /// request here, more than the round trip. On timeout `on_error` gets
  /// troupe.timeout; a late answer then stays in `self`'s mailbox: a caller that
  /// makes more requests drops it first (discard_mail).
  template <class OnValue, class OnError>
  void receive_response(caf::blocking_actor& self, caf::message_id response_id,
                        std::chrono::milliseconds timeout, OnValue on_value,
                        OnError on_error) {
    auto start = std::chrono::steady_clock::now();
    wait_for_mail(self);
    auto left = std::max(std::chrono::milliseconds{0},
                         timeout
                           - std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now() - start));
    caf::blocking_actor::accept_one_cond rc;
    self.varargs_receive(rc, response_id, std::move(on_value), on_error,
                         caf::after(left) >> [&] {
                           auto err = timeout_error(timeout);
                           on_error(err);
                         });
  }

  /// Drops every message waiting in `self`'s mailbox (late answers of requests whose
  /// receive_response timed out). For a caller that receives nothing else.
  static void discard_mail(caf::blocking_actor& self);

  /// This waiter's execution unit: actors enqueued through it run on this thread.
  caller_execution_unit& unit() { return unit_; }

  /// Whether the calling thread is inside a waiter (its sends need no helper).
  static bool active_on_this_thread();

private:
  static caf::error timeout_error(std::chrono::milliseconds timeout);

  middleman& mm_;
  bool outer_;
  caller_execution_unit unit_;
  caller_execution_unit* enclosing_unit_;
};

} // namespace troupe::transport
