#pragma once
// Bytes the built-in ops keep on a node under a key: scatter's windows, a DHT's
// values. Each use is one store in the node's op-local state (ops::op_runtime::local).
// A value that came by RDMA is kept in the registered region it arrived in, so it
// can leave by RDMA again without a copy.

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include "transport/rdma.hpp"

namespace troupe::actors {

struct blob {
  std::shared_ptr<const std::string> bytes; ///< kept as they came (no RDMA)
  std::shared_ptr<memory_region> region;    ///< or registered memory, exactly its size

  uint64_t size() const;
  /// The bytes, copied out.
  std::string copy() const;
};

class blob_store {
public:
  void put(const std::string& key, blob value);
  std::optional<blob> get(const std::string& key) const;
  /// The value under `key` in registered memory (copied into a region once, then
  /// kept so), for a peer to get by RDMA; not_found when there is none.
  caf::expected<std::shared_ptr<memory_region>> exposed(caf::actor_system& sys,
                                                        const std::string& key);
  size_t size() const;

private:
  mutable std::mutex mtx_;
  std::unordered_map<std::string, blob> blobs_; // guarded by mtx_
};

} // namespace troupe::actors
