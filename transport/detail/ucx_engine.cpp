// The engine (its state: detail/ucx_engine_impl.hpp): construction, start and stop,
// the engine's thread, the worker lock, posted work and the rounds that run it.

#include "transport/detail/ucx_engine.hpp"

#include "transport/detail/cpu_relax.hpp"
#include "transport/detail/ucx_engine_impl.hpp"

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

namespace troupe::transport::detail {

// -- the lock and the loop -------------------------------------------------------------

namespace {

/// The engine whose worker lock this thread holds, if any: the lock is never taken
/// recursively (CAF calls proxies from inside the callbacks the holder runs).
thread_local const void* lock_held_by_this_thread = nullptr;

} // namespace

bool engine::impl::try_lock() {
  if (lock_held_by_this_thread == this)
    return false;
  if (locked.load(std::memory_order_relaxed)
      || locked.exchange(true, std::memory_order_acquire))
    return false;
  lock_held_by_this_thread = this;
  return true;
}

bool engine::impl::try_lock_for(std::chrono::microseconds patience) {
  if (try_lock())
    return true;
  if (patience.count() <= 0 || lock_held_by_this_thread == this)
    return false;
  auto deadline = std::chrono::steady_clock::now() + patience;
  do {
    for (int i = 0; i < 16; ++i) {
      cpu_relax();
      if (!locked.load(std::memory_order_relaxed) && try_lock())
        return true;
    }
  } while (std::chrono::steady_clock::now() < deadline);
  return false;
}

void engine::impl::lock() {
  // Holders keep it for one round or one send: a short spin, then yield.
  for (int i = 0; !try_lock(); ++i) {
    if (i < 64)
      cpu_relax();
    else
      std::this_thread::yield();
  }
}

void engine::impl::unlock(bool drain) {
  // Work posted while we held the lock and not run yet: a poller runs it now rather
  // than leave it to the next poll (it is in engine code, where that is safe; a
  // sender may be inside CAF, so it leaves it).
  // (Stop when nothing could be popped: a producer that counted its item but has not
  // linked it yet must not keep this thread spinning with the lock held; the check
  // after the release below signals a sleeper for it.)
  while (drain && pending.load() != 0 && running.load(std::memory_order_relaxed)) {
    if (!drain_posts())
      break;
    dispatch();
  }
  // A send that did not complete at once needs progress; a poller's next round
  // gives it that, anybody else's release wakes a sleeping poller.
  bool kick = (sends_in_progress || !rma_completions.empty()) && !drain;
  sends_in_progress = false;
  if (kick)
    needs_progress = true;
  lock_held_by_this_thread = nullptr;
  // Counted as a producer before letting go: shutdown (which needs the lock) waits
  // for producers before it destroys the worker this may still signal.
  producers.fetch_add(1);
  locked.store(false); // seq_cst: pairs with post()'s check of the lock
  // A post that came between the drain and the release found the lock taken: its
  // producer counts on the holder. If nobody takes the lock again soon, a sleeping
  // poller must wake for it.
  if ((kick || pending.load() != 0) && armed.load() != 0 && accepting_posts.load())
    ucp_worker_signal(worker);
  producers.fetch_sub(1);
}

bool engine::impl::round() {
  round_count.fetch_add(1, std::memory_order_relaxed);
  needs_progress = false;
  bool busy = ucp_worker_progress(worker) != 0;
  dispatch();
  busy = drain_posts() || busy;
  dispatch();
  return busy;
}

void engine::impl::run() {
  auto err = setup();
  if (!err.empty()) {
    shutdown();
    started.set_value(err);
    return;
  }
  running.store(true);
  started.set_value({});
  if (opts.driven_externally)
    run_standby();
  else
    run_own_progress();
  lock();
  shutdown();
  lock_held_by_this_thread = nullptr;
  locked.store(false);
}

bool engine::impl::drain_posts() {
  bool any = false;
  std::function<void()> fn;
  holding_sends = true;
  while (queue.pop(fn)) {
    pending.fetch_sub(1);
    fn();
    any = true;
  }
  holding_sends = false;
  send_all_held();
  return any;
}

namespace {

/// Hands every queued item to `handle`, including items that handlers queue meanwhile
/// (the queue is moved out first, so handlers may append to it safely).
template <class Queue, class F>
void drain(Queue& queue, F&& handle) {
  while (!queue.empty()) {
    auto batch = std::move(queue);
    queue.clear();
    for (auto& item : batch)
      handle(item);
  }
}

} // namespace

void engine::impl::dispatch() {
  drain(accepts, [this](ucp_conn_request_h request) { accept(request); });
  // Rendezvous receives the AM callbacks asked for.
  drain(rndv_to_start,
        [this](auto& pending) { start_rndv(pending.first, pending.second); });
  drain(drops, [this](auto& drop) { handler.on_drop(drop.first, drop.second); });
  drain(ready_to_deliver, [this](auto id) { deliver(id); });
  drain(rma_completions, [this](auto& state) { finish_rma(*state); });
  drain(fails, [this](auto& failed) { fail_connection(failed.first, failed.second); });
}

// -- engine ---------------------------------------------------------------------------

engine::engine(engine_handler& handler, engine_options options)
  : impl_(std::make_unique<impl>(handler, std::move(options))) {
}

engine::~engine() {
  stop();
}

std::string engine::start() {
  auto result = impl_->started.get_future();
  impl_->thread = std::thread{[this] { impl_->run(); }};
  auto err = result.get();
  if (!err.empty())
    impl_->thread.join();
  return err;
}

void engine::stop() {
  if (!impl_->thread.joinable())
    return;
  impl_->stop_requested.store(true);
  { std::lock_guard<std::mutex> guard{impl_->standby_mtx}; }
  impl_->standby_cv.notify_all();
  post([] {}); // wakes the engine's thread if it sleeps on the worker
  impl_->thread.join();
}

bool engine::running() const {
  return impl_->running.load() && impl_->accepting_posts.load();
}

uint16_t engine::port() const {
  return impl_->bound_port;
}

bool engine::post(std::function<void()> fn) {
  return impl_->post(std::move(fn), true);
}

bool engine::post_quietly(std::function<void()> fn) {
  return impl_->post(std::move(fn), false);
}

void engine::flush_posts() {
  auto& d = *impl_;
  // If another thread holds the lock: a poller runs the posts before it lets go, a
  // sender signals a sleeping poller for them when it lets go (and a spinning one
  // polls anyway).
  if (d.pending.load() == 0 || !d.try_lock())
    return;
  if (d.running.load(std::memory_order_relaxed))
    d.drain_posts();
  d.unlock(false);
}

bool engine::impl::post(std::function<void()> fn, bool wake) {
  auto& d = *this;
  d.producers.fetch_add(1);
  if (!d.accepting_posts.load() || d.worker == nullptr) {
    d.producers.fetch_sub(1);
    return false;
  }
  // Counted before it is pushed: `pending` may count an item not in the queue yet,
  // never miss one that is. (Counted after, a holder could pop it first and bring
  // the count to 0 with another thread's item still queued; a direct send checking
  // has_posts() then overtook that item: per-pair order broke, seen by the order test
  // under ASan.)
  d.pending.fetch_add(1);
  d.queue.push(std::move(fn));
  // Whoever holds the lock runs it before letting go (unlock re-checks). Otherwise a
  // poller asleep on the worker must wake: ucp_worker_signal is the one worker call
  // that is safe from any thread, and it costs a system call, so only then.
  if (wake && d.armed.load() != 0 && !d.locked.load())
    ucp_worker_signal(d.worker);
  d.producers.fetch_sub(1);
  return true;
}

poll_outcome engine::poll() {
  auto& d = *impl_;
  if (!try_lock())
    return poll_outcome::taken;
  bool busy = d.round();
  d.unlock();
  return busy ? poll_outcome::busy : poll_outcome::idle;
}

bool engine::try_lock() {
  return try_lock_for(std::chrono::microseconds{0});
}

bool engine::try_lock_for(std::chrono::microseconds patience) {
  auto& d = *impl_;
  if (!d.try_lock_for(patience))
    return false;
  if (!d.running.load(std::memory_order_relaxed)) {
    d.unlock(false);
    return false;
  }
  return true;
}

void engine::unlock() {
  impl_->unlock(false);
}

bool engine::has_posts() const {
  return impl_->pending.load() != 0;
}

uint64_t engine::frames_batched() const {
  return impl_->frames_batched.load(std::memory_order_relaxed);
}

uint64_t engine::batches_sent() const {
  return impl_->batches_sent.load(std::memory_order_relaxed);
}

const engine_options& engine::options() const {
  return impl_->opts;
}

} // namespace troupe::transport::detail
