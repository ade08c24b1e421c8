#pragma once

#include <memory>
#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <caf/fwd.hpp>

namespace troupe::ops {
class op_registry;
} // namespace troupe::ops

namespace troupe {

class provider_registry;
class job_type_registry;

/// What a loadable module sees when the node loads it: the actor system config (to
/// register message types before the system starts), the provider registry (to
/// register provider types), the op registry (to register op types) and the job
/// types (runtime/job_types.hpp: C++ jobs for the offload service).
struct module_context {
  caf::actor_system_config& system_config;
  provider_registry& providers;
  ops::op_registry& ops;
  job_type_registry& job_types;
  std::string library; ///< the path it was loaded from
  std::string error;   ///< set by the module to explain a non-zero return
};

/// Bumped whenever module_context or the registry interface changes incompatibly.
constexpr unsigned module_abi_version = 4;

} // namespace troupe

/// Defines a module's entry point. In exactly one source file of the shared library:
///
///     TROUPE_MODULE(ctx) {
///       ctx.providers.add_type("kv", make_kv_provider);
///       return 0;
///     }
///
/// The node looks up `troupe_module_init` with dlsym after checking the ABI version.
#define TROUPE_MODULE(ctx)                                                               \
  extern "C" unsigned troupe_module_abi() {                                              \
    return ::troupe::module_abi_version;                                                 \
  }                                                                                      \
  extern "C" int troupe_module_init(::troupe::module_context& ctx)

namespace troupe {

/// What a loaded module registered (found by comparing the registries before and after
/// its init), and whether it can be unloaded.
struct module_info {
  std::string path;
  bool at_start = false; ///< listed under `libraries` (else loaded at runtime)
  std::vector<std::string> provider_types;
  std::vector<std::string> job_types;
  std::vector<std::string> op_types;
  size_t message_types = 0; ///< CAF message types (only at start)
};

/// The shared libraries a node has loaded; unloads them (dlclose) on destruction,
/// which must come after every actor built from their code is gone. Not thread-safe:
/// the node loads at start, and its node service (one actor) at runtime.
class module_set {
public:
  module_set() = default;
  ~module_set();
  module_set(const module_set&) = delete;
  module_set& operator=(const module_set&) = delete;

  /// Loads `path` before the node starts and runs its entry point. On failure returns
  /// a message naming the library and what went wrong (dlopen's reason, a missing
  /// symbol, an ABI mismatch, the module's own error). A library whose init ran and
  /// failed stays loaded until the set is destroyed, because it may have registered
  /// types pointing into it.
  std::string load(const std::string& path, caf::actor_system_config& cfg,
                   provider_registry& providers, ops::op_registry& ops,
                   job_type_registry& job_types);

  /// Loads `path` into a running node. The module's message types go to a scratch
  /// config: CAF's type table is fixed once the system runs, so a module that
  /// registers any that `running` (the node's config) lacks is refused. A refused or failed load is rolled back
  /// (its provider and job types removed, the library closed) and leaves the node as
  /// it was, unless it registered op types, which cannot be taken back (the library
  /// then stays loaded, and the error says so). Errors: troupe.module_load_failed.
  caf::expected<module_info> load_running(const std::string& path,
                                          const caf::actor_system_config& running,
                                          provider_registry& providers,
                                          ops::op_registry& ops,
                                          job_type_registry& job_types);

  /// The module loaded from `name` (its path, or the path's last component).
  const module_info* find(const std::string& name) const;

  /// Why the module cannot be unloaded at all (op types, job types or message types
  /// whose code may still run), or none.
  caf::error removable(const module_info& m) const;

  /// Unregisters the module's provider and job types and closes the library. Its
  /// providers must be gone (the caller stops them first): their code goes with it.
  caf::error unload(const std::string& name, provider_registry& providers,
                    job_type_registry& job_types);

  std::vector<module_info> list() const;
  std::vector<std::string> loaded() const;

private:
  struct library {
    module_info info;
    void* handle;
  };
  std::vector<library> libraries_;
};

} // namespace troupe
