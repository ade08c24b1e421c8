#pragma once
// Codec between troupe::region_descriptor and schema::RegionDescriptor, for typed
// (Cap'n Proto) protocols that carry regions. Includes generated Cap'n Proto code:
// include it from .cpp files.

#include "schema/envelope.capnp.h"
#include "transport/rdma.hpp"

namespace troupe {

void write_region_descriptor(const region_descriptor& in,
                             schema::RegionDescriptor::Builder out);

/// Returns false for a descriptor whose node id does not parse.
bool read_region_descriptor(schema::RegionDescriptor::Reader in, region_descriptor& out);

} // namespace troupe
