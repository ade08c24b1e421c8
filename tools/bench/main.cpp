// troupe-bench: benchmark programs (not timed tests). `troupe-bench transport` measures
// Troupe's middleman against raw UCX active messages and CAF's own io middleman in one
// run, each against a server in its own process, over shared memory and over tcp,
// and prints JSON and a table.

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ext/stdio_filebuf.h>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <poll.h>
#include <sstream>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "base/process_keeper.hpp"
#include "base/version.hpp"
#include "tools/bench/bench.hpp"
#include "transport/transport_config.hpp"

namespace troupe::bench {

latency summarize(std::vector<double> samples) {
  latency result;
  if (samples.empty())
    return result;
  std::sort(samples.begin(), samples.end());
  auto at = [&](double q) {
    auto i = static_cast<size_t>(q * static_cast<double>(samples.size() - 1));
    return samples[i];
  };
  result.p50_us = at(0.50);
  result.p99_us = at(0.99);
  return result;
}

latency time_round_trips(int iterations, const std::function<bool()>& send) {
  std::vector<double> samples;
  samples.reserve(static_cast<size_t>(iterations));
  for (int i = 0; i < iterations / 10; ++i) // warm-up
    send();
  for (int i = 0; i < iterations; ++i) {
    auto start = clock_type::now();
    if (!send())
      throw std::runtime_error("a round trip failed");
    samples.push_back(micros_since(start));
  }
  return summarize(std::move(samples));
}

std::string fixed(double v, int digits) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(digits) << v;
  return os.str();
}

int report(const std::string& name, bool as_json, const std::function<nlohmann::json()>& measure,
           const std::function<void(const nlohmann::json&, std::ostream&)>& print_table) {
  try {
    auto doc = measure();
    if (as_json)
      std::cout << doc.dump(2) << "\n";
    else
      print_table(doc, std::cout);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "troupe-bench " << name << ": " << e.what() << "\n";
    return 1;
  }
}

server_process::server_process(const std::string& kind, const std::string& tls,
                               std::vector<std::string> options) {
  child_spec server;
  server.program = "/proc/self/exe";
  server.argv = {"troupe-bench", "serve", kind};
  server.argv.insert(server.argv.end(), options.begin(), options.end());
  if (!tls.empty())
    server.env = {{"UCX_TLS", tls}};
  server.out = child_output::pipe();
  server.death_signal = SIGKILL;
  auto started = process_keeper::shared().launch(std::move(server));
  if (!started) {
    error_ = "the " + kind + " server did not start: " + context_text(started.error());
    return;
  }
  pid_ = started->pid;
  int out = started->out_fd;
  // Wait for "address ..." with a deadline; the server may fail to start.
  // UCX may print warnings on stdout first: look for the line that starts "address ".
  std::string text;
  auto has_address = [&] {
    return text.rfind("address ", 0) == 0 || text.find("\naddress ") != std::string::npos;
  };
  auto deadline = clock_type::now() + std::chrono::seconds(30);
  while (!(has_address() && text.find('\n', text.find("address ")) != std::string::npos)
         && clock_type::now() < deadline) {
    pollfd p{out, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0)
      continue;
    char buf[256];
    auto n = ::read(out, buf, sizeof(buf));
    if (n <= 0)
      break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(out);
  if (has_address()) {
    auto start = text.rfind("address ", 0) == 0 ? 0 : text.find("\naddress ") + 1;
    auto line = text.substr(start, text.find('\n', start) - start);
    address_ = line.substr(8);
  } else {
    error_ = "the " + kind + " server did not start: " + text;
  }
}

server_process::~server_process() {
  if (pid_ > 0) {
    auto& keeper = process_keeper::shared();
    keeper.signal(pid_, SIGKILL);
    keeper.wait_exit(pid_, std::chrono::seconds{10});
  }
}

} // namespace troupe::bench

