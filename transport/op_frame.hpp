#pragma once
// A message of the op framework (runtime/ops.hpp) as the transport carries it. A CAF
// message that is exactly one op_frame crosses nodes without CAF serialization: its
// fields go into the envelope (schema/envelope.capnp, OpHeader) and its payload, a
// typed Cap'n Proto message, goes out as its words and is read in place on arrival.
// The transport gives the fields no meaning; the op framework does.

#include <cstdint>
#include <string>

#include <caf/actor.hpp>
#include <caf/meta/type_name.hpp>

#include "transport/typed_message.hpp"

namespace troupe::transport {

struct op_frame {
  uint32_t id = 0;    ///< the op type (a hash of its name)
  uint8_t kind = 0;   ///< the op framework's message kind
  uint32_t index = 0; ///< which of the origin's targets the message concerns
  /// The receiving side's mailbox; 0: the receiving node's dispatcher.
  uint64_t to = 0;
  uint64_t from = 0;        ///< the sending side's mailbox (0: a dispatcher)
  uint64_t deadline_ms = 0; ///< how long a target side it starts may live
  /// An actor of the sending node for the receiver to answer and watch (its op
  /// dispatcher), or none. Across nodes it must be an actor of the sending node.
  caf::actor watch;
  bool last = false; ///< the sending side ends with this message
  uint8_t code = 0;  ///< a failure's error code
  std::string error; ///< a failure's text
  typed_message payload;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, op_frame& x) {
    return f(caf::meta::type_name("troupe::transport::op_frame"), x.id, x.kind, x.index,
             x.to, x.from, x.deadline_ms, x.watch, x.last, x.code, x.error, x.payload);
  }
};

} // namespace troupe::transport
