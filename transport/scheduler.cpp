#include "transport/scheduler.hpp"

#include <atomic>
#include <chrono>
#include <deque>
#include <mutex>
#include <poll.h>
#include <sys/eventfd.h>
#include <thread>
#include <unistd.h>
#include <utility>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/policy/unprofiled.hpp>
#include <caf/resumable.hpp>
#include <caf/scheduled_actor.hpp>
#include <caf/scheduler/coordinator.hpp>

#include "transport/detail/cpu_relax.hpp"
#include "transport/detail/ucx_engine.hpp"

namespace troupe::transport {

namespace {

using clock_type = std::chrono::steady_clock;
using detail::cpu_relax;

/// How long a worker sleeps at most: bounds how late it notices a job it could steal
/// from a busy worker that nobody woke it for.
constexpr int max_sleep_ms = 100;

/// How long a spinning worker only pauses between polls before it starts yielding.
constexpr std::chrono::microseconds pause_window{5};

/// How long a worker sleeps when it could not arm the UCX worker (a sender held the
/// lock at that moment) and nobody spins: it then looks again soon.
constexpr int unarmed_sleep_ms = 1;

thread_local caf::execution_unit* this_thread_worker = nullptr;
thread_local caf::execution_unit* this_thread_polling = nullptr;
// The actor whose turn runs on this worker (while an engine is attached), and how
// many messages to other nodes it sent in this turn (all but the first wait for the
// turn's end).
thread_local const caf::actor_control_block* this_thread_turn = nullptr;
thread_local unsigned this_thread_turn_sends = 0;

enum worker_state : int { running_job, awake, asleep };

/// The policy of caf::scheduler::coordinator: one job queue per worker (others steal
/// from its back), wakeups through an eventfd per worker, and the transport polled
/// by whichever worker is idle.
class progress_policy : public caf::policy::unprofiled {
public:
  struct coordinator_data {
    explicit coordinator_data(caf::scheduler::abstract_coordinator*) {}

    std::atomic<detail::engine*> engine{nullptr};
    std::atomic<int> engine_users{0}; // workers holding `engine` right now
    std::atomic<int> spinners{0};     // 0 or 1: the worker spinning on the engine
    std::atomic<int> waiters{0};      // callers polling the engine themselves
    std::atomic<size_t> next_worker{0};
    std::chrono::microseconds spin{50};
    bool busy_poll = false;
    std::atomic<uint64_t> sleeps{0}, armed_sleeps{0}, wakeups_sent{0}, handoffs{0};
  };

  struct worker_data {
    explicit worker_data(caf::scheduler::abstract_coordinator*) {}

    // CAF copies every worker's data from one prototype: each copy opens its own fd.
    worker_data(const worker_data&)
      : wakeup_fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}

    worker_data& operator=(const worker_data&) = delete;

    ~worker_data() {
      if (wakeup_fd >= 0)
        ::close(wakeup_fd);
    }

    std::mutex mtx;
    std::deque<caf::resumable*> jobs; // guarded by mtx
    std::atomic<size_t> size{0};      // jobs.size(), readable without the lock
    std::atomic<int> state{awake};
    int wakeup_fd = -1;
  };

  // -- enqueueing -------------------------------------------------------------------

  template <class Coordinator>
  void central_enqueue(Coordinator* self, caf::resumable* job) {
    // An awake worker takes it without a wakeup; otherwise one that sleeps is woken
    // (a busy one may be in a long handler).
    auto n = self->num_workers();
    auto first = self->data().next_worker.fetch_add(1, std::memory_order_relaxed);
    size_t chosen = first % n;
    int best = running_job;
    for (size_t i = 0; i < n; ++i) {
      auto id = (first + i) % n;
      auto state = self->worker_by_id(id)->data().state.load();
      if (state == awake) {
        chosen = id;
        break;
      }
      if (state == asleep && best != asleep) {
        chosen = id;
        best = asleep;
      }
    }
    push(self->worker_by_id(chosen), job, false);
  }

  template <class Worker>
  void external_enqueue(Worker* self, caf::resumable* job) {
    push(self, job, false);
  }

  template <class Worker>
  void internal_enqueue(Worker* self, caf::resumable* job) {
    push(self, job, true);
  }

