// troupe-bench services: the instance services (actors/overlay, events, barrier) over
// a local `actorhost --size 8` instance, from a client node in this process:
// - reduction latency (sum of ranks, asked at rank 0 and at a leaf);
// - event fan-out: a publish at rank 0 until subscribers at all 8 ranks have it;
// - barrier latency: 8 entries, one at each rank, until all are answered;
// - the KVS: a get at a replica (rank 7) and at the root, a commit with one in flight
//   and commits per second with 64 in flight, each durable (the root's SQLite store,
//   sync "full") and in memory only (a second KVS provider without a store), and a
//   watch's latency (a commit at rank 0 until a watcher at rank 7 is told);
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
#include "actors/kvs/kvs.hpp"
#include "actors/overlay/overlay.hpp"
#include "base/error.hpp"
#include "base/files.hpp"
#include "base/process_keeper.hpp"
#include "runtime/config.hpp"
#include "runtime/node.hpp"
#include "runtime/node_service.hpp"
#include "runtime/provider_registry.hpp"
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

/// Commits per second with `window` in flight: `total` one-key commits sent to `kvs`
/// (answers come back as messages), or nothing if one failed.
std::optional<double> commit_rate(caf::scoped_actor& self, const caf::actor& kvs,
                                  size_t total, size_t window) {
  auto start = clock_type::now();
  size_t sent = 0;
  size_t answered = 0;
  bool ok = true;
  auto send_one = [&] {
    kvs::transaction txn;
    txn.put("bench.rate." + std::to_string(sent % 1024), "v");
    self->send(kvs, kvs::commit_atom::value, std::move(txn));
    ++sent;
  };
  while (sent < std::min(window, total))
    send_one();
  while (answered < sent) {
    self->receive([&](const kvs::commit_receipt&) {}, [&](const caf::error&) { ok = false; },
                  caf::after(30s) >> [&] { ok = false; });
    ++answered;
    if (!ok)
      return std::nullopt;
    if (sent < total)
      send_one();
  }
  return double(total) / (micros_since(start) / 1e6);
}

/// A cached get in this process: a one-node instance here (a group of itself, its
/// overlay, a KVS in memory), a key committed, then the same lookup by local_reader and
/// by a request to the KVS actor, alternating. {reader, request}, or nothing.
std::optional<std::pair<latency, latency>> local_gets(int rounds) {
  node local{parse_node_config(R"({"threads": 1, "transport": {"port": 0}, "providers": [
      {"type": "group", "name": "group", "provider_id": 1, "config": {"bootstrap": "self"}},
      {"type": "overlay", "name": "overlay", "provider_id": 1,
       "dependencies": {"group": "group"}},
      {"type": "kvs", "name": "kvs", "provider_id": 1,
       "dependencies": {"group": "group", "overlay": "overlay"}}]})",
                               "bench-local.json")};
  if (actors::register_builtins(local) || local.start())
    return std::nullopt;
  std::optional<std::pair<latency, latency>> out;
  {
    auto provider = local.providers().find("kvs");
    auto reader = provider ? kvs::local_reader::of(provider->handle)
                           : caf::expected<kvs::local_reader>{caf::error{}};
    caf::scoped_actor self{local.system()};
    kvs::transaction txn;
    txn.put("bench.key", std::string(64, 'v'));
    bool committed = false;
    if (reader)
      self->request(provider->handle, 30s, kvs::commit_atom::value, txn)
        .receive([&](const kvs::commit_receipt&) { committed = true; }, [](caf::error&) {});
    if (committed) {
      // A read by the reader is far below the clock's resolution: time 100 at once.
      constexpr int batch = 100;
      std::vector<double> by_reader, by_request;
      bool ok = true;
      const std::string ns = kvs::primary_namespace;
      const std::string key = "bench.key";
      for (int i = 0; ok && i < rounds; ++i) {
        auto start = clock_type::now();
        for (int j = 0; j < batch; ++j)
          ok = ok && static_cast<bool>(reader->lookup(ns, key));
        by_reader.push_back(micros_since(start) / batch);
        start = clock_type::now();
        self->request(provider->handle, caf::infinite, kvs::lookup_atom::value, ns, key,
                      uint64_t{0})
          .receive([](const kvs::entry&) {}, [&](caf::error&) { ok = false; });
        by_request.push_back(micros_since(start));
      }
      if (ok)
        out = std::make_pair(summarize(std::move(by_reader)), summarize(std::move(by_request)));
    }
  }
  local.stop();
  return out;
}

