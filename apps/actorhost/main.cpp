// actorhost: one Troupe node process, started from a JSON config (like Bedrock).
//
// Exit codes: 0 after a clean shutdown on SIGINT/SIGTERM, 2 for a bad command line or
// config (nothing is started), 1 when starting fails for another reason.

#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <iostream>
#include <pthread.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <caf/actor_system.hpp>
#include <caf/node_id.hpp>

#include "actors/builtin.hpp"
#include "base/process_keeper.hpp"
#include "apps/actorhost/launcher.hpp"
#include "base/error.hpp"
#include "base/exit_watchdog.hpp"
#include "base/files.hpp"
#include "base/log.hpp"
#include "base/version.hpp"
#include "runtime/config.hpp"
#include "runtime/node.hpp"
#include "runtime/ops.hpp"
#include "runtime/provider_registry.hpp"
#include "runtime/topology.hpp"

namespace {

constexpr int exit_bad_config = 2;
constexpr int exit_start_failed = 1;

const char* const description = R"(actorhost: run one Troupe node.

Reads a JSON node config, loads its libraries, spawns its providers, prints one line
"actorhost ready: <address> ..." on stdout and runs until SIGINT or SIGTERM, then
stops the providers in reverse start order and exits 0 (1 if that stop does not
finish within 30 s: an actor or a job that never returns). A bad config is reported on
stderr (file, key path, what was expected, what was found) with exit code 2.

Config keys (all optional):
  transport   {"protocol": "ucx", "address": "127.0.0.1", "port": 0,
               "busy_poll": false, "keepalive_ms": 500,
               "max_message_bytes": 1073741824, "spin_us": 50,
               "batch_sends": true}
              (port 0 = any free port; "address": "towards:HOST" = this host's
              address on the route to HOST, so HOST can reach the node)
  threads     "auto" (one per core) or a number of CAF scheduler threads
  scheduler   "progress" (default: idle workers progress the transport),
              "sharing" or "stealing" (CAF's, with a transport thread)
  pinning     "none" (default), "cores", or a list of core indexes
  libraries   ["path/to/module.so", ...]   modules exporting TROUPE_MODULE
  metrics     {"port": 9100, "address": "127.0.0.1"}: serve GET /metrics
              (Prometheus text format; port 0 = any free port, shown on the ready
              line as metrics=URL)
  providers   [{"type": "echo", "name": "echo", "provider_id": 1,
                "config": {}, "dependencies": {"slot": "other-provider"}}]
Built-in provider types: echo, group (see docs/groups.md), offload (a child instance
of the offload demo; see docs/offload.md), and the instance services overlay, events,
kvs, barrier, logs, heartbeat (see docs/services.md).

With --size N: start a local instance instead of one node: N actorhost processes on
loopback, each from this config with an ephemeral port, forming one centralized
group (the config's group provider, or one added with provider_id 1), each with the
instance services the config does not list (the KVS keeping its store in the instance
directory). Prints the view file to attach `actorsh -f` to; Ctrl-C or SIGTERM stops
every node.)";

} // namespace

int main(int argc, char** argv) {
  CLI::App app{description, "actorhost"};
  std::string config_path;
  std::string verbosity = "warning";
  std::string address_file;
  std::string config_text;
  auto* config_opt =
    app.add_option("-c,--config", config_path, "node config file (JSON)")->check(CLI::ExistingFile);
  auto* config_text_opt =
    app
      .add_option("--config-text", config_text,
                  "the node config itself (JSON), instead of a file: for ranks that "
                  "mpirun starts on hosts where no file of it exists")
      ->excludes(config_opt);
  app.add_option("-v,--verbosity", verbosity,
                 "log level: error, warning, info, debug, trace (or 0-4); default: "
                 "the TROUPE_LOG environment variable, else warning");
  auto* address_file_opt =
    app.add_option("--address-file", address_file,
                   "write the node's address to this file (atomically) once it is "
                   "ready; removed again at clean shutdown");
  unsigned size = 0;
  std::string instance_dir;
  auto* size_opt =
    app
      .add_option("--size", size, "start a local instance of this many nodes (see above)")
      ->check(CLI::Range(1u, 256u))
      ->excludes(address_file_opt)
      ->excludes(config_text_opt)
      ->needs(config_opt);
  app
    .add_option("--instance-dir", instance_dir,
                "with --size: where node configs, address files and the view file go "
                "(default: a new temporary directory, removed at the end)")
    ->needs(size_opt);
  app.set_version_flag("--version", std::string{"actorhost (Troupe) "} + troupe::version());
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return exit_bad_config;
  }
  if (config_opt->count() == 0 && config_text_opt->count() == 0) {
    std::cerr << "actorhost: --config is required (a node config file), or --config-text\n"
              << "Run with --help for more information.\n";
    return exit_bad_config;
  }
  troupe::log::level level;
  if (!troupe::log::parse_level(verbosity, level)) {
    std::cerr << "actorhost: --verbosity: expected error, warning, info, debug, trace or "
                 "0-4, found \""
              << verbosity << "\"\n";
    return exit_bad_config;
  }
  // Without -v, the TROUPE_LOG environment variable (read at start) stands.
  if (app.count("-v") > 0)
    troupe::log::set_level(level);
  if (size > 0)
    return troupe::launcher::run_instance(
      {config_path, size, instance_dir, app.count("-v") > 0 ? verbosity : ""});