  template <class Worker>
  void resume_job_later(Worker* self, caf::resumable* job) {
    push(self, job, true);
  }

  // -- an actor's turn -----------------------------------------------------------------

  template <class Worker>
  void before_resume(Worker* self, caf::resumable* job) {
    if (self->parent()->data().engine.load(std::memory_order_relaxed) != nullptr
        && job->subtype() == caf::resumable::scheduled_actor)
      this_thread_turn =
        caf::actor_control_block::from(static_cast<caf::scheduled_actor*>(job));
  }

  template <class Worker>
  void after_resume(Worker* self, caf::resumable*) {
    this_thread_turn = nullptr;
    auto sent = std::exchange(this_thread_turn_sends, 0u);
    if (sent < 2)
      return; // nothing waited
    // The turn's messages leave now, in batches (or the lock's holder sends them).
    auto& shared = self->parent()->data();
    if (auto e = use_engine(shared)) {
      e->flush_posts();
      release_engine(shared);
    }
  }

  // -- dequeueing -------------------------------------------------------------------

  template <class Worker>
  caf::resumable* dequeue(Worker* self) {
    this_thread_worker = self;
    auto& me = self->data();
    auto& shared = self->parent()->data();
    me.state.store(awake);
    bool spinning = false;
    auto found = [&](caf::resumable* job) {
      if (spinning)
        shared.spinners.store(0);
      me.state.store(running_job);
      return job;
    };
    auto idle_since = clock_type::now();
    for (;;) {
      if (auto job = take(self))
        return found(job);
      auto outcome = detail::poll_outcome::taken;
      if (auto e = use_engine(shared)) {
        this_thread_polling = self;
        outcome = e->poll();
        this_thread_polling = nullptr;
        release_engine(shared);
      }
      if (auto job = take_own(me)) {
        share_if_crowded(self);
        return found(job);
      }
      auto now = clock_type::now();
      if (outcome == detail::poll_outcome::busy)
        idle_since = now;
      bool keep_spinning = outcome == detail::poll_outcome::busy
                           || (outcome == detail::poll_outcome::idle
                               && (shared.busy_poll || now - idle_since < shared.spin));
      // A caller polling for its answer is this process's spinner: a worker spinning
      // beside it only takes a core that the peer's thread or the caller needs.
      if (!shared.busy_poll && shared.waiters.load() != 0)
        keep_spinning = false;
      if (keep_spinning && !spinning) {
        // One spinning worker per process: a second one only takes the other's core.
        int none = 0;
        spinning = shared.spinners.compare_exchange_strong(none, 1);
      }
      if (keep_spinning && spinning) {
        // Pause first (an answer on its way comes within microseconds), then yield
        // at every poll: on a box with more runnable threads than cores, the thread
        // this one waits for (a peer's, on the same core) must get to run.
        if (now - idle_since < pause_window)
          cpu_relax();
        else
          std::this_thread::yield();
        continue;
      }
      if (spinning) {
        shared.spinners.store(0);
        spinning = false;
      }
      sleep(self);
      // Woken is not activity: only a poll that finds something, or a job, makes this
      // worker spin again.
      idle_since = clock_type::now() - shared.spin;
    }
  }

  template <class Worker, class UnaryFunction>
  void foreach_resumable(Worker* self, UnaryFunction f) {
    while (auto job = take_own(self->data()))
      f(job);
  }

  template <class Coordinator, class UnaryFunction>
  void foreach_central_resumable(Coordinator*, UnaryFunction) {
    // Every job is in some worker's queue.
  }

  static void wake(coordinator_data& shared, worker_data& d) {
    uint64_t one = 1;
    auto written = ::write(d.wakeup_fd, &one, sizeof one);
    static_cast<void>(written); // a full counter already means "wake up"
    shared.wakeups_sent.fetch_add(1, std::memory_order_relaxed);
  }

  template <class Worker>
  static void push(Worker* self, caf::resumable* job, bool from_itself) {
    auto& d = self->data();
    {
      std::lock_guard<std::mutex> guard{d.mtx};
      d.jobs.push_back(job);
      d.size.fetch_add(1);
    }
    // seq_cst: a worker going to sleep stores its state, then looks at its queue.
    if (!from_itself && d.state.load() == asleep)
      wake(self->parent()->data(), d);
  }

