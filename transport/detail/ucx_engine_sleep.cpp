// When pollers poll and when they sleep (detail/ucx_engine_impl.hpp): the engine's own
// thread spinning after activity or standing by for an external driver, and arming the
// worker before a sleep on its event fd, by that thread or by an external poller.

#include "transport/detail/ucx_engine_impl.hpp"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <sys/epoll.h>
#include <thread>

#include "transport/detail/cpu_relax.hpp"

namespace troupe::transport::detail {

namespace {

/// How long the engine's own thread sleeps in epoll when nothing happens: bounds how late
/// it notices a stop request that raced with arming the worker.
constexpr int idle_wait_ms = 100;

} // namespace

void engine::impl::run_own_progress() {
  // Sleeping in epoll costs a wakeup (tens of microseconds on a small VM) per message
  // in a request/response exchange, so after any activity the thread keeps polling
  // for `spin_window` before it arms the worker and sleeps.
  auto last_activity = std::chrono::steady_clock::now();
  while (!stop_requested.load(std::memory_order_acquire)) {
    lock();
    bool busy = round();
    unlock();
    if (opts.busy_poll)
      continue;
    auto now = std::chrono::steady_clock::now();
    if (busy)
      last_activity = now;
    else if (now - last_activity >= opts.spin_window)
      wait_for_events();
    else
      std::this_thread::yield(); // let a runnable actor thread have this core
  }
}

void engine::impl::run_standby() {
  // The scheduler's workers poll when idle and sleep on the worker's event fd. When
  // all of them are busy (a long or blocking handler), nobody polls: this thread
  // notices that no round ran for `standby_after` and polls until things are quiet.
  // While a worker sleeps on the event fd it looks rarely.
  auto seen = round_count.load();
  while (!stop_requested.load(std::memory_order_acquire)) {
    auto period =
      armed.load() != 0 ? std::chrono::microseconds{20000} : opts.standby_after;
    {
      std::unique_lock<std::mutex> guard{standby_mtx};
      standby_cv.wait_for(guard, period, [this] { return stop_requested.load(); });
    }
    if (stop_requested.load())
      break;
    auto now_rounds = round_count.load();
    if (now_rounds != seen || armed.load() != 0) {
      seen = now_rounds;
      continue;
    }
    standby_count.fetch_add(1, std::memory_order_relaxed);
    auto last_activity = std::chrono::steady_clock::now();
    for (;;) {
      if (!try_lock())
        break; // somebody else polls again
      bool busy = round();
      unlock();
      auto now = std::chrono::steady_clock::now();
      if (busy)
        last_activity = now;
      else if (now - last_activity >= opts.spin_window || armed.load() != 0)
        break;
      std::this_thread::yield();
    }
    seen = round_count.load();
  }
}

void engine::impl::wait_for_events() {
  auto fd = -1;
  {
    lock();
    armed.fetch_add(1);
    // ucp_worker_arm says BUSY when events are pending: then progress again.
    if (pending.load() == 0 && !needs_progress && rma_in_flight == 0
        && ucp_worker_arm(worker) == UCS_OK)
      fd = epoll_fd;
    // Through unlock: a post that found the lock taken while we armed is signalled
    // there (we count as armed), so the epoll below returns at once for it.
    unlock(false);
  }
  if (fd >= 0) {
    epoll_event ev;
    auto t0 = std::chrono::steady_clock::now();
    int n = ::epoll_wait(fd, &ev, 1, idle_wait_ms);
    ++sleeps;
    if (n == 0)
      ++sleep_timeouts;
    slept_us +=
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
        .count();
  }
  armed.fetch_sub(1);
}

int engine::begin_sleep() {
  auto& d = *impl_;
  // A sender holds the lock for a moment only: wait that long for it.
  bool got = false;
  for (int i = 0; i < 256 && !(got = d.try_lock()); ++i)
    cpu_relax();
  if (!got)
    return -2;
  if (!d.running.load(std::memory_order_relaxed)) {
    d.unlock(false);
    return -2;
  }
  d.armed.fetch_add(1);
  int fd = -1;
  if (d.pending.load() == 0 && !d.needs_progress && d.rma_in_flight == 0
      && ucp_worker_arm(d.worker) == UCS_OK)
    fd = d.worker_fd;
  else
    d.armed.fetch_sub(1);
  d.unlock(false);
  return fd;
}

void engine::end_sleep() {
  impl_->armed.fetch_sub(1);
}

bool engine::sleeper_armed() const {
  return impl_->armed.load() != 0;
}

uint64_t engine::standby_polls() const {
  return impl_->standby_count.load(std::memory_order_relaxed);
}

} // namespace troupe::transport::detail
