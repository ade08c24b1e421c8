@0xe638094eec52c857;
# The messages of Troupe's built-in ops (actors/ops/): what their origin and target
# sides send each other, inside the op framework's messages (runtime/ops.hpp).

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("troupe::schema::ops");

struct Ping {
  # `ping`: the origin sends it, the target sends it back unchanged.
  payload @0 :Data;
}

using Envelope = import "envelope.capnp";

struct RdmaPing {
  # `rdma-ping`, origin -> target: get `length` bytes of `region`, transform them
  # (every byte + 1), put them back, then answer with an RdmaPingAck.
  region @0 :Envelope.RegionDescriptor;
  length @1 :UInt64;
}

struct RdmaPingAck {
  # `rdma-ping`, target -> origin: the transformed bytes are in the origin's region.
  length @0 :UInt64;
}
