#include "transport/rdma.hpp"

#include <caf/actor_system.hpp>
#include <caf/send.hpp>

#include "base/error.hpp"
#include "transport/detail/node_codec.hpp"
#include "transport/detail/ucx_engine.hpp"
#include "transport/middleman.hpp"
#include "transport/region_codec.hpp"

namespace troupe {

caf::expected<std::shared_ptr<memory_region>>
memory_region::allocate(caf::actor_system& sys, size_t bytes) {
  if (bytes == 0)
    return make_error(errc::invalid_config, "a memory region needs at least one byte");
  auto mapped = transport::middleman::of(sys).map_memory(bytes);
  if (!mapped)
    return std::move(mapped.error());
  std::shared_ptr<memory_region> region{new memory_region};
  auto& memory = **mapped;
  region->data_ = static_cast<uint8_t*>(memory.address);
  region->size_ = bytes;
  region->descriptor_.node = sys.node();
  region->descriptor_.address = reinterpret_cast<uintptr_t>(memory.address);
  region->descriptor_.length = bytes;
  region->descriptor_.rkey.assign(memory.packed_rkey.begin(), memory.packed_rkey.end());
  region->mapped_ = std::move(*mapped);
  return region;
}

memory_region::~memory_region() = default;

namespace {

void transfer(bool is_put, caf::actor_system& sys, const region_descriptor& remote,
              uint64_t remote_offset, std::shared_ptr<memory_region> local,
              uint64_t local_offset, uint64_t length, const caf::actor& notify,
              uint64_t tag) {
  auto fail = [&](std::string why) {
    caf::anon_send(notify,
                   rdma_done{tag, make_error(errc::invalid_config, std::move(why))});
  };
  // Offsets and lengths come from peers too: check without overflowing.
  auto outside = [&](uint64_t offset, uint64_t size, const char* which) {
    if (offset <= size && length <= size - offset)
      return false;
    fail("range [" + std::to_string(offset) + ", +" + std::to_string(length)
         + ") is outside the " + which + " region of " + std::to_string(size) + " bytes");
    return true;
  };
  if (!local)
    return fail("no local region");
  if (outside(local_offset, local->size(), "local")
      || outside(remote_offset, remote.length, "remote"))
    return;
  if (remote.rkey.empty())
    return fail("the remote region descriptor has no key");
  transport::middleman::of(sys).rdma(is_put, remote, remote_offset, std::move(local),
                                     local_offset, length, notify, tag);
}

} // namespace

void rdma_get(caf::actor_system& sys, const region_descriptor& remote,
              uint64_t remote_offset, std::shared_ptr<memory_region> local,
              uint64_t local_offset, uint64_t length, const caf::actor& notify,
              uint64_t tag) {
  transfer(false, sys, remote, remote_offset, std::move(local), local_offset, length,
           notify, tag);
}

void rdma_put(caf::actor_system& sys, const region_descriptor& remote,
              uint64_t remote_offset, std::shared_ptr<memory_region> local,
              uint64_t local_offset, uint64_t length, const caf::actor& notify,
              uint64_t tag) {
  transfer(true, sys, remote, remote_offset, std::move(local), local_offset, length,
           notify, tag);
}

} // namespace troupe

// -- Cap'n Proto codec (region_codec.hpp) ---------------------------------------------

namespace troupe {

void write_region_descriptor(const region_descriptor& in,
                             schema::RegionDescriptor::Builder out) {
  transport::detail::write_node_id(in.node, out.initNode());
  out.setAddress(in.address);
  out.setLength(in.length);
  out.setRkey(kj::arrayPtr(in.rkey.data(), in.rkey.size()));
}

bool read_region_descriptor(schema::RegionDescriptor::Reader in, region_descriptor& out) {
  region_descriptor result;
  if (!transport::detail::read_node_id(in.getNode(), result.node))
    return false;
  result.address = in.getAddress();
  result.length = in.getLength();
  auto rkey = in.getRkey();
  result.rkey.assign(rkey.begin(), rkey.end());
  out = std::move(result);
  return true;
}

} // namespace troupe
