// The instance actor (offload.hpp): a queue, leases to children, and at a leaf the
// jobs it runs. Child instances are started by a supervisor (actors/supervisor/) either
// here (in_process) or as actorhost processes (child_start.cpp).
#include "actors/offload/offload.hpp"

#include "actors/offload/detail/instance_state.hpp"

#include <chrono>
#include <csignal>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>

#include "actors/offload/detail/instance_support.hpp"
#include "actors/supervisor/supervisor.hpp"
#include "base/error.hpp"
#include "base/log.hpp"
#include "runtime/locator.hpp"

namespace troupe::offload {

namespace detail {

// A child of `parent` on level `lvl` (the first below it), at `path`.
instance_spec child_of(const instance_spec& parent, const level& lvl, std::string path,
                       unsigned first_cpu) {
  instance_spec child;
  child.path = std::move(path);
  child.below.assign(parent.below.begin() + 1, parent.below.end());
  child.cores = lvl.cores_per_child;
  child.first_cpu = first_cpu;
  child.max_restarts = parent.max_restarts;
  child.silence_ms = parent.silence_ms;
  return child;
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
    // All children are the ranks of one mpirun job, supervised as one; each rank
    // appends its rank to this path and its first core.
    kids.push_back(
      mpi_job_spec(self, child_of(st.spec, lvl, st.spec.path, st.spec.first_cpu), lvl, st.env));
  }
  for (unsigned i = 0; lvl.where != placement::mpi && i < lvl.num_children; ++i)
    kids.push_back(child_instance_spec(
      self,
      child_of(st.spec, lvl, st.spec.path + "/" + std::to_string(i),
               st.spec.first_cpu + i * lvl.cores_per_child),
      lvl.where, st.env));
  auto& sup = *st.children_supervisor;
  sup = supervision::spawn_supervisor(self->system(), opts, std::move(kids));
  self->monitor(sup);
}

instance_status current_status(instance_actor* self) {
  auto& st = self->state;
  auto s = st.status;
  s.address = detail::address_of(*st.env);
  s.queued = st.queue.size();
  s.running = st.running.size();
  s.children = static_cast<uint32_t>(st.leases.size());
  s.leased = 0;
  for (auto& [child, leases] : st.leases)
    s.leased += leases.size();
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
  if (!*st.children_supervisor)
    return tree;
  auto promise = self->make_response_promise<instance_tree>();
  self->request(*st.children_supervisor, 2s, supervision::which_children_atom::value)
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
  if (!*st.children_supervisor) {
    self->quit(reason);
    return;
  }
  if (st.stopping)
    return;
  st.stopping = true;
  st.stop_reason = reason;
  self->send_exit(*st.children_supervisor, reason);
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
    else if (*st.children_supervisor)
      self->send(*st.children_supervisor, supervision::fail_child_atom::value, child, why);
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
  self->attach_functor([slot = st.children_supervisor, shells = st.shells,
                        jobs_stop = st.jobs_stop, exit_process](const caf::error& reason) {
    shells->kill_all(); // a shell job does not outlive its leaf
    jobs_stop->store(true); // nor, if it looks, a custom one
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
    if (*st.children_supervisor && down.source == st.children_supervisor->address()) {
      *st.children_supervisor = nullptr;
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
      self->state.drained = true;
      serve_held(self);
    },
    [self](finish_atom, uint64_t id, int32_t exit_status, std::string& output) {
      finish_job(self, id, exit_status == 0 ? job_outcome::succeeded : job_outcome::failed,
                 exit_status, std::move(output));
    },
    [self](sleep_done_atom, uint64_t id, int64_t due_ns) { on_sleep_done(self, id, due_ns); },
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

} // namespace detail

caf::actor spawn_instance(caf::actor_system& system, instance_spec spec, caf::actor parent,
                          caf::actor report_to, std::shared_ptr<environment> env,
                          bool exit_process) {
  return system.spawn(detail::instance_behavior, std::move(spec), std::move(parent),
                      std::move(report_to), std::move(env), exit_process);
}

} // namespace troupe::offload
