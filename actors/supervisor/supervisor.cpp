#include "actors/supervisor/supervisor.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include "base/error.hpp"
#include "base/log.hpp"

namespace troupe::supervision {

const char* to_string(strategy how) {
  switch (how) {
    case strategy::one_for_one:
      return "one_for_one";
    case strategy::one_for_all:
      return "one_for_all";
    case strategy::rest_for_one:
      return "rest_for_one";
  }
  return "unknown";
}

const char* to_string(restart_policy policy) {
  switch (policy) {
    case restart_policy::permanent:
      return "permanent";
    case restart_policy::transient:
      return "transient";
    case restart_policy::temporary:
      return "temporary";
  }
  return "unknown";
}

const char* to_string(event_kind kind) {
  switch (kind) {
    case event_kind::started:
      return "started";
    case event_kind::start_failed:
      return "start_failed";
    case event_kind::exited:
      return "exited";
    case event_kind::restarting:
      return "restarting";
    case event_kind::gave_up:
      return "gave_up";
  }
  return "unknown";
}

std::chrono::milliseconds restart_backoff::delay_for(unsigned n) const {
  if (n == 0 || initial.count() <= 0)
    return std::chrono::milliseconds{0};
  double ms = static_cast<double>(initial.count()) * std::pow(factor, n - 1);
  if (ms >= static_cast<double>(max.count()))
    return max;
  return std::chrono::milliseconds{static_cast<int64_t>(ms)};
}

namespace {

using clock = std::chrono::steady_clock;

// Messages the supervisor sends itself (and its start threads send it).
using started_atom = caf::atom_constant<caf::atom("svstarted")>;
using start_failed_atom = caf::atom_constant<caf::atom("svstartno")>;
using start_expired_atom = caf::atom_constant<caf::atom("svstartto")>;
using kill_atom = caf::atom_constant<caf::atom("svkill")>;
using resume_atom = caf::atom_constant<caf::atom("svresume")>;
using abandon_atom = caf::atom_constant<caf::atom("svabandon")>;

enum class phase { idle, starting, running, stopping, waiting };

const char* to_string(phase p) {
  switch (p) {
    case phase::idle:
      return "idle";
    case phase::starting:
      return "starting";
    case phase::running:
      return "running";
    case phase::stopping:
      return "stopping";
    case phase::waiting:
      return "waiting";
  }
  return "unknown";
}

struct child_slot {
  child_spec spec;
  phase state = phase::idle;
  caf::actor handle;
  uint64_t generation = 0; // one per start attempt: late answers of old ones are told apart
  uint32_t restarts = 0;
  bool removed = false; // a temporary child that exited, a transient one that finished
  // Its own restarts within the intensity period: its backoff grows with them, not
  // with its siblings'.
  std::deque<clock::time_point> restart_times;
  clock::time_point hold_until{}; // its backoff: no start before
  // A blocking start still running (perhaps of an earlier generation): a new one waits
  // for it, so two never overlap (they would share files and processes).
  bool starter_running = false;
  bool start_deferred = false;
};

// The children running right now, for the functor that stops them when the supervisor
// dies without an orderly shutdown (killed, or an exception in a handler).
using running_set = std::shared_ptr<std::vector<caf::actor>>;

struct supervisor_state {
  supervisor_options options;
  std::vector<child_slot> children;
  std::deque<clock::time_point> restart_times; // within the intensity period
  // The plan in progress: stop these (one at a time, in this order), then start these
  // (in start order, each after its backoff).
  std::deque<size_t> to_stop;
  std::set<size_t> to_start;
  bool resume_scheduled = false;
  clock::time_point resume_at{};
  // Children reported failed (fail_child) before their start returned.
  std::map<caf::actor_addr, caf::error> failed_early;
  bool shutting_down = false;
  caf::error exit_reason;
  running_set running = std::make_shared<std::vector<caf::actor>>();

