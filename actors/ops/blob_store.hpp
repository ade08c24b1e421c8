#pragma once
// Bytes the built-in ops keep on a node under a key: scatter's windows, a DHT's
// values. Each use is one store in the node's op-local state (ops::op_runtime::local).
// A value that came by RDMA is kept in the registered region it arrived in, so it
// can leave by RDMA again without a copy.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include "runtime/ops.hpp"
#include "transport/rdma.hpp"

namespace troupe::actors {

struct blob {
  std::shared_ptr<const std::string> bytes; ///< kept as they came (no RDMA)
  std::shared_ptr<memory_region> region;    ///< or registered memory, exactly its size

  uint64_t size() const;
  /// The bytes, copied out.
  std::string copy() const;
};

/// A reservation that is released unless it is handed to a store (`put`).
class reserved_bytes {
public:
  reserved_bytes() = default;
  reserved_bytes(std::shared_ptr<ops::kept_bytes> budget, uint64_t bytes)
    : budget_(std::move(budget)), bytes_(bytes) {}
  reserved_bytes(reserved_bytes&& other) noexcept { *this = std::move(other); }
  reserved_bytes& operator=(reserved_bytes&& other) noexcept {
    reset();
    budget_ = std::move(other.budget_);
    bytes_ = other.bytes_;
    other.bytes_ = 0;
    return *this;
  }
  ~reserved_bytes() { reset(); }
  void reset() {
    if (budget_ && bytes_ > 0)
      budget_->release(bytes_);
    bytes_ = 0;
  }
  /// The store takes the reservation over.
  void consume() { bytes_ = 0; }
  const std::shared_ptr<ops::kept_bytes>& budget() const { return budget_; }

private:
  std::shared_ptr<ops::kept_bytes> budget_;
  uint64_t bytes_ = 0;
};

class blob_store {
public:
  /// Keeps `value` under `key`, whose bytes `reservation` holds; the value it
  /// replaces gives its bytes back to the budget.
  void put(const std::string& key, blob value, reserved_bytes reservation);
  std::optional<blob> get(const std::string& key) const;
  /// The value under `key` in registered memory (copied into a region once, then
  /// kept so), for a peer to get by RDMA; not_found when there is none.
  caf::expected<std::shared_ptr<memory_region>> exposed(caf::actor_system& sys,
                                                        const std::string& key);

private:
  mutable std::mutex mtx_;
  std::unordered_map<std::string, blob> blobs_; // guarded by mtx_
  std::shared_ptr<ops::kept_bytes> budget_;     // guarded by mtx_; set by put
};

} // namespace troupe::actors
