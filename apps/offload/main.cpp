// troupe-offload: the hierarchical offload demo. Reads a hierarchy file (Flux's format,
// unchanged, plus optional Troupe keys), builds the tree of instances, submits the
// jobs to the root, shows progress, and writes a report, a per-job CSV and a plot.
//
// Exit codes: 0 when every job completed (whatever its own exit status), 2 for a bad
// command line or config (nothing is started), 1 when the run failed (a node could not
// start, the tree gave up, the deadline passed).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <stdlib.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <caf/actor_system.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include "actors/builtin.hpp"
#include "actors/offload/hierarchy.hpp"
#include "actors/offload/offload.hpp"
#include "actors/offload/report.hpp"
#include "base/error.hpp"
#include "base/log.hpp"
#include "runtime/config.hpp"
#include "runtime/node.hpp"
#include "runtime/provider_registry.hpp"
#include "transport/middleman.hpp"

using namespace std::chrono_literals;
namespace off = troupe::offload;

namespace {

constexpr int exit_bad_config = 2;
constexpr int exit_failed = 1;

const char* const description = R"(troupe-offload: the hierarchical offload demo.

Reads a hierarchy file in Flux's format ({"num_levels": N, "levels":
[{"num_children": C, "cores_per_child": K}, ...]}), builds the tree of instances
(the root in this process; the first level as actorhost processes, deeper levels
inside their parent's process, unless a level says "placement"), submits the jobs
to the root, and lets every instance pull work from its parent with credits. Leaves
run the jobs on their cores. A child instance that dies is restarted by its parent's
supervisor and the jobs it held are re-queued. At the end it prints a report and
writes a per-job CSV and (with gnuplot) a plot of completions over time.

Optional keys of the hierarchy file (Troupe's, beside Flux's):
  levels[i].placement   "process", "in_process" (or "mpi": not yet)
  max_leaves            refuse trees with more leaves (default 4096)
  jobs                  {"count": N, "mix": [{"kind": "noop"|"sleep"|"shell",
                         "duration_ms": D, "command": "...", "idempotent": B,
                         "weight": W}, ...]}
)";

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

std::string make_run_dir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string{tmp && *tmp ? tmp : "/tmp"} + "/troupe-offload.XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr)
    return {};
  return buf.data();
}

struct progress_line {
  bool tty = ::isatty(STDOUT_FILENO) != 0;
  std::chrono::steady_clock::time_point last{};
  std::chrono::milliseconds every;

  void show(uint64_t done, uint64_t total, double elapsed_s, bool final) {
    auto now = std::chrono::steady_clock::now();
    if (!final && now - last < every)
      return;
    last = now;
    double rate = elapsed_s > 0 ? static_cast<double>(done) / elapsed_s : 0;
    double eta = rate > 0 ? static_cast<double>(total - done) / rate : 0;
    std::ostringstream line;
    line << std::fixed << std::setprecision(1);
    if (tty) {
      constexpr int width = 30;
      int filled = total ? static_cast<int>(width * done / total) : width;
      line << "\r[" << std::string(static_cast<size_t>(filled), '#')
           << std::string(static_cast<size_t>(width - filled), ' ') << "] ";
    } else {
      line << "progress: ";
    }
    line << done << "/" << total << " jobs, " << std::setprecision(0) << rate << " jobs/s, ETA "
         << std::setprecision(1) << eta << " s";
    std::cout << line.str() << (tty ? (final ? "\n" : "") : "\n") << std::flush;
  }
};

} // namespace

