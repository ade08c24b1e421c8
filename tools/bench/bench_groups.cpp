// troupe-bench groups: the centralized group backend with real actorhost processes.
//
// - formation: N processes that are up and waiting join at the same moment (the
//   benchmark releases them by writing the view file they wait for) until the leader
//   has pushed N joins; also the start-up time of one actorhost, the part a cold start
//   adds per process;
// - refresh round trips through a group_client: "no change" and the full view, with a
//   plain request to the node service on the same connection as the transport's floor;
// - failure detection, as seen by a subscriber: kill -9 (the transport reports the node
//   dead) and SIGSTOP (the leader's pings, with Flock's default settings).
// Flock's figures (from the groups issue) are printed beside ours; Flock is not run.

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <mutex>
#include <sstream>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/builtin.hpp"
#include "actors/group/client.hpp"
#include "actors/group/group.hpp"
#include "base/error.hpp"
#include "base/files.hpp"
#include "runtime/config.hpp"
#include "runtime/node.hpp"
#include "runtime/node_service.hpp"
#include "tools/bench/bench.hpp"
#include "tools/bench/host.hpp"
#include "transport/middleman.hpp"

namespace troupe::bench {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr uint16_t group_provider_id = 42;

/// Membership events as a subscriber receives them, with their arrival times.
struct event_record {
  std::string kind; // joined, left, died
  std::string address;
  clock_type::time_point at;
};

struct event_log {
  std::mutex mtx;
  std::vector<event_record> events;

  void add(std::string kind, const group::member& m) {
    std::lock_guard<std::mutex> guard{mtx};
    events.push_back({std::move(kind), m.address, clock_type::now()});
  }
  size_t count(const std::string& kind) {
    std::lock_guard<std::mutex> guard{mtx};
    return static_cast<size_t>(
      std::count_if(events.begin(), events.end(),
                    [&](const event_record& e) { return e.kind == kind; }));
  }
  std::optional<clock_type::time_point> find(const std::string& kind,
                                             const std::string& address) {
    std::lock_guard<std::mutex> guard{mtx};
    for (const auto& e : events)
      if (e.kind == kind && e.address == address)
        return e.at;
    return std::nullopt;
  }
  std::vector<clock_type::time_point> times(const std::string& kind) {
    std::lock_guard<std::mutex> guard{mtx};
    std::vector<clock_type::time_point> result;
    for (const auto& e : events)
      if (e.kind == kind)
        result.push_back(e.at);
    return result;
  }
};

caf::behavior event_recorder(caf::event_based_actor*, std::shared_ptr<event_log> log) {
  return {
    [=](group::member_joined_atom, const group::member& m, const group::view_version&) {
      log->add("joined", m);
    },
    [=](group::member_left_atom, const group::member& m, const group::view_version&) {
      log->add("left", m);
    },
    [=](group::member_died_atom, const group::member& m, const group::view_version&) {
      log->add("died", m);
    },
    [=](group::metadata_changed_atom, const std::string&, const std::string&, bool,
        const group::view_version&) {},
  };
}

/// Checks `done` every `poll` until it holds or `timeout` passes.
bool wait_until(std::chrono::milliseconds timeout, const std::function<bool()>& done,
                std::chrono::milliseconds poll = 1ms) {
  auto deadline = clock_type::now() + timeout;
  while (!done()) {
    if (clock_type::now() > deadline)
      return false;
    std::this_thread::sleep_for(poll);
  }
  return true;
}

std::string group_provider(const std::string& group_config) {
  return R"({"threads": 1, "providers": [{"type": "group", "name": "g", "provider_id": )"
         + std::to_string(group_provider_id) + R"(, "config": )" + group_config + "}]}";
}

struct groups_workload {
  std::vector<size_t> sizes{8, 16, 32};
  int refresh_iterations = 5000;
  int kills = 3;
};

struct formation_result {
  size_t joiners = 0;
  double release_to_all_joined_ms = 0; ///< from the view file's release to the last join
  double first_to_last_join_ms = 0;
  bool views_agree = false;
};

/// Every member's view has the same digest and `members` members.
bool views_agree(node& client, const std::vector<std::string>& addresses,
                 size_t members) {
  caf::scoped_actor self{client.system()};
  std::string first;
  for (const auto& address : addresses) {
    auto member = client.remote_provider(address, "group", group_provider_id, 10s);
    if (!member)
      return false;
    bool ok = false;
    self->request(*member, 10s, caf::get_atom::value)
      .receive(
        [&](const group::group_view& v) {
          ok = v.members.size() == members && (first.empty() || first == v.digest());
          if (first.empty())
            first = v.digest();
        },
        [&](const caf::error&) {});
    if (!ok)
      return false;
  }
  return true;
}

json latency_json(const latency& l) {
  return {{"p50", l.p50_us}, {"p99", l.p99_us}};
}

class groups_run {
public:
  groups_run(std::string actorhost, groups_workload w)
    : actorhost_(std::move(actorhost)), w_(std::move(w)) {
    char dir_template[] = "/tmp/troupe-bench-groups-XXXXXX";
    if (::mkdtemp(dir_template) == nullptr)
      throw std::runtime_error("mkdtemp failed");
    dir_ = dir_template;
    actors::register_builtin_types(client_.system_config());
    if (auto err = client_.start())
      throw std::runtime_error("the benchmark's own node: " + describe(err));
  }

