#pragma once

#include <chrono>
#include <functional>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include "runtime/config.hpp"
#include "runtime/module.hpp"

namespace troupe::transport {
class middleman;
} // namespace troupe::transport

namespace troupe::ops {
class op_runtime;
} // namespace troupe::ops

namespace troupe {

class provider_registry;
class job_type_registry;
class topology;
class thread_placement;

/// One Troupe node: owns the actor system, the machine topology, the loaded modules
/// and the providers. Built from a parsed config; `start()` brings it up in the order
/// libraries -> actor system -> providers, `stop()` takes it down in reverse.
///
/// Before `start()`, callers register provider types (`providers()`) and message types
/// (`system_config()`). Not thread-safe: one owner drives start and stop.
class node {
public:
  explicit node(node_config cfg);
  ~node();
  node(const node&) = delete;
  node& operator=(const node&) = delete;

  const node_config& config() const;
  provider_registry& providers();
  const topology& machine() const;
  const thread_placement& placement() const;

  /// Valid until `start()`; the actor system is built from it.
  caf::actor_system_config& system_config();

  /// Loads `libraries`, builds the actor system (threads and pinning from the config
  /// and topology) and spawns `providers` in dependency order. On error everything
  /// started so far is stopped again and the error names the config entry at fault.
  caf::error start();

  /// Stops providers in reverse start order (each gets an exit message and up to
  /// `grace` to finish), then shuts the actor system down. Idempotent.
  void stop();

  bool running() const;

  /// Valid between `start()` and `stop()`.
  caf::actor_system& system();

  /// The node's transport address as a URI (e.g. "ucx://127.0.0.1:7100"); once
  /// started, with the port the OS chose if the config said 0.
  std::string address() const;

  /// The locator (runtime/locator.hpp): remote lookups for actors, without blocking.
  /// Valid between `start()` and `stop()`.
  caf::actor locator() const;

  /// How long a locator lookup waits for an answer.
  static constexpr std::chrono::milliseconds lookup_deadline{5000};

  /// The op framework (runtime/ops.hpp): register op types on it before or after
  /// `start()`; its dispatcher runs between `start()` and `stop()`.
  ops::op_runtime& ops();

  /// Job types (runtime/job_types.hpp) that modules registered, and the application's.
  job_type_registry& job_types();

  /// The UCX middleman. Valid between `start()` and `stop()`.
  transport::middleman& transport();

  /// The node service of the node at `uri` (connecting to it if needed; blocking, up
  /// to `timeout`): a handle that answers questions about that node.
  caf::expected<caf::actor> remote_node(const std::string& uri,
                                        std::chrono::milliseconds timeout);

  /// Finds provider (type, provider id) on the node at `uri` (blocking, up to
  /// `timeout`). Every provider is published under its name and its (type, id).
  caf::expected<caf::actor> remote_provider(const std::string& uri,
                                            const std::string& type, uint16_t provider_id,
                                            std::chrono::milliseconds timeout);

  /// "http://ADDRESS:PORT/metrics" while the node serves its metrics (config key
  /// "metrics"), else "".
  std::string metrics_url() const;

  /// The modules this node loaded, at start (`libraries`) and since.
  std::vector<module_info> modules() const;
  /// Loads a module into the running node (module_set::load_running: a failed load
  /// leaves the node as it was). Call from one actor at a time (the node service).
  caf::expected<module_info> load_module(const std::string& path);
  /// Module `name` (its path or file name) if it may be unloaded; else why not
  /// (troupe.not_found, or troupe.refused naming what keeps it).
  caf::expected<module_info> removable_module(const std::string& name) const;
  /// Unloads module `name`. Its providers must have ended: their code goes with it.
  caf::error unload_module(const std::string& name);

  /// The CAF scheduler thread count actually used (config or topology).
  unsigned scheduler_threads() const;

  /// What a remote `shutdown` (node service) does: calls this handler, which the
  /// owner sets (actorhost raises SIGTERM to itself). Without one it is refused.
  void on_shutdown_request(std::function<void()> handler);

  /// Calls the shutdown handler; returns false if there is none. Thread-safe.
  bool request_shutdown();
  bool has_shutdown_handler() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace troupe
