#pragma once
// Registered regions the built-in ops reuse instead of allocating per op: allocating
// and registering memory, and the page faults of its first use, cost far more than
// the RDMA itself (about 1.5 ms per fresh MiB against 0.1 ms for a get of it here),
// and a peer reading a region it has read before finds its key already unpacked.
// One pool per node, in the op-local state (ops::op_runtime::local).
//
// A region whose descriptor went to a peer stays registered while pooled, so a peer
// that still holds the descriptor (its op failed or timed out on our side) could
// write into the region's next user. Such regions are taken `exposed` (or marked
// with `expose`) and go back to the pool only once `settle` says no peer will touch
// them again; otherwise their release frees them.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_set>
#include <vector>

#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include "transport/rdma.hpp"

namespace troupe::actors {

class region_pool {
public:
  /// Idle regions kept at most, in bytes; more are released.
  static constexpr uint64_t max_idle_bytes = uint64_t{256} << 20;

  region_pool();

  /// A registered region of exactly `bytes` (its contents are whatever its last user
  /// left). It returns to the pool when the last copy of the pointer goes, unless it
  /// was exposed and not settled.
  caf::expected<std::shared_ptr<memory_region>>
  take(caf::actor_system& sys, uint64_t bytes, bool exposed = false);

  /// `region` (from this pool; others are ignored) is known to peers: free it on
  /// release instead of reusing it, unless settled.
  void expose(const std::shared_ptr<memory_region>& region);
  /// No peer will touch `region` again: it may be reused.
  void settle(const std::shared_ptr<memory_region>& region);

private:
  struct shared_state {
    std::mutex mtx;
    std::map<uint64_t, std::vector<std::shared_ptr<memory_region>>> idle_by_size;
    uint64_t idle_bytes = 0;
    std::unordered_set<const memory_region*> lent;
    std::unordered_set<const memory_region*> unsettled;
  };
  std::shared_ptr<shared_state> state_;
};

} // namespace troupe::actors
