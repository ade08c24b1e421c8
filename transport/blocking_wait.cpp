#include "transport/blocking_wait.hpp"

#include <thread>

#include <caf/actor_system.hpp>
#include <caf/blocking_actor.hpp>
#include <caf/resumable.hpp>
#include <caf/scheduler/abstract_coordinator.hpp>

#include "base/error.hpp"
#include "transport/detail/cpu_relax.hpp"
#include "transport/middleman.hpp"
#include "transport/scheduler.hpp"

namespace troupe::transport {

namespace {

thread_local bool waiter_active = false;
thread_local caller_execution_unit* this_thread_unit = nullptr;

/// How many resumes a caller's thread does per run before it hands the rest over.
constexpr size_t max_caller_resumes = 64;

} // namespace

// -- caller_execution_unit -------------------------------------------------------------

caller_execution_unit::caller_execution_unit(caf::actor_system& sys)
  : caf::execution_unit(&sys) {
}

caller_execution_unit::~caller_execution_unit() {
  for (auto* job : jobs_)
    system().scheduler().enqueue(job); // the reference goes with it
}

void caller_execution_unit::exec_later(caf::resumable* job) {
  jobs_.push_back(job); // with the reference its enqueuer took
}

bool caller_execution_unit::run() {
  if (running_ || jobs_.empty())
    return false; // an actor running here enqueued: its job runs in the outer loop
  running_ = true;
  size_t resumes = 0;
  while (!jobs_.empty()) {
    auto* job = jobs_.front();
    jobs_.erase(jobs_.begin());
    if (++resumes > max_caller_resumes) {
      system().scheduler().enqueue(job);
      continue;
    }
    // As CAF's workers do: keep the reference while the job wants more, drop it once
    // it is done or waits for mail.
    switch (job->resume(this, 50)) {
      case caf::resumable::resume_later:
        jobs_.push_back(job);
        break;
      case caf::resumable::done:
      case caf::resumable::awaiting_message:
      case caf::resumable::shutdown_execution_unit:
        caf::intrusive_ptr_release(job);
        break;
    }
  }
  running_ = false;
  return true;
}

caller_execution_unit* caller_execution_unit::on_this_thread(caf::actor_system& sys) {
  auto* unit = this_thread_unit;
  return unit != nullptr && &unit->system() == &sys ? unit : nullptr;
}

// -- blocking_waiter --------------------------------------------------------------------

blocking_waiter::blocking_waiter(middleman& mm)
  : mm_(mm), outer_(!waiter_active), unit_(mm.system()), enclosing_unit_(this_thread_unit) {
  waiter_active = true;
  this_thread_unit = &unit_;
}

blocking_waiter::~blocking_waiter() {
  unit_.run(); // what arrived for it after the last poll
  this_thread_unit = enclosing_unit_;
  if (outer_)
    waiter_active = false;
}

bool blocking_waiter::active_on_this_thread() {
  return waiter_active;
}

caf::error blocking_waiter::timeout_error(std::chrono::milliseconds timeout) {
  return make_error(errc::timeout,
                    "no answer within " + std::to_string(timeout.count()) + " ms");
}

void blocking_waiter::discard_mail(caf::blocking_actor& self) {
  while (self.has_next_message())
    self.next_message();
}

void blocking_waiter::wait_for_mail(caf::blocking_actor& self) {
  poll_until([&] { return !self.mailbox().empty(); });
}

bool blocking_waiter::poll_until(const std::function<bool()>& done) {
  // Poll first; when another thread holds the worker lock (a spinning worker), pause
  // and then yield: it delivers the answer, and may need this core.
  constexpr std::chrono::microseconds pause_window{5};
  auto window = mm_.spin_window();
  auto start = std::chrono::steady_clock::now();
  caller_polls(mm_.system());
  for (;;) {
    if (done()) {
      caller_stops_polling(mm_.system(), true);
      return true;
    }
    auto waited = std::chrono::steady_clock::now() - start;
    if (waited >= window) {
      caller_stops_polling(mm_.system(), false);
      return false;
    }
    bool progressed = mm_.poll_once();
    // Outside the poll (which holds the transport's lock): the actors it woke.
    if (unit_.run() || progressed)
      continue;
    if (waited < pause_window)
      detail::cpu_relax();
    else
      std::this_thread::yield();
  }
}

} // namespace troupe::transport
