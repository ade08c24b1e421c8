// The Troupe peer: a bench actor on a node in the server process; drivers on a node in
// the benchmark process talk to it through Troupe's UCX middleman.

#include "tools/bench/bench.hpp"

#include <csignal>
#include <functional>
#include <iostream>
#include <memory>
#include <thread>
#include <time.h>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "base/error.hpp"
#include "runtime/config.hpp"
#include "runtime/node.hpp"
#include "runtime/provider_registry.hpp"
#include "transport/rdma.hpp"

namespace troupe::bench {

namespace {

const auto request_timeout = std::chrono::seconds(30);

/// A node config with the benchmark's transport and scheduler settings (and
/// `extra`, more top-level keys, if given).
std::string node_config_text(bool busy_poll, const std::string& scheduler,
                             bool batch_sends, const std::string& extra = {}) {
  return std::string{R"({"transport": {"busy_poll": )"} + (busy_poll ? "true" : "false")
         + R"(, "batch_sends": )" + (batch_sends ? "true" : "false")
         + R"(}, "scheduler": ")" + scheduler + "\"" + (extra.empty() ? "" : ", " + extra)
         + "}";
}

/// CPU time of this process so far, in seconds.
double process_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

} // namespace

caf::behavior bench_actor(caf::stateful_actor<bench_state>* self) {
  return {
    [](const std::string& payload) { return payload; },
    [self](caf::put_atom, const std::string&) { ++self->state.received; },
    [self](caf::get_atom) { return self->state.received; },
    [self](caf::add_atom, uint64_t bytes) -> caf::result<region_descriptor> {
      auto region = memory_region::allocate(self->system(), bytes);
      if (!region)
        return region.error();
      self->state.region = *region;
      return (*region)->descriptor();
    },
  };
}

namespace {

/// Runs `body` in an event-based actor and blocks until it calls `finish`; the error
/// the driver ended with instead (a failed request ends it), or none.
caf::error
run_driver(caf::actor_system& sys,
           std::function<void(caf::event_based_actor*, std::function<void()>)> body) {
  caf::scoped_actor waiter{sys};
  auto report = caf::actor{waiter};
  auto driver = sys.spawn([body, report](caf::event_based_actor* self) -> caf::behavior {
    body(self, [self, report] {
      self->send(report, caf::ok_atom::value);
      self->quit();
    });
    return {[](int) {}};
  });
  waiter->monitor(driver);
  caf::error failure;
  waiter->receive([](caf::ok_atom) {},
                  [&](caf::down_msg& down) {
                    failure = down.reason
                                ? down.reason
                                : make_error(errc::provider_failed,
                                             "the benchmark driver ended early");
                  });
  return failure;
}

} // namespace

int serve_troupe(bool busy_poll, const std::string& scheduler, bool batch_sends) {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  node server{parse_node_config(
    node_config_text(
      busy_poll, scheduler, batch_sends,
      R"("providers": [{"type": "bench", "name": "bench", "provider_id": 1}])"),
    "bench-server")};
  server.providers().add_type(
    "bench", [](const provider_context& ctx) -> caf::expected<caf::actor> {
      return ctx.system.spawn(bench_actor);
    });
  if (auto err = server.start()) {
    std::cerr << describe(err) << "\n";
    return 1;
  }
  std::cout << "address " << server.address() << std::endl;
  int signo = 0;
  sigwait(&stop, &signo);
  return 0;
}

