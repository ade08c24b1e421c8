// The middleman's outgoing side (detail/middleman_impl.hpp): frames, envelopes and
// control messages out, the serialization of actor messages, `forward` (a proxy's
// enqueue) and `bounce` (a request's error answer from this node).

#include "transport/detail/middleman_impl.hpp"

#include <cstring>

#include <capnp/serialize.h>
#include <caf/actor_registry.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/mailbox_element.hpp>

#include "base/error.hpp"
#include "base/log.hpp"
#include "transport/detail/node_codec.hpp"
#include "transport/typed_message.hpp"

namespace troupe::transport {

namespace {

/// The message as a flat array (segment table, then segments) in one allocation.
word_buffer to_words(capnp::MessageBuilder& message) {
  auto segments = message.getSegmentsForOutput();
  if (segments.size() != 1) {
    auto flat = capnp::messageToFlatArray(message);
    auto bytes = flat.asBytes();
    return word_buffer::copy_of(bytes.begin(), bytes.size());
  }
  auto words = segments[0].size();
  word_buffer out{(1 + words) * sizeof(capnp::word)};
  uint32_t table[2] = {0, static_cast<uint32_t>(words)}; // one segment, its size
  std::memcpy(out.data(), table, sizeof table);
  std::memcpy(out.data() + sizeof table, segments[0].begin(),
              words * sizeof(capnp::word));
  return out;
}

} // namespace

void middleman::impl::keep_registered(const caf::strong_actor_ptr& actor) {
  // CAF 0.17's registry put takes its lock exclusively and allocates a map node even
  // when the actor is there already: once per actor and thread is enough. Actor ids
  // are never reused within a system, and an entry stays until its actor ends (after
  // which it sends nothing), so remembering the last one put is safe. The system is
  // named by this middleman's serial number, not its address: a system made after
  // another one ended may get the same address, and its ids start again at 1.
  thread_local uint64_t last_middleman = 0;
  thread_local caf::actor_id last_id = 0;
  if (last_middleman == serial && last_id == actor->id())
    return;
  sys.registry().put(actor->id(), actor);
  last_middleman = serial;
  last_id = actor->id();
}

// -- frames and envelopes -------------------------------------------------------------

word_buffer middleman::impl::make_envelope(caf::actor_id src, caf::actor_id dst,
                                           caf::message_id mid, schema::PayloadKind kind,
                                           size_t payload_size, uint64_t schema_id) {
  // An envelope is a few words: built in a zeroed first segment on the stack.
  capnp::word scratch[16] = {};
  capnp::MallocMessageBuilder message{kj::arrayPtr(scratch, 16)};
  auto env = message.initRoot<schema::Envelope>();
  env.setSourceActor(src);
  env.setDestinationActor(dst);
  env.setMessageId(mid.integer_value());
  env.setFlags(mid.is_request() ? schema::Flags::REQUEST : 0);
  env.setPayloadKind(kind);
  env.setPayloadSize(payload_size);
  env.setSchemaId(schema_id);
  return to_words(message);
}

word_buffer middleman::impl::make_op_envelope(caf::actor_id dst, const op_frame& op,
                                              size_t payload_size) {
  // Envelope and op header fit a zeroed first segment on the stack (an error text
  // that does not goes on the heap).
  capnp::word scratch[32] = {};
  capnp::MallocMessageBuilder message{kj::arrayPtr(scratch, 32)};
  auto env = message.initRoot<schema::Envelope>();
  env.setDestinationActor(dst);
  env.setMessageId(caf::make_message_id().integer_value());
  env.setOpId(op.id);
  env.setMailbox(op.to);
  env.setPayloadKind(schema::PayloadKind::OP);
  env.setPayloadSize(payload_size);
  env.setSchemaId(op.payload.schema_id());
  auto header = env.initOp();
  header.setKind(op.kind);
  header.setIndex(op.index);
  header.setFrom(op.from);
  header.setDeadlineMs(op.deadline_ms);
  header.setWatch(op.watch ? op.watch.id() : 0);
  header.setLast(op.last);
  header.setCode(op.code);
  if (!op.error.empty())
    header.setError(op.error);
  return to_words(message);
}

std::optional<word_buffer> middleman::impl::serialize(caf::message msg,
                                                      std::string& why) {
  // The encoding buffer is reused (its capacity stays); the words are the copy.
  thread_local std::vector<char> buf;
  buf.clear();
  caf::binary_serializer sink{sys, buf};
  if (auto err = sink(msg)) {
    why = "cannot serialize a message for another node: " + describe(err)
          + " (register every type sent to other nodes with " + "add_message_type)";
    return std::nullopt;
  }
  return word_buffer::copy_of(buf.data(), buf.size());
}

void middleman::impl::send_frame(conn_id conn, am_kind kind, word_buffer header,
                                 word_buffer payload, bool before_ready) {
  msgs_out.fetch_add(1, std::memory_order_relaxed);
  bytes_out.fetch_add(header.size() + payload.size(), std::memory_order_relaxed);
  if (before_ready)
    engine->send_now(conn, kind, std::move(header), std::move(payload));
  else
    engine->send(conn, kind, std::move(header), std::move(payload));
}

void middleman::impl::send_control(conn_id conn, capnp::MessageBuilder& control) {
  auto it = conns.find(conn);
  if (it == conns.end())
    return;
  auto payload = to_words(control);
  auto header = make_envelope(0, 0, caf::make_message_id(), schema::PayloadKind::CONTROL,
                              payload.size());
  send_frame(conn, am_kind::envelope, std::move(header), std::move(payload));
}

void middleman::impl::send_hello(conn_id conn, am_kind kind) {
  capnp::MallocMessageBuilder message{64};
  auto hello = message.initRoot<schema::Hello>();
  hello.setProtocolVersion(protocol_version);
  detail::write_node_id(sys.node(), hello.initNode());
  hello.setIncarnation(incarnation);
  hello.setAddress(listen_uri());
  send_frame(conn, kind, to_words(message), {}, /*before_ready=*/true);
}

void middleman::impl::reply_error(conn_id conn, caf::actor_id requester,
                                  caf::actor_id from, caf::message_id mid,
                                  caf::error err) {
  std::string why;
  auto payload = serialize(caf::make_message(std::move(err)), why);
  if (!payload)
    return;
  auto header = make_envelope(from, requester, mid.response_id(),
                              schema::PayloadKind::CAF_MESSAGE, payload->size());
  send_frame(conn, am_kind::envelope, std::move(header), std::move(*payload));
}

// -- actor messages -------------------------------------------------------------------

void middleman::impl::route(outgoing_message& m) {
  auto p = peers.find(m.node);
  if (p == peers.end()) {
    // One counter for all such nodes (a node per key would grow the table with
    // every node that ever died); the node is in the log line and in the error.
    TROUPE_LOG_DEBUG(log_component,
                     "no connection to node " << caf::to_string(m.node) << ": dropped");
    count_drop(0, "no connection to the destination node");
    if (m.mid.is_request() && m.sender)
      bounce(
        m.sender, m.mid,
        make_error(errc::unreachable, "no connection to node " + caf::to_string(m.node)));
    return;
  }
  if (m.mid.is_request() && m.sender
      && p->second.pending
           .emplace(std::make_pair(m.sender->id(), m.mid.request_id().integer_value()),
                    std::make_pair(m.sender, m.mid))
           .second)
    requests_awaiting.fetch_add(1, std::memory_order_relaxed);
  send_frame(p->second.send_conn, am_kind::envelope, std::move(m.header),
             std::move(m.payload));
}

void middleman::impl::bounce(const caf::strong_actor_ptr& requester, caf::message_id mid,
                             caf::error err) {
  requester->enqueue(caf::make_mailbox_element(nullptr, mid.response_id(), {},
                                               caf::make_message(std::move(err))),
                     enqueue_unit());
}

void middleman::impl::forward(const caf::node_id& node, caf::actor_id dest,
                              caf::strong_actor_ptr sender, caf::message_id mid,
                              caf::message content) {
  // Replies must find the sender by its id: keep it in the registry.
  if (sender && sender->node() == sys.node())
    keep_registered(sender);
  if (sender && sender->node() != sys.node()) {
    // A message sent on behalf of an actor of a third node (a CAF delegation or a
    // forward). Envelopes name actors of the sending node only, and the receiver
    // may not know that third node, so say so instead of misrouting the answer.
    // TODO(soon): carry the origin's address and connect receivers to it.
    count_drop(0, "message on behalf of an actor of another node");
    if (mid.is_request()) {
      bounce(sender, mid,
             make_error(errc::unreachable,
                        "cannot pass on a request from node "
                          + caf::to_string(sender->node()) + " to node "
                          + caf::to_string(node)
                          + ": routing through a third node is not supported"));
      return;
    }
    sender = nullptr; // a plain send or a response still arrives, anonymously
  }
  outgoing_message m;
  if (content.size() == 1 && content.match_element<op_frame>(0)) {
    // The op framework's header in the envelope, its typed payload beside it: no
    // CAF serialization. The receiver answers and watches `watch` by its id alone,
    // so it must be an actor of this node, registered for the answers to find it.
    auto& op = content.get_mutable_as<op_frame>(0);
    if (op.watch) {
      if (op.watch.node() != sys.node()) {
        count_drop(0, "op message watching an actor of another node");
        return;
      }
      keep_registered(caf::actor_cast<caf::strong_actor_ptr>(op.watch));
    }
    auto bytes = op.payload.size_bytes();
    m.header = make_op_envelope(dest, op, bytes);
    m.payload = word_buffer{op.payload.take_words(), bytes};
    op_out.fetch_add(1, std::memory_order_relaxed);
  } else if (content.size() == 1 && content.match_element<typed_message>(0)) {
    // Copy-on-write: moves the words out when this message is the only owner.
    auto& typed = content.get_mutable_as<typed_message>(0);
    auto schema_id = typed.schema_id();
    auto bytes = typed.size_bytes();
    m.payload = word_buffer{typed.take_words(), bytes};
    m.header = make_envelope(sender ? sender->id() : 0, dest, mid,
                             schema::PayloadKind::TYPED, bytes, schema_id);
    typed_out.fetch_add(1, std::memory_order_relaxed);
  } else {
    std::string why;
    auto payload = serialize(std::move(content), why);
    if (!payload) {
      count_drop(0, "message that cannot be serialized");
      TROUPE_LOG_ERROR(log_component, why);
      if (mid.is_request() && sender) {
        bounce(sender, mid, make_error(errc::invalid_config, why));
        return;
      }
      // A response still owes the requester exactly one answer: send the error.
      if (!mid.is_response())
        return;
      payload = serialize(caf::make_message(make_error(errc::invalid_config, why)), why);
      if (!payload)
        return;
    }
    m.payload = std::move(*payload);
    m.header = make_envelope(sender ? sender->id() : 0, dest, mid,
                             schema::PayloadKind::CAF_MESSAGE, m.payload.size());
    caf_out.fetch_add(1, std::memory_order_relaxed);
  }
  if (m.payload.size() > opts.max_payload) {
    count_drop(0, "outgoing message over max_message_bytes");
    if (mid.is_request() && sender)
      bounce(sender, mid,
             make_error(errc::invalid_config,
                        "message of " + std::to_string(m.payload.size())
                          + " bytes exceeds transport.max_message_bytes ("
                          + std::to_string(opts.max_payload) + ")"));
    return;
  }
  if (!engine->running()) {
    // Stopping: nothing will be sent any more, but a request still gets its answer.
    if (mid.is_request() && sender)
      bounce(sender, mid, make_error(errc::unreachable, "the transport has stopped"));
    return;
  }
  m.node = node;
  m.sender = std::move(sender);
  m.mid = mid;
  auto stopped = [this, requester = m.sender, request = m.mid] {
    if (request.is_request() && requester)
      bounce(requester, request,
             make_error(errc::unreachable, "the transport has stopped"));
  };
  if (opts.batch_frames && opts.driven_externally
      && defer_until_turn_end(m.sender.get())) {
    // The sender is the actor whose turn runs on this worker: its messages wait, in
    // order, for the turn's end and then leave in batches (scheduler.cpp).
    if (!engine->post_quietly([self = shared_from_this(), m = std::move(m)]() mutable {
          self->route(m);
        }))
      stopped();
    sends_deferred.fetch_add(1, std::memory_order_relaxed);
    if (sends_deferred_in_turn() % max_sends_per_turn == 0)
      engine->flush_posts(); // a long turn does not hold them all back
    return;
  }
  if (run_here_or_queue([this, m = std::move(m)]() mutable { route(m); }, stopped))
    sends_direct.fetch_add(1, std::memory_order_relaxed);
  else
    sends_queued.fetch_add(1, std::memory_order_relaxed);
}

} // namespace troupe::transport
