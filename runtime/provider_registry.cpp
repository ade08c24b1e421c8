#include "runtime/provider_registry.hpp"

#include <algorithm>

#include <caf/actor_system.hpp>
#include <caf/attachable.hpp>
#include <caf/send.hpp>

#include "base/error.hpp"

namespace troupe {

std::shared_ptr<provider_registry> provider_registry::make() {
  return std::shared_ptr<provider_registry>{new provider_registry};
}

caf::error provider_registry::add_type(const std::string& type,
                                       provider_factory factory) {
  if (type.empty() || !factory)
    return make_error(errc::invalid_config, "a provider type needs a name and a factory");
  std::lock_guard<std::mutex> guard{mtx_};
  if (!types_.emplace(type, std::move(factory)).second)
    return make_error(errc::duplicate_provider,
                      "provider type \"" + type + "\" is already registered");
  return caf::none;
}

bool provider_registry::remove_type(const std::string& type) {
  std::lock_guard<std::mutex> guard{mtx_};
  return types_.erase(type) > 0;
}

bool provider_registry::has_type(const std::string& type) const {
  std::lock_guard<std::mutex> guard{mtx_};
  return types_.count(type) > 0;
}

std::vector<std::string> provider_registry::type_names() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<std::string> names;
  for (const auto& kvp : types_)
    names.push_back(kvp.first);
  return names;
}

caf::error provider_registry::check_free(const provider_entry& entry) const {
  for (const auto& p : running_) {
    if (p.type == entry.type && p.provider_id == entry.provider_id)
      return make_error(errc::duplicate_provider,
                        "a provider of type \"" + entry.type + "\" with provider_id "
                          + std::to_string(entry.provider_id) + " already runs (\""
                          + p.name + "\")");
    if (p.name == entry.name)
      return make_error(errc::duplicate_provider,
                        "a provider named \"" + entry.name + "\" already runs");
  }
  return caf::none;
}

caf::expected<caf::actor> provider_registry::spawn(caf::actor_system& system,
                                                   const provider_config& spec,
                                                   const std::string& node_address,
                                                   const caf::actor& locator,
                                                   job_type_registry* job_types) {
  provider_factory factory;
  std::map<std::string, caf::actor> deps;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto it = types_.find(spec.type);
    if (it == types_.end()) {
      std::string known;
      for (const auto& kvp : types_)
        known += (known.empty() ? "" : ", ") + kvp.first;
      return make_error(errc::unknown_provider_type,
                        spec.origin + ".type: unknown provider type \"" + spec.type
                          + "\" (known: " + (known.empty() ? "none" : known) + ")");
    }
    factory = it->second;
    if (auto err = check_free({spec.type, spec.name, spec.provider_id, {}}))
      return make_error(errc::duplicate_provider, spec.origin + ": " + describe(err));
    for (const auto& [slot, target] : spec.dependencies) {
      auto dep = std::find_if(running_.begin(), running_.end(),
                              [&](const provider_entry& p) { return p.name == target; });
      if (dep == running_.end())
        return make_error(errc::not_found, spec.origin + ".dependencies." + slot
                                             + ": no running provider named \"" + target
                                             + "\"");
      deps.emplace(slot, dep->handle);
    }
  }
  // The factory runs unlocked: it may spawn actors that look up other providers.
  provider_context ctx{system,  spec,      std::move(deps), node_address,
                       locator, job_types, weak_from_this()};
  auto handle = factory(ctx);
  if (!handle)
    return handle.error();
  if (!*handle)
    return make_error(errc::provider_failed, spec.origin + ": the factory of type \""
                                               + spec.type + "\" returned no actor");
  if (auto err = add({spec.type, spec.name, spec.provider_id, *handle})) {
    caf::anon_send_exit(*handle, caf::exit_reason::user_shutdown);
    return err;
  }
  return handle;
}

caf::error provider_registry::add(provider_entry entry) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (auto err = check_free(entry))
      return err;
    running_.push_back(entry);
  }
  // A provider that exits leaves the registry; a weak reference because the actor
  // may outlive the registry during teardown.
  std::weak_ptr<provider_registry> weak = shared_from_this();
  auto name = entry.name;
  auto ptr = caf::actor_cast<caf::abstract_actor*>(entry.handle);
  ptr->attach_functor([weak, name, addr = entry.handle.address()] {
    if (auto self = weak.lock()) {
      std::lock_guard<std::mutex> guard{self->mtx_};
      auto& v = self->running_;
      v.erase(std::remove_if(v.begin(), v.end(),
                             [&](const provider_entry& p) {
                               return p.name == name && p.handle.address() == addr;
                             }),
              v.end());
    }
  });
  return caf::none;
}

std::optional<provider_entry> provider_registry::find(const std::string& type,
                                                      uint16_t provider_id) const {
  std::lock_guard<std::mutex> guard{mtx_};
  for (const auto& p : running_)
    if (p.type == type && p.provider_id == provider_id)
      return p;
  return std::nullopt;
}

std::optional<provider_entry> provider_registry::find(const std::string& name) const {
  std::lock_guard<std::mutex> guard{mtx_};
  for (const auto& p : running_)
    if (p.name == name)
      return p;
  return std::nullopt;
}

std::vector<provider_entry> provider_registry::list() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return running_;
}

bool provider_registry::remove(const std::string& name) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto it = std::find_if(running_.begin(), running_.end(),
                         [&](const provider_entry& p) { return p.name == name; });
  if (it == running_.end())
    return false;
  running_.erase(it);
  return true;
}

} // namespace troupe
