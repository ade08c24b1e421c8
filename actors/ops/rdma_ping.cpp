#include "actors/ops/rdma_ping.hpp"

#include <algorithm>
#include <array>
#include <cstring>

#include <capnp/message.h>
#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>

#include "base/error.hpp"
#include "schema/ops.capnp.h"
#include "actors/ops/window.hpp"

namespace troupe::actors {

namespace {

constexpr uint64_t got_tag = 1;
constexpr uint64_t put_tag = 2;

// rdma_ping_pattern(i) depends on i mod 2048 only (131 is odd, and the byte kept is
// bits 3..10 of i * 131): filling and checking go by blocks of one period, at memcpy
// and memcmp speed rather than a byte at a time.
constexpr uint64_t pattern_period = 2048;

std::array<uint8_t, pattern_period> pattern_block(uint8_t plus) {
  std::array<uint8_t, pattern_period> block;
  for (uint64_t i = 0; i < pattern_period; ++i)
    block[i] = static_cast<uint8_t>(rdma_ping_pattern(i) + plus);
  return block;
}

void fill_pattern(uint8_t* data, uint64_t bytes) {
  auto block = pattern_block(0);
  for (uint64_t at = 0; at < bytes; at += pattern_period)
    std::memcpy(data + at, block.data(), std::min(pattern_period, bytes - at));
}

/// The first byte that is not pattern + 1, or `bytes`.
uint64_t first_unexpected(const uint8_t* data, uint64_t bytes) {
  auto block = pattern_block(1);
  for (uint64_t at = 0; at < bytes; at += pattern_period) {
    auto n = std::min(pattern_period, bytes - at);
    if (std::memcmp(data + at, block.data(), n) != 0)
      for (uint64_t i = 0; i < n; ++i)
        if (data[at + i] != block[i])
          return at + i;
  }
  return bytes;
}

} // namespace

rdma_ping_origin::rdma_ping_origin(uint64_t bytes) : bytes_(bytes) {
}

ops::step rdma_ping_origin::on_start(ops::origin_context& ctx) {
  if (bytes_ == 0)
    return ops::step::fail(make_error(errc::refused, "rdma-ping: 0 bytes"));
  if (ctx.targets().size() != 1)
    return ops::step::fail(make_error(errc::refused, "rdma-ping: exactly one target"));
  auto region = pooled_region(ctx, bytes_, /*exposed=*/true);
  if (!region)
    return ops::step::fail(region.error());
  region_ = *region;
  fill_pattern(region_->data(), bytes_);
  capnp::MallocMessageBuilder builder;
  auto ping = builder.initRoot<schema::ops::RdmaPing>();
  write_region_descriptor(region_->descriptor(), ping.initRegion());
  ping.setLength(bytes_);
  ctx.send(0, typed_message::of<schema::ops::RdmaPing>(builder));
  ctx.set_state("buffer exposed, waiting for the ack");
  return ops::step::wait();
}

ops::step rdma_ping_origin::on_message(ops::origin_context& ctx, size_t,
                                       const typed_message& m) {
  if (!m.holds<schema::ops::RdmaPingAck>())
    return ops::step::fail(
      make_error(errc::provider_failed, "rdma-ping: expected an RdmaPingAck"));
  if (auto i = first_unexpected(region_->data(), bytes_); i < bytes_)
    return ops::step::fail(
      make_error(errc::provider_failed, "rdma-ping: byte " + std::to_string(i)
                                          + " of the buffer is not what the target "
                                            "should have put there"));
  // Released only now, after the ack; and reusable, since the target is done with it.
  // (An op that fails leaves the region unsettled: it is freed, not reused.)
  settle_region(ctx, region_);
  region_.reset();
  return ops::step::done(caf::make_message(bytes_));
}

ops::step rdma_ping_target::on_start(ops::target_context& ctx, const typed_message& m) {
  if (!m.holds<schema::ops::RdmaPing>())
    return ops::step::fail(make_error(errc::refused, "rdma-ping: expected an RdmaPing"));
  typed_reader<schema::ops::RdmaPing> ping{m};
  auto length = ping.root().getLength();
  if (!read_region_descriptor(ping.root().getRegion(), remote_) || length == 0
      || length > remote_.length)
    return ops::step::fail(
      make_error(errc::refused, "rdma-ping: a bad region descriptor or length"));
  auto region = pooled_region(ctx, length);
  if (!region)
    return ops::step::fail(region.error());
  local_ = *region;
  rdma_get(ctx.self()->system(), remote_, 0, local_, 0, length,
           caf::actor_cast<caf::actor>(ctx.self()), got_tag);
  ctx.set_state("getting " + std::to_string(length) + " bytes");
  return ops::step::wait();
}

ops::step rdma_ping_target::on_other(ops::target_context& ctx, caf::message& m) {
  if (!m.match_elements<rdma_done>())
    return target_side::on_other(ctx, m);
  const auto& done = m.get_as<rdma_done>(0);
  if (done.error)
    return ops::step::fail(done.error);
  if (done.tag == got_tag) {
    auto* data = local_->data(); // hoisted: the loop vectorizes
    for (size_t i = 0, n = local_->size(); i < n; ++i)
      ++data[i];
    rdma_put(ctx.self()->system(), remote_, 0, local_, 0, local_->size(),
             caf::actor_cast<caf::actor>(ctx.self()), put_tag);
    ctx.set_state("putting back");
    return ops::step::wait();
  }
  capnp::MallocMessageBuilder builder;
  builder.initRoot<schema::ops::RdmaPingAck>().setLength(local_->size());
  ctx.reply(typed_message::of<schema::ops::RdmaPingAck>(builder));
  return ops::step::done();
}

} // namespace troupe::actors
