@0x8cad66d9d7e82da4;
# The wire format of everything one Troupe node sends another. Every message that
# crosses a node boundary is one Envelope; the payload is either a typed Cap'n Proto
# struct (read in place on receive) or a CAF-serialized message.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("troupe::schema");

struct NodeId {
  # CAF's node id. Troupe nodes use the hashed form (a 20-byte host id and the process
  # id); CAF can also name a node by URI. Together with the incarnation (exchanged at
  # handshake) it names one run of one node.
  union {
    none @0 :Void;
    hashed :group {
      hostId @1 :Data;
      processId @2 :UInt32;
    }
    uri @3 :Text;
  }
}

struct ActorAddress {
  # An actor anywhere in a Troupe system. Independent of any node config: the node is
  # named by id, not by transport address.
  node @0 :NodeId;
  actorId @1 :UInt64;
}

struct Envelope {
  # The header of every message between nodes. It travels as the UCX active message
  # header; the payload travels as the active message data beside it, so a large
  # payload goes by rendezvous straight into an 8-byte-aligned buffer on the receiver
  # and is read in place, instead of being copied into and out of this struct.

  sourceActor @0 :UInt64;
  # The sending actor, an actor of the sending node (the connection names that node:
  # node ids travel once, in the handshake); 0 for an anonymous message.
  destinationActor @1 :UInt64;
  # The receiving actor, an actor of the receiving node.

  messageId @2 :UInt64;
  # CAF's raw message id: request/response pairing and priority travel unchanged, so a
  # response finds the request that is waiting for it.

  opId @3 :UInt32;
  # For payloadKind == op: the op type (a hash of its name); 0 for plain actor messages.

  mailbox @4 :UInt64;
  # For payloadKind == op: the mailbox of the op side the message is for on the
  # receiving node; 0 addresses the node's op dispatcher (a start). The message itself
  # goes to destinationActor (the receiving node's dispatcher), which hands it on.

  flags @5 :UInt32;
  # Bit set; see Flags below. Unknown bits are ignored by receivers.

  payloadKind @6 :PayloadKind;
  schemaId @7 :UInt64;
  # For payloadKind == typed: the Cap'n Proto type id of the payload's root struct.
  payloadSize @8 :UInt64;
  # Bytes of payload that follow as the active message data; a mismatch is a drop.

  op @9 :OpHeader;
  # For payloadKind == op: the rest of the op framework's header (a null pointer, one
  # word, in every other envelope).
}

struct OpHeader {
  # An op framework message (runtime/ops.hpp) without CAF serialization: these fields,
  # and its payload, if any, as a typed Cap'n Proto message (schemaId, the envelope's
  # data), read in place on receive. The transport gives them no meaning.
  kind @0 :UInt8;
  index @1 :UInt32;
  # Which of the origin's targets the message concerns.
  from @2 :UInt64;
  # The sending side's mailbox (0: a dispatcher).
  deadlineMs @3 :UInt64;
  # A start: how long the target side may live.
  watch @4 :UInt64;
  # An actor of the sending node (its op dispatcher) for the receiver to answer and
  # watch; 0 for none.
  last @5 :Bool;
  # The sending side ends with this message.
  code @6 :UInt8;
  error @7 :Text;
  # A failure: its error code and text.
}

enum PayloadKind {
  none @0;
  cafMessage @1;
  # A caf::message written by caf::binary_serializer; its types must be registered
  # under the same names on both nodes.
  typed @2;
  # A Cap'n Proto message (flat array, one or more segments) of an application protocol.
  control @3;
  # A Control message, node to node.
  op @4;
  # An op framework message: Envelope.opId, .mailbox and .op hold its header; the
  # payload, if any, is a typed Cap'n Proto message (Envelope.schemaId).
}

struct Flags {
  # Bit positions used in Envelope.flags.
  const request :UInt32 = 1;  # the sender waits for a response (messageId is a request)
}

struct Hello {
  # The first message on a new connection, in both directions (hello, then ack).
  protocolVersion @0 :UInt32;
  node @1 :NodeId;
  incarnation @2 :UInt64;
  # Random per run: a restarted node at the same address is a new node.
  address @3 :Text;
  # The URI the node listens on, so peers can reconnect to it.
}

struct Control {
  # Node-to-node traffic that is not for an actor.
  union {
    lookup :group {
      # Find an actor published under `key` on the receiving node.
      requestId @0 :UInt64;
      key @1 :Text;
    }
    lookupReply :group {
      requestId @2 :UInt64;
      actorId @3 :UInt64;    # 0 when not found
      error @4 :Text;        # why not, when actorId is 0
    }
    monitor @5 :UInt64;
    # The sender holds a proxy of this actor of the receiver: tell it when it exits.
    down :group {
      # An actor of the sender that the receiver holds a proxy of has exited.
      actorId @6 :UInt64;
      reason @7 :Data;       # caf::error, binary-serialized
    }
  }
}

struct RegionDescriptor {
  # A registered memory region, for RDMA by a peer: whose it is, where, how long, and
  # the packed UCX remote key. Typed protocols carry it in their own structs.
  node @0 :NodeId;
  address @1 :UInt64;
  length @2 :UInt64;
  rkey @3 :Data;
}