int main(int argc, char** argv) {
  CLI::App app{description, "troupe-offload"};
  std::string config_path, jobs_path, csv_path, plot_path, run_dir, actorhost_path;
  int64_t count = -1;
  unsigned timeout_s = 600, progress_ms = 1000;
  bool quiet = false;
  std::string verbosity;
  app.add_option("-c,--config", config_path, "the hierarchy file")->required();
  app.add_option("--jobs", jobs_path, "a jobs file (the \"jobs\" object alone)");
  app.add_option("-n,--count", count, "how many jobs (overrides the files)");
  app.add_option("--csv", csv_path, "the per-job CSV (default RUN_DIR/jobs.csv)");
  app.add_option("--plot", plot_path,
                 "the plot, without extension: .png and .svg are written "
                 "(default RUN_DIR/completions; needs gnuplot)");
  app.add_option("--run-dir", run_dir,
                 "where child configs, logs and results go (default: a new temp dir)");
  app.add_option("--actorhost", actorhost_path,
                 "the program child instances run (default: the actorhost beside this one)");
  app.add_option("--timeout", timeout_s, "give up after this many seconds (default 600)");
  app.add_option("--progress-ms", progress_ms, "progress every N ms (default 1000)");
  app.add_flag("-q,--quiet", quiet, "no progress lines");
  app.add_option("-v,--verbosity", verbosity, "log level: error, warning, info, debug");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : exit_bad_config;
  }
  if (!verbosity.empty()) {
    troupe::log::level lvl;
    if (!troupe::log::parse_level(verbosity, lvl)) {
      std::cerr << "troupe-offload: --verbosity: unknown level \"" << verbosity << "\"\n";
      return exit_bad_config;
    }
    troupe::log::set_level(lvl);
  }

  off::hierarchy_config hierarchy;
  try {
    hierarchy = off::load_hierarchy(config_path);
    if (!jobs_path.empty())
      hierarchy.jobs = off::load_job_spec(jobs_path);
    if (count >= 0)
      hierarchy.jobs.count = static_cast<uint64_t>(count);
    for (size_t i = 0; i < hierarchy.levels.size(); ++i)
      if (hierarchy.levels[i].where == off::placement::mpi)
        throw troupe::config_error(config_path + ": levels[" + std::to_string(i)
                                   + "].placement: \"mpi\" is not supported yet (use "
                                     "\"process\" or \"in_process\")");
    for (size_t i = 0; i < hierarchy.jobs.mix.size(); ++i)
      if (hierarchy.jobs.mix[i].kind == off::job_kind::custom)
        throw troupe::config_error(config_path + ": jobs.mix[" + std::to_string(i)
                                   + "].kind: \"custom\" job types are not supported yet");
  } catch (const troupe::config_error& e) {
    std::cerr << "troupe-offload: bad config: " << e.what() << "\n";
    return exit_bad_config;
  }
  if (run_dir.empty())
    run_dir = make_run_dir();
  if (run_dir.empty()) {
    std::cerr << "troupe-offload: cannot make a run directory\n";
    return exit_failed;
  }
  if (csv_path.empty())
    csv_path = run_dir + "/jobs.csv";
  if (plot_path.empty())
    plot_path = run_dir + "/completions";

  auto node_cfg = troupe::parse_node_config(
    R"({"transport": {"address": "127.0.0.1", "port": 0}})", "troupe-offload");
  troupe::node node{std::move(node_cfg)};
  troupe::actors::register_builtin_types(node.system_config());
  troupe::actors::register_builtin_providers(node.providers());
  if (auto err = node.start()) {
    std::cerr << "troupe-offload: cannot start the root node: " << troupe::describe(err) << "\n";
    return exit_failed;
  }

  off::instance_spec root_spec;
  root_spec.path = "0";
  root_spec.below = hierarchy.levels;
  root_spec.cores = hierarchy.levels.empty()
                      ? 1u
                      : hierarchy.levels[0].num_children * hierarchy.levels[0].cores_per_child;
  auto env = off::make_environment(node.locator(), node.address(), actorhost_path, run_dir);
  auto jobs = off::make_jobs(hierarchy.jobs);
  uint64_t total = jobs.size();
  std::cout << "troupe-offload: " << hierarchy.num_levels << " levels, "
            << off::describe_tree(hierarchy) << "; " << total << " jobs ("
            << off::describe_mix(hierarchy.jobs) << "); run dir " << run_dir << std::endl;

  int rc = 0;
  std::vector<off::job_result> results;
  results.reserve(total);
  auto started = std::chrono::steady_clock::now();
  int64_t run_start_ns = now_ns();
  {
    caf::scoped_actor self{node.system()};
    auto root = off::spawn_instance(node.system(), root_spec, {}, self, env);
    troupe::transport::middleman::of(node.system())
      .publish(troupe::transport::provider_key("offload", off::offload_provider_id), root);
    self->monitor(root);
    // Submitted in slices: one message of a million jobs would be a large allocation.
    constexpr size_t slice = 10000;
    for (size_t i = 0; i < jobs.size(); i += slice) {
      std::vector<off::job> part(jobs.begin() + static_cast<long>(i),
                                 jobs.begin() + static_cast<long>(std::min(jobs.size(), i + slice)));
      self->send(root, off::submit_atom::value, std::move(part));
    }
    self->send(root, off::close_atom::value);
    progress_line progress{};
    progress.every = std::chrono::milliseconds{progress_ms};
    auto deadline = started + std::chrono::seconds{timeout_s};
    std::string failure;
    std::vector<bool> seen(total + 1, false);
    uint64_t duplicates = 0;
    while (results.size() < total && failure.empty()) {
      self->receive(
        [&](off::done_atom, std::vector<off::job_result>& batch) {
          for (auto& r : batch) {
            if (r.id == 0 || r.id > total)
              continue;
            if (seen[r.id]) {
              ++duplicates;
              continue;
            }
            seen[r.id] = true;
            results.push_back(std::move(r));
          }
        },
        [&](caf::down_msg& down) {
          failure = "the root instance stopped: " + troupe::describe(down.reason);
        },
        caf::after(std::chrono::milliseconds{100}) >> [] {});
      double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      if (!quiet)
        progress.show(results.size(), total, elapsed, results.size() == total);
      if (std::chrono::steady_clock::now() > deadline)
        failure = "timed out after " + std::to_string(timeout_s) + " s with "
                  + std::to_string(total - results.size()) + " jobs not completed";
    }
    double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    off::instance_status root_status;
    self->request(root, 5s, off::status_atom::value)
      .receive([&](off::instance_status& s) { root_status = s; }, [](caf::error&) {});
    // Stops the tree: the root's supervisor stops the children in reverse order.
    if (failure.empty() || failure.rfind("timed out", 0) == 0) {
      self->send_exit(root, caf::exit_reason::user_shutdown);
      self->receive([](caf::down_msg&) {}, caf::after(15s) >> [] {});
    }
    if (!failure.empty()) {
      std::cerr << "troupe-offload: " << failure << "\n";
      rc = exit_failed;
    }
    off::run_summary summary = off::summarize(results, run_start_ns, elapsed);
    summary.duplicates = duplicates;
    summary.child_restarts = root_status.child_restarts;
    std::cout << off::format_report(summary, hierarchy);
    if (auto err = off::write_csv(csv_path, results, run_start_ns); !err.empty()) {
      std::cerr << "troupe-offload: " << err << "\n";
      rc = exit_failed;
    } else {
      std::cout << "csv: " << csv_path << "\n";
    }
    auto plot = off::plot_completions(csv_path, plot_path);
    std::cout << plot << "\n";
  }
  node.stop();
  return rc;
}
