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
  source @0 :ActorAddress;
  destination @1 :ActorAddress;

  messageId @2 :UInt64;
  # CAF's raw message id: request/response pairing and priority travel unchanged, so a
  # response finds the request that is waiting for it.

  opId @3 :UInt32;
  # For the op framework: the op type (a hash of its name); 0 for plain actor messages.

  mailbox @4 :UInt64;
  # For the op framework: the actor id of the in-flight op instance on the receiving
  # side; 0 addresses the node's op dispatcher.

  flags @5 :UInt32;
  # Bit set; see Flags below. Unknown bits are ignored by receivers.

  payload :union {
    none @6 :Void;
    typed :group {
      # A Cap'n Proto struct of an application protocol, read in place.
      schemaId @7 :UInt64;   # the struct's Cap'n Proto type id
      content @8 :AnyPointer;
    }
    cafMessage @9 :Data;
    # A caf::message written by caf::binary_serializer; its types must be registered
    # under the same names on both nodes.
  }
}

struct Flags {
  # Bit positions used in Envelope.flags.
  const control :UInt32 = 1;       # node-to-node control traffic, not for an actor
  const monitorDown :UInt32 = 2;   # carries the exit reason of a monitored actor
  const linkExit :UInt32 = 4;      # carries the exit reason of a linked actor
}
