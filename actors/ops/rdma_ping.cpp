#include "actors/ops/rdma_ping.hpp"

#include <algorithm>
#include <cstring>
#include <string>

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

constexpr uint64_t byte_ones = 0x0101010101010101ULL;
constexpr uint64_t byte_highs = 0x8080808080808080ULL;

/// Adds 1 to every byte of `w`, each wrapping on its own (no carry into the next).
constexpr uint64_t add_one_per_byte(uint64_t w) {
  return ((w & ~byte_highs) + byte_ones) ^ (w & byte_highs);
}

/// Subtracts 1 from every byte of `w`, each wrapping on its own.
constexpr uint64_t sub_one_per_byte(uint64_t w) {
  return ((w | byte_highs) - byte_ones) ^ (~w & byte_highs);
}

static_assert(add_one_per_byte(0xff7f80000102fe01ULL) == 0x008081010203ff02ULL);
static_assert(sub_one_per_byte(0x008081010203ff02ULL) == 0xff7f80000102fe01ULL);

uint64_t load_word(const uint8_t* at, uint64_t bytes = 8) {
  uint64_t w = 0;
  std::memcpy(&w, at, bytes);
  return w;
}

/// Why byte `at` of the origin's buffer is wrong, naming where its word belongs when
/// the word is one of this op's (a block put back at a wrong offset).
std::string why_unexpected(const uint8_t* data, uint64_t bytes, uint64_t seed,
                           uint64_t at) {
  auto why = "rdma-ping: byte " + std::to_string(at) + " of " + std::to_string(bytes)
             + " is not what the target should have put there";
  auto word_at = at - at % 8;
  if (word_at + 8 <= bytes) {
    auto index = sub_one_per_byte(load_word(data + word_at)) ^ rdma_ping_mask(seed);
    if (index < bytes / 8)
      why += "; its word belongs at offset " + std::to_string(index * 8);
  }
  return why;
}

} // namespace

uint64_t rdma_ping_mask(uint64_t seed) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void rdma_ping_fill(uint8_t* data, uint64_t bytes, uint64_t seed) {
  auto mask = rdma_ping_mask(seed);
  auto words = bytes / 8;
  for (uint64_t i = 0; i < words; ++i) {
    auto w = i ^ mask;
    std::memcpy(data + 8 * i, &w, 8);
  }
  auto w = words ^ mask; // the tail: the first bytes % 8 bytes of word `words`
  std::memcpy(data + 8 * words, &w, bytes % 8);
}

void rdma_ping_add_one(uint8_t* data, uint64_t bytes) {
  auto words = bytes / 8;
  for (uint64_t i = 0; i < words; ++i) {
    auto w = add_one_per_byte(load_word(data + 8 * i));
    std::memcpy(data + 8 * i, &w, 8);
  }
  auto w = add_one_per_byte(load_word(data + 8 * words, bytes % 8));
  std::memcpy(data + 8 * words, &w, bytes % 8);
}

uint64_t rdma_ping_first_unexpected(const uint8_t* data, uint64_t bytes, uint64_t seed) {
  auto mask = rdma_ping_mask(seed);
  auto words = bytes / 8;
  // The offset of the first wrong one of the first `n` bytes of word `i`, or `bytes`.
  auto first_in = [&](uint64_t i, uint64_t n) {
    auto expected = add_one_per_byte(i ^ mask);
    uint8_t e[8];
    std::memcpy(e, &expected, 8);
    for (uint64_t k = 0; k < n; ++k)
      if (data[8 * i + k] != e[k])
        return 8 * i + k;
    return bytes;
  };
  // By chunks without an early exit, so the compiler vectorizes the loop; a chunk
  // with a difference is searched again.
  constexpr uint64_t chunk_words = 512;
  for (uint64_t c = 0; c < words; c += chunk_words) {
    auto end = std::min(words, c + chunk_words);
    uint64_t diff = 0;
    for (uint64_t i = c; i < end; ++i)
      diff |= load_word(data + 8 * i) ^ add_one_per_byte(i ^ mask);
    if (diff != 0)
      for (uint64_t i = c; i < end; ++i)
        if (load_word(data + 8 * i) != add_one_per_byte(i ^ mask))
          return first_in(i, 8);
  }
  return first_in(words, bytes % 8);
}

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
  seed_ = ctx.mailbox(); // ops running at once move different data
  rdma_ping_fill(region_->data(), bytes_, seed_);
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
  if (auto i = rdma_ping_first_unexpected(region_->data(), bytes_, seed_); i < bytes_)
    return ops::step::fail(make_error(errc::provider_failed,
                                      why_unexpected(region_->data(), bytes_, seed_, i)));
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
  auto error = rdma_completion(m);
  if (!error)
    return target_side::on_other(ctx, m);
  if (*error)
    return ops::step::fail(std::move(*error));
  if (m.get_as<rdma_done>(0).tag == got_tag) {
    rdma_ping_add_one(local_->data(), local_->size());
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