  troupe::node_config cfg;
  try {
    std::string text = config_text;
    std::string source = "--config-text";
    if (config_text_opt->count() == 0) {
      auto read = troupe::read_file(config_path);
      if (!read)
        throw troupe::config_error(troupe::context_text(read.error()));
      text = *read;
      source = config_path;
    }
    cfg = troupe::parse_node_config(troupe::launcher::with_services_under_mpi(text), source);
  } catch (const troupe::config_error& e) {
    std::cerr << "actorhost: bad config: " << e.what() << "\n";
    return exit_bad_config;
  }

  // Block the shutdown signals before any thread exists, so every thread inherits the
  // mask and only sigwait below ever sees them.
  sigset_t shutdown_signals;
  sigemptyset(&shutdown_signals);
  sigaddset(&shutdown_signals, SIGINT);
  sigaddset(&shutdown_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &shutdown_signals, nullptr);

  troupe::exit_watchdog stop_bound; // outlives the node: it bounds the node's stop
  troupe::node node{std::move(cfg)};
  if (auto err = troupe::actors::register_builtins(node)) {
    std::cerr << "actorhost: " << troupe::describe(err) << "\n";
    return exit_bad_config;
  }
  // A remote `shutdown` (actorsh) ends up where SIGTERM does.
  node.on_shutdown_request([] { ::kill(::getpid(), SIGTERM); });
  if (auto err = node.start()) {
    std::cerr << "actorhost: " << troupe::describe(err) << "\n";
    auto code = static_cast<troupe::errc>(err.code());
    bool config_fault =
      err.category() == troupe::error_category_atom
      && (code == troupe::errc::invalid_config
          || code == troupe::errc::unknown_provider_type
          || code == troupe::errc::duplicate_provider
          || code == troupe::errc::module_load_failed || code == troupe::errc::not_found);
    return config_fault ? exit_bad_config : exit_start_failed;
  }

  auto address = node.address();
  if (!address_file.empty()) {
    auto err = troupe::write_file_atomically(address_file, address + "\n");
    if (err) {
      std::cerr << "actorhost: --address-file: " << troupe::context_text(err) << "\n";
      node.stop();
      return exit_start_failed;
    }
  }
  std::cout << "actorhost ready: " << address
            << " node=" << caf::to_string(node.system().node()) << " pid=" << ::getpid()
            << " providers=" << node.providers().list().size()
            << " threads=" << node.scheduler_threads() << " topology=\""
            << node.machine().summary() << "\"";
  if (auto url = node.metrics_url(); !url.empty())
    std::cout << " metrics=" << url;
  std::cout << std::endl;

  int signal_number = 0;
  while (sigwait(&shutdown_signals, &signal_number) != 0) {
  }
  std::cerr << "actorhost: " << strsignal(signal_number) << ", shutting down\n";
  stop_bound.arm("actorhost", std::chrono::seconds{30}, exit_start_failed,
                 troupe::process_keeper::kill_all_children);
  node.stop();
  if (!address_file.empty())
    ::unlink(address_file.c_str());
  std::cerr << "actorhost: stopped\n";
  return 0;
}
