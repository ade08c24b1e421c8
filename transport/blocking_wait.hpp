#pragma once
// Blocking callers (a scoped_actor on a thread of its own: tools, tests, the group
// client handle) wait for an answer on a condition variable, and being woken costs
// tens of microseconds on a small VM: more than a round trip. A caller that waits
// through a `blocking_waiter` polls the transport itself for a short while instead;
// an answer that comes meanwhile is delivered on the caller's own thread, and no
// thread sleeps or is woken on the way (transport/README.md, "Threads").

#include <chrono>

#include <caf/fwd.hpp>

namespace troupe::transport {

class middleman;

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

  /// Whether the calling thread is inside a waiter (its sends need no helper).
  static bool active_on_this_thread();

private:
  middleman& mm_;
  bool outer_;
};

} // namespace troupe::transport
