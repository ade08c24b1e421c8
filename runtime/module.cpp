#include "runtime/module.hpp"

#include <dlfcn.h>

namespace troupe {

module_set::~module_set() {
  for (auto it = libraries_.rbegin(); it != libraries_.rend(); ++it)
    ::dlclose(it->handle);
}

std::string module_set::load(const std::string& path, caf::actor_system_config& cfg,
                             provider_registry& providers, ops::op_registry& ops,
                            job_type_registry& job_types) {
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    return "cannot load library '" + path + "': " + (why ? why : "unknown dlopen error");
  }
  auto fail = [&](std::string msg) {
    ::dlclose(handle);
    return "library '" + path + "': " + msg;
  };
  using abi_fn = unsigned (*)();
  using init_fn = int (*)(module_context&);
  auto abi = reinterpret_cast<abi_fn>(::dlsym(handle, "troupe_module_abi"));
  auto init = reinterpret_cast<init_fn>(::dlsym(handle, "troupe_module_init"));
  if (abi == nullptr || init == nullptr)
    return fail("not a Troupe module (no TROUPE_MODULE entry point)");
  if (abi() != module_abi_version)
    return fail("built for module ABI " + std::to_string(abi()) + ", this node speaks "
                + std::to_string(module_abi_version));
  module_context ctx{cfg, providers, ops, job_types, path, {}};
  auto rc = init(ctx);
  libraries_.push_back({path, handle});
  if (rc != 0)
    return "library '" + path
           + "': its init failed: " + (ctx.error.empty() ? "no reason given" : ctx.error);
  return {};
}

std::vector<std::string> module_set::loaded() const {
  std::vector<std::string> paths;
  for (const auto& lib : libraries_)
    paths.push_back(lib.path);
  return paths;
}

} // namespace troupe
