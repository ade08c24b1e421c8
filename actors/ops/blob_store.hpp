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

#include "transport/rdma.hpp"

namespace troupe::actors {

struct blob {
  std::shared_ptr<const std::string> bytes; ///< kept as they came (no RDMA)
  std::shared_ptr<memory_region> region;    ///< or registered memory, exactly its size

  uint64_t size() const;
  /// The bytes, copied out.
  std::string copy() const;
};

/// The bytes all of a node's stores keep, against `ops.store_max_bytes`: reserved
/// before the bytes come (so a refusal happens before anything is fetched or
/// committed), released when a kept value is replaced or a reservation dropped.
class store_budget {
public:
  /// Reserves `bytes` if that stays within `limit`; else an error naming both.
  caf::error reserve(uint64_t bytes, uint64_t limit);
  void release(uint64_t bytes);
  uint64_t used() const { return used_.load(); }

private:
  std::atomic<uint64_t> used_{0};
};

/// A reservation that is released unless it is handed to a store (`put`).
class reserved_bytes {
public:
  reserved_bytes() = default;
  reserved_bytes(std::shared_ptr<store_budget> budget, uint64_t bytes)
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
  const std::shared_ptr<store_budget>& budget() const { return budget_; }

private:
  std::shared_ptr<store_budget> budget_;
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
  size_t size() const;

private:
  mutable std::mutex mtx_;
  std::unordered_map<std::string, blob> blobs_; // guarded by mtx_
  std::shared_ptr<store_budget> budget_;        // guarded by mtx_; set by put
};

} // namespace troupe::actors