namespace {

using namespace troupe::bench;
using nlohmann::json;

json to_json(const result_set& r) {
  json j;
  j["system"] = r.system;
  j["ucx_tls"] = r.tls;
  if (!r.error.empty())
    j["error"] = r.error;
  for (const auto& [size, lat] : r.round_trip)
    j["round_trip_us"][std::to_string(size)] = {{"p50", lat.p50_us}, {"p99", lat.p99_us}};
  j["one_way_64B_msgs_per_s"] = r.one_way_msgs_per_s;
  for (const auto& [window, rate] : r.requests_per_s)
    j["requests_per_s_in_flight"][std::to_string(window)] = rate;
  if (r.rdma_get_gb_per_s)
    j["rdma_get_1MiB_GB_per_s"] = *r.rdma_get_gb_per_s;
  if (r.round_trip_8B_with_timeout)
    j["round_trip_8B_with_timeout_us"] = {{"p50", r.round_trip_8B_with_timeout->p50_us},
                                          {"p99", r.round_trip_8B_with_timeout->p99_us}};
  if (r.idle_cpu_percent)
    j["idle_cpu_percent_of_a_core"] = *r.idle_cpu_percent;
  return j;
}

void print_table(const std::vector<result_set>& results, std::ostream& os) {
  os << std::left << std::setw(10) << "system" << std::setw(14) << "UCX_TLS"
     << std::setw(16) << "rtt 8B p50/p99" << std::setw(16) << "rtt 64B" << std::setw(18)
     << "rtt 64KiB" << std::setw(12) << "1-way/s" << std::setw(30)
     << "req/s in flight 1 / 8 / 64"
     << "RDMA GB/s\n";
  for (const auto& r : results) {
    os << std::left << std::setw(10) << r.system << std::setw(14) << r.tls.substr(0, 13);
    if (!r.error.empty()) {
      os << "error: " << r.error << "\n";
      continue;
    }
    for (size_t size : {size_t{8}, size_t{64}, size_t{64 * 1024}}) {
      auto it = r.round_trip.find(size);
      auto text = it == r.round_trip.end()
                    ? std::string{"-"}
                    : fixed(it->second.p50_us, 1) + "/" + fixed(it->second.p99_us, 1);
      os << std::setw(size == 64 * 1024 ? 18 : 16) << text;
    }
    os << std::setw(12) << fixed(r.one_way_msgs_per_s, 0);
    std::string rates;
    for (const auto& [window, rate] : r.requests_per_s)
      rates += (rates.empty() ? "" : " / ") + fixed(rate, 0);
    os << std::setw(30) << rates;
    os << (r.rdma_get_gb_per_s ? fixed(*r.rdma_get_gb_per_s, 2) : std::string{"-"})
       << "\n";
  }
  os << "(round trips in microseconds; servers in their own processes on loopback; "
        "troupe-v1: CAF's scheduler with the transport on a thread of its own)\n";
  for (const auto& r : results)
    if (r.round_trip_8B_with_timeout)
      os << r.system << " " << r.tls << ": rtt 8B with a finite request timeout "
         << fixed(r.round_trip_8B_with_timeout->p50_us, 1) << "/"
         << fixed(r.round_trip_8B_with_timeout->p99_us, 1)
         << " (CAF's clock thread takes part in each request)\n";
  for (const auto& r : results)
    if (r.idle_cpu_percent)
      os << r.system << " " << r.tls << ": idle node CPU "
         << fixed(*r.idle_cpu_percent, 2) << " % of a core (connected, no traffic)\n";
}

const result_set* find(const std::vector<result_set>& rs, const std::string& system,
                       const std::string& tls) {
  for (const auto& r : rs)
    if (r.system == system && (tls.empty() || r.tls == tls) && r.error.empty())
      return &r;
  return nullptr;
}

json ratios(const std::vector<result_set>& rs) {
  json j;
  for (const auto& tls : {std::string{"sm,self,tcp"}, std::string{"tcp"}}) {
    auto t = find(rs, "troupe", tls);
    auto u = find(rs, "ucx", tls);
    auto c = find(rs, "caf-io", "");
    auto v1 = find(rs, "troupe-v1", tls);
    auto local = find(rs, "caf-local", "");
    if (t == nullptr)
      continue;
    auto& k = j[tls];
    if (v1 != nullptr && v1->round_trip.count(8) && t->round_trip.count(8))
      k["rtt_8B_p50_v1_over_troupe"] =
        v1->round_trip.at(8).p50_us / t->round_trip.at(8).p50_us;
    if (u != nullptr && local != nullptr && u->round_trip.count(8)
        && local->round_trip.count(8) && t->round_trip.count(8))
      k["rtt_8B_p50_troupe_over_ucx_plus_caf_local"] =
        t->round_trip.at(8).p50_us
        / (u->round_trip.at(8).p50_us + local->round_trip.at(8).p50_us);
    if (u != nullptr && u->round_trip.count(8) && t->round_trip.count(8)) {
      k["rtt_8B_p50_troupe_over_ucx"] =
        t->round_trip.at(8).p50_us / u->round_trip.at(8).p50_us;
      if (u->rdma_get_gb_per_s && t->rdma_get_gb_per_s)
        k["rdma_troupe_over_ucx"] = *t->rdma_get_gb_per_s / *u->rdma_get_gb_per_s;
    }
    if (c != nullptr && c->round_trip.count(8) && t->round_trip.count(8))
      k["rtt_8B_p50_caf_over_troupe"] =
        c->round_trip.at(8).p50_us / t->round_trip.at(8).p50_us;
  }
  return j;
}

int run_transport(bool as_json, bool quick, bool busy_poll, const std::string& only,
                  int rdma_gets, int rdma_window) {
  workload w;
  w.busy_poll = busy_poll;
  if (quick) {
    w.idle_seconds = 0.5;
    w.rtt_iterations = 300;
    w.warmup = 50;
    w.one_way_messages = 20000;
    w.in_flight_requests = 3000;
    w.rdma_iterations = 64;
  }
  if (rdma_gets > 0)
    w.rdma_iterations = rdma_gets;
  if (rdma_window > 0)
    w.rdma_window = rdma_window;
  std::vector<result_set> results;
  auto wanted = [&](const std::string& s) { return only.empty() || only == s; };
  // Every system runs with the UCX settings Troupe's middleman sets (shared memory's
  // error handling, the keepalive, ...): the raw UCX peers too, whichever runs first,
  // so that a row differs from another only in what its name says.
  for (const auto& [name, value] :
       troupe::transport::ucx_settings_for(troupe::transport::transport_config{}))
    ::setenv(("UCX_" + name).c_str(), value.c_str(), 0);
  // One server process per measurement; `tls` empty means "not over UCX".
  auto measure = [&](const std::string& kind, const std::string& system,
                     const std::string& tls, std::vector<std::string> options,
                     result_set (*client)(const std::string&, const workload&)) {
    std::cerr << "troupe-bench: " << system << (tls.empty() ? "" : " over " + tls)
              << "...\n";
    server_process server{kind, tls, std::move(options)};
    auto r = server.ok() ? client(server.address(), w) : result_set{};
    if (!server.ok())
      r.error = server.error();
    r.system = system;
    r.tls = tls.empty() ? "n/a" : tls;
    results.push_back(r);
  };
  for (const auto& tls : {std::string{"sm,self,tcp"}, std::string{"tcp"}}) {
    // The client half reads UCX_TLS when it creates its context, like the server.
    ::setenv("UCX_TLS", tls.c_str(), 1);
    std::vector<std::string> troupe_options;
    if (busy_poll)
      troupe_options.push_back("--busy-poll");
    if (wanted("troupe")) {
      w.scheduler = "progress";
      measure("troupe", "troupe", tls, troupe_options, measure_troupe);
    }
    if (wanted("troupe-unbatched")) {
      w.batch_sends = false;
      auto unbatched_options = troupe_options;
      unbatched_options.push_back("--no-batching");
      measure("troupe", "troupe-unbatched", tls, unbatched_options, measure_troupe);
      w.batch_sends = true;
    }
    if (wanted("troupe-v1")) {
      w.scheduler = "sharing";
      auto v1_options = troupe_options;
      v1_options.insert(v1_options.end(), {"--scheduler", "sharing"});
      measure("troupe", "troupe-v1", tls, v1_options, measure_troupe);
      w.scheduler = "progress";
    }
    if (wanted("ucx"))
      measure("ucx", "ucx", tls, {}, measure_ucx);
    if (wanted("ucx-peer")) {
      // Raw UCX with the peer error handling Troupe's endpoints need (to learn of a
      // dead peer): the fair floor for Troupe's RDMA.
      w.ucx_peer_errors = true;
      measure("ucx", "ucx-peer", tls, {"--peer-errors"}, measure_ucx);
      w.ucx_peer_errors = false;
    }
  }
  ::unsetenv("UCX_TLS");
  if (wanted("caf"))
    measure("caf", "caf-io", "", {}, measure_caf);
  if (wanted("caf-local")) {
    std::cerr << "troupe-bench: caf-local...\n";
    auto r = measure_local(w);
    r.system = "caf-local";
    r.tls = "n/a";
    results.push_back(r);
  }
  json doc;
  doc["benchmark"] = "transport";
  doc["busy_poll"] = busy_poll;
  doc["workload"] = {{"rtt_iterations", w.rtt_iterations},
                     {"one_way_messages", w.one_way_messages},
                     {"in_flight_requests", w.in_flight_requests},
                     {"rdma_bytes", w.rdma_bytes},
                     {"rdma_iterations", w.rdma_iterations},
                     {"rdma_window", w.rdma_window}};
  for (const auto& r : results)
    doc["results"].push_back(to_json(r));
  doc["ratios"] = ratios(results);
  if (as_json) {
    std::cout << doc.dump(2) << "\n";
  } else {
    print_table(results, std::cout);
    std::cout << "ratios: " << doc["ratios"].dump() << "\n";
  }
  bool failed = std::any_of(results.begin(), results.end(),
                            [](const result_set& r) { return !r.error.empty(); });
  return failed ? 1 : 0;
}

/// `name` in the directory this program was started from (build/bin).
std::string sibling_program(const std::string& name) {
  char path[4096];
  auto n = ::readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (n <= 0)
    return name;
  std::string self(path, static_cast<size_t>(n));
  return self.substr(0, self.rfind('/') + 1) + name;
}

} // namespace

