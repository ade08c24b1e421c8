#pragma once
// Codec between CAF node ids and the wire schema. Includes generated Cap'n Proto
// code: for transport .cpp files only.

#include <caf/node_id.hpp>

#include "schema/envelope.capnp.h"

namespace troupe::transport::detail {

void write_node_id(const caf::node_id& node, schema::NodeId::Builder out);

/// Returns false if the bytes do not name a node (a host id of the wrong size, a URI
/// that does not parse, a union member from a newer schema).
bool read_node_id(schema::NodeId::Reader in, caf::node_id& out);

} // namespace troupe::transport::detail
