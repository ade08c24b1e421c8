#include "runtime/topology.hpp"

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <hwloc.h>

namespace troupe {

struct topology::impl {
  hwloc_topology_t handle = nullptr;
  ~impl() {
    if (handle != nullptr)
      hwloc_topology_destroy(handle);
  }
};

namespace {

unsigned count_of(hwloc_topology_t handle, hwloc_obj_type_t type) {
  int n = hwloc_get_nbobjs_by_type(handle, type);
  return n > 0 ? static_cast<unsigned>(n) : 0;
}

std::string plural(unsigned n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

} // namespace

std::shared_ptr<topology> topology::discover() {
  std::shared_ptr<topology> result{new topology};
  result->impl_ = std::make_unique<impl>();
  auto& handle = result->impl_->handle;
  if (hwloc_topology_init(&handle) != 0)
    throw std::runtime_error("hwloc_topology_init failed");
  if (hwloc_topology_load(handle) != 0)
    throw std::runtime_error(std::string{"hwloc_topology_load failed: "}
                             + std::strerror(errno));
  result->packages_ = std::max(1u, count_of(handle, HWLOC_OBJ_PACKAGE));
  result->numa_nodes_ = std::max(1u, count_of(handle, HWLOC_OBJ_NUMANODE));
  result->pus_ = count_of(handle, HWLOC_OBJ_PU);
  auto ncores = count_of(handle, HWLOC_OBJ_CORE);
  for (unsigned i = 0; i < ncores; ++i) {
    auto obj = hwloc_get_obj_by_type(handle, HWLOC_OBJ_CORE, i);
    core c;
    c.index = i;
    unsigned pu = 0;
    hwloc_bitmap_foreach_begin(pu, obj->cpuset) {
      c.pus.push_back(pu);
    }
    hwloc_bitmap_foreach_end();
    result->cores_.push_back(std::move(c));
  }
  // Some virtual machines report PUs without cores: treat each PU as a core.
  if (result->cores_.empty()) {
    for (unsigned i = 0; i < result->pus_; ++i) {
      auto obj = hwloc_get_obj_by_type(handle, HWLOC_OBJ_PU, i);
      result->cores_.push_back(core{i, {obj->os_index}});
    }
  }
  if (result->cores_.empty())
    throw std::runtime_error("hwloc found no cores and no hardware threads");
  return result;
}

topology::~topology() = default;

std::string topology::summary() const {
  return plural(packages_, "package", "packages") + ", "
         + plural(numa_nodes_, "NUMA node", "NUMA nodes") + ", "
         + plural(cores(), "core", "cores") + ", "
         + plural(pus_, "hardware thread", "hardware threads");
}

std::string topology::bind_current_thread(unsigned core_index) const {
  if (core_index >= cores_.size())
    return "core " + std::to_string(core_index) + " does not exist (this machine has "
           + std::to_string(cores_.size()) + ")";
  auto set = hwloc_bitmap_alloc();
  for (auto pu : cores_[core_index].pus)
    hwloc_bitmap_set(set, pu);
  int rc = hwloc_set_cpubind(impl_->handle, set, HWLOC_CPUBIND_THREAD);
  int err = errno;
  hwloc_bitmap_free(set);
  if (rc != 0)
    return "binding to core " + std::to_string(core_index)
           + " failed: " + std::strerror(err);
  return {};
}

void thread_placement::record(unsigned core_index) {
  std::lock_guard<std::mutex> guard{mtx_};
  cores_.push_back(core_index);
}

std::vector<unsigned> thread_placement::bound_cores() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return cores_;
}

} // namespace troupe
