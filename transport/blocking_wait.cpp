#include "transport/blocking_wait.hpp"

#include <thread>

#include <caf/blocking_actor.hpp>

#include "transport/detail/cpu_relax.hpp"
#include "transport/middleman.hpp"

namespace troupe::transport {

namespace {

thread_local bool waiter_active = false;

} // namespace

blocking_waiter::blocking_waiter(middleman& mm) : mm_(mm), outer_(!waiter_active) {
  waiter_active = true;
}

blocking_waiter::~blocking_waiter() {
  if (outer_)
    waiter_active = false;
}

bool blocking_waiter::active_on_this_thread() {
  return waiter_active;
}

void blocking_waiter::wait_for_mail(caf::blocking_actor& self) {
  // Poll first; when another thread holds the worker lock (a spinning worker), pause
  // and then yield: it delivers the answer, and may need this core.
  constexpr std::chrono::microseconds pause_window{5};
  auto window = mm_.spin_window();
  auto start = std::chrono::steady_clock::now();
  for (;;) {
    if (!self.mailbox().empty())
      return;
    auto waited = std::chrono::steady_clock::now() - start;
    if (waited >= window)
      return;
    if (mm_.poll_once())
      continue;
    if (waited < pause_window)
      detail::cpu_relax();
    else
      std::this_thread::yield();
  }
}

} // namespace troupe::transport
