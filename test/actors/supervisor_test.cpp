// Supervisors (actors/supervisor/supervisor.hpp) in one actor system: strategies,
// restart policies, intensity and escalation, backoff, ordered shutdown, blocking
// starts. Supervision of children on other nodes is proven by the offload tests
// (test/apps/offload_test.cpp), whose instances are actorhost processes.
#define BOOST_TEST_MODULE supervisor
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include "actors/supervisor/supervisor.hpp"
#include "base/error.hpp"
#include "test/support/process.hpp"

using namespace std::chrono_literals;
using namespace troupe;
using namespace troupe::supervision;

namespace {

using crash_atom = caf::atom_constant<caf::atom("crash")>;
using finish_atom = caf::atom_constant<caf::atom("finish")>;

// What the children did, in order, across threads: "start:a", "stop:b", ...
struct journal {
  std::mutex mutex;
  std::vector<std::string> lines;

  void add(std::string line) {
    std::lock_guard<std::mutex> guard{mutex};
    lines.push_back(std::move(line));
  }
  std::vector<std::string> take() {
    std::lock_guard<std::mutex> guard{mutex};
    return std::exchange(lines, {});
  }
  size_t size() {
    std::lock_guard<std::mutex> guard{mutex};
    return lines.size();
  }
};

// A child that answers "name", crashes on crash_atom, finishes normally on finish_atom.
// Its start is logged by the start function (the supervisor calls those in order; an
// actor's first step runs later, on any scheduler thread).
caf::behavior worker(caf::event_based_actor* self, std::string name, journal* log) {
  self->attach_functor([name, log](const caf::error&) { log->add("stop:" + name); });
  return {
    [name](caf::get_atom) { return name; },
    [self, name](crash_atom) { self->quit(make_error(errc::refused, name + " crashed")); },
    [self](finish_atom) { self->quit(); },
  };
}

child_spec worker_spec(const std::string& name, journal* log,
                       restart_policy policy = restart_policy::permanent) {
  child_spec spec;
  spec.name = name;
  spec.restart = policy;
  spec.start = [name, log](caf::actor_system& sys) -> caf::expected<caf::actor> {
    log->add("start:" + name);
    return sys.spawn(worker, name, log);
  };
  return spec;
}

struct fixture {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  journal log;

  std::vector<child_info> children_of(const caf::actor& sup) {
    caf::scoped_actor self{sys};
    std::vector<child_info> result;
    self->request(sup, 5s, which_children_atom::value)
      .receive([&](std::vector<child_info>& xs) { result = std::move(xs); },
               [&](caf::error& err) { BOOST_FAIL("which_children: " << describe(err)); });
    return result;
  }

  caf::actor child(const caf::actor& sup, const std::string& name) {
    caf::actor result;
    caf::scoped_actor self{sys};
    self->request(sup, 5s, child_atom::value, name)
      .receive([&](caf::actor& x) { result = std::move(x); }, [&](caf::error&) {});
    return result;
  }

  // Waits until `name` runs as an actor other than `before`; returns it.
  caf::actor restarted(const caf::actor& sup, const std::string& name,
                       const caf::actor& before) {
    caf::actor now;
    test::eventually(5s, [&] {
      now = child(sup, name);
      return now && now != before;
    });
    return now;
  }

