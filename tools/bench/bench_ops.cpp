// troupe-bench ops: the op framework with real actorhost processes, each figure beside
// the peer it is compared with, measured in the same run:
// - a `ping` op round trip (8 B, one target) against a plain request to the same
//   node's node service over the same connection: the framework's own cost;
// - ping ops per second with 1, 64 and 1024 in flight, beside plain requests per
//   second with as many in flight;
// - `rdma-ping` of 1 MiB and 64 MiB (bytes moved both ways per second, one op at a
//   time; each op also fills, transforms and checks its buffer) against raw UCX gets of
//   the same size, one at a time, from the raw UCX server half;
// - DHT puts and gets per second over 4 nodes, small values (inline) and 256 KiB
//   values (RDMA).

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <mutex>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/builtin.hpp"
#include "actors/ops/dht.hpp"
#include "actors/ops/ping.hpp"
#include "actors/ops/rdma_ping.hpp"
#include "base/error.hpp"
#include "runtime/config.hpp"
#include "runtime/node.hpp"
#include "runtime/node_service.hpp"
#include "transport/blocking_wait.hpp"
#include "transport/middleman.hpp"
#include "runtime/ops.hpp"
#include "tools/bench/bench.hpp"
#include "tools/bench/host.hpp"

namespace troupe::bench {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

struct ops_workload {
  int rtt_iterations = 2000;
  std::vector<size_t> in_flight{1, 64, 1024};
  size_t in_flight_ops = 20000;
  std::vector<std::pair<uint64_t, int>> rdma{{uint64_t{1} << 20, 50},
                                             {uint64_t{64} << 20, 4}};
  size_t dht_small_keys = 20000;
  size_t dht_large_keys = 400;
  size_t dht_in_flight = 64;
  size_t dht_nodes = 4;
};

json latency_json(const latency& l) {
  return {{"p50", l.p50_us}, {"p99", l.p99_us}};
}

/// Keeps `window` ops in flight until `total` are done (each launched from the
/// previous one's continuation); ops per second. Throws on the first failure, or
/// when `check` refuses a result.
double
ops_per_second(size_t total, size_t window,
               const std::function<ops::op_handle(size_t)>& launch,
               std::function<bool(size_t, const ops::op_result&)> check = nullptr) {
  struct shared {
    std::mutex mtx;
    std::condition_variable cv;
    std::atomic<size_t> launched{0};
    std::atomic<bool> stopped{false}; // gave up: launch no more
    size_t done = 0;
    size_t total = 0;
    std::string failure;
    std::function<void()> next;
  };
  auto st = std::make_shared<shared>();
  st->total = total;
  // Continuations hold `st`, never this frame: on a timeout they may still run.
  st->next = [&launch, check, total, weak = std::weak_ptr<shared>{st}] {
    auto st = weak.lock();
    if (!st || st->stopped)
      return;
    auto i = st->launched++;
    if (i >= total)
      return;
    launch(i).then([st, i, check](const ops::op_result& r) {
      // The next launch first: once the last op is counted, nothing calls `launch`.
      st->next();
      std::string why;
      if (!r)
        why = describe(r.error());
      else if (check && !check(i, r))
        why = "op " + std::to_string(i) + " returned a wrong result";
      bool over = false;
      {
        std::lock_guard<std::mutex> guard{st->mtx};
        if (!why.empty() && st->failure.empty())
          st->failure = std::move(why);
        over = ++st->done == st->total;
      }
      // Only the last one wakes the waiting thread, as the plain requests' driver
      // does: a wakeup per op would be measured as the op's cost (on 2 cores it is).
      if (over)
        st->cv.notify_all();
    });
  };
  auto start = clock_type::now();
  for (size_t k = 0; k < std::min(window, total); ++k)
    st->next();
  std::unique_lock<std::mutex> guard{st->mtx};
  if (!st->cv.wait_for(guard, 300s, [&] { return st->done == total; })) {
    st->stopped = true;
    throw std::runtime_error(std::to_string(st->done) + " of " + std::to_string(total)
                             + " ops done within 300 s");
  }
  auto seconds = micros_since(start) / 1e6;
  if (!st->failure.empty())
    throw std::runtime_error("an op failed: " + st->failure);
  return static_cast<double>(total) / seconds;
}

/// Plain requests (node service pings) with `window` in flight until `total` are
/// answered; requests per second.
double requests_per_second(node& n, const caf::actor& service, size_t total,
                           size_t window) {
  caf::scoped_actor waiter{n.system()};
  auto report = caf::actor{waiter};
  auto start = clock_type::now();
  auto driver = n.system().spawn([=](caf::event_based_actor* self) -> caf::behavior {
    auto sent = std::make_shared<size_t>(0);
    auto done = std::make_shared<size_t>(0);
    auto send = std::make_shared<std::function<void()>>();
    *send = [=] {
      ++*sent;
      self->request(service, 30s, ping_atom::value, std::string{"12345678"})
        .then(
          [=](const std::string&) {
            if (++*done == total) {
              self->send(report, caf::ok_atom::value);
              self->quit();
            } else if (*sent < total) {
              (*send)();
            }
          },
          [=](caf::error& err) {
            self->send(report, err);
            self->quit();
          });
    };
    for (size_t k = 0; k < std::min(window, total); ++k)
      (*send)();
    return {[](int) {}};
  });
  std::string failure;
  waiter->receive([](caf::ok_atom) {}, [&](caf::error& err) { failure = describe(err); });
  if (!failure.empty())
    throw std::runtime_error("a request failed: " + failure);
  return static_cast<double>(total) / (micros_since(start) / 1e6);
}

std::string dht_value(size_t i, size_t size) {
  std::string v(size, '\0');
  for (size_t k = 0; k < size; k += 64)
    v[k] = static_cast<char>(i + k);
  return v;
}

class ops_run {
public:
  ops_run(std::string actorhost, ops_workload w)
    : actorhost_(std::move(actorhost)), w_(std::move(w)) {
    char dir_template[] = "/tmp/troupe-bench-ops-XXXXXX";
    if (::mkdtemp(dir_template) == nullptr)
      throw std::runtime_error("mkdtemp failed");
    dir_ = dir_template;
    if (auto err = actors::register_builtin_ops(client_.ops().registry()))
      throw std::runtime_error(describe(err));
    if (auto err = client_.start())
      throw std::runtime_error("the benchmark's own node: " + describe(err));
    for (size_t i = 0; i < w_.dht_nodes; ++i)
      hosts_.push_back(std::make_unique<host>(
        actorhost_, dir_, "node-" + std::to_string(i), R"({"transport": {"port": 0}})"));
    for (auto& h : hosts_)
      addresses_.push_back(h->wait_address(60s));
  }