json to_json(const std::optional<latency>& l) {
  if (!l)
    return nullptr;
  return {{"p50", l->p50_us}, {"p99", l->p99_us}};
}

} // namespace

int run_services(bool as_json, bool quick, const std::string& actorhost, bool under_mpirun) {
  auto dir = make_temp_dir("troupe-bench-services");
  if (!dir) {
    std::cerr << "troupe-bench: " << describe(dir.error()) << "\n";
    return 1;
  }
  auto config = *dir + "/node.json";
  // Two KVS providers: the one actorhost would add (its store in the instance
  // directory, sync "full"), and one in memory only; actorhost adds the rest.
  auto kvs_provider = [](const char* name, int id, const std::string& kvs_config) {
    return std::string{R"({"type": "kvs", "name": ")"} + name + R"(", "provider_id": )"
           + std::to_string(id)
           + R"(, "dependencies": {"group": "group", "overlay": "overlay"}, "config": )"
           + kvs_config + "}";
  };
  // Under mpirun the group forms from the ranks (bootstrap mpi) and its rank 0
  // writes the view file; with --size the launcher sets the group up.
  auto view_file = *dir + "/inst/group.json";
  auto group_config =
    under_mpirun ? R"({"bootstrap": "mpi", "file": ")" + view_file
                     + R"(", "group": {"type": "centralized"}})"
                 : std::string{"{}"};
  auto node_config = R"({"threads": 1, "providers": [)"
                     R"({"type": "group", "name": "group", "provider_id": 1, "config": )"
                     + group_config + "}, "
                     R"({"type": "overlay", "name": "overlay", "provider_id": 1, )"
                     R"("dependencies": {"group": "group"}, "config": {}}, )"
                     + kvs_provider("kvs", 1, R"({"store": ")" + *dir + R"(/kvs.sqlite"})")
                     + ", " + kvs_provider("kvs-memory", 2, "{}") + "]}";
  if (auto err = write_file_atomically(config, node_config)) {
    std::cerr << "troupe-bench: " << describe(err) << "\n";
    return 1;
  }
  child_spec launcher_spec;
  if (under_mpirun) {
    auto mpirun = find_in_path("mpirun"); // the keeper execs a path: it does not search
    if (!mpirun) {
      std::cerr << "troupe-bench services --mpirun: no mpirun in PATH\n";
      return 1;
    }
    std::filesystem::create_directories(*dir + "/inst");
    launcher_spec.argv = {*mpirun, "--oversubscribe", "--bind-to", "none", "-np",
                          std::to_string(instance_size), actorhost, "-c", config};
    launcher_spec.env = {{"OMPI_ALLOW_RUN_AS_ROOT", "1"},
                         {"OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"}};
  } else {
    launcher_spec.argv = {actorhost, "--size", std::to_string(instance_size),
                          "--instance-dir", *dir + "/inst", "-c", config};
  }
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
  group::group_view view;
  auto until = clock_type::now() + 60s;
  while (clock_type::now() < until) {
    try {
      view = group::read_view_file(view_file);
    } catch (const std::exception&) {
    }
    if (view.members.size() == instance_size)
      break;
    if (process_keeper::shared().wait_exit(launcher->pid, 0ms))
      break; // it ended (a bad config): its log says why
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
    std::vector<caf::actor> overlays, events, barriers, durable_kvs, memory_kvs;
    bool found = view.members.size() == instance_size;
    for (const auto& m : view.members) {
      auto o = client.remote_provider(m.address, "overlay", 1, 20s);
      auto e = client.remote_provider(m.address, "events", 1, 20s);
      auto b = client.remote_provider(m.address, "barrier", 1, 20s);
      auto k = client.remote_provider(m.address, "kvs", 1, 20s);
      auto km = client.remote_provider(m.address, "kvs", 2, 20s);
      found = found && o && e && b && k && km;
      if (found) {
        overlays.push_back(*o);
        events.push_back(*e);
        barriers.push_back(*b);
        durable_kvs.push_back(*k);
        memory_kvs.push_back(*km);
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
      // The KVS. A key to read, at a replica (rank 7) and at the root.
      auto leaf = instance_size - 1;
      kvs::transaction seed;
      seed.put("bench.key", std::string(64, 'v'));
      uint64_t seeded = 0;
      self->request(durable_kvs[0], 30s, kvs::commit_atom::value, seed)
        .receive([&](const kvs::commit_receipt& r) { seeded = r.version; },
                 [](caf::error&) {});
      // Gets interleaved with plain requests to the same node, so that the ratio holds
      // on a noisy machine (each set alone swings 2x between runs here).
      std::vector<double> floor_samples, replica_samples, root_samples;
      bool gets_ok = seeded > 0;
      auto time_one = [&](std::vector<double>& into, const caf::actor& to, auto answer,
                          const auto&... request) {
        auto start = clock_type::now();
        bool ok = false;
        self->request(to, caf::infinite, request...)
          .receive([&](const decltype(answer)&) { ok = true; }, [](caf::error&) {});
        into.push_back(micros_since(start));
        return ok;
      };
      auto replica_service = client.remote_node(view.members[leaf].address, 20s);
      gets_ok = gets_ok && static_cast<bool>(replica_service);
      const std::string key = "bench.key";
      for (int i = 0; gets_ok && i < rounds; ++i)
        gets_ok = time_one(floor_samples, *replica_service, std::string{}, ping_atom::value,
                           std::string{"x"})
                  && time_one(replica_samples, durable_kvs[leaf], kvs::entry{},
                              kvs::lookup_atom::value, kvs::primary_namespace, key, seeded)
                  && time_one(root_samples, durable_kvs[0], kvs::entry{},
                              kvs::lookup_atom::value, kvs::primary_namespace, key, seeded);
      std::optional<latency> get_floor, get_replica, get_root;
      if (gets_ok) {
        get_floor = summarize(std::move(floor_samples));
        get_replica = summarize(std::move(replica_samples));
        get_root = summarize(std::move(root_samples));
      }
      auto commit_one = [&](std::vector<caf::actor>& kvs_at, int n) {
        return time_each(n, [&] {
          bool ok = false;
          kvs::transaction txn;
          txn.put("bench.one", "v");
          self->request(kvs_at[leaf], caf::infinite, kvs::commit_atom::value, txn)
            .receive([&](const kvs::commit_receipt&) { ok = true; }, [](caf::error&) {});
          return ok;
        });
      };
      auto commit_durable = commit_one(durable_kvs, quick ? 20 : 300);
      auto commit_memory = commit_one(memory_kvs, quick ? 20 : 1000);
      auto rate_durable = commit_rate(self, durable_kvs[leaf], quick ? 200 : 5000, 64);
      auto rate_memory = commit_rate(self, memory_kvs[leaf], quick ? 200 : 20000, 64);
      // A watch at rank 7, commits at rank 0 (in memory: the broadcast, not the fsync).
      caf::scoped_actor watcher{client.system()};
      watcher->request(memory_kvs[leaf], 10s, kvs::watch_atom::value, kvs::primary_namespace,
                       std::string{"bench.w"}, caf::actor{watcher})
        .receive([](uint64_t) {}, [](caf::error&) {});
      auto watch_latency = time_each(quick ? 20 : 500, [&] {
        kvs::transaction txn;
        txn.put("bench.w", "v");
        self->send(memory_kvs[0], kvs::commit_atom::value, std::move(txn));
        bool told = false;
        watcher->receive([&](const kvs::change&) { told = true; }, caf::after(10s) >> [] {});
        bool committed = false;
        self->receive([&](const kvs::commit_receipt&) { committed = true; },
                      [](caf::error&) {}, caf::after(10s) >> [] {});
        return told && committed;
      });
      auto local = local_gets(rounds);
      std::optional<latency> get_cached, get_local_request;
      if (local) {
        get_cached = local->first;
        get_local_request = local->second;
      }
      json doc{{"ranks", instance_size},
               {"launched_by", under_mpirun ? "mpirun" : "actorhost --size"},
               {"fanout", 8},
               {"floor_request_us", to_json(floor)},
               {"reduction_at_root_us", to_json(reduce_root)},
               {"reduction_at_leaf_us", to_json(reduce_leaf)},
               {"event_fan_out_us", to_json(fan_out)},
               {"barrier_us", to_json(barrier)},
               {"barriers", generation},
               {"worker_sleeps_per_reduction", sleeps_per_reduction},
               {"kvs_get_cached_us", to_json(get_cached)},
               {"kvs_get_local_request_us", to_json(get_local_request)},
               {"kvs_get_floor_us", to_json(get_floor)},
               {"kvs_get_at_replica_us", to_json(get_replica)},
               {"kvs_get_at_root_us", to_json(get_root)},
               {"kvs_commit_durable_us", to_json(commit_durable)},
               {"kvs_commit_memory_us", to_json(commit_memory)},
               {"kvs_commits_per_s_durable_64", rate_durable ? json(*rate_durable) : json()},
               {"kvs_commits_per_s_memory_64", rate_memory ? json(*rate_memory) : json()},
               {"kvs_watch_us", to_json(watch_latency)}};
      bool all = floor && reduce_root && reduce_leaf && fan_out && barrier && get_replica
                 && get_root && commit_durable && commit_memory && rate_durable
                 && rate_memory && watch_latency && get_cached && get_local_request;
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
        std::cout << "instance services over " << instance_size << " actorhost ranks ("
                  << (under_mpirun ? "an mpirun job" : "actorhost --size")
                  << ", fanout 8), us p50 / p99:\n";
        row("request to rank 0's node service", floor, "(the transport's floor)");
        row("reduction (sum of ranks), asked at 0", reduce_root, "");
        row("reduction, asked at rank 7", reduce_leaf, "(one hop more each way)");
        row("event fan-out to 8 subscribers", fan_out, "(publish at 0 -> all got it)");
        row("barrier of 8 (one entry per rank)", barrier, "(all 8 answered)");
        std::cout << "  worker sleeps over the 8 nodes per reduction (each a wakeup later): "
                  << std::fixed << std::setprecision(1) << sleeps_per_reduction << "\n";
        row("kvs cached get (local_reader)", get_cached, "(in this process; aim <= 1 us)");
        row("kvs get by a request, same process", get_local_request, "(a local actor round trip)");
        row("request to rank 7's node service", get_floor, "(interleaved with the gets)");
        row("kvs get at a replica (rank 7)", get_replica, "(aim: 1.2x the line above)");
        row("kvs get at the root (rank 0)", get_root, "");
        row("kvs commit at rank 7, durable", commit_durable, "(SQLite, sync full: fsync)");
        row("kvs commit at rank 7, memory only", commit_memory, "");
        row("kvs watch: commit at 0 -> told at 7", watch_latency, "(memory only)");
        auto rate = [](const char* what, const std::optional<double>& r) {
          std::cout << "  " << std::left << std::setw(40) << what;
          if (r)
            std::cout << std::fixed << std::setprecision(0) << *r << " commits/s\n";
          else
            std::cout << "failed\n";
        };
        rate("kvs, 64 in flight at rank 7, durable", rate_durable);
        rate("kvs, 64 in flight at rank 7, memory", rate_memory);
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
