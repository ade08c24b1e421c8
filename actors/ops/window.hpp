#pragma once
// A slice of a peer's registered memory, as the built-in ops send it (Window in
// schema/ops.capnp). Includes generated Cap'n Proto code: include from .cpp files.

#include <cstdint>
#include <string>

#include <optional>

#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>

#include "actors/ops/blob_store.hpp"
#include "actors/ops/region_pool.hpp"
#include "base/error.hpp"
#include "runtime/ops.hpp"
#include "schema/ops.capnp.h"
#include "transport/rdma.hpp"
#include "transport/region_codec.hpp"

namespace troupe::actors {

struct window {
  region_descriptor region;
  uint64_t offset = 0;
  uint64_t length = 0;
};

inline void write_window(const region_descriptor& region, uint64_t offset,
                         uint64_t length, schema::ops::Window::Builder out) {
  write_region_descriptor(region, out.initRegion());
  out.setOffset(offset);
  out.setLength(length);
}

/// An empty string, or why the window cannot be used (it comes off the network).
inline std::string read_window(schema::ops::Window::Reader in, window& out) {
  if (!read_region_descriptor(in.getRegion(), out.region))
    return "a region descriptor whose node id does not parse";
  out.offset = in.getOffset();
  out.length = in.getLength();
  if (out.offset > out.region.length || out.length > out.region.length - out.offset)
    return "a window outside its region";
  return {};
}

/// A registered region of `bytes` from this node's pool (region_pool).
/// `exposed`: its descriptor goes to a peer (see region_pool: call `settle_region`
/// once no peer will touch it again).
inline caf::expected<std::shared_ptr<memory_region>>
pooled_region(ops::side_context& ctx, uint64_t bytes, bool exposed = false) {
  return ctx.runtime()
    .local<region_pool>("troupe.regions")
    ->take(ctx.self()->system(), bytes, exposed);
}

inline void settle_region(ops::side_context& ctx,
                          const std::shared_ptr<memory_region>& region) {
  ctx.runtime().local<region_pool>("troupe.regions")->settle(region);
}

inline void expose_region(ops::side_context& ctx,
                          const std::shared_ptr<memory_region>& region) {
  ctx.runtime().local<region_pool>("troupe.regions")->expose(region);
}

/// Reserves `bytes` of the node's `ops.store_max_bytes` for a value to keep.
inline caf::error reserve_kept(ops::op_runtime& rt, uint64_t bytes, reserved_bytes& out) {
  auto budget = rt.kept();
  if (!budget)
    return make_error(errc::refused, "the node's op framework is not running");
  if (auto err = budget->reserve(bytes))
    return err;
  out = reserved_bytes{std::move(budget), bytes};
  return caf::none;
}

/// Takes `local` for the window from the pool and starts getting it into it; the side
/// then receives rdma_done{tag} (see rdma_completion). The error if it could not start.
inline caf::error fetch_window(ops::side_context& ctx, const window& w,
                               std::shared_ptr<memory_region>& local, uint64_t tag) {
  auto region = pooled_region(ctx, w.length);
  if (!region)
    return region.error();
  local = *region;
  rdma_get(ctx.self()->system(), w.region, w.offset, local, 0, w.length,
           caf::actor_cast<caf::actor>(ctx.self()), tag);
  ctx.set_state("getting " + std::to_string(w.length) + " bytes");
  return caf::none;
}

/// For `on_other`: nothing if `m` is no rdma_done, else its error (none: success).
inline std::optional<caf::error> rdma_completion(const caf::message& m) {
  if (!m.match_elements<rdma_done>())
    return std::nullopt;
  return m.get_as<rdma_done>(0).error;
}

inline kj::ArrayPtr<const kj::byte> bytes_of(const std::string& s) {
  return kj::arrayPtr(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}

inline std::string string_of(capnp::Data::Reader data) {
  return std::string{reinterpret_cast<const char*>(data.begin()), data.size()};
}

} // namespace troupe::actors
