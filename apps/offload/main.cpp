// troupe-offload: the hierarchical offload demo. Reads a hierarchy file (Flux's format,
// unchanged, plus optional Troupe keys), builds the tree of instances, submits the
// jobs to the root, shows progress, and writes a report, a per-job CSV and a plot.
//
// Exit codes: 0 when every job completed (whatever its own exit status), 2 for a bad
// command line or config (nothing is started), 1 when the run failed (a node could not
// start, the tree gave up, the deadline passed).

#include <chrono>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <stdlib.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <caf/actor_system.hpp>
#include <nlohmann/json.hpp>

#include "actors/builtin.hpp"
#include "base/process_keeper.hpp"
#include "actors/offload/hierarchy.hpp"
#include "actors/offload/offload.hpp"
#include "actors/offload/report.hpp"
#include "actors/offload/run.hpp"
#include "runtime/job_types.hpp"
#include "base/error.hpp"
#include "base/exit_watchdog.hpp"
#include "base/files.hpp"
#include "base/log.hpp"
#include "base/version.hpp"
#include "runtime/config.hpp"
#include "runtime/node.hpp"
#include "runtime/provider_registry.hpp"

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
  levels[i].placement   "process" (an actorhost each), "in_process", or "mpi"
                        (the level's children as the ranks of one mpirun job)
  levels[i].mpirun_args what mpirun gets before -np for an "mpi" level, e.g.
                        ["--hostfile", "hosts"] for ranks on other hosts (then
                        run with --address set to this host's cluster address)
  max_leaves            refuse trees with more leaves (default 4096)
  libraries             modules every instance's node loads (job types for
                        "custom" jobs: {"kind": "custom", "command": TYPE,
                        "argument": "..."})
  jobs                  {"count": N, "mix": [{"kind": "noop"|"sleep"|"shell",
                         "duration_ms": D, "command": "...", "idempotent": B,
                         "weight": W}, ...]}
)";

// One progress line; run_tree calls it every --progress-ms and once at the end.
struct progress_line {
  bool tty = ::isatty(STDOUT_FILENO) != 0;

  void show(uint64_t done, uint64_t total, double elapsed_s, bool final) {
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
  app.set_version_flag("--version",
                       std::string{"troupe-offload (Troupe) "} + troupe::version());
  std::string config_path, jobs_path, csv_path, plot_path, run_dir, actorhost_path;
  std::string address = "127.0.0.1";
  int64_t count = -1;
  unsigned timeout_s = 600, progress_ms = 1000, silence_ms = 5000;
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
  app.add_option("--address", address,
                 "where the root listens: 127.0.0.1 (default) for a tree on this host; "
                 "this host's address on the cluster network when mpirun starts ranks "
                 "on other hosts (each child then listens on its own host's address "
                 "towards its parent)");
  app.add_option("--timeout", timeout_s, "give up after this many seconds (default 600)");
  app.add_option("--progress-ms", progress_ms, "progress every N ms (default 1000)");
  app.add_option("--silence-ms", silence_ms,
                 "a child instance silent this long is taken for dead (its jobs re-queued, "
                 "it is restarted); a parent that long silent stops its children; 0: "
                 "only the transport's death notices (default 5000)");
  app.add_flag("-q,--quiet", quiet, "no progress lines");
  app.add_option("-v,--verbosity", verbosity, "log level: error, warning, info, debug");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : exit_bad_config;
  }
  if (silence_ms != 0 && silence_ms < 100) {
    std::cerr << "troupe-offload: --silence-ms: expected 0 (off) or at least 100, found "
              << silence_ms << "\n";
    return exit_bad_config;
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
  } catch (const troupe::config_error& e) {
    std::cerr << "troupe-offload: bad config: " << e.what() << "\n";
    return exit_bad_config;
  }
  if (run_dir.empty()) {
    auto made = troupe::make_temp_dir("troupe-offload");
    if (!made) {
      std::cerr << "troupe-offload: " << troupe::context_text(made.error()) << "\n";
      return exit_failed;
    }
    run_dir = std::move(*made);
  }
  if (csv_path.empty())
    csv_path = run_dir + "/jobs.csv";
  if (plot_path.empty())
    plot_path = run_dir + "/completions";

