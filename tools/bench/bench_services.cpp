// troupe-bench services: the instance services (actors/overlay, events, barrier) over
// a local `actorhost --size 8` instance, from a client node in this process:
// - reduction latency (sum of ranks, asked at rank 0 and at a leaf);
// - event fan-out: a publish at rank 0 until subscribers at all 8 ranks have it;
// - barrier latency: 8 entries, one at each rank, until all are answered;
// with, in the same run, the transport's floor: a plain request to rank 0's node
// service (no timeout), and the worker sleeps per reduction over the 8 nodes (each a
// wakeup later). (MPI_Barrier over the same ranks is not measured yet.)

#include <algorithm>
#include <filesystem>
#include <thread>
#include <iomanip>
#include <iostream>

#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/barrier/barrier.hpp"
#include "actors/builtin.hpp"
#include "actors/events/events.hpp"
#include "actors/group/view.hpp"
#include "actors/overlay/overlay.hpp"
#include "base/error.hpp"
#include "base/files.hpp"
#include "base/process_keeper.hpp"
#include "runtime/config.hpp"
#include "runtime/node.hpp"
#include "runtime/node_service.hpp"
#include "tools/bench/bench.hpp"

namespace troupe::bench {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr unsigned instance_size = 8;

/// Times `rounds` runs of `once` (false: it failed; the run stops).
std::optional<latency> time_each(int rounds, const std::function<bool()>& once) {
  std::vector<double> samples;
  for (int i = 0; i < rounds; ++i) {
    auto start = clock_type::now();
    if (!once())
      return std::nullopt;
    samples.push_back(micros_since(start));
  }
  return summarize(std::move(samples));
}

json to_json(const std::optional<latency>& l) {
  if (!l)
    return nullptr;
  return {{"p50", l->p50_us}, {"p99", l->p99_us}};
}

} // namespace