static int run_main(int argc, char** argv);

int main(int argc, char** argv) {
  // Stdout is for the figures (--json must stay parseable), but UCX logs to stdout,
  // in this process and in the ones it starts: the figures keep the real stdout and
  // everything else writing to fd 1 goes to stderr.
  int figures_fd = ::dup(STDOUT_FILENO);
  if (figures_fd < 0 || ::dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
    std::cerr << "troupe-bench: cannot set up stdout\n";
    return 1;
  }
  __gnu_cxx::stdio_filebuf<char> figures{figures_fd, std::ios::out};
  auto* original = std::cout.rdbuf(&figures);
  int rc = run_main(argc, argv);
  std::cout.flush();
  std::cout.rdbuf(original); // `figures` goes before the stream does
  return rc;
}

static int run_main(int argc, char** argv) {
  CLI::App app{"troupe-bench: Troupe's benchmarks, each run side by side with the peers "
               "it is compared with.",
               "troupe-bench"};
  app.set_version_flag("--version",
                       std::string{"troupe-bench (Troupe) "} + troupe::version());
  app.require_subcommand(1);
  auto transport = app.add_subcommand(
    "transport", "remote round trips (8 B, 64 B, 64 KiB), one-way 64 B throughput, "
                 "requests with 1/8/64 in flight and 1 MiB RDMA gets: Troupe (also "
                 "without batched sends, troupe-unbatched, and its first design, "
                 "troupe-v1), raw UCX active messages and CAF's io "
                 "middleman, over shared memory and tcp; a local CAF round trip; the "
                 "CPU an idle node uses");
  bool as_json = false;
  bool quick = false;
  bool busy_poll = false;
  std::string only;
  transport->add_flag("--json", as_json, "print JSON instead of a table");
  transport->add_flag("--quick", quick, "fewer iterations (a smoke run)");
  transport->add_flag("--busy-poll", busy_poll,
                      "Troupe never lets the transport sleep: one thread always polls "
                      "(as raw UCX here always does)");
  int rdma_gets = 0;
  int rdma_window = 0;
  transport->add_option("--rdma-gets", rdma_gets, "RDMA gets of 1 MiB to time (default 512)")
    ->check(CLI::Range(1, 1 << 20));
  transport->add_option("--rdma-window", rdma_window, "RDMA gets in flight (default 4)")
    ->check(CLI::Range(1, 256));
  transport->add_option("--only", only, "measure one system only")
    ->check(CLI::IsMember(
      {"troupe", "troupe-unbatched", "troupe-v1", "ucx", "ucx-peer", "caf", "caf-local"}));
  auto groups = app.add_subcommand(
    "groups", "a centralized group of actorhost processes: 8, 16 and 32 concurrent "
              "joins, refresh round trips (no change, full view), kill -9 and SIGSTOP "
              "detection; Flock's figures printed beside");
  groups->add_flag("--json", as_json, "print JSON instead of a table");
  groups->add_flag("--quick", quick, "4 joiners, fewer iterations (a smoke run)");
  std::string actorhost = sibling_program("actorhost");
  groups->add_option("--actorhost", actorhost, "the actorhost program to start")
    ->capture_default_str();
  auto ops_cmd = app.add_subcommand(
    "ops", "the op framework with 4 actorhost processes: ping op round trip against a "
           "plain request, ping ops/s with 1/64/1024 in flight, rdma-ping of 1 MiB and "
           "64 MiB against raw UCX gets, DHT puts and gets per second");
  ops_cmd->add_flag("--json", as_json, "print JSON instead of a table");
  ops_cmd->add_flag("--quick", quick, "fewer iterations (a smoke run)");
  ops_cmd->add_option("--actorhost", actorhost, "the actorhost program to start")
    ->capture_default_str();
  auto offload_cmd = app.add_subcommand(
    "offload", "the offload tree: no-op jobs/s through 1, 2 and 3 levels (in-process and "
               "actorhost instances), 10 ms sleep jobs against the ideal makespan, a run "
               "with a mid-level instance killed");
  offload_cmd->add_flag("--json", as_json, "print JSON instead of a table");
  offload_cmd->add_flag("--quick", quick, "fewer jobs (a smoke run)");
  offload_cmd->add_option("--actorhost", actorhost, "the actorhost program to start")
    ->capture_default_str();
  auto services_cmd = app.add_subcommand(
    "services", "the instance services over an actorhost --size 8 instance: reduction, "
                "event fan-out and barrier latency, against a plain request in the same "
                "run");
  services_cmd->add_flag("--json", as_json, "print JSON instead of a table");
  services_cmd->add_flag("--quick", quick, "fewer iterations (a smoke run)");
  bool under_mpirun = false;
  services_cmd->add_flag("--mpirun", under_mpirun,
                         "start the 8 ranks as an mpirun job (group bootstrap mpi) instead "
                         "of actorhost --size");
  services_cmd->add_option("--actorhost", actorhost, "the actorhost program to start")
    ->capture_default_str();
  auto mpi_barrier_cmd = app.add_subcommand(
    "mpi-barrier", "run under mpirun (mpirun -np 8 --oversubscribe troupe-bench "
                   "mpi-barrier): every rank a Troupe node of one group (bootstrap mpi); "
                   "Troupe's barrier against MPI_Barrier over the same ranks, alternating");
  mpi_barrier_cmd->add_flag("--json", as_json, "print JSON instead of a table");
  mpi_barrier_cmd->add_flag("--quick", quick, "fewer rounds (a smoke run)");
  auto serve = app.add_subcommand("serve", "run a server half (used by the benchmarks)");
  std::string kind;
  serve->add_option("kind", kind, "troupe, ucx or caf")
    ->required()
    ->check(CLI::IsMember({"troupe", "ucx", "caf"}));
  serve->add_flag("--busy-poll", busy_poll, "never let the transport sleep");
  bool peer_errors = false;
  serve->add_flag("--peer-errors", peer_errors,
                  "ucx: endpoints with UCP_ERR_HANDLING_MODE_PEER");
  bool no_batching = false;
  serve->add_flag("--no-batching", no_batching, "node config transport.batch_sends false");
  std::string scheduler = "progress";
  serve->add_option("--scheduler", scheduler, "Troupe's scheduler (node config)")
    ->check(CLI::IsMember({"progress", "sharing", "stealing"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (*serve) {
    if (kind == "troupe")
      return serve_troupe(busy_poll, scheduler, !no_batching);
    if (kind == "ucx")
      return serve_ucx(peer_errors);
    return serve_caf();
  }
  if (*groups)
    return run_groups(as_json, quick, actorhost);
  if (*ops_cmd)
    return run_ops(as_json, quick, actorhost);
  if (*offload_cmd)
    return run_offload(as_json, quick, actorhost);
  if (*services_cmd)
    return run_services(as_json, quick, actorhost, under_mpirun);
  if (*mpi_barrier_cmd)
    return run_mpi_barrier(as_json, quick);
  return run_transport(as_json, quick, busy_poll, only, rdma_gets, rdma_window);
}
