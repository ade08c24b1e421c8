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

struct Window {
  # A slice of the origin's registered buffer: `length` bytes at `offset` of `region`.
  region @0 :Envelope.RegionDescriptor;
  offset @1 :UInt64;
  length @2 :UInt64;
}

struct NamedWindow {
  # `scatter`, origin -> target: get your window; keep it under `name` once the
  # origin commits (every target got its window), else drop it.
  # `gather`, origin -> target: put what you keep under `name` into your window.
  name @0 :Text;
  window @1 :Window;
}

struct ScatterFetched {
  # `scatter`, target -> origin: the window is here, waiting for the commit.
  length @0 :UInt64;
}

struct ScatterCommit {
  # `scatter`, origin -> target: every target has its window; keep it.
}

struct DhtPut {
  # DHT `put`, origin -> the key's owner. Small values travel inline; larger ones
  # stay in the origin's registered memory for the owner to get.
  table @0 :Text;
  key @1 :Data;
  union {
    inline @2 :Data;
    remote @3 :Window;
  }
}

struct DhtGet {
  # DHT `get`, origin -> the key's owner. Values up to `inlineLimit` bytes come back
  # inline.
  table @0 :Text;
  key @1 :Data;
  inlineLimit @2 :UInt64;
}

struct DhtValue {
  # DHT `get`, owner -> origin: the value inline, or where to get it (the owner
  # keeps it exposed until the origin ends the op).
  union {
    inline @0 :Data;
    remote @1 :Window;
  }
}