int run_services(bool as_json, bool quick, const std::string& actorhost) {
  auto dir = make_temp_dir("troupe-bench-services");
  if (!dir) {
    std::cerr << "troupe-bench: " << describe(dir.error()) << "\n";
    return 1;
  }
  auto config = *dir + "/node.json";
  if (auto err = write_file_atomically(config, R"({"threads": 1})")) {
    std::cerr << "troupe-bench: " << describe(err) << "\n";
    return 1;
  }
  child_spec launcher_spec;
  launcher_spec.argv = {actorhost, "--size", std::to_string(instance_size),
                        "--instance-dir", *dir + "/inst", "-c", config};
  launcher_spec.out = child_output::discard();
  launcher_spec.err = child_output::append_to(*dir + "/instance.log");
  auto launcher = process_keeper::shared().launch(std::move(launcher_spec));
  if (!launcher) {
    std::cerr << "troupe-bench: " << describe(launcher.error()) << "\n";
    return 1;
  }
  auto instance_log = [&] {
    auto text = read_file(*dir + "/instance.log");
    return text ? *text : std::string{};
  };
  auto view_file = *dir + "/inst/group.json";
  group::group_view view;
  auto until = clock_type::now() + 60s;
  while (clock_type::now() < until) {
    try {
      view = group::read_view_file(view_file);
    } catch (const std::exception&) {
    }
    if (view.members.size() == instance_size)
      break;
    std::this_thread::sleep_for(20ms); // polling a file another process writes
  }
  int rc = 1;
  {
    node client{parse_node_config(R"({"threads": 2})", "client.json")};
    actors::register_builtin_types(client.system_config());
    if (auto err = client.start()) {
      std::cerr << "troupe-bench: " << describe(err) << "\n";
      return 1;
    }
    std::vector<caf::actor> overlays, events, barriers;
    bool found = view.members.size() == instance_size;
    for (const auto& m : view.members) {
      auto o = client.remote_provider(m.address, "overlay", 1, 20s);
      auto e = client.remote_provider(m.address, "events", 1, 20s);
      auto b = client.remote_provider(m.address, "barrier", 1, 20s);
      found = found && o && e && b;
      if (found) {
        overlays.push_back(*o);
        events.push_back(*e);
        barriers.push_back(*b);
      }
    }
    if (!found) {
      std::cerr << "troupe-bench: the instance of " << instance_size
                << " did not come up with its services; its log:\n"
                << instance_log();
    } else {
      int rounds = quick ? 50 : 2000;
      caf::scoped_actor self{client.system()};
      auto service = client.remote_node(view.members[0].address, 20s);
      if (!service) {
        std::cerr << "troupe-bench: " << describe(service.error()) << "\n";
        return 1;
      }
      // The floor: a request to rank 0's node service and back, no CAF timeout.
      auto floor = time_each(rounds, [&] {
        bool ok = false;
        self->request(*service, caf::infinite, ping_atom::value, std::string{"x"})
          .receive([&](const std::string&) { ok = true; }, [](caf::error&) {});
        return ok;
      });
      overlay::reduction sum;
      sum.op = "sum";
      sum.contribution = "rank";
      auto reduce_at = [&](size_t rank) {
        return time_each(rounds, [&, rank] {
          bool ok = false;
          self->request(overlays[rank], caf::infinite, overlay::reduce_atom::value, sum)
            .receive([&](const overlay::reduction_result& r) { ok = r.contributors == instance_size; },
                     [](caf::error&) {});
          return ok;
        });
      };
      // Worker sleeps over every rank's node, per reduction (each is a wakeup later, tens
      // of microseconds here): what a hop costs.
      std::vector<caf::actor> services;
      for (const auto& m : view.members)
        if (auto svc = client.remote_node(m.address, 20s))
          services.push_back(*svc);
      auto wakeups = [&] {
        uint64_t total = 0;
        for (auto& svc : services)
          self->request(svc, 10s, stats_atom::value)
            .receive([&](stats_map& m) { total += m["worker_sleeps"]; },
                     [](caf::error&) {});
        return total;
      };
      auto wakeups_before = wakeups();
      auto reduce_root = reduce_at(0);
      double sleeps_per_reduction =
        double(wakeups() - wakeups_before) / std::max(1, rounds);
      auto reduce_leaf = reduce_at(instance_size - 1);
      // Event fan-out: one subscriber actor per rank, all in this process.
      std::vector<std::unique_ptr<caf::scoped_actor>> subscribers;
      for (size_t r = 0; r < instance_size; ++r) {
        subscribers.push_back(std::make_unique<caf::scoped_actor>(client.system()));
        auto& s = *subscribers.back();
        s->request(events[r], 10s, caf::subscribe_atom::value, std::string{"bench."},
                   caf::actor{s})
          .receive([] {}, [](caf::error&) {});
      }
      auto fan_out = time_each(quick ? 20 : 500, [&] {
        self->send(events[0], events::publish_atom::value, std::string{"bench.e"},
                   std::string{});
        for (auto& s : subscribers) {
          bool got = false;
          (*s)->receive([&](const events::event&) { got = true; },
                        caf::after(10s) >> [] {});
          if (!got)
            return false;
        }
        self->receive([](const events::publish_receipt&) {}, [](caf::error&) {},
                      caf::after(10s) >> [] {});
        return true;
      });
      // Barrier: every rank enters; done when all 8 are answered.
      uint64_t generation = 0;
      auto barrier = time_each(quick ? 20 : 500, [&] {
        std::vector<caf::response_handle<caf::blocking_actor, caf::message, true>> entries;
        for (auto& b : barriers)
          entries.push_back(self->request(b, caf::infinite, barrier::enter_atom::value,
                                          std::string{"bench"}, instance_size));
        bool ok = true;
        for (auto& e : entries)
          e.receive([&](const barrier::barrier_done& d) { generation = d.generation; },
                    [&](caf::error&) { ok = false; });
        return ok;
      });
      json doc{{"ranks", instance_size},
               {"fanout", 8},
               {"floor_request_us", to_json(floor)},
               {"reduction_at_root_us", to_json(reduce_root)},
               {"reduction_at_leaf_us", to_json(reduce_leaf)},
               {"event_fan_out_us", to_json(fan_out)},
               {"barrier_us", to_json(barrier)},
               {"barriers", generation},
               {"worker_sleeps_per_reduction", sleeps_per_reduction}};
      bool all = floor && reduce_root && reduce_leaf && fan_out && barrier;
      if (as_json) {
        std::cout << doc.dump() << "\n";
      } else {
        auto row = [](const char* what, const std::optional<latency>& l, const char* note) {
          std::cout << "  " << std::left << std::setw(40) << what;
          if (l)
            std::cout << std::fixed << std::setprecision(1) << l->p50_us << " / "
                      << l->p99_us;
          else
            std::cout << "failed";
          std::cout << "  " << note << "\n";
        };
        std::cout << "instance services over " << instance_size
                  << " actorhost ranks (fanout 8), us p50 / p99:\n";
        row("request to rank 0's node service", floor, "(the transport's floor)");
        row("reduction (sum of ranks), asked at 0", reduce_root, "");
        row("reduction, asked at rank 7", reduce_leaf, "(one hop more each way)");
        row("event fan-out to 8 subscribers", fan_out, "(publish at 0 -> all got it)");
        row("barrier of 8 (one entry per rank)", barrier, "(all 8 answered)");
        std::cout << "  worker sleeps over the 8 nodes per reduction (each a wakeup later): "
                  << std::fixed << std::setprecision(1) << sleeps_per_reduction << "\n";
      }
      rc = all ? 0 : 1;
      if (!all)
        std::cerr << "troupe-bench: a services measurement failed\n";
    }
  }
  process_keeper::shared().terminate(launcher->pid, 10s);
  std::error_code ignored;
  std::filesystem::remove_all(*dir, ignored);
  return rc;
}

} // namespace troupe::bench