  ~ops_run() {
    stop_all(hosts_);
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  json run() {
    json doc;
    doc["benchmark"] = "ops";
    doc["ucx_tls"] = std::getenv("UCX_TLS") ? std::getenv("UCX_TLS") : "default";
    std::cerr << "troupe-bench: ping op against a plain request...\n";
    measure_round_trips(doc["round_trip_us"]);
    std::cerr << "troupe-bench: ops in flight...\n";
    measure_in_flight(doc["in_flight"]);
    std::cerr << "troupe-bench: rdma-ping against raw UCX gets...\n";
    measure_rdma(doc["rdma"]);
    std::cerr << "troupe-bench: DHT over " << w_.dht_nodes << " nodes...\n";
    measure_dht(doc["dht"]);
    doc["targets"] = {{"ping_op_over_plain_request", 1.2}};
    return doc;
  }

private:
  caf::actor service_of(const std::string& address) {
    auto service = client_.remote_node(address, 20s);
    if (!service)
      throw std::runtime_error("no node service at " + address + ": "
                               + describe(service.error()));
    return *service;
  }

  // Worker sleeps and wakeups on this node and on the target's during `run`, per
  // round trip: being woken costs tens of microseconds here, so they explain a time.
  json sleeps_during(const caf::actor& service, int iterations,
                     const std::function<void()>& run) {
    caf::scoped_actor self{client_.system()};
    auto target_stats = [&] {
      std::map<std::string, uint64_t> s;
      self->request(service, 10s, stats_atom::value)
        .receive([&](std::map<std::string, uint64_t>& m) { s = std::move(m); },
                 [](caf::error&) {});
      return s;
    };
    auto here_before = client_.transport().stats();
    auto there_before = target_stats();
    run();
    auto here_after = client_.transport().stats();
    auto there_after = target_stats();
    auto per_op = [&](uint64_t a, uint64_t b) { return double(b - a) / iterations; };
    return {{"client_sleeps", per_op(here_before.worker_sleeps, here_after.worker_sleeps)},
            {"client_wakeups", per_op(here_before.worker_wakeups, here_after.worker_wakeups)},
            {"target_sleeps",
             per_op(there_before["worker_sleeps"], there_after["worker_sleeps"])},
            {"target_wakeups",
             per_op(there_before["worker_wakeups"], there_after["worker_wakeups"])}};
  }

  void measure_round_trips(json& out) {
    auto service = service_of(addresses_[0]);
    caf::scoped_actor self{client_.system()};
    latency plain, op;
    out["plain_request_sleeps"] = sleeps_during(service, w_.rtt_iterations, [&] {
    plain = time_round_trips(w_.rtt_iterations, [&] {
      bool ok = false;
      self->request(service, 10s, ping_atom::value, std::string{"12345678"})
        .receive([&](const std::string&) { ok = true; }, [&](caf::error&) {});
      return ok;
    });
    });
    out["ping_op_sleeps"] = sleeps_during(service, w_.rtt_iterations, [&] {
    op = time_round_trips(w_.rtt_iterations, [&] {
      auto r =
        ops::launch<actors::ping_op>(client_, {addresses_[0]}, std::string{"12345678"})
          .get_for(10s);
      return r && *r;
    });
    });
    // This node as the target: the framework's cost without the network.
    auto local = time_round_trips(w_.rtt_iterations, [&] {
      auto r = ops::launch<actors::ping_op>(client_, {client_.address()},
                                            std::string{"12345678"})
                 .get_for(10s);
      return r && *r;
    });
    // The fastest plain request a caller has: no timeout (CAF's clock thread takes
    // part in a request with one), the caller polling for its answer as get() does.
    auto polled = time_round_trips(w_.rtt_iterations, [&] {
      bool ok = false;
      transport::blocking_waiter here{client_.transport()};
      auto pending = self->request(service, caf::infinite, ping_atom::value,
                                   std::string{"12345678"});
      here.wait_for_mail(*self.ptr());
      pending.receive([&](const std::string&) { ok = true; }, [&](caf::error&) {});
      return ok;
    });
    out["plain_request"] = latency_json(plain);
    out["plain_request_polled"] = latency_json(polled);
    out["ping_op"] = latency_json(op);
    out["ping_op_this_node"] = latency_json(local);
    out["ratio_p50"] = op.p50_us / plain.p50_us;
    out["ratio_p50_polled"] = op.p50_us / polled.p50_us;
  }

  void measure_in_flight(json& out) {
    auto service = service_of(addresses_[0]);
    for (auto window : w_.in_flight) {
      json row;
      row["in_flight"] = window;
      row["plain_requests_per_s"] =
        requests_per_second(client_, service, w_.in_flight_ops, window);
      row["ping_ops_per_s"] = ops_per_second(w_.in_flight_ops, window, [&](size_t) {
        return ops::launch_with<actors::ping_op>(client_, {60s}, {addresses_[0]},
                                                 std::string{"12345678"});
      });
      out.push_back(row);
    }
  }

  void measure_rdma(json& out) {
    server_process ucx_server{"ucx", "", {}};
    for (auto [bytes, iterations] : w_.rdma) {
      json row;
      row["bytes"] = bytes;
      auto start = clock_type::now();
      for (int i = 0; i < iterations; ++i) {
        auto r =
          ops::launch_with<actors::rdma_ping_op>(client_, {120s}, {addresses_[0]}, bytes)
            .get_for(150s);
        if (!r || !*r)
          throw std::runtime_error("rdma-ping failed: "
                                   + (r ? describe(r->error()) : "no result"));
      }
      auto us = micros_since(start);
      row["rdma_ping_ms_per_op"] = us / 1e3 / iterations;
      // Both directions move the bytes: the target's get and its put back.
      row["rdma_ping_gb_per_s"] = 2.0 * double(bytes) * iterations / (us * 1e3);
      if (ucx_server.ok()) {
        workload w;
        w.rtt_sizes.clear();
        w.one_way_messages = 0;
        w.in_flight.clear();
        w.rdma_bytes = bytes;
        w.rdma_iterations = std::max(2 * iterations, 4);
        w.rdma_window = 1;
        auto ucx = measure_ucx(ucx_server.address(), w);
        if (ucx.error.empty() && ucx.rdma_get_gb_per_s)
          row["raw_ucx_get_gb_per_s"] = *ucx.rdma_get_gb_per_s;
        else
          row["raw_ucx_error"] = ucx.error;
      } else {
        row["raw_ucx_error"] = ucx_server.error();
      }
      out.push_back(row);
    }
  }

  void measure_dht(json& out) {
    actors::dht_options options;
    options.deadline = 60s;
    options.table = "bench";
    actors::dht table{client_, addresses_, options};
    for (auto [label, keys, size] :
         {std::tuple<const char*, size_t, size_t>{"small", w_.dht_small_keys, 100},
          std::tuple<const char*, size_t, size_t>{"rdma", w_.dht_large_keys,
                                                  256 << 10}}) {
      json row;
      row["values"] = label;
      row["value_bytes"] = size;
      row["keys"] = keys;
      row["in_flight"] = w_.dht_in_flight;
      auto key = [label = std::string{label}](size_t i) {
        return label + "-" + std::to_string(i);
      };
      row["puts_per_s"] = ops_per_second(keys, w_.dht_in_flight, [&](size_t i) {
        return table.put(key(i), dht_value(i, size));
      });
      row["gets_per_s"] = ops_per_second(
        keys, w_.dht_in_flight, [&](size_t i) { return table.get(key(i)); },
        [size](size_t i, const ops::op_result& r) {
          return r->get_as<std::string>(0) == dht_value(i, size);
        });
      out.push_back(row);
    }
  }

  std::string actorhost_;
  ops_workload w_;
  std::string dir_;
  node client_{parse_node_config(R"({"threads": 2})", "troupe-bench")};
  std::vector<std::unique_ptr<host>> hosts_;
  std::vector<std::string> addresses_;
};

void print_ops_table(const json& doc, std::ostream& os) {
  const auto& rt = doc["round_trip_us"];
  auto lat = [](const json& l) {
    return fixed(l["p50"], 1) + " / " + fixed(l["p99"], 1);
  };
  os << "round trip, us p50 / p99 (8 B, one target):\n"
     << "  plain request (node service ping)  " << lat(rt["plain_request"]) << "\n"
     << "  ... no timeout, the caller polls   " << lat(rt["plain_request_polled"]) << "\n"
     << "  ping op                            " << lat(rt["ping_op"]) << "\n"
     << "  ping op to this node (no network)  " << lat(rt["ping_op_this_node"]) << "\n"
     << "  op / plain request (p50)           " << fixed(rt["ratio_p50"], 2)
     << "x (target <= 1.2x); against the polled one " << fixed(rt["ratio_p50_polled"], 2)
     << "x\n";
  auto sleeps = [&](const json& s) {
    return fixed(s["client_sleeps"], 2) + " / " + fixed(s["client_wakeups"], 2) + " here, "
           + fixed(s["target_sleeps"], 2) + " / " + fixed(s["target_wakeups"], 2)
           + " at the target";
  };
  os << "worker sleeps / wakeups per round trip:\n"
     << "  plain request                      " << sleeps(rt["plain_request_sleeps"]) << "\n"
     << "  ping op                            " << sleeps(rt["ping_op_sleeps"]) << "\n";
  os << std::left << std::setw(12) << "in flight" << std::setw(22) << "plain requests/s"
     << "ping ops/s\n";
  for (const auto& row : doc["in_flight"])
    os << std::left << std::setw(12) << row["in_flight"].get<size_t>() << std::setw(22)
       << fixed(row["plain_requests_per_s"], 0) << fixed(row["ping_ops_per_s"], 0)
       << "\n";
  os << std::left << std::setw(12) << "rdma bytes" << std::setw(22) << "rdma-ping GB/s"
     << std::setw(16) << "ms per op"
     << "raw UCX get GB/s\n";
  for (const auto& row : doc["rdma"])
    os << std::left << std::setw(12) << row["bytes"].get<uint64_t>() << std::setw(22)
       << fixed(row["rdma_ping_gb_per_s"], 2) << std::setw(16)
       << fixed(row["rdma_ping_ms_per_op"], 2)
       << (row.contains("raw_ucx_get_gb_per_s")
             ? fixed(row["raw_ucx_get_gb_per_s"], 2)
             : "n/a (" + row["raw_ucx_error"].get<std::string>() + ")")
       << "\n";
  os << std::left << std::setw(12) << "DHT values" << std::setw(14) << "bytes"
     << std::setw(10) << "keys" << std::setw(14) << "puts/s"
     << "gets/s (" << doc["dht"][0]["in_flight"].get<size_t>() << " in flight)\n";
  for (const auto& row : doc["dht"])
    os << std::left << std::setw(12) << row["values"].get<std::string>() << std::setw(14)
       << row["value_bytes"].get<size_t>() << std::setw(10) << row["keys"].get<size_t>()
       << std::setw(14) << fixed(row["puts_per_s"], 0) << fixed(row["gets_per_s"], 0)
       << "\n";
}

} // namespace

int run_ops(bool as_json, bool quick, const std::string& actorhost) {
  ops_workload w;
  if (quick) {
    w.rtt_iterations = 200;
    w.in_flight_ops = 2000;
    w.rdma = {{uint64_t{1} << 20, 5}, {uint64_t{64} << 20, 1}};
    w.dht_small_keys = 1000;
    w.dht_large_keys = 40;
  }
  return report("ops", as_json, [&] {
    ops_run run{actorhost, w};
    return run.run();
  }, print_ops_table);
}

} // namespace troupe::bench
