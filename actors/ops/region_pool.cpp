#include "actors/ops/region_pool.hpp"

namespace troupe::actors {

region_pool::region_pool() : idle_(std::make_shared<idle_regions>()) {
}

caf::expected<std::shared_ptr<memory_region>> region_pool::take(caf::actor_system& sys,
                                                                uint64_t bytes) {
  std::shared_ptr<memory_region> region;
  {
    std::lock_guard<std::mutex> guard{idle_->mtx};
    auto i = idle_->by_size.find(bytes);
    if (i != idle_->by_size.end() && !i->second.empty()) {
      region = std::move(i->second.back());
      i->second.pop_back();
      idle_->bytes -= bytes;
    }
  }
  if (!region) {
    auto fresh = memory_region::allocate(sys, bytes);
    if (!fresh)
      return fresh.error();
    region = std::move(*fresh);
  }
  // The pointer handed out returns the region when its last copy goes (or frees it,
  // when the pool is gone or full).
  std::weak_ptr<idle_regions> home = idle_;
  auto* raw = region.get();
  return std::shared_ptr<memory_region>{raw, [home, region](memory_region*) mutable {
                                          auto idle = home.lock();
                                          if (!idle)
                                            return;
                                          std::lock_guard<std::mutex> guard{idle->mtx};
                                          auto size = region->size();
                                          if (idle->bytes + size > max_idle_bytes)
                                            return;
                                          idle->bytes += size;
                                          idle->by_size[size].push_back(
                                            std::move(region));
                                        }};
}

uint64_t region_pool::idle_bytes() const {
  std::lock_guard<std::mutex> guard{idle_->mtx};
  return idle_->bytes;
}

} // namespace troupe::actors
