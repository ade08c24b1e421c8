// The instance actor (offload.hpp): a queue, leases to children, and at a leaf the
// jobs it runs. Child instances are started by a supervisor (actors/supervisor/) either
// here (in_process) or as actorhost processes (child_start.cpp).
#include "actors/offload/offload.hpp"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <deque>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>

#include "actors/offload/detail/instance_support.hpp"
#include "actors/offload/shell_runner.hpp"
#include "actors/supervisor/supervisor.hpp"
#include "base/error.hpp"
#include "base/log.hpp"
#include "runtime/job_types.hpp"
#include "runtime/locator.hpp"

namespace troupe::offload {

namespace {

using finish_atom = caf::atom_constant<caf::atom("ofinish")>;
using flush_atom = caf::atom_constant<caf::atom("oflush")>;
using sleep_done_atom = caf::atom_constant<caf::atom("oslept")>;
using tick_atom = caf::atom_constant<caf::atom("otick")>;

// How long completions wait to be sent up with others, and how many make a batch.
constexpr auto flush_delay = std::chrono::milliseconds{2};
constexpr size_t flush_batch = 512;
// A pull (or a start grant) the parent holds until it has jobs: no timeout; the
// parent's death answers it (the transport fails requests to a dead node at once).
const caf::duration pull_timeout{caf::infinite};

struct lease {
  job leased;
  bool started = false;
};

// Steady time in ns: sleeps are timed with it (a wall clock step must not end one early).
int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

struct running_job {
  job what;
  int64_t start_ns = 0;        // wall clock, for the CSV
  int64_t steady_start_ns = 0; // for sleeps
  bool granted = false; // started (not waiting for may_start)
};

struct held_pull {
  caf::response_promise promise;
  caf::actor_addr child;
  uint32_t credits = 0;
};

// The process groups of the shell jobs a leaf runs, so that they stop with it.
struct shell_groups {
  std::mutex mutex;
  std::set<int> running;

  void add(int pgid) {
    std::lock_guard<std::mutex> guard{mutex};
    running.insert(pgid);
  }
  void remove(int pgid) {
    std::lock_guard<std::mutex> guard{mutex};
    running.erase(pgid);
  }
  void kill_all() {
    std::lock_guard<std::mutex> guard{mutex};
    for (int pgid : running)
      ::kill(-pgid, SIGKILL);
  }
};

struct instance_state {
  instance_spec spec;
  std::shared_ptr<environment> env;
  caf::actor parent;    // empty at the root
  caf::actor report_to; // the root's completions go here
  caf::actor children_supervisor;
  caf::actor mpi_job; // the MPI job whose ranks are this instance's children, if any
  std::set<caf::actor_addr> mpi_ranks; // the ranks that said hello: its children
  // The same handle, for the functor that runs when the actor is gone (after its
  // state was destroyed).
  std::shared_ptr<caf::actor> supervisor_slot = std::make_shared<caf::actor>();
  bool exit_process = false;
  bool stopping = false; // told to exit; waiting for the children's supervisor
  caf::error stop_reason;
  bool closed = false;   // root: no more submissions
  bool drained = false;  // no job will come from above any more
  bool pull_pending = false;
  std::deque<std::pair<job, int64_t>> queue; // with the time it was queued here
  std::unordered_map<caf::actor_addr, std::unordered_map<uint64_t, lease>> leases;
  std::deque<held_pull> held;
  // Leaf: what runs here; the window of jobs it asks for adapts (see want()).
  std::unordered_map<uint64_t, running_job> running;
  unsigned window_factor = 2;
  // Going up, batched.
  std::vector<job_result> out_results;
  std::vector<uint64_t> out_started;
  bool flush_scheduled = false;
  bool in_run_more = false;
  // The bound on silence: when each child was last heard from; children taken for
  // dead for their silence, whose messages are dropped from then on.
  std::unordered_map<caf::actor_addr, std::chrono::steady_clock::time_point> last_heard;
  std::set<caf::actor_addr> silenced;
  double timer_lateness_us = 0; // how late CAF's timer fires, on average (sleep jobs)
  std::shared_ptr<shell_groups> shells = std::make_shared<shell_groups>();
  instance_status status;

  bool is_leaf() const { return spec.below.empty(); }
  bool is_root() const { return !parent && spec.parent_uri.empty(); }

