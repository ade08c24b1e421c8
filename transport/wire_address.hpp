#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <caf/fwd.hpp>
#include <caf/node_id.hpp>

namespace troupe::transport {

/// An actor's address as it travels: the node id plus the actor id on that node.
struct actor_address {
  caf::node_id node;
  uint64_t actor_id = 0;
};

/// Encodes an actor address into a single-segment Cap'n Proto message of its own and
/// returns its words as bytes. The transport writes node ids straight into its
/// envelopes (detail/node_codec.hpp); this standalone form is what the codec's tests,
/// malformed input included, go through.
std::string encode_actor_address(const actor_address& addr);

/// Decodes what `encode_actor_address` wrote. Returns false for malformed input
/// (wrong size, truncated, a host id that is not 20 bytes) without throwing.
bool decode_actor_address(const void* data, size_t size, actor_address& out);

} // namespace troupe::transport
