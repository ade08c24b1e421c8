#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace troupe {

/// The machine as hwloc sees it. Owns the hwloc topology (hwloc headers stay in the
/// .cpp); binding calls are safe from any thread once discovery is done.
class topology {
public:
  struct core {
    unsigned index = 0;        ///< logical index, 0..cores-1
    std::vector<unsigned> pus; ///< OS indexes of its hardware threads
  };

  /// Discovers this machine's topology. Throws std::runtime_error if hwloc fails.
  static std::shared_ptr<topology> discover();

  ~topology();
  topology(const topology&) = delete;
  topology& operator=(const topology&) = delete;

  unsigned packages() const { return packages_; }
  unsigned numa_nodes() const { return numa_nodes_; }
  unsigned cores() const { return static_cast<unsigned>(cores_.size()); }
  unsigned pus() const { return pus_; }
  const std::vector<core>& core_list() const { return cores_; }

  /// "1 package, 1 NUMA node, 2 cores, 2 hardware threads".
  std::string summary() const;

  /// Binds the calling thread to the hardware threads of core `core_index`. Returns an
  /// empty string on success, otherwise why it failed.
  std::string bind_current_thread(unsigned core_index) const;

private:
  topology() = default;
  struct impl;
  std::unique_ptr<impl> impl_;
  unsigned packages_ = 0;
  unsigned numa_nodes_ = 0;
  unsigned pus_ = 0;
  std::vector<core> cores_;
};

/// Which core each bound thread went to, for introspection. Filled by the placement
/// hook from CAF's threads as they start.
class thread_placement {
public:
  void record(unsigned core_index);
  std::vector<unsigned> bound_cores() const;

private:
  mutable std::mutex mtx_;
  std::vector<unsigned> cores_;
};

} // namespace troupe