  ~groups_run() {
    stop_recorder(); // the node waits for its actors when it stops
    hosts_.clear();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  json run() {
    json doc;
    doc["benchmark"] = "groups";
    doc["ucx_tls"] = std::getenv("UCX_TLS") ? std::getenv("UCX_TLS") : "default";
    doc["node_start_ms"] = measure_node_start();
    for (size_t i = 0; i < w_.sizes.size(); ++i) {
      bool last = i + 1 == w_.sizes.size();
      std::cerr << "troupe-bench: " << w_.sizes[i] << " concurrent joins...\n";
      form_group(w_.sizes[i], doc["formation"]);
      if (last) {
        std::cerr << "troupe-bench: refresh round trips...\n";
        doc["refresh_us"] = measure_refresh();
        std::cerr << "troupe-bench: failure detection...\n";
        doc["detection_ms"] = measure_detection();
      }
      stop_all(hosts_);
    }
    doc["flock_reference"] = {
      {"source",
       "the groups issue: Flock 0.7, Margo na+sm, this machine type; not run here"},
      {"refresh_no_change_us", 12.6},
      {"refresh_full_view_us", 14.4},
      {"formation_32_one_at_a_time_ms", 1650},
      {"formation_concurrent", "crashes joiners"},
      {"kill9_detection_ms", 3400}};
    doc["targets"] = {{"formation_32_concurrent_ms", 500},
                      {"kill9_detection_ms", 200},
                      {"refresh_us", 10}};
    return doc;
  }

private:
  /// From fork to the address file for a one-member group, three times: the median.
  double measure_node_start() {
    std::vector<double> times;
    for (int i = 0; i < 3; ++i) {
      host h{
        actorhost_, dir_, "start" + std::to_string(i),
        group_provider(R"({"bootstrap": "self", "group": {"type": "centralized"}})")};
      h.wait_address(60s);
      times.push_back(h.start_ms());
    }
    std::sort(times.begin(), times.end());
    return times[1];
  }

  /// Starts a leader (Flock's default ping settings, so that detection compares like
  /// with like) and subscribes a fresh event log to it; returns a handle on the group.
  group::group_client start_leader(const std::string& name, const std::string& file) {
    hosts_.push_back(std::make_unique<host>(
      actorhost_, dir_, name,
      group_provider(R"({"bootstrap": "self", "file": ")" + file
                     + R"(", "group": {"type": "centralized"}})")));
    leader_address_ = hosts_[0]->wait_address(60s);
    auto handle = group::group_client::open(client_, leader_address_, group_provider_id);
    if (!handle)
      throw std::runtime_error("cannot open the group: " + describe(handle.error()));
    events_ = std::make_shared<event_log>();
    stop_recorder();
    recorder_ = client_.system().spawn(event_recorder, events_);
    if (auto v = handle->subscribe(recorder_); !v)
      throw std::runtime_error("cannot subscribe: " + describe(v.error()));
    return std::move(*handle);
  }

  /// Forks `joiners` actorhosts that join with `whom` ("join_address" or "file").
  void start_joiners(const std::string& tag, size_t joiners, const std::string& whom) {
    for (size_t i = 0; i < joiners; ++i)
      hosts_.push_back(std::make_unique<host>(
        actorhost_, dir_, "joiner-" + tag + "-" + std::to_string(i),
        group_provider(R"({"bootstrap": "join", )" + whom
                       + R"(, "join_timeout_ms": 300000,
                            "group": {"type": "centralized"}})")));
  }

  void wait_for_joins(size_t joiners) {
    if (!wait_until(120s, [&] { return events_->count("joined") >= joiners; }))
      throw std::runtime_error(std::to_string(events_->count("joined")) + " of "
                               + std::to_string(joiners) + " joins seen within 120 s");
  }

  /// Cold: all joiners are forked at once and join as soon as they are up; the time
  /// from the first fork to the last join includes every process's start on the
  /// machine's cores.
  double form_cold(size_t joiners) {
    auto tag = "cold-" + std::to_string(joiners);
    start_leader("leader-" + tag, dir_ + "/view-" + tag + ".json");
    auto start = clock_type::now();
    start_joiners(tag, joiners, R"("join_address": ")" + leader_address_ + "\"");
    wait_for_joins(joiners);
    auto elapsed = millis_between(start, events_->times("joined").back());
    stop_all(hosts_);
    return elapsed;
  }

  /// Warm: the joiners are up and waiting for the view file; the benchmark writes it
  /// and they all join at once.
  void form_group(size_t joiners, json& out) {
    auto cold_ms = form_cold(joiners);
    auto tag = std::to_string(joiners);
    auto leader_file = dir_ + "/view-" + tag + ".json";
    auto gate_file = dir_ + "/gate-" + tag + ".json";
    auto handle = start_leader("leader-" + tag, leader_file);
    // The joiners start, find no view file and wait for it, polling.
    start_joiners(tag, joiners, R"("file": ")" + gate_file + "\"");
    bool all_waiting = wait_until(
      300s,
      [&] {
        for (size_t i = 1; i < hosts_.size(); ++i) {
          if (hosts_[i]->exited())
            throw std::runtime_error("a joiner ended before joining: "
                                     + hosts_[i]->log());
          if (hosts_[i]->log().find("waiting for the view file") == std::string::npos)
            return false;
        }
        return true;
      },
      50ms); // reading every log is not free while the joiners compete for the cores
    if (!all_waiting)
      throw std::runtime_error("the joiners did not come up within 300 s");
    auto view_text = read_file(leader_file);
    if (!view_text)
      throw std::runtime_error("the leader's view file: " + describe(view_text.error()));
    auto released = clock_type::now();
    if (auto err = write_file_atomically(gate_file, *view_text))
      throw std::runtime_error(describe(err));
    wait_for_joins(joiners);
    auto joins = events_->times("joined");
    formation_result r;
    r.joiners = joiners;
    r.release_to_all_joined_ms = millis_between(released, joins.back());
    r.first_to_last_join_ms = millis_between(joins.front(), joins.back());
    addresses_.clear();
    for (auto& h : hosts_)
      addresses_.push_back(h->wait_address(60s));
    r.views_agree =
      wait_until(10s, [&] { return views_agree(client_, addresses_, joiners + 1); });
    if (!r.views_agree)
      throw std::runtime_error("the members' views do not agree after " + tag + " joins");
    out.push_back({{"joiners", joiners},
                   {"release_to_all_joined_ms", r.release_to_all_joined_ms},
                   {"first_to_last_join_ms", r.first_to_last_join_ms},
                   {"views_agree", r.views_agree},
                   {"cold_fork_to_all_joined_ms", cold_ms}});
    handle_ = std::make_unique<group::group_client>(std::move(handle));
  }

