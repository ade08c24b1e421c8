#pragma once
// Typed Cap'n Proto payloads: an application defines its remote protocol in a .capnp
// file and sends its structs to any actor, local or remote, without touching UCX.
//
//   capnp::MallocMessageBuilder b;
//   auto p = b.initRoot<demo::Point>(); p.setX(1);
//   self->send(remote, troupe::typed_message::of<demo::Point>(b));
//
//   [](const troupe::typed_message& m) {
//     troupe::typed_reader<demo::Point> r{m};   // reads in place, no copy
//     return r.root().getX();
//   }
//
// A message that is exactly one typed_message crosses nodes as the Envelope's typed
// payload: its words go out as they are and arrive in an 8-byte-aligned buffer that
// the receiver reads in place. Inside a larger CAF message it is CAF-serialized.

#include <cstdint>
#include <cstring>
#include <string>

#include <capnp/generated-header-support.h>
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <caf/meta/type_name.hpp>

#include "transport/detail/word_buffer.hpp"

namespace troupe {

class typed_message {
public:
  using words_type = transport::detail::word_vector;

  typed_message() = default;

  typed_message(uint64_t schema_id, words_type words)
    : schema_id_(schema_id), words_(std::move(words)) {}

  /// Copies what `builder` holds into one flat, aligned message whose root is a `T`.
  template <class T>
  static typed_message of(capnp::MessageBuilder& builder) {
    auto flat = capnp::messageToFlatArray(builder);
    words_type words(flat.size());
    std::memcpy(words.data(), flat.begin(), flat.size() * sizeof(capnp::word));
    return typed_message{capnp::typeId<T>(), std::move(words)};
  }

  /// The Cap'n Proto type id of the root struct.
  uint64_t schema_id() const { return schema_id_; }

  template <class T>
  bool holds() const {
    return schema_id_ == capnp::typeId<T>();
  }

  const words_type& words() const { return words_; }

  /// Moves the words out (the transport sends them without a copy).
  words_type take_words() { return std::move(words_); }
  size_t size_bytes() const { return words_.size() * sizeof(uint64_t); }

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, typed_message& x) {
    return f(caf::meta::type_name("troupe::typed_message"), x.schema_id_, x.words_);
  }

private:
  uint64_t schema_id_ = 0;
  words_type words_;
};

/// Reads a typed_message's root in place. Keep the reader alive while you use what
/// `root()` returns. Throws kj::Exception when the content is not a valid message or
/// not a `T` (check `holds<T>()` first): catch it in handlers that take peer input.
template <class T>
class typed_reader {
public:
  explicit typed_reader(const typed_message& msg, uint64_t traversal_limit_words = 0)
    : reader_(kj::arrayPtr(reinterpret_cast<const capnp::word*>(msg.words().data()),
                           msg.words().size()),
              options(msg, traversal_limit_words)) {
    if (!msg.holds<T>())
      KJ_FAIL_REQUIRE("typed_message holds another schema", msg.schema_id());
  }

  typename T::Reader root() { return reader_.getRoot<T>(); }

private:
  static capnp::ReaderOptions options(const typed_message& msg, uint64_t limit) {
    capnp::ReaderOptions opts;
    // By default a reader may traverse each word a few times over, not unboundedly.
    opts.traversalLimitInWords = limit != 0 ? limit : msg.words().size() * 4 + 64;
    return opts;
  }
  capnp::FlatArrayMessageReader reader_;
};

} // namespace troupe
