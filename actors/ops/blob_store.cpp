#include "actors/ops/blob_store.hpp"

#include <cstring>

#include "base/error.hpp"

namespace troupe::actors {

uint64_t blob::size() const {
  if (region)
    return region->size();
  return bytes ? bytes->size() : 0;
}

std::string blob::copy() const {
  if (region)
    return std::string{reinterpret_cast<const char*>(region->data()), region->size()};
  return bytes ? *bytes : std::string{};
}

void blob_store::put(const std::string& key, blob value, reserved_bytes reservation) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (!budget_)
    budget_ = reservation.budget();
  auto& slot = blobs_[key];
  if (budget_ && slot.size() > 0)
    budget_->release(slot.size());
  slot = std::move(value);
  reservation.consume();
}

std::optional<blob> blob_store::get(const std::string& key) const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = blobs_.find(key);
  if (i == blobs_.end())
    return std::nullopt;
  return i->second;
}

caf::expected<std::shared_ptr<memory_region>>
blob_store::exposed(caf::actor_system& sys, const std::string& key) {
  auto value = get(key);
  if (!value)
    return make_error(errc::not_found, "nothing is kept under that key");
  if (value->region)
    return value->region;
  // Registration outside the lock: it is a system call.
  auto region = memory_region::allocate(sys, value->size());
  if (!region)
    return region.error();
  std::memcpy((*region)->data(), value->bytes->data(), value->size());
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = blobs_.find(key);
  // Keep the region only if the value was not replaced meanwhile.
  if (i != blobs_.end() && i->second.bytes == value->bytes)
    i->second = blob{nullptr, *region};
  return *region;
}

} // namespace troupe::actors
