// The instance actor's queue (instance_state.hpp): pulls from the parent with
// credits, held pulls of its children, leases and what comes back when a child dies.
#include "actors/offload/detail/instance_state.hpp"

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

namespace troupe::offload::detail {

void flush(instance_actor* self) {
  auto& st = self->state;
  st.flush_scheduled = false;
  auto up = st.is_root() ? st.report_to : st.parent;
  if (!up)
    return;
  // Started notices first: the parent then knows a job started before it sees it done.
  if (!st.out_started.empty() && !st.is_root())
    self->send(up, started_atom::value, std::exchange(st.out_started, {}));
  st.out_started.clear();
  if (!st.out_results.empty())
    self->send(up, done_atom::value, std::exchange(st.out_results, {}));
}

void schedule_flush(instance_actor* self) {
  auto& st = self->state;
  if (st.out_results.size() + st.out_started.size() >= flush_batch) {
    flush(self);
    return;
  }
  if (!st.flush_scheduled) {
    st.flush_scheduled = true;
    self->delayed_send(self, flush_delay, flush_atom::value);
  }
}

// How many more jobs this instance wants from its parent.
uint64_t want(instance_actor* self) {
  auto& st = self->state;
  if (st.is_leaf()) {
    uint64_t window = uint64_t{st.spec.cores} * st.window_factor;
    uint64_t have = st.queue.size() + st.running.size();
    return have >= window ? 0 : window - have;
  }
  // An inner instance keeps its held children served plus a buffer as large as the
  // cores under it, so a child's next pull is answered without a trip further up.
  uint64_t demand = st.spec.cores;
  for (auto& h : st.held)
    demand += h.credits;
  return st.queue.size() >= demand ? 0 : demand - st.queue.size();
}

void accept_jobs(instance_actor* self, std::vector<job> jobs) {
  auto& st = self->state;
  auto t = now_ns();
  for (auto& j : jobs)
    st.queue.emplace_back(std::move(j), t);
  if (st.is_leaf())
    run_more(self);
  else
    serve_held(self);
}

void maybe_pull(instance_actor* self) {
  auto& st = self->state;
  if (st.is_root() || !st.parent || st.pull_pending || st.drained)
    return;
  auto credits = want(self);
  if (credits == 0)
    return;
  st.pull_pending = true;
  self
    ->request(st.parent, pull_timeout, need_job_atom::value,
              static_cast<uint32_t>(std::min<uint64_t>(credits, 1u << 20)))
    .then(
      [self](job_batch& batch) {
        auto& st = self->state;
        st.pull_pending = false;
        // A leaf that ran dry while waiting asks for a bigger window next time; one
        // that still had a backlog for every slot asks for a smaller one.
        if (st.is_leaf()) {
          if (st.queue.empty() && st.running.size() < st.spec.cores)
            st.window_factor = std::min(st.window_factor + 1, 16u);
          else if (st.queue.size() >= st.spec.cores && st.window_factor > 1)
            --st.window_factor;
        }
        if (batch.drained)
          st.drained = true;
        accept_jobs(self, std::move(batch.jobs));
        if (st.drained && !st.is_leaf())
          serve_held(self);
        maybe_pull(self);
      },
      [self](caf::error& err) {
        self->state.pull_pending = false;
        TROUPE_LOG_DEBUG("offload", self->state.spec.path << ": pull failed: " << describe(err));
      });
}

bool leases_outstanding(const instance_state& st) {
  for (auto& [child, leases] : st.leases)
    if (!leases.empty())
      return true;
  return false;
}

// Answers held pulls from the queue; tells them `drained` once nothing will come.
void serve_held(instance_actor* self) {
  auto& st = self->state;
  while (!st.held.empty()) {
    auto& h = st.held.front();
    if (st.queue.empty()) {
      // Drained only once no job can come back either: a lease still out may return
      // (its child dies) and must then find a child still asking.
      bool nothing_more = st.drained && !leases_outstanding(st);
      if (!nothing_more)
        break;
      h.promise.deliver(job_batch{{}, true});
      st.held.pop_front();
      continue;
    }
    job_batch batch;
    auto n = std::min<size_t>(h.credits, st.queue.size());
    auto& child_leases = st.leases[h.child];
    auto t = now_ns();
    for (size_t i = 0; i < n; ++i) {
      auto& [j, queued_at] = st.queue.front();
      ++st.status.dequeued;
      st.status.queue_wait_ns += t - queued_at;
      child_leases[j.id] = lease{j, false};
      batch.jobs.push_back(std::move(j));
      st.queue.pop_front();
    }
    h.promise.deliver(std::move(batch));
    st.held.pop_front();
  }
  maybe_pull(self);
}

caf::result<job_batch> on_need_job(instance_actor* self, uint32_t credits) {
  auto& st = self->state;
  auto child = self->current_sender();
  if (!child)
    return make_error(errc::refused, "need_job needs a sender to lease jobs to");
  auto addr = caf::actor_cast<caf::actor_addr>(child);
  if (st.leases.find(addr) == st.leases.end()) {
    st.leases[addr]; // known from now on: its death takes its leases back
    self->monitor(addr);
  }
  auto promise = self->make_response_promise<job_batch>();
  st.held.push_back({promise, addr, std::max<uint32_t>(credits, 1)});
  serve_held(self);
  return promise;
}

caf::result<bool> on_may_start(instance_actor* self, uint64_t id) {
  auto& st = self->state;
  auto addr = caf::actor_cast<caf::actor_addr>(self->current_sender());
  auto it = st.leases.find(addr);
  if (it == st.leases.end() || it->second.count(id) == 0)
    return false; // taken back: the asker is believed dead
  if (st.is_root()) {
    it->second[id].started = true;
    return true;
  }
  auto promise = self->make_response_promise<bool>();
  self->request(st.parent, pull_timeout, may_start_atom::value, id)
    .then(
      [self, promise, addr, id](bool granted) mutable {
        auto& leases = self->state.leases;
        auto child = leases.find(addr);
        if (!granted || child == leases.end() || child->second.count(id) == 0) {
          promise.deliver(false);
          return;
        }
        child->second[id].started = true;
        promise.deliver(true);
      },
      [promise](caf::error& err) mutable { promise.deliver(err); });
  return promise;
}

void on_child_done(instance_actor* self, std::vector<job_result>& results) {
  auto& st = self->state;
  auto addr = caf::actor_cast<caf::actor_addr>(self->current_sender());
  auto it = st.leases.find(addr);
  for (auto& r : results) {
    if (it != st.leases.end())
      it->second.erase(r.id);
    ++st.status.done;
    st.out_results.push_back(std::move(r));
  }
  schedule_flush(self);
  if (st.queue.empty() && !st.held.empty())
    serve_held(self); // the last lease back may drain the held pulls
}

void on_child_started(instance_actor* self, const std::vector<uint64_t>& ids) {
  auto& st = self->state;
  auto it = st.leases.find(caf::actor_cast<caf::actor_addr>(self->current_sender()));
  if (it == st.leases.end())
    return;
  for (auto id : ids) {
    auto l = it->second.find(id);
    if (l != it->second.end())
      l->second.started = true;
  }
  if (!st.is_root()) {
    st.out_started.insert(st.out_started.end(), ids.begin(), ids.end());
    schedule_flush(self);
  }
}

// A child died: every job leased to it comes back here (a started job that is not
// idempotent is reported lost instead: it may have run).
void on_child_down(instance_actor* self, const caf::actor_addr& child) {
  auto& st = self->state;
  auto it = st.leases.find(child);
  if (it == st.leases.end())
    return;
  std::vector<job> back;
  for (auto& [id, l] : it->second) {
    if (l.started && !l.leased.idempotent) {
      auto r = result_of(l.leased, job_outcome::lost, -1,
                         "instance below " + st.spec.path
                           + " died while it ran; not idempotent, so not run again",
                         st.spec.path);
      ++st.status.lost;
      ++st.status.done;
      st.out_results.push_back(std::move(r));
      continue;
    }
    if (l.started) {
      ++l.leased.runs_before;
      ++st.status.reruns;
    }
    ++st.status.requeued;
    back.push_back(std::move(l.leased));
  }
  st.leases.erase(it);
  // Its held pulls are answered (an unanswered one would wait forever if it lives).
  st.held.erase(std::remove_if(st.held.begin(), st.held.end(),
                               [&](held_pull& h) {
                                 if (h.child != child)
                                   return false;
                                 h.promise.deliver(
                                   make_error(errc::refused, "taken for dead by its parent"));
                                 return true;
                               }),
                st.held.end());
  // Re-queued jobs go first, in id order: they waited longest.
  std::sort(back.begin(), back.end(), [](const job& a, const job& b) { return a.id < b.id; });
  auto t = now_ns();
  for (auto rit = back.rbegin(); rit != back.rend(); ++rit)
    st.queue.emplace_front(std::move(*rit), t);
  if (!back.empty())
    TROUPE_LOG_INFO("offload", st.spec.path << ": a child died; " << back.size()
                                            << " of its jobs re-queued");
  if (!st.out_results.empty())
    schedule_flush(self);
  serve_held(self);
}

} // namespace troupe::offload::detail
