// The jobs a leaf instance runs (instance_state.hpp): no-ops, sleeps timed against
// CAF's timer lateness, shell commands and C++ job types on threads of their own, and
// at-most-once starts for jobs that are not idempotent.
#include "actors/offload/detail/instance_state.hpp"

#include <thread>

#include <algorithm>
#include <chrono>
#include <csignal>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>

#include "actors/offload/detail/instance_support.hpp"
#include "base/error.hpp"
#include "base/log.hpp"
#include "actors/offload/shell_runner.hpp"
#include "runtime/job_types.hpp"

namespace troupe::offload::detail {

void finish_job(instance_actor* self, uint64_t id, job_outcome how, int exit_status,
                std::string output) {
  auto& st = self->state;
  auto it = st.running.find(id);
  if (it == st.running.end())
    return;
  auto r = result_of(it->second.what, how, exit_status, std::move(output), st.spec.path);
  r.start_ns = it->second.start_ns;
  r.end_ns = now_ns();
  st.running.erase(it);
  ++st.status.done;
  st.out_results.push_back(std::move(r));
  schedule_flush(self);
  // A job that ends inside run_more's loop (a no-op) leaves the next one to that loop:
  // calling it again from here would recurse once per queued job.
  if (!st.in_run_more) {
    run_more(self);
    maybe_pull(self);
  }
}

namespace {

std::vector<unsigned> leaf_cpus(const instance_spec& spec) {
  std::vector<unsigned> cpus;
  unsigned n = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned k = 0; k < spec.cores; ++k)
    cpus.push_back((spec.first_cpu + k) % n);
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  return cpus;
}

// Runs `work` (it may block: a fork and wait, a job type) on a thread of its own; its
// exit status and output finish job `id` at `self`.
void finish_on_own_thread(instance_actor* self, uint64_t id,
                          std::function<job_outcome_of_type()> work) {
  auto leaf = caf::actor_cast<caf::actor>(self);
  self->system().spawn<caf::detached>(
    [leaf, id, work = std::move(work)](caf::event_based_actor* runner) {
      auto outcome = work();
      runner->send(leaf, finish_atom::value, id, int32_t{outcome.exit_status}, outcome.output);
    });
}

void launch_job(instance_actor* self, running_job& rj) {
  auto& what = rj.what;
  rj.start_ns = now_ns();
  rj.steady_start_ns = steady_ns();
  auto id = what.id;
  switch (what.what()) {
    case job_kind::noop:
      finish_job(self, id, job_outcome::succeeded, 0, {});
      return;
    case job_kind::sleep: {
      // CAF's timer fires late (~0.3 ms here): ask for the duration less the lateness
      // seen so far; on_sleep_done never lets a sleep end early.
      auto lateness = static_cast<uint64_t>(std::max(0.0, self->state.timer_lateness_us));
      auto ask = what.duration_us > lateness ? what.duration_us - lateness : 0;
      self->delayed_send(self, std::chrono::microseconds{ask}, sleep_done_atom::value, id,
                         rj.steady_start_ns + static_cast<int64_t>(ask) * 1000);
      return;
    }
    case job_kind::shell: {
      // fork/exec and the wait block: on a thread of their own.
      run_options opts;
      opts.cpus = leaf_cpus(self->state.spec);
      opts.env.emplace_back("TROUPE_JOB_ID", std::to_string(id));
      opts.env.emplace_back("TROUPE_INSTANCE", self->state.spec.path);
      auto shells = self->state.shells;
      auto pgid = std::make_shared<int>(0);
      opts.on_start = [shells, pgid](int pid) {
        *pgid = pid;
        shells->add(pid);
      };
      finish_on_own_thread(self, id, [command = what.command, opts, shells, pgid] {
        auto outcome = run_shell(command, opts);
        shells->remove(*pgid);
        return job_outcome_of_type{outcome.exit_status,
                                   outcome.error.empty() ? outcome.output : outcome.error};
      });
      return;
    }
    case job_kind::custom: {
      auto* types = detail::job_types_of(*self->state.env);
      auto fn = types ? types->find(what.command) : std::nullopt;
      if (!fn)
        break;
      job_call call{id, what.argument, self->state.spec.path, self->state.jobs_stop};
      finish_on_own_thread(self, id, [call, fn = std::move(*fn)]() -> job_outcome_of_type {
        try {
          return fn(call);
        } catch (const std::exception& e) {
          return {1, std::string{"the job type threw: "} + e.what()};
        }
      });
      return;
    }
  }
  finish_job(self, id, job_outcome::failed, 1,
             "job type '" + what.command + "' is not registered on instance "
               + self->state.spec.path);
}

} // namespace

void run_more(instance_actor* self) {
  auto& st = self->state;
  if (!st.is_leaf() || st.in_run_more)
    return;
  st.in_run_more = true;
  while (!st.queue.empty() && st.running.size() < st.spec.cores) {
    auto [next, queued_at] = std::move(st.queue.front());
    st.queue.pop_front();
    ++st.status.dequeued;
    st.status.queue_wait_ns += now_ns() - queued_at;
    auto id = next.id;
    auto& rj = st.running[id];
    rj.what = std::move(next);
    if (rj.what.idempotent || st.is_root()) {
      // Idempotent: starts reported lazily. At a root that is its own leaf there is
      // nobody above to record the start.
      if (!st.is_root()) {
        st.out_started.push_back(id);
        schedule_flush(self);
      }
      launch_job(self, rj);
      continue;
    }
    // At most once: every instance above records the start before it happens.
    self->request(st.parent, pull_timeout, may_start_atom::value, id)
      .then(
        [self, id](bool granted) {
          auto it = self->state.running.find(id);
          if (it == self->state.running.end())
            return;
          if (granted)
            launch_job(self, it->second);
          else
            finish_job(self, id, job_outcome::lost, -1,
                       "its lease was taken back before it could start");
        },
        [self, id](caf::error&) {
          // The parent is gone: this instance is about to quit; the job stays leased
          // above and is re-queued there. Its slot is free again meanwhile.
          self->state.running.erase(id);
          run_more(self);
        });
  }
  st.in_run_more = false;
  maybe_pull(self);
}

// A sleep job's timer fired (perhaps early: then it sleeps the rest).
void on_sleep_done(instance_actor* self, uint64_t id, int64_t due_ns) {
  auto& st = self->state;
  auto now = steady_ns();
  auto late_us = std::max(0.0, static_cast<double>(now - due_ns) / 1000.0);
  st.timer_lateness_us = 0.9 * st.timer_lateness_us + 0.1 * late_us;
  auto it = st.running.find(id);
  if (it == st.running.end())
    return;
  auto end =
    it->second.steady_start_ns + static_cast<int64_t>(it->second.what.duration_us) * 1000;
  if (now < end) { // woke early: sleep the rest (never shorter than asked)
    auto rest = (end - now + 999) / 1000;
    self->delayed_send(self, std::chrono::microseconds{rest}, sleep_done_atom::value, id,
                       now + rest * 1000);
    return;
  }
  finish_job(self, id, job_outcome::succeeded, 0, {});
}

} // namespace troupe::offload::detail
