#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include "runtime/config.hpp"

namespace troupe {

class job_type_registry;
class provider_registry;

/// What a provider factory gets to build its actor from.
struct provider_context {
  caf::actor_system& system;
  const provider_config& spec;
  /// The config's `dependencies`, resolved: slot name -> the running provider.
  std::map<std::string, caf::actor> dependencies;
  /// The URI peers reach this node at ("" when the node has no transport).
  std::string node_address;
  /// The node's locator (runtime/locator.hpp): finds providers on other nodes without
  /// blocking. Null when the node has no transport.
  caf::actor locator;
  /// The node's job types (runtime/job_types.hpp); null outside a node.
  job_type_registry* job_types = nullptr;
  /// The registry spawning the provider: services that hand messages to a provider
  /// of this node by name (the overlay) find it here.
  std::weak_ptr<provider_registry> providers;
};

/// Spawns a provider's actor. Returns an error (category troupe, `invalid_config` for
/// a bad `config` object, naming `spec.origin`) instead of throwing.
using provider_factory =
  std::function<caf::expected<caf::actor>(const provider_context&)>;

/// A running provider.
struct provider_entry {
  std::string type;
  std::string name;
  uint16_t provider_id = 0;
  caf::actor handle;
};

/// Provider types (type name -> factory) and the providers running on this node,
/// found by (type, provider id) or by name. Thread-safe. A provider whose actor exits
/// leaves the registry by itself.
class provider_registry : public std::enable_shared_from_this<provider_registry> {
public:
  static std::shared_ptr<provider_registry> make();

  /// Registers a provider type. Registering a name twice is an error.
  caf::error add_type(const std::string& type, provider_factory factory);
  bool has_type(const std::string& type) const;
  /// Unregisters a provider type (a module being unloaded); running providers of it
  /// are not touched. False if there is none by that name.
  bool remove_type(const std::string& type);
  std::vector<std::string> type_names() const;

  /// Spawns the provider `spec` describes and registers it. Fails with
  /// `unknown_provider_type`, `duplicate_provider`, `not_found` (a dependency that is
  /// not running) or whatever the factory reports; on failure nothing is registered.
  caf::expected<caf::actor> spawn(caf::actor_system& system, const provider_config& spec,
                                  const std::string& node_address = {},
                                  const caf::actor& locator = {},
                                  job_type_registry* job_types = nullptr);

  /// Registers an already running actor as a provider (for applications that spawn
  /// their own). Fails with `duplicate_provider` on a taken (type, id) or name.
  caf::error add(provider_entry entry);

  std::optional<provider_entry> find(const std::string& type, uint16_t provider_id) const;
  std::optional<provider_entry> find(const std::string& name) const;

  /// Running providers in the order they were registered.
  std::vector<provider_entry> list() const;

  /// Unregisters (does not stop) a provider. Returns false if there is none by that name.
  bool remove(const std::string& name);

private:
  provider_registry() = default;
  caf::error check_free(const provider_entry& entry) const; // requires mtx_

  mutable std::mutex mtx_;
  std::map<std::string, provider_factory> types_;
  std::vector<provider_entry> running_;
};

} // namespace troupe
