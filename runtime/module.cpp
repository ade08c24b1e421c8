#include "runtime/module.hpp"

#include <algorithm>
#include <dlfcn.h>
#include <set>
#include <variant>

#include <caf/actor_system_config.hpp>

#include "base/error.hpp"
#include "runtime/job_types.hpp"
#include "runtime/ops.hpp"
#include "runtime/provider_registry.hpp"

namespace troupe {

namespace {

using abi_fn = unsigned (*)();
using init_fn = int (*)(module_context&);

/// The names in `after` that are not in `before`.
std::vector<std::string> added(const std::vector<std::string>& before,
                               const std::vector<std::string>& after) {
  std::set<std::string> old(before.begin(), before.end());
  std::vector<std::string> out;
  for (const auto& name : after)
    if (old.count(name) == 0)
      out.push_back(name);
  return out;
}

std::vector<std::string> op_names(const ops::op_registry& ops) {
  std::vector<std::string> out;
  for (const auto* e : ops.all())
    out.push_back(e->name);
  return out;
}

std::vector<std::string> message_type_names(const caf::actor_system_config& cfg) {
  std::vector<std::string> out;
  for (const auto& kvp : cfg.value_factories_by_name)
    out.push_back(kvp.first);
  return out;
}

/// Opens `path` and finds its entry point; the handle, or why not (the library closed).
std::variant<std::pair<void*, init_fn>, std::string> open_module(const std::string& path) {
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    return "cannot load library '" + path + "': " + (why ? why : "unknown dlopen error");
  }
  auto fail = [&](std::string msg) {
    ::dlclose(handle);
    return "library '" + path + "': " + msg;
  };
  auto abi = reinterpret_cast<abi_fn>(::dlsym(handle, "troupe_module_abi"));
  auto init = reinterpret_cast<init_fn>(::dlsym(handle, "troupe_module_init"));
  if (abi == nullptr || init == nullptr)
    return fail("not a Troupe module (no TROUPE_MODULE entry point)");
  if (abi() != module_abi_version)
    return fail("built for module ABI " + std::to_string(abi()) + ", this node speaks "
                + std::to_string(module_abi_version));
  return std::make_pair(handle, init);
}

/// Runs the module's `init` with `ctx` and notes in `info` what it registered (the
/// registries before and after); the message type names it added go to
/// `new_message_types`. Returns init's result.
int run_init(init_fn init, module_context& ctx, module_info& info,
             std::vector<std::string>& new_message_types) {
  auto providers_before = ctx.providers.type_names();
  auto jobs_before = ctx.job_types.names();
  auto ops_before = op_names(ctx.ops);
  auto types_before = message_type_names(ctx.system_config);
  int rc = init(ctx);
  info.path = ctx.library;
  info.provider_types = added(providers_before, ctx.providers.type_names());
  info.job_types = added(jobs_before, ctx.job_types.names());
  info.op_types = added(ops_before, op_names(ctx.ops));
  new_message_types = added(types_before, message_type_names(ctx.system_config));
  info.message_types = new_message_types.size();
  return rc;
}

std::string base_name(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

} // namespace

module_set::~module_set() {
  for (auto it = libraries_.rbegin(); it != libraries_.rend(); ++it)
    ::dlclose(it->handle);
}

std::string module_set::load(const std::string& path, caf::actor_system_config& cfg,
                             provider_registry& providers, ops::op_registry& ops,
                             job_type_registry& job_types) {
  auto opened = open_module(path);
  if (auto why = std::get_if<std::string>(&opened))
    return *why;
  auto [handle, init] = std::get<std::pair<void*, init_fn>>(opened);
  module_context ctx{cfg, providers, ops, job_types, path, {}};
  module_info info;
  std::vector<std::string> message_types;
  auto rc = run_init(init, ctx, info, message_types);
  info.at_start = true;
  libraries_.push_back({std::move(info), handle});
  if (rc != 0)
    return "library '" + path
           + "': its init failed: " + (ctx.error.empty() ? "no reason given" : ctx.error);
  return {};
}

caf::expected<module_info> module_set::load_running(const std::string& path,
                                                    const caf::actor_system_config& running,
                                                    provider_registry& providers,
                                                    ops::op_registry& ops,
                                                    job_type_registry& job_types) {
  auto failed = [](std::string why) { return make_error(errc::module_load_failed, why); };
  for (const auto& lib : libraries_)
    if (lib.info.path == path)
      return failed("library '" + path + "' is loaded already");
  auto opened = open_module(path);
  if (auto why = std::get_if<std::string>(&opened))
    return failed(*why);
  auto [handle, init] = std::get<std::pair<void*, init_fn>>(opened);
  // Message types go to a scratch config; the running system's table stays as it is.
  caf::actor_system_config scratch;
  module_context ctx{scratch, providers, ops, job_types, path, {}};
  module_info info;
  std::vector<std::string> message_types;
  auto rc = run_init(init, ctx, info, message_types);
  info.message_types = 0; // the scratch config's: none of them stays
  std::string why;
  if (rc != 0)
    why = "its init failed: " + (ctx.error.empty() ? std::string{"no reason given"} : ctx.error);
  for (const auto& name : message_types)
    if (why.empty() && running.value_factories_by_name.count(name) == 0)
      why = "it registers message type '" + name
            + "', and a running node's message types are fixed: list the library under "
              "`libraries` in the node config instead";
  if (why.empty()) {
    libraries_.push_back({info, handle});
    return info;
  }
  // Back to how it was.
  for (const auto& type : info.provider_types)
    providers.remove_type(type);
  for (const auto& name : info.job_types)
    job_types.remove(name);
  if (!info.op_types.empty()) {
    libraries_.push_back({info, handle}); // op types stay: so must their code
    return failed("library '" + path + "': " + why + " (it stays loaded: it registered op "
                  "types, which cannot be taken back)");
  }
  ::dlclose(handle);
  return failed("library '" + path + "': " + why + "; nothing of it was kept");
}

const module_info* module_set::find(const std::string& name) const {
  for (const auto& lib : libraries_)
    if (lib.info.path == name || base_name(lib.info.path) == name)
      return &lib.info;
  return nullptr;
}

caf::error module_set::removable(const module_info& m) const {
  auto refuse = [&](const std::string& why) {
    return make_error(errc::refused, "module '" + m.path + "' cannot be unloaded: " + why
                                       + "; restart the node without it");
  };
  if (!m.op_types.empty())
    return refuse("it registered op types, whose code in-flight ops may run");
  if (!m.job_types.empty())
    return refuse("it registered job types, whose code running jobs may run");
  if (m.message_types > 0)
    return refuse("it registered message types, which CAF keeps until the node stops");
  return caf::none;
}

caf::error module_set::unload(const std::string& name, provider_registry& providers,
                              job_type_registry& job_types) {
  auto i = std::find_if(libraries_.begin(), libraries_.end(), [&](const library& lib) {
    return lib.info.path == name || base_name(lib.info.path) == name;
  });
  if (i == libraries_.end())
    return make_error(errc::not_found, "no module '" + name + "' is loaded");
  if (auto err = removable(i->info))
    return err;
  for (const auto& type : i->info.provider_types)
    providers.remove_type(type);
  for (const auto& job : i->info.job_types)
    job_types.remove(job);
  ::dlclose(i->handle);
  libraries_.erase(i);
  return caf::none;
}

std::vector<module_info> module_set::list() const {
  std::vector<module_info> out;
  for (const auto& lib : libraries_)
    out.push_back(lib.info);
  return out;
}

std::vector<std::string> module_set::loaded() const {
  std::vector<std::string> paths;
  for (const auto& lib : libraries_)
    paths.push_back(lib.info.path);
  return paths;
}

} // namespace troupe