  json measure_refresh() {
    json out;
    auto member =
      client_.remote_provider(leader_address_, "group", group_provider_id, 10s);
    auto service =
      client_.transport().remote_actor(leader_address_, node_service_key, 10s);
    if (!member || !service)
      throw std::runtime_error("cannot reach the leader for refreshes");
    caf::scoped_actor self{client_.system()};
    if (!handle_->refresh()) // the handle's cache predates the joins
      throw std::runtime_error("the first refresh failed");
    auto current = handle_->view().version;
    auto members = handle_->view().members.size();
    // Through the client handle: the API a user calls.
    out["no_change_client"] = latency_json(time_round_trips(w_.refresh_iterations, [&] {
      auto changed = handle_->refresh();
      return changed && !*changed;
    }));
    auto ask_refresh = [&](group::view_version known, bool expect_change) {
      bool ok = false;
      self->request(*member, 10s, group::refresh_atom::value, known)
        .receive(
          [&](const group::view_refresh& r) {
            ok = r.changed == expect_change
                 && (!expect_change || r.view.members.size() == members);
          },
          [&](const caf::error&) {});
      return ok;
    };
    out["no_change"] = latency_json(time_round_trips(
      w_.refresh_iterations, [&] { return ask_refresh(current, false); }));
    out["full_view"] = latency_json(time_round_trips(
      w_.refresh_iterations, [&] { return ask_refresh(group::view_version{}, true); }));
    out["full_view_members"] = members;
    out["node_service_ping"] = latency_json(time_round_trips(w_.refresh_iterations, [&] {
      bool ok = false;
      self->request(*service, 10s, ping_atom::value, std::string{"x"})
        .receive([&](const std::string&) { ok = true; }, [&](const caf::error&) {});
      return ok;
    }));
    return out;
  }