  static inline const char* name = "troupe.offload";
};

using instance_actor = caf::stateful_actor<instance_state>;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

void maybe_pull(instance_actor* self);
void serve_held(instance_actor* self);

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

void run_more(instance_actor* self);

void finish_job(instance_actor* self, uint64_t id, job_outcome how, int exit_status,
                std::string output) {
  auto& st = self->state;
  auto it = st.running.find(id);
  if (it == st.running.end())
    return;
  job_result r;
  r.id = id;
  r.outcome = static_cast<uint8_t>(how);
  r.exit_status = exit_status;
  r.output = std::move(output);
  r.path = st.spec.path;
  r.submit_ns = it->second.what.submit_ns;
  r.start_ns = it->second.start_ns;
  r.end_ns = now_ns();
  r.runs = it->second.what.runs_before + 1;
  r.kind = it->second.what.kind;
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

std::vector<unsigned> leaf_cpus(const instance_spec& spec) {
  std::vector<unsigned> cpus;
  unsigned n = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned k = 0; k < spec.cores; ++k)
    cpus.push_back((spec.first_cpu + k) % n);
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  return cpus;
}

void launch_job(instance_actor* self, running_job& rj) {
  auto& what = rj.what;
  rj.granted = true;
  rj.start_ns = now_ns();
  rj.steady_start_ns = steady_ns();
  auto id = what.id;
  switch (what.what()) {
    case job_kind::noop:
      finish_job(self, id, job_outcome::succeeded, 0, {});
      return;
    case job_kind::sleep: {
      // CAF's timer fires late (~0.3 ms here): ask for the duration less the lateness
      // seen so far; wake_sleeper never lets a sleep end early.
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
      auto leaf = caf::actor_cast<caf::actor>(self);
      auto shells = self->state.shells;
      auto pgid = std::make_shared<int>(0);
      opts.on_start = [shells, pgid](int pid) {
        *pgid = pid;
        shells->add(pid);
      };
      self->system().spawn<caf::detached>(
        [leaf, id, command = what.command, opts, shells, pgid](caf::event_based_actor* runner) {
          auto outcome = run_shell(command, opts);
          shells->remove(*pgid);
          auto text = outcome.error.empty() ? outcome.output : outcome.error;
          runner->send(leaf, finish_atom::value, id, int32_t{outcome.exit_status}, text);
        });
      return;
    }
    case job_kind::custom: {
      auto* types = detail::job_types_of(*self->state.env);
      auto fn = types ? types->find(what.command) : std::nullopt;
      if (!fn)
        break;
      // A job type may block: on a thread of its own.
      auto leaf = caf::actor_cast<caf::actor>(self);
      job_call call{id, what.argument, self->state.spec.path};
      self->system().spawn<caf::detached>(
        [leaf, id, call, fn = std::move(*fn)](caf::event_based_actor* runner) {
          job_outcome_of_type outcome;
          try {
            outcome = fn(call);
          } catch (const std::exception& e) {
            outcome = {1, std::string{"the job type threw: "} + e.what()};
          }
          runner->send(leaf, finish_atom::value, id, int32_t{outcome.exit_status},
                       outcome.output);
        });
      return;
    }
  }
  finish_job(self, id, job_outcome::failed, 1,
             "job type '" + what.command + "' is not registered on instance "
               + self->state.spec.path);
}

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

void accept_jobs(instance_actor* self, std::vector<job> jobs) {
  auto& st = self->state;
  auto t = now_ns();
  for (auto& j : jobs)
    st.queue.emplace_back(std::move(j), t);
  st.status.queued = st.queue.size();
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
      bool nothing_more = (st.is_root() ? st.closed : st.drained) && !leases_outstanding(st);
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
    st.status.leased += n;
    h.promise.deliver(std::move(batch));
    st.held.pop_front();
  }
  st.status.queued = st.queue.size();
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
    if (it != st.leases.end() && it->second.erase(r.id) > 0 && st.status.leased > 0)
      --st.status.leased;
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
    if (st.status.leased > 0)
      --st.status.leased;
    if (l.started && !l.leased.idempotent) {
      job_result r;
      r.id = id;
      r.outcome = static_cast<uint8_t>(job_outcome::lost);
      r.exit_status = -1;
      r.output = "instance below " + st.spec.path
                 + " died while it ran; not idempotent, so not run again";
      r.path = st.spec.path;
      r.submit_ns = l.leased.submit_ns;
      r.runs = l.leased.runs_before + 1;
      r.kind = l.leased.kind;
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
  for (auto& h : st.held)
    if (h.child == child)
      h.promise.deliver(make_error(errc::refused, "taken for dead by its parent"));
  st.held.erase(std::remove_if(st.held.begin(), st.held.end(),
                               [&](const held_pull& h) { return h.child == child; }),
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

void start_children(instance_actor* self) {
  auto& st = self->state;
  if (st.is_leaf())
    return;
  supervision::supervisor_options opts;
  opts.name = "instance " + st.spec.path;
  opts.how = supervision::strategy::one_for_one;
  opts.intensity.max_restarts = st.spec.max_restarts;
  opts.intensity.period = std::chrono::seconds{10};
  opts.backoff.initial = std::chrono::milliseconds{20};
  opts.backoff.max = std::chrono::milliseconds{1000};
  opts.observer = caf::actor_cast<caf::actor>(self);
  std::vector<supervision::child_spec> kids;
  auto& lvl = st.spec.below.front();
  if (lvl.where == placement::mpi) {
    // All children are the ranks of one mpirun job: supervised as one.
    instance_spec tmpl;
    tmpl.path = st.spec.path;
    tmpl.below.assign(st.spec.below.begin() + 1, st.spec.below.end());
    tmpl.cores = lvl.cores_per_child;
    tmpl.first_cpu = st.spec.first_cpu;
    tmpl.max_restarts = st.spec.max_restarts;
    tmpl.silence_ms = st.spec.silence_ms;
    kids.push_back(detail::mpi_job_spec(self, std::move(tmpl), lvl.num_children, st.env));
  }
  for (unsigned i = 0; lvl.where != placement::mpi && i < lvl.num_children; ++i) {
    instance_spec child;
    child.path = st.spec.path + "/" + std::to_string(i);
    child.below.assign(st.spec.below.begin() + 1, st.spec.below.end());
    child.cores = lvl.cores_per_child;
    child.first_cpu = st.spec.first_cpu + i * lvl.cores_per_child;
    child.max_restarts = st.spec.max_restarts;
    child.silence_ms = st.spec.silence_ms;
    kids.push_back(detail::child_instance_spec(self, std::move(child), lvl.where, st.env));
  }
  st.children_supervisor = supervision::spawn_supervisor(self->system(), opts, std::move(kids));
  *st.supervisor_slot = st.children_supervisor;
  self->monitor(st.children_supervisor);
}

instance_status current_status(instance_actor* self) {
  auto& st = self->state;
  auto s = st.status;
  s.address = detail::address_of(*st.env);
  s.queued = st.queue.size();
  s.running = st.running.size();
  s.children = static_cast<uint32_t>(st.leases.size());
  return s;
}

// This instance, its parent, and its children as its supervisor sees them, each with
// the counters it reports (asked at once; 2 s for all).
caf::result<instance_tree> on_tree(instance_actor* self) {
  using namespace std::chrono_literals;
  auto& st = self->state;
  instance_tree tree;
  tree.self = current_status(self);
  if (!st.is_root()) {
    tree.parent = st.spec.path.substr(0, st.spec.path.rfind('/'));
    tree.parent_address =
      st.spec.parent_uri.empty() ? detail::address_of(*st.env) : st.spec.parent_uri;
  }
  if (!st.children_supervisor)
    return tree;
  auto promise = self->make_response_promise<instance_tree>();
  self->request(st.children_supervisor, 2s, supervision::which_children_atom::value)
    .then(
      [self, promise, tree](std::vector<supervision::child_info>& kids) mutable {
        struct gathering {
          caf::response_promise promise;
          instance_tree tree;
          size_t pending = 0;
          void one_done() {
            if (--pending == 0)
              promise.deliver(std::move(tree));
          }
        };
        auto g = std::make_shared<gathering>();
        g->promise = promise;
        g->tree = std::move(tree);
        g->pending = 1; // this loop itself
        for (size_t i = 0; i < kids.size(); ++i) {
          child_entry entry;
          entry.path = kids[i].name;
          entry.state = kids[i].state;
          entry.restarts = kids[i].restarts;
          g->tree.children.push_back(std::move(entry));
          if (!kids[i].handle)
            continue;
          ++g->pending;
          self->request(kids[i].handle, 2s, status_atom::value)
            .then(
              [g, i](instance_status& s) {
                g->tree.children[i].answered = true;
                g->tree.children[i].status = std::move(s);
                g->one_done();
              },
              [g](caf::error&) { g->one_done(); });
        }
        g->one_done();
      },
      [promise, tree](caf::error&) mutable { promise.deliver(std::move(tree)); });
  return promise;
}

// Stops the children first (their supervisor stops them in reverse order), then this
// instance, so whoever waits for it waits for the whole subtree.
void stop_instance(instance_actor* self, const caf::error& reason) {
  auto& st = self->state;
  flush(self); // completions already here still go up
  if (!st.children_supervisor) {
    self->quit(reason);
    return;
  }
  if (st.stopping)
    return;
  st.stopping = true;
  st.stop_reason = reason;
  self->send_exit(st.children_supervisor, reason);
}

// Every silence_ms / 4: a heartbeat to the parent (its answer must come within
// silence_ms), and children silent for silence_ms are taken for dead.
void tick(instance_actor* self) {
  using namespace std::chrono;
  auto& st = self->state;
  if (st.spec.silence_ms == 0 || st.stopping)
    return;
  auto bound = milliseconds{st.spec.silence_ms};
  if (st.parent) {
    self->request(st.parent, bound, heartbeat_atom::value)
      .then([] {},
            [self, bound](caf::error& err) {
              if (self->state.stopping)
                return;
              auto why = make_error(errc::unreachable,
                                    "instance " + self->state.spec.path
                                      + ": its parent did not answer for "
                                      + std::to_string(bound.count()) + " ms ("
                                      + describe(err) + "); stopping");
              TROUPE_LOG_WARNING("offload", context_text(why));
              stop_instance(self, why);
            });
  }
  auto now = steady_clock::now();
  std::vector<caf::actor_addr> silent;
  for (auto& [child, heard] : st.last_heard)
    if (now - heard > bound)
      silent.push_back(child);
  for (auto& child : silent) {
    auto why = make_error(errc::timeout, "instance below " + st.spec.path + " was silent for "
                                           + std::to_string(bound.count()) + " ms");
    TROUPE_LOG_WARNING("offload", describe(why) << "; its jobs are re-queued");
    st.last_heard.erase(child);
    st.silenced.insert(child);
    on_child_down(self, child);
    if (st.mpi_ranks.count(child) != 0 && st.mpi_job)
      self->send(st.mpi_job, detail::fail_rank_atom::value, why); // restarted whole
    else if (st.children_supervisor)
      self->send(st.children_supervisor, supervision::fail_child_atom::value, child, why);
  }
  self->delayed_send(self, bound / 4, tick_atom::value);
}

// A message from a child: it is alive. False for a child already taken for dead.
bool heard_from(instance_actor* self) {
  auto& st = self->state;
  auto addr = caf::actor_cast<caf::actor_addr>(self->current_sender());
  if (st.silenced.count(addr) != 0)
    return false;
  if (st.spec.silence_ms != 0)
    st.last_heard[addr] = std::chrono::steady_clock::now();
  return true;
}

void begin(instance_actor* self) {
  start_children(self);
  maybe_pull(self);
  tick(self);
}

caf::behavior instance_behavior(instance_actor* self, instance_spec spec, caf::actor parent,
                                caf::actor report_to, std::shared_ptr<environment> env,
                                bool exit_process) {
  auto& st = self->state;
  st.spec = std::move(spec);
  st.parent = std::move(parent);
  st.report_to = std::move(report_to);
  st.env = std::move(env);
  st.exit_process = exit_process;
  st.status.path = st.spec.path;
  self->attach_functor([slot = st.supervisor_slot, shells = st.shells,
                        exit_process](const caf::error& reason) {
    shells->kill_all(); // a shell job does not outlive its leaf
    // Killed without an orderly stop: the children's supervisor still goes with it.
    auto& sup = *slot;
    if (sup)
      sup->enqueue(nullptr, caf::make_message_id(),
                   caf::make_message(caf::exit_msg{sup.address(), reason}), nullptr);
    if (exit_process)
      ::kill(::getpid(), SIGTERM); // the node of this instance stops with it
  });
  self->set_exit_handler([self](caf::exit_msg& msg) { stop_instance(self, msg.reason); });
  self->set_down_handler([self](caf::down_msg& down) {
    auto& st = self->state;
    if (st.parent && down.source == st.parent.address()) {
      TROUPE_LOG_WARNING("offload", "instance " << st.spec.path << ": its parent is gone ("
                                                 << describe(down.reason) << "); stopping");
      stop_instance(self, make_error(errc::unreachable,
                                     "instance " + st.spec.path
                                       + ": its parent instance is gone"));
      return;
    }
    if (st.children_supervisor && down.source == st.children_supervisor.address()) {
      st.children_supervisor = nullptr;
      *st.supervisor_slot = nullptr;
      flush(self);
      // Stopped as asked, or it gave up: then escalate to this instance's own parent.
      self->quit(st.stopping ? st.stop_reason : down.reason);
      return;
    }
    st.last_heard.erase(down.source);
    on_child_down(self, down.source);
  });
  if (st.parent)
    self->monitor(st.parent);
  if (!st.spec.parent_uri.empty()) {
    // A process of its own: find the parent first.
    self
      ->request(detail::locator_of(*st.env), std::chrono::seconds{30}, locate_atom::value,
                st.spec.parent_uri, std::string{"offload"}, offload_provider_id)
      .then(
        [self](caf::actor& found) {
          self->state.parent = found;
          self->monitor(found);
          // An MPI job waits for the hello of each of its ranks.
          self->send(found, detail::hello_atom::value, self->state.spec.path,
                     self->state.spec.job_token);
          begin(self);
        },
        [self](caf::error& err) {
          auto why = make_error(errc::unreachable, "instance " + self->state.spec.path
                                                     + ": cannot reach its parent at "
                                                     + self->state.spec.parent_uri + ": "
                                                     + describe(err) + "; stopping");
          TROUPE_LOG_WARNING("offload", context_text(why));
          self->quit(why);
        });
  } else {
    begin(self);
  }
  return {
    [self](need_job_atom, uint32_t credits) -> caf::result<job_batch> {
      if (!heard_from(self))
        return make_error(errc::refused, "taken for dead after its silence");
      return on_need_job(self, credits);
    },
    [self](may_start_atom, uint64_t id) -> caf::result<bool> {
      if (!heard_from(self))
        return false;
      return on_may_start(self, id);
    },
    [self](started_atom, const std::vector<uint64_t>& ids) {
      if (heard_from(self))
        on_child_started(self, ids);
    },
    [self](done_atom, std::vector<job_result>& results) {
      // From a child taken for dead: its jobs were re-queued or reported already.
      if (heard_from(self))
        on_child_done(self, results);
    },
    [self](heartbeat_atom) -> caf::result<void> {
      // A child taken for dead that still lives learns it here, and stops.
      if (!heard_from(self))
        return make_error(errc::refused, "taken for dead after its silence");
      return caf::unit;
    },
    [self](detail::expect_job_atom, caf::actor& job) { self->state.mpi_job = std::move(job); },
    [self](detail::hello_atom, const std::string& path, const std::string& token) {
      auto& st = self->state;
      if (!st.mpi_job || token.empty())
        return;
      st.mpi_ranks.insert(caf::actor_cast<caf::actor_addr>(self->current_sender()));
      self->send(st.mpi_job, detail::hello_atom::value, path, token,
                 caf::actor_cast<caf::actor>(self->current_sender()));
    },
    [self](tick_atom) { tick(self); },
    [self](submit_atom, std::vector<job>& jobs) -> uint64_t {
      auto t = now_ns();
      for (auto& j : jobs)
        if (j.submit_ns == 0)
          j.submit_ns = t;
      accept_jobs(self, std::move(jobs));
      return self->state.queue.size();
    },
    [self](close_atom) {
      self->state.closed = true;
      self->state.drained = true;
      serve_held(self);
    },
    [self](finish_atom, uint64_t id, int32_t exit_status, std::string& output) {
      finish_job(self, id, exit_status == 0 ? job_outcome::succeeded : job_outcome::failed,
                 exit_status, std::move(output));
    },
    [self](sleep_done_atom, uint64_t id, int64_t due_ns) {
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
    },
    [self](flush_atom) { flush(self); },
    [self](supervision::supervision_event& ev) {
      if (ev.what() == supervision::event_kind::restarting)
        ++self->state.status.child_restarts;
      if (ev.what() == supervision::event_kind::gave_up)
        TROUPE_LOG_WARNING("offload", self->state.spec.path << ": " << ev.reason);
    },
    [self](status_atom) { return current_status(self); },
    [self](tree_atom) { return on_tree(self); },
  };
}

} // namespace

caf::actor spawn_instance(caf::actor_system& system, instance_spec spec, caf::actor parent,
                          caf::actor report_to, std::shared_ptr<environment> env,
                          bool exit_process) {
  return system.spawn(instance_behavior, std::move(spec), std::move(parent),
                      std::move(report_to), std::move(env), exit_process);
}

} // namespace troupe::offload