  static inline const char* name = "troupe.supervisor";
};

using supervisor_actor = caf::stateful_actor<supervisor_state>;

void run_plan(supervisor_actor* self);

std::string reason_text(const caf::error& reason) {
  return reason ? describe(reason) : std::string{"normal exit"};
}

void notify(supervisor_actor* self, event_kind kind, const std::string& child,
            std::string reason, int64_t delay_ms = 0) {
  auto& st = self->state;
  if (!st.options.observer)
    return;
  supervision_event ev;
  ev.supervisor = st.options.name;
  ev.child = child;
  ev.kind = static_cast<uint8_t>(kind);
  ev.reason = std::move(reason);
  ev.restarts = static_cast<uint32_t>(st.restart_times.size());
  ev.delay_ms = delay_ms;
  self->send(st.options.observer, std::move(ev));
}

void refresh_running(supervisor_actor* self) {
  auto& st = self->state;
  st.running->clear();
  for (auto& child : st.children)
    if (child.handle)
      st.running->push_back(child.handle);
}

void set_running(supervisor_actor* self, size_t index, caf::actor handle) {
  auto& child = self->state.children[index];
  child.handle = std::move(handle);
  child.state = phase::running;
  self->monitor(child.handle);
  refresh_running(self);
  notify(self, event_kind::started, child.spec.name, {});
  TROUPE_LOG_DEBUG("supervisor", self->state.options.name << ": started " << child.spec.name);
}

// Drops the times older than `period` from `times`; how many are left.
size_t within(std::deque<clock::time_point>& times, clock::time_point now,
              std::chrono::milliseconds period) {
  while (!times.empty() && now - times.front() > period)
    times.pop_front();
  return times.size();
}

// Kills a child's actor and what it stands for (its on_kill).
void kill_child(supervisor_actor* self, const caf::actor& handle, const child_spec& spec) {
  self->send_exit(handle, caf::exit_reason::kill);
  if (spec.on_kill)
    spec.on_kill();
}

// Child `index` is gone as planned (stopped, or counted as gone): no restart is counted.
void mark_stopped(supervisor_actor* self, size_t index) {
  auto& st = self->state;
  auto& child = st.children[index];
  child.handle = nullptr;
  child.state = phase::idle;
  refresh_running(self);
  auto pos = std::find(st.to_stop.begin(), st.to_stop.end(), index);
  if (pos != st.to_stop.end())
    st.to_stop.erase(pos);
}

// The plan becomes: stop every child in reverse start order, then exit with `reason`.
void stop_all(supervisor_actor* self, caf::error reason) {
  auto& st = self->state;
  st.shutting_down = true;
  st.exit_reason = std::move(reason);
  st.to_start.clear();
  st.to_stop.clear();
  for (size_t i = st.children.size(); i-- > 0;)
    st.to_stop.push_back(i);
}

void give_up(supervisor_actor* self, const std::string& child, const std::string& why) {
  auto text = "supervisor '" + self->state.options.name + "' gave up: " + why;
  TROUPE_LOG_WARNING("supervisor", text);
  notify(self, event_kind::gave_up, child, text);
  stop_all(self, make_error(errc::gave_up, text));
}

void schedule_stop(supervisor_actor* self, size_t index) {
  auto& st = self->state;
  if (std::find(st.to_stop.begin(), st.to_stop.end(), index) != st.to_stop.end())
    return;
  // Keep reverse start order: a later child stops before an earlier one.
  auto pos = std::find_if(st.to_stop.begin(), st.to_stop.end(),
                          [index](size_t other) { return other < index; });
  st.to_stop.insert(pos, index);
}

// Child `index` exited (or failed to start) with `reason`: restart by policy and
// strategy, or give up.
void child_failed(supervisor_actor* self, size_t index, const caf::error& reason) {
  auto& st = self->state;
  auto& child = st.children[index];
  child.handle = nullptr;
  child.state = phase::idle;
  refresh_running(self);
  if (st.shutting_down)
    return;
  bool restart = child.spec.restart == restart_policy::permanent
                 || (child.spec.restart == restart_policy::transient && reason);
  if (!restart) {
    child.removed = true;
    st.to_start.erase(index);
    return;
  }
  auto now = clock::now();
  st.restart_times.push_back(now);
  if (within(st.restart_times, now, st.options.intensity.period)
      > st.options.intensity.max_restarts) {
    give_up(self, child.spec.name,
            "child '" + child.spec.name + "' needed "
              + std::to_string(st.restart_times.size()) + " restarts within "
              + std::to_string(st.options.intensity.period.count()) + " ms (at most "
              + std::to_string(st.options.intensity.max_restarts)
              + " allowed); its last exit: " + reason_text(reason));
    return;
  }
  child.restart_times.push_back(now);
  auto delay = st.options.backoff.delay_for(
    static_cast<unsigned>(within(child.restart_times, now, st.options.intensity.period)));
  notify(self, event_kind::restarting, child.spec.name, reason_text(reason), delay.count());
  ++child.restarts;
  child.hold_until = now + delay;
  if (delay.count() > 0)
    child.state = phase::waiting;
  auto restart_from = [&](size_t first) {
    for (size_t j = first; j < st.children.size(); ++j) {
      if (j == index || st.children[j].removed)
        continue;
      if (st.children[j].state == phase::running || st.children[j].state == phase::starting)
        schedule_stop(self, j);
      st.to_start.insert(j);
    }
  };
  switch (st.options.how) {
    case strategy::one_for_one:
      break;
    case strategy::one_for_all:
      restart_from(0);
      break;
    case strategy::rest_for_one:
      restart_from(index + 1);
      break;
  }
  st.to_start.insert(index);
}

void start_child(supervisor_actor* self, size_t index) {
  auto& child = self->state.children[index];
  auto generation = ++child.generation;
  if (!child.spec.blocking_start) {
    caf::expected<caf::actor> result = child.spec.start(self->system());
    if (result && *result) {
      set_running(self, index, std::move(*result));
      return;
    }
    auto err = result ? make_error(errc::provider_failed, "the start returned no actor")
                      : result.error();
    notify(self, event_kind::start_failed, child.spec.name, reason_text(err));
    child_failed(self, index, err);
    return;
  }
  child.state = phase::starting;
  if (child.starter_running) {
    // The previous start of this child has not returned yet: this one follows it.
    child.start_deferred = true;
    return;
  }
  child.starter_running = true;
  auto supervisor = caf::actor_cast<caf::actor>(self);
  auto start = child.spec.start;
  auto on_kill = child.spec.on_kill;
  // A thread of its own: the start may block for as long as it takes (it is given up on
  // after start_timeout, and a late result is stopped then). The result goes as a
  // request: if the supervisor is gone by then, nobody supervises it and it is stopped.
  self->system().spawn<caf::detached>(
    [start, on_kill, supervisor, index, generation](caf::event_based_actor* starter)
      -> caf::behavior {
      auto result = start(starter->system());
      if (result && *result) {
        auto handle = *result;
        starter
          ->request(supervisor, caf::duration{caf::infinite}, started_atom::value, index,
                    generation, handle)
          .then([starter] { starter->quit(); },
                [starter, handle, on_kill](caf::error&) {
                  starter->send_exit(handle, caf::exit_reason::kill); // nobody supervises it
                  if (on_kill)
                    on_kill();
                  starter->quit();
                });
      } else {
        starter->send(supervisor, start_failed_atom::value, index, generation,
                      result ? make_error(errc::provider_failed, "the start returned no actor")
                             : result.error());
        starter->quit();
      }
      return {[](caf::unit_t) {}};
    });
  self->delayed_send(self, child.spec.start_timeout, start_expired_atom::value, index,
                     generation);
}

// The previous blocking start of child `index` returned: a start that waited for it
// may go now.
void starter_returned(supervisor_actor* self, size_t index) {
  auto& child = self->state.children[index];
  child.starter_running = false;
  if (child.start_deferred) {
    child.start_deferred = false;
    if (child.state == phase::starting) {
      child.state = phase::idle;
      start_child(self, index);
    }
  }
}

// Works through the plan: stops first (one at a time, each waiting for its DOWN), then
// starts (one at a time, blocking ones waiting for their result).
void run_plan(supervisor_actor* self) {
  auto& st = self->state;
  while (!st.to_stop.empty()) {
    auto index = st.to_stop.front();
    auto& child = st.children[index];
    if (child.state == phase::stopping)
      return; // waiting for its DOWN
    if (child.state == phase::running) {
      child.state = phase::stopping;
      auto reason = st.shutting_down && st.exit_reason ? st.exit_reason
                                                       : caf::error{caf::exit_reason::user_shutdown};
      self->send_exit(child.handle, reason);
      self->delayed_send(self, child.spec.shutdown, kill_atom::value, index, child.generation);
      return;
    }
    if (child.state == phase::starting)
      ++child.generation; // its result, when it comes, is stopped at once
    child.state = phase::idle;
    st.to_stop.pop_front();
  }
  if (st.shutting_down) {
    self->quit(st.exit_reason);
    return;
  }
  // Starts in start order. A child still in its backoff holds back the ones after it,
  // except under one_for_one, where siblings do not wait for each other.
  auto now = clock::now();
  std::optional<clock::time_point> earliest_hold;
  for (auto it = st.to_start.begin(); it != st.to_start.end();) {
    auto index = *it;
    auto& child = st.children[index];
    if (child.state == phase::running || child.removed) {
      it = st.to_start.erase(it);
      continue;
    }
    if (child.state == phase::starting) {
      if (st.options.how != strategy::one_for_one)
        return; // the ones after it wait for its result
      ++it;
      continue;
    }
    if (now < child.hold_until) {
      child.state = phase::waiting;
      if (!earliest_hold || child.hold_until < *earliest_hold)
        earliest_hold = child.hold_until;
      if (st.options.how != strategy::one_for_one)
        break;
      ++it;
      continue;
    }
    start_child(self, index);
    if (st.shutting_down || !st.to_stop.empty()) {
      run_plan(self); // a failed start gave up or widened the plan
      return;
    }
    // Look at the child again (started, starting, or failed at once and waiting out
    // its backoff); a failed start may have removed it from the plan (a temporary one).
    now = clock::now();
    it = st.to_start.lower_bound(index);
  }
  if (earliest_hold && (!st.resume_scheduled || *earliest_hold < st.resume_at)) {
    // A sooner backoff than the one scheduled gets its own wake-up (a stale one only
    // runs the plan once more).
    st.resume_scheduled = true;
    st.resume_at = *earliest_hold;
    self->delayed_send(self,
                       std::chrono::duration_cast<std::chrono::milliseconds>(*earliest_hold
                                                                             - now)
                         + std::chrono::milliseconds{1},
                       resume_atom::value);
  }
}

std::optional<size_t> find_child(supervisor_actor* self, const caf::actor_addr& source) {
  auto& children = self->state.children;
  for (size_t i = 0; i < children.size(); ++i)
    if (children[i].handle && children[i].handle.address() == source)
      return i;
  return std::nullopt;
}

void on_down(supervisor_actor* self, const caf::down_msg& down) {
  auto& st = self->state;
  auto index = find_child(self, down.source);
  if (!index)
    return; // an earlier incarnation, already handled
  auto& child = st.children[*index];
  bool planned = std::find(st.to_stop.begin(), st.to_stop.end(), *index) != st.to_stop.end();
  if (child.state == phase::stopping || planned) {
    mark_stopped(self, *index); // as planned, or it went before its turn came
    run_plan(self);
    return;
  }
  notify(self, event_kind::exited, child.spec.name, reason_text(down.reason));
  TROUPE_LOG_INFO("supervisor", st.options.name << ": child " << child.spec.name
                                                 << " exited: " << reason_text(down.reason));
  child_failed(self, *index, down.reason);
  run_plan(self);
}

void on_started(supervisor_actor* self, size_t index, uint64_t generation, caf::actor handle) {
  auto& st = self->state;
  if (index >= st.children.size())
    return;
  auto& child = st.children[index];
  if (child.generation != generation || child.state != phase::starting
      || child.start_deferred) {
    kill_child(self, handle, child.spec); // too late: nobody supervises it
    starter_returned(self, index);
    run_plan(self);
    return;
  }
  child.starter_running = false;
  auto early = st.failed_early.find(handle.address());
  if (early != st.failed_early.end()) {
    auto why = early->second;
    st.failed_early.erase(early);
    kill_child(self, handle, child.spec);
    notify(self, event_kind::exited, child.spec.name, reason_text(why));
    child.state = phase::idle;
    child_failed(self, index, why);
    run_plan(self);
    return;
  }
  set_running(self, index, std::move(handle));
  st.to_start.erase(index);
  run_plan(self);
}

// `starter_done`: the start's own answer (else its timeout, the start still running).
void on_start_failed(supervisor_actor* self, size_t index, uint64_t generation,
                     const caf::error& err, bool starter_done) {
  auto& st = self->state;
  if (index >= st.children.size())
    return;
  auto& child = st.children[index];
  if (child.generation != generation || child.state != phase::starting
      || child.start_deferred) {
    if (starter_done) {
      starter_returned(self, index);
      run_plan(self);
    }
    return;
  }
  if (starter_done)
    child.starter_running = false;
  notify(self, event_kind::start_failed, child.spec.name, reason_text(err));
  st.to_start.erase(index);
  child_failed(self, index, err);
  run_plan(self);
}

void on_exit_request(supervisor_actor* self, const caf::exit_msg& msg) {
  if (self->state.shutting_down)
    return;
  stop_all(self, msg.reason);
  run_plan(self);
}

caf::behavior supervisor_behavior(supervisor_actor* self, supervisor_options options,
                                  std::vector<child_spec> children) {
  auto& st = self->state;
  st.options = std::move(options);
  for (auto& spec : children) {
    child_slot slot;
    slot.spec = std::move(spec);
    st.children.push_back(std::move(slot));
  }
  for (size_t i = 0; i < st.children.size(); ++i)
    st.to_start.insert(i);
  // Whatever ends the supervisor, its children do not outlive it.
  self->attach_functor([running = st.running](const caf::error& reason) {
    caf::error why = reason ? reason : caf::error{caf::exit_reason::user_shutdown};
    for (auto& child : *running)
      child->enqueue(nullptr, caf::make_message_id(),
                     caf::make_message(caf::exit_msg{child.address(), why}), nullptr);
  });
  self->set_down_handler([self](caf::down_msg& down) { on_down(self, down); });
  self->set_exit_handler([self](caf::exit_msg& msg) { on_exit_request(self, msg); });
  run_plan(self);
  return {
    [self](started_atom, size_t index, uint64_t generation, caf::actor handle) {
      on_started(self, index, generation, std::move(handle));
    },
    [self](start_failed_atom, size_t index, uint64_t generation, const caf::error& err) {
      on_start_failed(self, index, generation, err, true);
    },
    [self](start_expired_atom, size_t index, uint64_t generation) {
      auto& child = self->state.children[index];
      if (child.generation == generation && child.state == phase::starting)
        on_start_failed(self, index, generation,
                        make_error(errc::timeout,
                                   "child '" + child.spec.name + "' did not start within "
                                     + std::to_string(child.spec.start_timeout.count())
                                     + " ms"),
                        false);
    },
    [self](kill_atom, size_t index, uint64_t generation) {
      auto& child = self->state.children[index];
      if (child.generation != generation || child.state != phase::stopping || !child.handle)
        return;
      kill_child(self, child.handle, child.spec);
      // A child on a node that answers nothing any more (stopped, hung) never sends its
      // DOWN: after as long again it counts as gone.
      self->delayed_send(self, child.spec.shutdown, abandon_atom::value, index, generation);
    },
    [self](abandon_atom, size_t index, uint64_t generation) {
      auto& st = self->state;
      auto& child = st.children[index];
      if (child.generation != generation || child.state != phase::stopping)
        return;
      TROUPE_LOG_WARNING("supervisor", st.options.name << ": child " << child.spec.name
                                                      << " did not stop after its kill; "
                                                         "counted as gone");
      mark_stopped(self, index);
      run_plan(self);
    },
    [self](resume_atom) {
      self->state.resume_scheduled = false;
      run_plan(self);
    },
    [self](fail_child_atom, const caf::actor_addr& who, const caf::error& why) {
      auto index = find_child(self, who);
      if (!index) {
        // Perhaps a child whose blocking start has not returned yet (it already runs
        // and talks to others): it fails the moment it is reported started.
        self->state.failed_early.emplace(who, why);
        return;
      }
      auto& child = self->state.children[*index];
      if (child.state != phase::running)
        return;
      kill_child(self, child.handle, child.spec);
      notify(self, event_kind::exited, child.spec.name, reason_text(why));
      TROUPE_LOG_WARNING("supervisor", self->state.options.name << ": child "
                                                                << child.spec.name
                                                                << " failed: "
                                                                << reason_text(why));
      child_failed(self, *index, why);
      run_plan(self);
    },
    [self](which_children_atom) {
      std::vector<child_info> result;
      for (auto& child : self->state.children) {
        if (child.removed)
          continue;
        result.push_back({child.spec.name, to_string(child.state), child.restarts,
                          child.state == phase::running ? child.handle : caf::actor{}});
      }
      return result;
    },
    [self](child_atom, const std::string& name) -> caf::result<caf::actor> {
      for (auto& child : self->state.children)
        if (child.spec.name == name && child.state == phase::running)
          return child.handle;
      return make_error(errc::not_found, "supervisor '" + self->state.options.name
                                           + "' has no running child '" + name + "'");
    },
  };
}

} // namespace

caf::actor spawn_supervisor(caf::actor_system& system, supervisor_options options,
                            std::vector<child_spec> children) {
  return system.spawn(supervisor_behavior, std::move(options), std::move(children));
}

void register_supervision_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<supervision_event>("troupe::supervision::supervision_event");
  cfg.add_message_type<child_info>("troupe::supervision::child_info");
  cfg.add_message_type<std::vector<child_info>>("std::vector<troupe::supervision::child_info>");
}

} // namespace troupe::supervision
