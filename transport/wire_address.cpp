#include "transport/wire_address.hpp"

#include <cstring>
#include <vector>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <caf/error.hpp>
#include <caf/uri.hpp>
#include <caf/make_counted.hpp>
#include <kj/exception.h>

#include "transport/detail/node_codec.hpp"

namespace troupe::transport {

namespace detail {

using hashed_data = caf::node_id::default_data;

void write_node_id(const caf::node_id& node, schema::NodeId::Builder out) {
  if (!node) {
    out.setNone();
    return;
  }
  if (node->implementation_id() == hashed_data::class_id) {
    const auto& data = static_cast<const hashed_data&>(*node);
    auto hashed = out.initHashed();
    auto host = data.host_id();
    hashed.setHostId(kj::arrayPtr(host.data(), host.size()));
    hashed.setProcessId(data.process_id());
    return;
  }
  out.setUri(caf::to_string(node));
}

bool read_node_id(schema::NodeId::Reader in, caf::node_id& out) {
  switch (in.which()) {
    case schema::NodeId::NONE:
      out = caf::node_id{};
      return true;
    case schema::NodeId::HASHED: {
      auto host = in.getHashed().getHostId();
      hashed_data::host_id_type host_id;
      if (host.size() != host_id.size())
        return false;
      std::memcpy(host_id.data(), host.begin(), host_id.size());
      out = caf::make_node_id(in.getHashed().getProcessId(), host_id);
      return true;
    }
    case schema::NodeId::URI: {
      caf::uri parsed;
      auto text = in.getUri();
      if (auto err = caf::parse(caf::string_view{text.cStr(), text.size()}, parsed))
        return false;
      out = caf::make_node_id(std::move(parsed));
      return true;
    }
  }
  return false; // a union member from a newer schema
}

} // namespace detail

std::string encode_actor_address(const actor_address& addr) {
  capnp::MallocMessageBuilder message;
  auto root = message.initRoot<schema::ActorAddress>();
  detail::write_node_id(addr.node, root.initNode());
  root.setActorId(addr.actor_id);
  auto words = capnp::messageToFlatArray(message);
  auto bytes = words.asBytes();
  return std::string{reinterpret_cast<const char*>(bytes.begin()), bytes.size()};
}

bool decode_actor_address(const void* data, size_t size, actor_address& out) {
  if (size == 0 || size % sizeof(capnp::word) != 0)
    return false;
  // Received bytes carry no alignment guarantee: copy into words first.
  std::vector<capnp::word> words(size / sizeof(capnp::word));
  std::memcpy(words.data(), data, size);
  capnp::ReaderOptions limits;
  limits.traversalLimitInWords = words.size() + 8;
  limits.nestingLimit = 8;
  try {
    capnp::FlatArrayMessageReader reader{kj::arrayPtr(words.data(), words.size()),
                                         limits};
    auto root = reader.getRoot<schema::ActorAddress>();
    actor_address decoded;
    decoded.actor_id = root.getActorId();
    if (!detail::read_node_id(root.getNode(), decoded.node))
      return false;
    out = decoded;
    return true;
  } catch (const kj::Exception&) {
    return false;
  }
}

} // namespace troupe::transport
