#include "actors/ops/region_pool.hpp"

namespace troupe::actors {

region_pool::region_pool() : state_(std::make_shared<shared_state>()) {
}

caf::expected<std::shared_ptr<memory_region>>
region_pool::take(caf::actor_system& sys, uint64_t bytes, bool exposed) {
  std::shared_ptr<memory_region> region;
  {
    std::lock_guard<std::mutex> guard{state_->mtx};
    auto i = state_->idle_by_size.find(bytes);
    if (i != state_->idle_by_size.end() && !i->second.empty()) {
      region = std::move(i->second.back());
      i->second.pop_back();
      state_->idle_bytes -= bytes;
    }
  }
  if (!region) {
    auto fresh = memory_region::allocate(sys, bytes);
    if (!fresh)
      return fresh.error();
    region = std::move(*fresh);
  }
  auto* raw = region.get();
  {
    std::lock_guard<std::mutex> guard{state_->mtx};
    state_->lent.insert(raw);
    if (exposed)
      state_->unsettled.insert(raw);
  }
  // The pointer handed out returns the region when its last copy goes, or frees it
  // (the pool is gone or full, or a peer may still reach the region).
  std::weak_ptr<shared_state> home = state_;
  return std::shared_ptr<memory_region>{
    raw, [home, region](memory_region* raw) mutable {
      auto st = home.lock();
      if (!st)
        return;
      std::lock_guard<std::mutex> guard{st->mtx};
      st->lent.erase(raw);
      auto size = region->size();
      if (st->unsettled.erase(raw) > 0 || st->idle_bytes + size > max_idle_bytes)
        return;
      st->idle_bytes += size;
      st->idle_by_size[size].push_back(std::move(region));
    }};
}

void region_pool::expose(const std::shared_ptr<memory_region>& region) {
  std::lock_guard<std::mutex> guard{state_->mtx};
  if (state_->lent.count(region.get()) > 0)
    state_->unsettled.insert(region.get());
}

void region_pool::settle(const std::shared_ptr<memory_region>& region) {
  std::lock_guard<std::mutex> guard{state_->mtx};
  state_->unsettled.erase(region.get());
}

} // namespace troupe::actors