  // The supervisor's exit reason (waits up to `deadline`).
  caf::error exit_reason_of(const caf::actor& sup, std::chrono::milliseconds deadline = 10s) {
    caf::scoped_actor self{sys};
    self->monitor(sup);
    caf::error reason = make_error(errc::timeout, "the supervisor did not exit");
    self->receive([&](caf::down_msg& down) { reason = down.reason; },
                  caf::after(deadline) >> [] {});
    return reason;
  }
};

supervisor_options options(strategy how, unsigned max_restarts = 10) {
  supervisor_options opts;
  opts.name = "sup";
  opts.how = how;
  opts.intensity.max_restarts = max_restarts;
  opts.intensity.period = 10s;
  return opts;
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(supervisor, fixture)

BOOST_AUTO_TEST_CASE(children_start_in_order_and_are_listed) {
  auto sup = spawn_supervisor(sys, options(strategy::one_for_one),
                              {worker_spec("a", &log), worker_spec("b", &log),
                               worker_spec("c", &log)});
  auto kids = children_of(sup);
  BOOST_REQUIRE_EQUAL(kids.size(), 3u);
  BOOST_TEST(kids[0].name == "a");
  BOOST_TEST(kids[2].name == "c");
  for (auto& kid : kids) {
    BOOST_TEST(kid.state == "running");
    BOOST_TEST(static_cast<bool>(kid.handle));
  }
  BOOST_TEST((log.take() == std::vector<std::string>{"start:a", "start:b", "start:c"}));
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  BOOST_TEST((exit_reason_of(sup) == caf::exit_reason::user_shutdown));
}

BOOST_AUTO_TEST_CASE(one_for_one_restarts_only_the_child_that_crashed) {
  auto sup = spawn_supervisor(sys, options(strategy::one_for_one),
                              {worker_spec("a", &log), worker_spec("b", &log),
                               worker_spec("c", &log)});
  auto a = child(sup, "a"), b = child(sup, "b"), c = child(sup, "c");
  log.take();
  caf::anon_send(b, crash_atom::value);
  auto b2 = restarted(sup, "b", b);
  BOOST_REQUIRE(b2);
  BOOST_TEST((child(sup, "a") == a));
  BOOST_TEST((child(sup, "c") == c));
  BOOST_TEST((log.take() == std::vector<std::string>{"stop:b", "start:b"}));
  BOOST_TEST(children_of(sup)[1].restarts == 1u);
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  exit_reason_of(sup);
}

BOOST_AUTO_TEST_CASE(one_for_all_stops_the_others_in_reverse_order_and_starts_all_in_order) {
  auto sup = spawn_supervisor(sys, options(strategy::one_for_all),
                              {worker_spec("a", &log), worker_spec("b", &log),
                               worker_spec("c", &log)});
  auto a = child(sup, "a"), b = child(sup, "b"), c = child(sup, "c");
  log.take();
  caf::anon_send(b, crash_atom::value);
  auto c2 = restarted(sup, "c", c);
  BOOST_REQUIRE(c2);
  BOOST_TEST((child(sup, "a") != a));
  BOOST_TEST((child(sup, "b") != b));
  BOOST_TEST((log.take()
              == std::vector<std::string>{"stop:b", "stop:c", "stop:a", "start:a", "start:b",
                                          "start:c"}));
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  exit_reason_of(sup);
}

BOOST_AUTO_TEST_CASE(rest_for_one_restarts_the_crashed_child_and_those_started_after_it) {
  auto sup = spawn_supervisor(sys, options(strategy::rest_for_one),
                              {worker_spec("a", &log), worker_spec("b", &log),
                               worker_spec("c", &log), worker_spec("d", &log)});
  auto a = child(sup, "a"), b = child(sup, "b"), d = child(sup, "d");
  log.take();
  caf::anon_send(b, crash_atom::value);
  auto d2 = restarted(sup, "d", d);
  BOOST_REQUIRE(d2);
  BOOST_TEST((child(sup, "a") == a));
  BOOST_TEST((log.take()
              == std::vector<std::string>{"stop:b", "stop:d", "stop:c", "start:b", "start:c",
                                          "start:d"}));
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  exit_reason_of(sup);
}

BOOST_AUTO_TEST_CASE(transient_children_that_finish_and_temporary_ones_are_not_restarted) {
  auto sup = spawn_supervisor(sys, options(strategy::one_for_one),
                              {worker_spec("t", &log, restart_policy::transient),
                               worker_spec("tmp", &log, restart_policy::temporary),
                               worker_spec("t2", &log, restart_policy::transient)});
  auto t = child(sup, "t"), tmp = child(sup, "tmp"), t2 = child(sup, "t2");
  caf::anon_send(t, finish_atom::value);   // normal exit: done for good
  caf::anon_send(tmp, crash_atom::value);  // temporary: never restarted
  caf::anon_send(t2, crash_atom::value);   // transient that crashed: restarted
  BOOST_REQUIRE(restarted(sup, "t2", t2));
  BOOST_TEST(test::eventually(5s, [&] { return children_of(sup).size() == 1; }));
  BOOST_TEST(children_of(sup)[0].name == "t2");
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  exit_reason_of(sup);
}

BOOST_AUTO_TEST_CASE(too_many_restarts_make_the_supervisor_give_up_and_say_why) {
  child_spec dies;
  dies.name = "fragile";
  dies.start = [](caf::actor_system& sys) -> caf::expected<caf::actor> {
    return sys.spawn([](caf::event_based_actor* self) {
      self->quit(make_error(errc::refused, "cannot start today"));
    });
  };
  auto opts = options(strategy::one_for_one, 3);
  caf::scoped_actor observer{sys};
  opts.observer = observer;
  auto sup = spawn_supervisor(sys, opts, {worker_spec("steady", &log), dies});
  auto reason = exit_reason_of(sup);
  BOOST_TEST(has_code(reason, errc::gave_up), describe(reason));
  auto text = describe(reason);
  BOOST_TEST(text.find("supervisor 'sup' gave up") != std::string::npos, text);
  BOOST_TEST(text.find("child 'fragile' needed 4 restarts within 10000 ms (at most 3")
               != std::string::npos,
             text);
  BOOST_TEST(text.find("cannot start today") != std::string::npos, text);
  // Its other children were stopped with it.
  BOOST_TEST(test::eventually(5s, [&] {
    auto lines = log.take();
    return std::find(lines.begin(), lines.end(), "stop:steady") != lines.end();
  }));
  // The observer heard three restarts, then the giving up.
  unsigned restarting = 0;
  bool gave_up = false;
  while (!gave_up) {
    bool got = false;
    observer->receive([&](supervision_event& ev) {
      got = true;
      if (ev.what() == event_kind::restarting)
        ++restarting;
      if (ev.what() == event_kind::gave_up)
        gave_up = true;
    },
                      caf::after(5s) >> [] {});
    BOOST_REQUIRE(got);
  }
  BOOST_TEST(restarting == 3u);
}

BOOST_AUTO_TEST_CASE(restarts_back_off_exponentially) {
  std::atomic<int> starts{0};
  std::vector<std::chrono::steady_clock::time_point> times(8);
  child_spec dies;
  dies.name = "slow-learner";
  dies.start = [&](caf::actor_system& sys) -> caf::expected<caf::actor> {
    times[static_cast<size_t>(starts++)] = std::chrono::steady_clock::now();
    return sys.spawn(
      [](caf::event_based_actor* self) { self->quit(make_error(errc::refused, "no")); });
  };
  auto opts = options(strategy::one_for_one, 3);
  opts.backoff.initial = 40ms;
  opts.backoff.factor = 2;
  opts.backoff.max = 100ms;
  caf::scoped_actor observer{sys};
  opts.observer = observer;
  auto sup = spawn_supervisor(sys, opts, {dies});
  BOOST_TEST(has_code(exit_reason_of(sup), errc::gave_up));
  BOOST_REQUIRE_EQUAL(starts.load(), 4);
  // The waits: 40, 80, then capped at 100 ms (lower bounds only: a loaded box is late).
  std::vector<int64_t> delays;
  for (;;) {
    bool got = false;
    observer->receive(
      [&](supervision_event& ev) {
        got = true;
        if (ev.what() == event_kind::restarting)
          delays.push_back(ev.delay_ms);
      },
      caf::after(0ms) >> [] {});
    if (!got)
      break;
  }
  BOOST_TEST((delays == std::vector<int64_t>{40, 80, 100}));
  for (size_t i = 1; i < 4; ++i)
    BOOST_TEST((times[i] - times[i - 1] >= std::chrono::milliseconds{delays[i - 1]}));
}

BOOST_AUTO_TEST_CASE(a_supervisor_that_gives_up_escalates_to_its_own_supervisor) {
  std::atomic<int> inner_starts{0};
  child_spec inner;
  inner.name = "inner";
  inner.start = [&](caf::actor_system& sys) -> caf::expected<caf::actor> {
    ++inner_starts;
    child_spec dies;
    dies.name = "leaf";
    dies.start = [](caf::actor_system& s) -> caf::expected<caf::actor> {
      return s.spawn(
        [](caf::event_based_actor* self) { self->quit(make_error(errc::refused, "broken")); });
    };
    supervisor_options opts;
    opts.name = "inner";
    opts.intensity.max_restarts = 1;
    return spawn_supervisor(sys, opts, {dies});
  };
  auto opts = options(strategy::one_for_one, 2);
  opts.name = "outer";
  auto outer = spawn_supervisor(sys, opts, {inner});
  auto reason = exit_reason_of(outer);
  BOOST_TEST(has_code(reason, errc::gave_up), describe(reason));
  auto text = describe(reason);
  // The outer one restarted the inner one twice, then gave up naming it and its reason.
  BOOST_TEST(inner_starts.load() == 3);
  BOOST_TEST(text.find("supervisor 'outer' gave up: child 'inner'") != std::string::npos, text);
  BOOST_TEST(text.find("supervisor 'inner' gave up: child 'leaf'") != std::string::npos, text);
}

BOOST_AUTO_TEST_CASE(an_exit_message_stops_children_in_reverse_order_then_the_supervisor) {
  auto sup = spawn_supervisor(sys, options(strategy::one_for_one),
                              {worker_spec("a", &log), worker_spec("b", &log),
                               worker_spec("c", &log)});
  children_of(sup);
  log.take();
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  BOOST_TEST((exit_reason_of(sup) == caf::exit_reason::user_shutdown));
  BOOST_TEST((log.take() == std::vector<std::string>{"stop:c", "stop:b", "stop:a"}));
}

BOOST_AUTO_TEST_CASE(a_child_that_ignores_its_exit_message_is_killed_after_its_shutdown_time) {
  child_spec stubborn;
  stubborn.name = "stubborn";
  stubborn.shutdown = 200ms;
  stubborn.start = [this](caf::actor_system& s) -> caf::expected<caf::actor> {
    return s.spawn([this](caf::event_based_actor* self) -> caf::behavior {
      self->set_exit_handler([](caf::exit_msg&) {}); // ignores it
      self->attach_functor([this](const caf::error&) { log.add("stop:stubborn"); });
      return {[](caf::get_atom) { return 1; }};
    });
  };
  auto sup = spawn_supervisor(sys, options(strategy::one_for_one), {stubborn});
  children_of(sup);
  auto begun = std::chrono::steady_clock::now();
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  BOOST_TEST((exit_reason_of(sup) == caf::exit_reason::user_shutdown));
  BOOST_TEST((std::chrono::steady_clock::now() - begun >= 200ms));
  BOOST_TEST((log.take() == std::vector<std::string>{"stop:stubborn"}));
}

BOOST_AUTO_TEST_CASE(children_do_not_outlive_a_killed_supervisor) {
  auto sup = spawn_supervisor(sys, options(strategy::one_for_one),
                              {worker_spec("a", &log), worker_spec("b", &log)});
  children_of(sup);
  log.take();
  caf::anon_send_exit(sup, caf::exit_reason::kill);
  exit_reason_of(sup);
  BOOST_TEST(test::eventually(5s, [&] { return log.size() == 2; }));
}

BOOST_AUTO_TEST_CASE(a_blocking_start_runs_off_the_supervisor_and_a_late_one_fails) {
  child_spec slow;
  slow.name = "slow";
  slow.blocking_start = true;
  slow.start = [this](caf::actor_system& s) -> caf::expected<caf::actor> {
    std::this_thread::sleep_for(300ms); // stands for a process launch
    log.add("start:slow");
    return s.spawn(worker, std::string{"slow"}, &log);
  };
  auto sup = spawn_supervisor(sys, options(strategy::one_for_one), {slow});
  // The supervisor answers while the start blocks.
  auto kids = children_of(sup);
  BOOST_REQUIRE_EQUAL(kids.size(), 1u);
  BOOST_TEST(kids[0].state == "starting");
  BOOST_TEST(test::eventually(5s, [&] { return children_of(sup)[0].state == "running"; }));
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  exit_reason_of(sup);

  child_spec stuck = slow;
  stuck.name = "stuck";
  stuck.start_timeout = 100ms;
  stuck.restart = restart_policy::temporary;
  caf::scoped_actor observer{sys};
  auto opts = options(strategy::one_for_one);
  opts.observer = observer;
  log.take();
  auto sup2 = spawn_supervisor(sys, opts, {stuck});
  std::string failure;
  observer->receive(
    [&](supervision_event& ev) {
      if (ev.what() == event_kind::start_failed)
        failure = ev.reason;
    },
    caf::after(5s) >> [] {});
  BOOST_TEST(failure.find("did not start within 100 ms") != std::string::npos, failure);
  // The late child is stopped when it finally arrives.
  BOOST_TEST(test::eventually(5s, [&] { return log.size() == 2; }));
  BOOST_TEST((log.take() == std::vector<std::string>{"start:slow", "stop:slow"}));
  caf::anon_send_exit(sup2, caf::exit_reason::user_shutdown);
  exit_reason_of(sup2);
}

BOOST_AUTO_TEST_CASE(one_child_s_backoff_does_not_hold_back_its_siblings) {
  // "slow" dies at every start after its first: its waits grow (300, 600, 1200 ms).
  // "quick" crashes once meanwhile: its own first restart waits 300 ms, neither as
  // long as slow's next wait nor what three restarts of the whole supervisor give.
  child_spec slow;
  slow.name = "slow";
  std::atomic<int> slow_starts{0};
  slow.start = [&](caf::actor_system& s) -> caf::expected<caf::actor> {
    if (slow_starts++ > 0)
      return make_error(errc::refused, "still broken");
    return s.spawn(worker, std::string{"slow"}, &log);
  };
  auto opts = options(strategy::one_for_one, 10);
  opts.backoff.initial = 300ms;
  opts.backoff.factor = 2;
  opts.backoff.max = 5000ms;
  auto sup = spawn_supervisor(sys, opts, {slow, worker_spec("quick", &log)});
  auto s1 = child(sup, "slow");
  auto q1 = child(sup, "quick");
  caf::anon_send(s1, crash_atom::value);
  BOOST_REQUIRE(test::eventually(5s, [&] { return slow_starts.load() >= 2; }));
  auto begun = std::chrono::steady_clock::now();
  caf::anon_send(q1, crash_atom::value);
  auto q2 = restarted(sup, "quick", q1);
  BOOST_REQUIRE(q2);
  auto took = std::chrono::steady_clock::now() - begun;
  BOOST_TEST((took >= 300ms));
  BOOST_TEST((took < 1100ms), "quick came back after "
                                << std::chrono::duration_cast<std::chrono::milliseconds>(took)
                                     .count()
                                << " ms");
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  exit_reason_of(sup);
}

BOOST_AUTO_TEST_CASE(children_that_crash_together_in_a_group_restart_count_once) {
  // one_for_all with at most one restart: b and c crash at the same moment. The one
  // whose exit comes second is already planned to stop: no second restart is counted.
  auto opts = options(strategy::one_for_all, 1);
  auto sup = spawn_supervisor(sys, opts,
                              {worker_spec("a", &log), worker_spec("b", &log),
                               worker_spec("c", &log)});
  auto b = child(sup, "b"), c = child(sup, "c");
  caf::anon_send(b, crash_atom::value);
  caf::anon_send(c, crash_atom::value);
  BOOST_REQUIRE(restarted(sup, "b", b));
  BOOST_REQUIRE(restarted(sup, "c", c));
  auto kids = children_of(sup);
  BOOST_REQUIRE_EQUAL(kids.size(), 3u);
  for (auto& kid : kids)
    BOOST_TEST(kid.state == "running");
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  BOOST_TEST((exit_reason_of(sup) == caf::exit_reason::user_shutdown));
}

BOOST_AUTO_TEST_CASE(a_child_failed_before_its_blocking_start_returned_is_restarted) {
  // The child runs (and talks to others) before its start returns; its owner reports
  // it failed in that window: the supervisor kills it when the start returns and starts
  // another.
  std::mutex mutex;
  std::vector<caf::actor_addr> started;
  std::atomic<bool> release{false};
  child_spec slow;
  slow.name = "slow";
  slow.blocking_start = true;
  slow.start = [&](caf::actor_system& s) -> caf::expected<caf::actor> {
    auto a = s.spawn(worker, std::string{"slow"}, &log);
    {
      std::lock_guard<std::mutex> guard{mutex};
      started.push_back(a.address());
    }
    test::eventually(5s, [&] { return release.load(); });
    return a;
  };
  auto sup = spawn_supervisor(sys, options(strategy::one_for_one), {slow});
  BOOST_REQUIRE(test::eventually(5s, [&] {
    std::lock_guard<std::mutex> guard{mutex};
    return started.size() == 1;
  }));
  caf::anon_send(sup, fail_child_atom::value, started[0],
                 make_error(errc::timeout, "silent"));
  release = true;
  BOOST_TEST(test::eventually(5s, [&] {
    std::lock_guard<std::mutex> guard{mutex};
    return started.size() == 2;
  }));
  BOOST_TEST(test::eventually(5s, [&] {
    auto kids = children_of(sup);
    return kids.size() == 1 && kids[0].state == "running" && kids[0].restarts == 1
           && kids[0].handle.address() == started[1];
  }));
  BOOST_TEST(test::eventually(5s, [&] { return log.size() >= 1; })); // the first stopped
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  exit_reason_of(sup);
}

BOOST_AUTO_TEST_CASE(backoff_delays_are_capped) {
  restart_backoff b;
  b.initial = 10ms;
  b.factor = 3;
  b.max = 200ms;
  BOOST_TEST(b.delay_for(1).count() == 10);
  BOOST_TEST(b.delay_for(2).count() == 30);
  BOOST_TEST(b.delay_for(3).count() == 90);
  BOOST_TEST(b.delay_for(4).count() == 200);
  BOOST_TEST(restart_backoff{}.delay_for(5).count() == 0);
}

BOOST_AUTO_TEST_SUITE_END()