  /// Sends `signo` to the last member (never the leader, at rank 0), waits for the
  /// subscriber to see it die, removes it; the milliseconds that took.
  double time_to_death(int signo, std::chrono::seconds limit) {
    if (hosts_.size() < 2)
      throw std::runtime_error("no member left to stop");
    auto& victim = hosts_.back();
    auto address = addresses_.back();
    auto start = clock_type::now();
    victim->signal(signo);
    if (!wait_until(limit, [&] { return events_->find("died", address).has_value(); }))
      throw std::runtime_error("signal " + std::to_string(signo) + " to " + address
                               + " not detected within " + std::to_string(limit.count())
                               + " s");
    auto took = millis_between(start, *events_->find("died", address));
    victim->signal(SIGKILL);
    victim->stop();
    hosts_.pop_back();
    addresses_.pop_back();
    return took;
  }

  json measure_detection() {
    json out;
    std::vector<double> killed;
    // Keep one member besides the leader for the SIGSTOP run.
    for (int i = 0; i < w_.kills && hosts_.size() > 2; ++i)
      killed.push_back(time_to_death(SIGKILL, 30s));
    if (killed.empty())
      throw std::runtime_error("too few members to measure kill -9 detection");
    std::sort(killed.begin(), killed.end());
    out["kill9"] = {{"samples", killed.size()},
                    {"median", killed[killed.size() / 2]},
                    {"max", killed.back()}};
    // SIGSTOP: the connection stays up; only the pings can tell.
    out["sigstop"] = time_to_death(SIGSTOP, 60s);
    out["sigstop_ping_settings"] = "interval 1000 ms, timeout 1000 ms, 3 timeouts";
    return out;
  }

  void stop_recorder() {
    if (recorder_)
      caf::anon_send_exit(recorder_, caf::exit_reason::user_shutdown);
    recorder_ = nullptr;
  }

  std::string actorhost_;
  groups_workload w_;
  std::string dir_;
  node client_{parse_node_config(R"({"threads": 2})", "troupe-bench")};
  std::vector<std::unique_ptr<host>> hosts_; // leader first
  std::vector<std::string> addresses_;       // of hosts_
  std::string leader_address_;
  std::shared_ptr<event_log> events_;
  caf::actor recorder_;
  std::unique_ptr<group::group_client> handle_;
};

void print_groups_table(const json& doc, std::ostream& os) {
  os << "node start (fork to ready, one process): " << fixed(doc["node_start_ms"], 1)
     << " ms\n";
  os << std::left << std::setw(10) << "joiners" << std::setw(34)
     << "release -> all joined (ms)" << std::setw(26) << "first -> last join (ms)"
     << std::setw(14) << "views agree"
     << "cold: fork -> all joined (ms)\n";
  for (const auto& f : doc["formation"])
    os << std::left << std::setw(10) << f["joiners"].get<int>() << std::setw(34)
       << fixed(f["release_to_all_joined_ms"], 1) << std::setw(26)
       << fixed(f["first_to_last_join_ms"], 1) << std::setw(14)
       << (f["views_agree"] ? "yes" : "NO") << fixed(f["cold_fork_to_all_joined_ms"], 1)
       << "\n";
  const auto& r = doc["refresh_us"];
  auto lat = [](const json& l) {
    return fixed(l["p50"], 1) + " / " + fixed(l["p99"], 1);
  };
  os << "refresh round trip, us p50 / p99 (" << r["full_view_members"].get<int>()
     << " members):\n"
     << "  no change, group_client::refresh  " << lat(r["no_change_client"]) << "\n"
     << "  no change, one request            " << lat(r["no_change"]) << "\n"
     << "  full view, one request            " << lat(r["full_view"]) << "\n"
     << "  node service ping (floor)         " << lat(r["node_service_ping"]) << "\n";
  const auto& d = doc["detection_ms"];
  os << "detection, ms: kill -9 median " << fixed(d["kill9"]["median"], 1) << " (max "
     << fixed(d["kill9"]["max"], 1) << ", " << d["kill9"]["samples"].get<int>()
     << " kills); SIGSTOP " << fixed(d["sigstop"], 0) << " ("
     << d["sigstop_ping_settings"].get<std::string>() << ")\n";
  os << "Flock 0.7 (from the issue, not run here): refresh 12.6 / 14.4 us, 32 joins one "
        "at a time 1650 ms (concurrent joins crash), kill -9 detected in 3400 ms\n";
}

} // namespace

int run_groups(bool as_json, bool quick, const std::string& actorhost) {
  groups_workload w;
  if (quick) {
    w.sizes = {4};
    w.refresh_iterations = 300;
    w.kills = 1;
  }
  return report("groups", as_json, [&] {
    groups_run run{actorhost, w};
    return run.run();
  }, print_groups_table);
}

} // namespace troupe::bench