void measure_actor(caf::actor_system& sys, const caf::actor& target, const workload& w,
                   result_set& r) {
  // (a) round trips, one at a time. Without a request timeout: with one, CAF's clock
  // thread is woken for every request (measured on its own below).
  auto time_round_trips = [&](size_t size, caf::duration timeout,
                              std::shared_ptr<std::vector<double>> samples) {
    return run_driver(
      sys, [&, size, timeout, samples](caf::event_based_actor* self, auto finish) {
        auto payload = std::string(size, 'x');
        auto next = std::make_shared<std::function<void(int)>>();
        *next = [=](int i) {
          if (i == w.warmup + w.rtt_iterations) {
            // Break the self-reference; this closure dies here, so use only locals.
            auto done = finish;
            *next = nullptr;
            done();
            return;
          }
          auto start = clock_type::now();
          self->request(target, timeout, payload).then([=](const std::string&) {
            if (i >= w.warmup)
              samples->push_back(micros_since(start));
            (*next)(i + 1);
          });
        };
        (*next)(0);
      });
  };
  for (auto size : w.rtt_sizes) {
    auto samples = std::make_shared<std::vector<double>>();
    if (auto err = time_round_trips(size, caf::infinite, samples)) {
      r.error = "round trips: " + describe(err);
      return;
    }
    r.round_trip[size] = summarize(*samples);
  }
  {
    auto samples = std::make_shared<std::vector<double>>();
    if (auto err = time_round_trips(8, caf::duration{request_timeout}, samples)) {
      r.error = "round trips with a timeout: " + describe(err);
      return;
    }
    r.round_trip_8B_with_timeout = summarize(*samples);
  }

  // (b) one-way 64 B messages; a request after them returns once all have arrived.
  {
    auto start = clock_type::now();
    auto err = run_driver(sys, [&](caf::event_based_actor* self, auto finish) {
      auto payload = std::string(64, 'x');
      for (int i = 0; i < w.one_way_messages; ++i)
        self->send(target, caf::put_atom::value, payload);
      self->request(target, request_timeout, caf::get_atom::value).then([=](uint64_t) {
        finish();
      });
    });
    if (err) {
      r.error = "one-way messages: " + describe(err);
      return;
    }
    r.one_way_msgs_per_s = w.one_way_messages / (micros_since(start) / 1e6);
  }

  // (c) requests with a fixed number in flight.
  for (auto window : w.in_flight) {
    auto start = clock_type::now();
    auto err = run_driver(sys, [&, window](caf::event_based_actor* self, auto finish) {
      auto payload = std::string(64, 'x');
      auto sent = std::make_shared<int>(0);
      auto done = std::make_shared<int>(0);
      auto issue = std::make_shared<std::function<void()>>();
      *issue = [=] {
        ++*sent;
        self->request(target, caf::infinite, payload).then([=](const std::string&) {
          if (++*done == w.in_flight_requests) {
            auto all_done = finish;
            *issue = nullptr;
            all_done();
          } else if (*sent < w.in_flight_requests) {
            (*issue)();
          }
        });
      };
      for (int i = 0; i < window; ++i)
        (*issue)();
    });
    if (err) {
      r.error = "requests in flight: " + describe(err);
      return;
    }
    r.requests_per_s[window] = w.in_flight_requests / (micros_since(start) / 1e6);
  }
}

result_set measure_troupe(const std::string& address, const workload& w) {
  result_set r;
  node client{
    parse_node_config(node_config_text(w.busy_poll, w.scheduler, w.batch_sends), "bench-client")};
  if (auto err = client.start()) {
    r.error = describe(err);
    return r;
  }
  auto target_or = client.remote_provider(address, "bench", 1, request_timeout);
  if (!target_or) {
    r.error = describe(target_or.error());
    return r;
  }
  auto target = *target_or;
  auto& sys = client.system();

  measure_actor(sys, target, w, r);

  // (d) RDMA get of 1 MiB, a few in flight.
  {
    caf::scoped_actor self{sys};
    region_descriptor desc;
    self->request(target, request_timeout, caf::add_atom::value, uint64_t{w.rdma_bytes})
      .receive([&](const region_descriptor& d) { desc = d; },
               [&](const caf::error& err) { r.error = describe(err); });
    auto local = memory_region::allocate(sys, w.rdma_bytes);
    if (desc.length == w.rdma_bytes && local) {
      auto start = clock_type::now();
      int issued = 0;
      int completed = 0;
      for (; issued < w.rdma_window; ++issued)
        rdma_get(sys, desc, 0, *local, 0, w.rdma_bytes, self, issued);
      while (completed < w.rdma_iterations) {
        bool ok = true;
        self->receive([&](const rdma_done& done) { ok = !done.error; },
                      caf::after(request_timeout) >> [&] { ok = false; });
        if (!ok) {
          r.error = "rdma get failed";
          break;
        }
        ++completed;
        if (issued < w.rdma_iterations)
          rdma_get(sys, desc, 0, *local, 0, w.rdma_bytes, self, issued++);
      }
      if (r.error.empty())
        r.rdma_get_gb_per_s =
          (double(w.rdma_bytes) * w.rdma_iterations) / (micros_since(start) * 1e3);
    }
  }
  // Last (a long idle period before the round trips would cool the machine down
  // for them): a connected node with no traffic: what its threads cost while they wait.
  {
    auto cpu = process_cpu_seconds();
    auto start = clock_type::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(w.idle_seconds));
    r.idle_cpu_percent =
      100.0 * (process_cpu_seconds() - cpu) / (micros_since(start) / 1e6);
  }

  client.stop();
  return r;
}

result_set measure_local(const workload& w) {
  result_set r;
  node here{parse_node_config(node_config_text(w.busy_poll, w.scheduler, w.batch_sends), "bench-local")};
  if (auto err = here.start()) {
    r.error = describe(err);
    return r;
  }
  auto target = here.system().spawn(bench_actor);
  auto local = w;
  local.rtt_sizes = {8, 64};
  measure_actor(here.system(), target, local, r);
  caf::anon_send_exit(target, caf::exit_reason::user_shutdown);
  here.stop();
  return r;
}

} // namespace troupe::bench