  /// The worker's own jobs come from the front (in order), thieves take the newest
  /// from the back.
  static caf::resumable* take_from(worker_data& d, bool front) {
    if (d.size.load() == 0)
      return nullptr;
    std::lock_guard<std::mutex> guard{d.mtx};
    if (d.jobs.empty())
      return nullptr;
    caf::resumable* job = nullptr;
    if (front) {
      job = d.jobs.front();
      d.jobs.pop_front();
    } else {
      job = d.jobs.back();
      d.jobs.pop_back();
    }
    d.size.fetch_sub(1);
    return job;
  }

  static caf::resumable* take_own(worker_data& d) { return take_from(d, true); }

  template <class Worker>
  static caf::resumable* take(Worker* self) {
    if (auto job = take_own(self->data()))
      return job;
    auto p = self->parent();
    auto n = p->num_workers();
    for (size_t i = 1; i < n; ++i)
      if (auto job = take_from(p->worker_by_id((self->id() + i) % n)->data(), false))
        return job;
    return nullptr;
  }

  /// Wakes one sleeping worker other than `except`, unless one is awake (it looks
  /// at the queues and polls anyway).
  template <class Coordinator>
  static void wake_a_sleeper(Coordinator* c, const worker_data* except) {
    worker_data* sleeper = nullptr;
    for (size_t i = 0; i < c->num_workers(); ++i) {
      auto& other = c->worker_by_id(i)->data();
      if (&other == except)
        continue;
      auto state = other.state.load();
      if (state == awake)
        return;
      if (state == asleep && sleeper == nullptr)
        sleeper = &other;
    }
    if (sleeper != nullptr)
      wake(c->data(), *sleeper);
  }

  /// Wakes every worker (the engine they poll came or went).
  template <class Coordinator>
  static void wake_all(Coordinator* c) {
    for (size_t i = 0; i < c->num_workers(); ++i)
      wake(c->data(), c->worker_by_id(i)->data());
  }

private:
  /// A poll handed this worker more than the job it is about to run: a sleeping
  /// worker may take the rest.
  template <class Worker>
  static void share_if_crowded(Worker* self) {
    if (self->data().size.load() != 0)
      wake_a_sleeper(self->parent(), &self->data());
  }

public:
  static detail::engine* use_engine(coordinator_data& shared) {
    shared.engine_users.fetch_add(1);
    auto e = shared.engine.load();
    if (e == nullptr)
      shared.engine_users.fetch_sub(1);
    return e;
  }

  static void release_engine(coordinator_data& shared) {
    shared.engine_users.fetch_sub(1);
  }

private:

  template <class Worker>
  void sleep(Worker* self) {
    auto& me = self->data();
    auto& shared = self->parent()->data();
    // busy_poll: the transport is never left without a poller; without a spinner
    // (the last one just took a job), this worker goes back to poll instead.
    if (shared.busy_poll && shared.spinners.load() == 0
        && shared.engine.load() != nullptr)
      return;
    me.state.store(asleep);
    // Anything to run (ours, or stealable) that came before the state was visible?
    auto p = self->parent();
    for (size_t i = 0; i < p->num_workers(); ++i)
      if (p->worker_by_id(i)->data().size.load() != 0) {
        me.state.store(awake);
        return;
      }
    auto e = use_engine(shared);
    int ucx_fd = -1;
    int timeout_ms = max_sleep_ms;
    if (e != nullptr && shared.spinners.load() == 0 && shared.busy_poll) {
      // The spinner stopped since the check above (it took a job): under busy_poll
      // nobody sleeps on the transport, so this worker polls in its place.
      release_engine(shared);
      me.state.store(awake);
      return;
    }
    if (e != nullptr && !shared.busy_poll && shared.spinners.load() == 0
        && shared.waiters.load() == 0) {
      ucx_fd = e->begin_sleep();
      if (ucx_fd == -1) { // events are pending: poll them instead
        release_engine(shared);
        me.state.store(awake);
        return;
      }
      if (ucx_fd < 0)
        timeout_ms = unarmed_sleep_ms;
    }
    pollfd fds[2] = {{me.wakeup_fd, POLLIN, 0}, {ucx_fd, POLLIN, 0}};
    shared.sleeps.fetch_add(1, std::memory_order_relaxed);
    if (ucx_fd >= 0)
      shared.armed_sleeps.fetch_add(1, std::memory_order_relaxed);
    ::poll(fds, ucx_fd >= 0 ? 2 : 1, timeout_ms);
    if (ucx_fd >= 0)
      e->end_sleep();
    if (e != nullptr)
      release_engine(shared);
    me.state.store(awake);
    uint64_t count = 0;
    auto got = ::read(me.wakeup_fd, &count, sizeof count);
    static_cast<void>(got); // EAGAIN when nobody wrote: fine
  }
};

using progress_coordinator = caf::scheduler::coordinator<progress_policy>;

progress_coordinator* coordinator_of(caf::actor_system& sys) {
  return dynamic_cast<progress_coordinator*>(&sys.scheduler());
}

} // namespace

