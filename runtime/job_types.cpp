#include "runtime/job_types.hpp"

#include "base/error.hpp"

namespace troupe {

caf::error job_type_registry::add(const std::string& name, job_function fn) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (name.empty() || !fn)
    return make_error(errc::invalid_config, "a job type needs a name and a function");
  if (!types_.emplace(name, std::move(fn)).second)
    return make_error(errc::duplicate_provider,
                      "job type \"" + name + "\" is registered already");
  return caf::none;
}

std::optional<job_function> job_type_registry::find(const std::string& name) const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto it = types_.find(name);
  if (it == types_.end())
    return std::nullopt;
  return it->second;
}

std::vector<std::string> job_type_registry::names() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<std::string> result;
  for (auto& [name, fn] : types_)
    result.push_back(name);
  return result;
}

bool job_type_registry::remove(const std::string& name) {
  std::lock_guard<std::mutex> guard{mtx_};
  return types_.erase(name) > 0;
}

} // namespace troupe