  troupe::node_config node_cfg;
  try {
    node_cfg = troupe::parse_node_config(
      nlohmann::json{{"transport", {{"address", address}, {"port", 0}}}}.dump(), "--address");
  } catch (const troupe::config_error& e) {
    std::cerr << "troupe-offload: " << e.what() << "\n";
    return exit_bad_config;
  }
  node_cfg.libraries = hierarchy.libraries;
  node_cfg.source = config_path;
  troupe::exit_watchdog stop_bound; // outlives the node: it bounds the node's stop
  troupe::node node{std::move(node_cfg)};
  troupe::actors::register_builtin_types(node.system_config());
  troupe::actors::register_builtin_providers(node.providers());
  if (auto err = node.start()) {
    std::cerr << "troupe-offload: cannot start the root node: " << troupe::describe(err) << "\n";
    return exit_failed;
  }

  // A custom job's type must be registered by one of the libraries (every instance's
  // node loads the same ones).
  for (size_t i = 0; i < hierarchy.jobs.mix.size(); ++i) {
    auto& entry = hierarchy.jobs.mix[i];
    if (entry.kind != off::job_kind::custom || node.job_types().find(entry.command))
      continue;
    std::string known;
    for (auto& name : node.job_types().names())
      known += (known.empty() ? "" : ", ") + name;
    std::cerr << "troupe-offload: bad config: " << config_path << ": jobs.mix[" << i
              << "].command: no job type \"" << entry.command
              << "\" in the \"libraries\" (registered: " << (known.empty() ? "none" : known)
              << ")\n";
    node.stop();
    return exit_bad_config;
  }
  auto jobs = off::make_jobs(hierarchy.jobs);
  uint64_t total = jobs.size();
  std::cout << "troupe-offload: " << hierarchy.num_levels << " levels, "
            << off::describe_tree(hierarchy) << "; " << total << " jobs ("
            << off::describe_mix(hierarchy.jobs) << "); run dir " << run_dir << std::endl;
  std::cout << "troupe-offload: root instance at " << node.address()
            << " (actorsh -a ADDRESS -c tree)" << std::endl;

  int rc = 0;
  off::tree_options options;
  options.levels = hierarchy.levels;
  options.run_dir = run_dir;
  options.actorhost_path = actorhost_path;
  options.timeout = std::chrono::seconds{timeout_s};
  options.silence_ms = silence_ms;
  progress_line progress{};
  options.progress_every = std::chrono::milliseconds{progress_ms};
  if (!quiet)
    options.progress = [&](uint64_t done, uint64_t all, double elapsed) {
      progress.show(done, all, elapsed, done == all);
    };
  {
    auto outcome = off::run_tree(node, std::move(jobs), options);
    auto& results = outcome.results;
    if (!outcome.failure.empty()) {
      std::cerr << "troupe-offload: " << outcome.failure << "\n";
      rc = exit_failed;
    }
    off::run_summary summary = off::summarize(results, outcome.start_ns, outcome.elapsed_s);
    summary.duplicates = outcome.duplicates;
    summary.child_restarts = outcome.root.child_restarts;
    std::cout << off::format_report(summary, hierarchy);
    auto run_start_ns = outcome.start_ns;
    if (auto err = off::write_csv(csv_path, results, run_start_ns); !err.empty()) {
      std::cerr << "troupe-offload: " << err << "\n";
      rc = exit_failed;
    } else {
      std::cout << "csv: " << csv_path << "\n";
    }
    auto plot = off::plot_completions(csv_path, plot_path);
    std::cout << plot << "\n";
  }
  stop_bound.arm("troupe-offload", std::chrono::seconds{10}, exit_failed,
                 troupe::process_keeper::kill_all_children);
  node.stop();
  return rc;
}