void use_progress_scheduler(caf::actor_system_config& cfg) {
  cfg.load<progress_coordinator>();
}

bool runs_progress_scheduler(caf::actor_system& sys) {
  return coordinator_of(sys) != nullptr;
}

caf::execution_unit* current_progress_worker() {
  return this_thread_worker;
}

caf::execution_unit* polling_progress_worker() {
  return this_thread_polling;
}

bool defer_until_turn_end(const caf::actor_control_block* sender) {
  if (sender == nullptr || sender != this_thread_turn)
    return false;
  // The first leaves at once: a turn that sends one message (a reply, the next
  // request) gains nothing by waiting. From the second on, they wait.
  return ++this_thread_turn_sends > 1;
}

unsigned sends_deferred_in_turn() {
  return this_thread_turn_sends > 0 ? this_thread_turn_sends - 1 : 0;
}

void nudge_progress_scheduler(caf::actor_system& sys) {
  if (auto c = coordinator_of(sys); c != nullptr && c->data().spinners.load() == 0)
    progress_policy::wake_a_sleeper(c, nullptr);
}

void caller_polls(caf::actor_system& sys) {
  if (auto c = coordinator_of(sys))
    c->data().waiters.fetch_add(1);
}

void caller_stops_polling(caf::actor_system& sys, bool answered) {
  auto c = coordinator_of(sys);
  if (c == nullptr)
    return;
  auto& shared = c->data();
  shared.waiters.fetch_sub(1);
  if (answered || shared.spinners.load() != 0)
    return;
  // A worker asleep on UCX's event fd receives the answer when it comes; otherwise
  // one is woken to poll (and sleep there).
  bool watched = false;
  if (auto e = progress_policy::use_engine(shared)) {
    watched = e->sleeper_armed();
    progress_policy::release_engine(shared);
  }
  if (!watched) {
    shared.handoffs.fetch_add(1, std::memory_order_relaxed);
    progress_policy::wake_a_sleeper(c, nullptr);
  }
}

progress_scheduler_stats progress_stats(caf::actor_system& sys) {
  progress_scheduler_stats s;
  if (auto c = coordinator_of(sys)) {
    s.sleeps = c->data().sleeps.load();
    s.armed_sleeps = c->data().armed_sleeps.load();
    s.wakeups_sent = c->data().wakeups_sent.load();
    s.waiter_handoffs = c->data().handoffs.load();
  }
  return s;
}

namespace detail {

void attach_engine(caf::actor_system& sys, engine* e) {
  auto c = coordinator_of(sys);
  if (c == nullptr)
    return;
  auto& shared = c->data();
  shared.spin = e->options().spin_window;
  shared.busy_poll = e->options().busy_poll;
  shared.engine.store(e);
  progress_policy::wake_all(c); // sleepers have not armed the new engine's fd
}

void detach_engine(caf::actor_system& sys) {
  auto c = coordinator_of(sys);
  if (c == nullptr)
    return;
  auto& shared = c->data();
  shared.engine.store(nullptr);
  progress_policy::wake_all(c); // workers asleep on its fd still count as users
  while (shared.engine_users.load() != 0)
    std::this_thread::yield();
}

} // namespace detail

} // namespace troupe::transport
