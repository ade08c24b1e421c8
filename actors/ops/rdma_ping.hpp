#pragma once
// The built-in `rdma-ping` op: the origin registers a buffer of `bytes` filled with
// data that encodes its own offset (below) and sends its descriptor; the target gets
// the bytes by RDMA, adds 1 to each, puts them back and acknowledges; the origin checks
// every byte and releases its buffer only after the ack. Result: the number of bytes
// (uint64_t). Exactly one target.
//
//   auto h = ops::launch<actors::rdma_ping_op>(node, {address}, size_t{1} << 20);

#include <cstdint>
#include <memory>

#include "runtime/ops.hpp"
#include "transport/rdma.hpp"

namespace troupe::actors {

class rdma_ping_origin : public ops::origin_side {
public:
  explicit rdma_ping_origin(uint64_t bytes);
  ops::step on_start(ops::origin_context& ctx) override;
  ops::step on_message(ops::origin_context& ctx, size_t from,
                       const typed_message& m) override;

private:
  uint64_t bytes_;
  uint64_t seed_ = 0;
  std::shared_ptr<memory_region> region_; // held until the target's ack
};

class rdma_ping_target : public ops::target_side {
public:
  ops::step on_start(ops::target_context& ctx, const typed_message& m) override;
  ops::step on_other(ops::target_context& ctx, caf::message& m) override;

private:
  region_descriptor remote_;
  std::shared_ptr<memory_region> local_;
};

struct rdma_ping_op {
  static constexpr const char* name = "rdma-ping";
  using origin = rdma_ping_origin;
  using target = rdma_ping_target;
};

// The data rdma-ping moves encodes its own offset: 8-byte word i of the buffer (in
// host byte order) holds i ^ rdma_ping_mask(seed), and each op takes its own seed (the
// origin's mailbox). No two words of one buffer are equal, and another seed's words
// differ from them with near certainty, so a block put back at a wrong offset (aligned
// or not), a stale buffer or another op's buffer is a mismatch. Filled, changed and
// checked a word at a time: the op is benchmarked.

/// The mask `seed` mixes into every word (splitmix64's finalizer).
uint64_t rdma_ping_mask(uint64_t seed);

/// Writes the origin's data of `seed` to `data`.
void rdma_ping_fill(uint8_t* data, uint64_t bytes, uint64_t seed);

/// What the target does to the data: adds 1 to every byte (wrapping, no carry).
void rdma_ping_add_one(uint8_t* data, uint64_t bytes);

/// The offset of the first byte of `data` that is not the data of `seed` plus one
/// (what the origin expects back), or `bytes` when all are.
uint64_t rdma_ping_first_unexpected(const uint8_t* data, uint64_t bytes, uint64_t seed);

} // namespace troupe::actors
