#pragma once
// The built-in `rdma-ping` op: the origin registers a buffer of `bytes` filled with a
// pattern and sends its descriptor; the target gets the bytes by RDMA, adds 1 to each,
// puts them back and acknowledges; the origin checks every byte and releases its
// buffer only after the ack. Result: the number of bytes (uint64_t). Exactly one
// target.
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

/// The byte the origin writes at `i`; the target makes it pattern(i) + 1.
inline uint8_t rdma_ping_pattern(uint64_t i) {
  return static_cast<uint8_t>((i * 131) >> 3);
}

} // namespace troupe::actors
