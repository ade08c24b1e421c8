// The middleman's incoming side (detail/middleman_impl.hpp): the engine's events, the
// handshake, envelopes delivered to local actors, control messages (lookups, monitors,
// down notices) and what a lost connection ends.

#include "transport/detail/middleman_impl.hpp"

#include <cstring>
#include <exception>

#include <capnp/serialize.h>
#include <caf/actor_registry.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/exit_reason.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/uniform_type_info_map.hpp>
#include <kj/exception.h>

#include "base/error.hpp"
#include "base/log.hpp"
#include "transport/detail/node_codec.hpp"
#include "transport/typed_message.hpp"

namespace troupe::transport {

namespace {

/// Largest envelope header we accept; real ones are ~150 bytes.
constexpr size_t max_header_bytes = 4096;

/// A reader over an aligned buffer, limited to what the buffer can hold. Throws
/// kj::Exception on malformed input; callers catch it and count a drop.
class buffer_reader {
public:
  explicit buffer_reader(const word_buffer& buf)
    : reader_(
      kj::arrayPtr(reinterpret_cast<const capnp::word*>(buf.words()), buf.word_count()),
      limits(buf)) {
    if (buf.size() % sizeof(capnp::word) != 0)
      KJ_FAIL_REQUIRE("message is not a whole number of words");
  }

  template <class T>
  typename T::Reader root() {
    return reader_.getRoot<T>();
  }

private:
  static capnp::ReaderOptions limits(const word_buffer& buf) {
    capnp::ReaderOptions opts;
    // A message can't legitimately traverse more words than it has (plus slack for
    // default-valued pointers); this stops amplification by shared pointers.
    opts.traversalLimitInWords = buf.word_count() + 64;
    opts.nestingLimit = 16;
    return opts;
  }
  capnp::FlatArrayMessageReader reader_;
};

} // namespace

// -- helpers --------------------------------------------------------------------------

caf::execution_unit* middleman::impl::enqueue_unit() {
  if (auto worker = polling_progress_worker())
    return worker;
  // A blocking caller polling for its answer: the actor runs on its thread next.
  if (auto caller = caller_execution_unit::on_this_thread(sys))
    return caller;
  return &exec_unit;
}

bool middleman::impl::injected_drop(const caf::message& msg) {
  std::lock_guard<std::mutex> guard{faults_mtx};
  for (size_t i = 0; i < msg.size(); ++i) {
    auto it = drops_to_inject.find(sys.types().portable_name(msg.type(i)));
    if (it == drops_to_inject.end())
      continue;
    if (--it->second == 0)
      drops_to_inject.erase(it);
    faults_armed.store(!drops_to_inject.empty());
    return true;
  }
  return false;
}

void middleman::impl::count_drop(conn_id conn, const std::string& reason) {
  std::lock_guard<std::mutex> guard{drops_mtx};
  ++drops[reason];
  // Logged once per connection and reason, so a hostile peer cannot flood the log.
  if (logged.emplace(conn, reason).second)
    TROUPE_LOG_WARNING(log_component,
                       "dropped a message (connection "
                         << conn << "): " << reason
                         << "; further drops of this kind are only counted");
}

bool middleman::impl::is_empty_message_encoding(const word_buffer& payload) {
  static const auto empty = [this] {
    std::vector<char> buf;
    caf::binary_serializer sink{sys, buf};
    caf::message nothing;
    auto err = sink(nothing);
    static_cast<void>(err);
    return buf;
  }();
  return payload.size() == empty.size()
         && std::memcmp(payload.data(), empty.data(), empty.size()) == 0;
}

// -- engine_handler -------------------------------------------------------------------

void middleman::impl::on_accepted(conn_id conn) {
  TROUPE_LOG_DEBUG(log_component, "accepted connection " << conn);
  conns[conn].outgoing = false;
}

void middleman::impl::on_frame(conn_id conn, frame&& f) {
  msgs_in.fetch_add(1, std::memory_order_relaxed);
  bytes_in.fetch_add(f.header.size() + f.payload.size(), std::memory_order_relaxed);
  if (f.header.size() > max_header_bytes) {
    count_drop(conn, "oversized header");
    return;
  }
  try {
    switch (f.kind) {
      case am_kind::hello:
      case am_kind::hello_ack:
        handle_hello(conn, f);
        break;
      case am_kind::envelope:
        handle_envelope(conn, f);
        break;
      case am_kind::batch: // never: the engine hands a batch's frames on one by one
        count_drop(conn, "unexpected batch frame");
        break;
    }
  } catch (const kj::Exception&) {
    count_drop(conn, "malformed Cap'n Proto message");
  } catch (const std::exception& e) {
    // E.g. CAF allocating a sequence of the length a hostile peer claims.
    count_drop(conn, std::string{"message that could not be decoded: "} + e.what());
  }
}

void middleman::impl::on_conn_failed(conn_id conn, const std::string& reason) {
  TROUPE_LOG_DEBUG(log_component, "connection " << conn << " failed: " << reason);
  auto it = conns.find(conn);
  if (it == conns.end())
    return;
  auto state = it->second;
  forget_conn(conn);
  if (!state.handshaken) {
    fail_callbacks(state, reason);
    return;
  }
  auto p = peers.find(state.node);
  if (p == peers.end())
    return;
  // A node whose connection broke is gone: CAF semantics are per node, and a restarted
  // node comes back with a new node id.
  auto lost = std::move(p->second);
  peers.erase(p);
  peer_count.fetch_sub(1, std::memory_order_relaxed);
  for (auto other : lost.conns) {
    if (other == conn)
      continue;
    forget_conn(other);
    engine->close(other, /*force=*/true); // the node is gone: nothing to flush
  }
  TROUPE_LOG_INFO(log_component, "lost " << lost.address << " (node "
                                         << caf::to_string(lost.node) << "): " << reason);
  auto why = "node " + lost.address + " is gone: " + reason;
  requests_awaiting.fetch_sub(lost.pending.size(), std::memory_order_relaxed);
  for (auto& [key, request] : lost.pending)
    bounce(request.first, request.second, make_error(errc::unreachable, why));
  for (auto mon = monitored.begin(); mon != monitored.end();)
    mon = mon->first == lost.node ? monitored.erase(mon) : std::next(mon);
  // Lookups waiting on that node get their answer now instead of at their timeout.
  for (auto it = lookup_nodes.begin(); it != lookup_nodes.end();) {
    if (it->second != lost.node) {
      ++it;
      continue;
    }
    if (auto l = lookups.find(it->first); l != lookups.end()) {
      auto done = std::move(l->second);
      lookups.erase(l);
      done({{}, 0, make_error(errc::unreachable, why)});
    }
    it = lookup_nodes.erase(it);
  }
  proxies.erase(lost.node);
}

// -- handshake ------------------------------------------------------------------------

void middleman::impl::handle_hello(conn_id conn, const frame& f) {
  buffer_reader reader{f.header};
  auto hello = reader.root<schema::Hello>();
  auto& state = conns[conn];
  TROUPE_LOG_DEBUG(log_component, (f.kind == am_kind::hello ? "hello" : "hello ack")
                                    << " on connection " << conn << " from "
                                    << hello.getAddress().cStr());
  if (state.handshaken) {
    count_drop(conn, "repeated hello");
    return;
  }
  if (hello.getProtocolVersion() != protocol_version) {
    TROUPE_LOG_WARNING(log_component, "refusing peer " << hello.getAddress().cStr()
                                                       << ": it speaks protocol version "
                                                       << hello.getProtocolVersion()
                                                       << ", we speak "
                                                       << protocol_version);
    count_drop(conn, "protocol version mismatch");
    fail_callbacks(state, "peer speaks another protocol version");
    forget_conn(conn);
    engine->close(conn);
    return;
  }
  caf::node_id node;
  if (!detail::read_node_id(hello.getNode(), node) || !node) {
    count_drop(conn, "hello without a valid node id");
    return;
  }
  state.handshaken = true;
  state.node = node;
  auto [it, added] = peers.try_emplace(node);
  auto& p = it->second;
  if (added) {
    p.node = node;
    p.address = hello.getAddress().cStr();
    p.incarnation = hello.getIncarnation();
    p.send_conn = conn;
    peer_count.fetch_add(1, std::memory_order_relaxed);
    TROUPE_LOG_INFO(log_component, "connected to " << p.address << " (node "
                                                   << caf::to_string(node) << ")");
  }
  p.conns.insert(conn);
  if (f.kind == am_kind::hello)
    send_hello(conn, am_kind::hello_ack);
  engine->make_ready(conn);
  auto callbacks = std::move(state.on_ready);
  state.on_ready.clear();
  for (auto& cb : callbacks)
    cb(conn, nullptr);
}

void middleman::impl::fail_callbacks(conn_state& state, const std::string& why) {
  auto callbacks = std::move(state.on_ready);
  state.on_ready.clear();
  for (auto& cb : callbacks)
    cb(0, &why);
}

void middleman::impl::forget_conn(conn_id conn) {
  auto it = conns.find(conn);
  if (it == conns.end())
    return;
  if (it->second.outgoing) {
    auto u = by_uri.find(it->second.target_uri);
    if (u != by_uri.end() && u->second == conn)
      by_uri.erase(u);
  }
  conns.erase(it);
}

void middleman::impl::with_connection(const std::string& uri,
                                      const sockaddr_storage& addr, unsigned addr_len,
                                      ready_callback cb) {
  for (auto& kvp : peers)
    if (kvp.second.address == uri) {
      cb(kvp.second.send_conn, nullptr);
      return;
    }
  if (auto it = by_uri.find(uri); it != by_uri.end() && conns.count(it->second) > 0) {
    auto& state = conns[it->second];
    if (state.handshaken)
      cb(it->second, nullptr);
    else
      state.on_ready.push_back(std::move(cb));
    return;
  }
  auto conn = engine->connect(addr, addr_len);
  TROUPE_LOG_DEBUG(log_component, "connecting to " << uri << " as connection " << conn);
  auto& state = conns[conn];
  state.outgoing = true;
  state.target_uri = uri;
  state.on_ready.push_back(std::move(cb));
  by_uri[uri] = conn;
  send_hello(conn, am_kind::hello);
}

// -- envelopes ------------------------------------------------------------------------

void middleman::impl::handle_envelope(conn_id conn, frame& f) {
  auto state_it = conns.find(conn);
  if (state_it == conns.end() || !state_it->second.handshaken) {
    count_drop(conn, "message before handshake");
    return;
  }
  const auto& peer_node = state_it->second.node;
  buffer_reader reader{f.header};
  auto env = reader.root<schema::Envelope>();
  if (env.getPayloadSize() != f.payload.size()) {
    count_drop(conn, "payload size mismatch");
    return;
  }
  switch (env.getPayloadKind()) {
    case schema::PayloadKind::CONTROL:
      handle_control(conn, f.payload);
      return;
    case schema::PayloadKind::CAF_MESSAGE: {
      caf::message msg;
      caf::binary_deserializer source{
        &exec_unit, reinterpret_cast<const char*>(f.payload.data()), f.payload.size()};
      if (auto err = source(msg)) {
        count_drop(conn, "malformed CAF message: " + describe(err));
        return;
      }
      // CAF 0.17 turns some malformed input (a truncated message, an unregistered
      // type name) into an empty message without reporting an error; a real empty
      // message (a void response) has exactly one encoding.
      if (source.remaining() != 0
          || (msg.empty() && !is_empty_message_encoding(f.payload))) {
        count_drop(conn, "malformed CAF message");
        return;
      }
      caf_in.fetch_add(1, std::memory_order_relaxed);
      if (faults_armed.load(std::memory_order_relaxed) && injected_drop(msg)) {
        count_drop(conn, "injected fault");
        return;
      }
      deliver(conn, peer_node, env, std::move(msg), env.getSourceActor());
      return;
    }
    case schema::PayloadKind::TYPED: {
      if (f.payload.size() % sizeof(uint64_t) != 0 || f.payload.empty()) {
        count_drop(conn, "typed payload is not whole words");
        return;
      }
      // Zero copy: the receive buffer becomes the message's storage.
      typed_message typed{env.getSchemaId(), f.payload.release()};
      typed_in.fetch_add(1, std::memory_order_relaxed);
      deliver(conn, peer_node, env, caf::make_message(std::move(typed)),
              env.getSourceActor());
      return;
    }
    case schema::PayloadKind::OP: {
      if (f.payload.size() % sizeof(uint64_t) != 0) {
        count_drop(conn, "op payload is not whole words");
        return;
      }
      auto header = env.getOp();
      op_frame op;
      op.id = env.getOpId();
      op.kind = header.getKind();
      op.index = header.getIndex();
      op.to = env.getMailbox();
      op.from = header.getFrom();
      op.deadline_ms = header.getDeadlineMs();
      if (auto watch = header.getWatch(); watch != 0)
        op.watch = caf::actor_cast<caf::actor>(proxies.get_or_put(peer_node, watch));
      op.last = header.getLast();
      op.code = header.getCode();
      if (header.hasError())
        op.error = header.getError();
      if (!f.payload.empty()) // zero copy, as typed payloads
        op.payload = typed_message{env.getSchemaId(), f.payload.release()};
      op_in.fetch_add(1, std::memory_order_relaxed);
      // From nobody: the frame names its sides by mailbox, and `watch` its node.
      deliver(conn, peer_node, env, caf::make_message(std::move(op)), 0);
      return;
    }
    default:
      count_drop(conn, "unsupported payload kind");
      return;
  }
}

void middleman::impl::deliver(conn_id conn, const caf::node_id& peer_node,
                              schema::Envelope::Reader env, caf::message msg,
                              caf::actor_id src) {
  auto mid = caf::make_message_id(env.getMessageId());
  auto dst = env.getDestinationActor();
  if (mid.is_response()) {
    auto p = peers.find(peer_node);
    if (p != peers.end())
      if (p->second.pending.erase({dst, mid.request_id().integer_value()}) != 0)
        requests_awaiting.fetch_sub(1, std::memory_order_relaxed);
  }
  auto dest = sys.registry().get(dst);
  if (!dest) {
    count_drop(conn, "unknown destination actor");
    if (mid.is_request() && src != 0)
      reply_error(conn, src, dst, mid,
                  make_error(errc::not_found, "actor " + std::to_string(dst) + " on "
                                                + listen_uri() + " does not exist"));
    return;
  }
  caf::strong_actor_ptr sender;
  if (src != 0)
    sender = proxies.get_or_put(peer_node, src);
  dest->enqueue(caf::make_mailbox_element(std::move(sender), mid, {}, std::move(msg)),
                enqueue_unit());
  // Every so many new proxies, and at least once a second while new ones come.
  auto made = proxies_made.load();
  if (made >= next_sweep
      || std::chrono::steady_clock::now() - last_sweep > std::chrono::seconds{1})
    sweep_unused_proxies();
}

// -- control --------------------------------------------------------------------------

void middleman::impl::handle_control(conn_id conn, const word_buffer& payload) {
  buffer_reader reader{payload};
  auto ctl = reader.root<schema::Control>();
  switch (ctl.which()) {
    case schema::Control::LOOKUP:
      answer_lookup(conn, ctl.getLookup().getRequestId(), ctl.getLookup().getKey());
      return;
    case schema::Control::LOOKUP_REPLY: {
      auto r = ctl.getLookupReply();
      auto it = lookups.find(r.getRequestId());
      if (it == lookups.end())
        return; // the caller gave up waiting
      lookup_result result;
      result.node = conns[conn].node;
      result.aid = r.getActorId();
      if (result.aid == 0)
        result.err = make_error(errc::not_found, r.getError().cStr());
      auto done = std::move(it->second);
      lookups.erase(it);
      done(std::move(result));
      lookup_nodes.erase(r.getRequestId());
      return;
    }
    case schema::Control::MONITOR:
      watch_local_actor(conn, ctl.getMonitor());
      return;
    case schema::Control::DOWN: {
      caf::error reason;
      auto data = ctl.getDown().getReason();
      caf::binary_deserializer source{sys, reinterpret_cast<const char*>(data.begin()),
                                      data.size()};
      if (source(reason))
        reason = caf::exit_reason::unknown;
      proxies.erase(conns[conn].node, ctl.getDown().getActorId(), std::move(reason));
      return;
    }
  }
  count_drop(conn, "unknown control message");
}

void middleman::impl::answer_lookup(conn_id conn, uint64_t request_id,
                                    capnp::Text::Reader key) {
  caf::strong_actor_ptr found;
  {
    std::lock_guard<std::mutex> guard{published_mtx};
    auto it = published.find(key.cStr());
    if (it != published.end())
      found = it->second.lock();
  }
  capnp::MallocMessageBuilder message{64};
  auto reply = message.initRoot<schema::Control>().initLookupReply();
  reply.setRequestId(request_id);
  if (found) {
    // Messages to it arrive by actor id: make sure the registry can resolve it.
    sys.registry().put(found->id(), found);
    reply.setActorId(found->id());
  } else {
    reply.setActorId(0);
    reply.setError(std::string{"nothing is published under \""} + key.cStr() + "\" on "
                   + listen_uri());
  }
  send_control(conn, message);
}

void middleman::impl::watch_local_actor(conn_id conn, caf::actor_id aid) {
  auto node = conns[conn].node;
  if (!monitored.emplace(node, aid).second)
    return;
  auto actor = sys.registry().get(aid);
  if (!actor) {
    send_down(node, aid, caf::exit_reason::unknown);
    return;
  }
  std::weak_ptr<impl> weak = shared_from_this();
  actor->get()->attach_functor([weak, node, aid](const caf::error& reason) {
    if (auto self = weak.lock())
      self->engine->post(
        [self, node, aid, reason] { self->send_down(node, aid, reason); });
  });
}

void middleman::impl::send_down(const caf::node_id& node, caf::actor_id aid,
                                const caf::error& reason) {
  monitored.erase({node, aid});
  auto p = peers.find(node);
  if (p == peers.end())
    return;
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  auto copy = reason;
  if (sink(copy))
    buf.clear();
  capnp::MallocMessageBuilder message{64};
  auto down = message.initRoot<schema::Control>().initDown();
  down.setActorId(aid);
  down.setReason(kj::arrayPtr(reinterpret_cast<const kj::byte*>(buf.data()), buf.size()));
  send_control(p->second.send_conn, message);
}

} // namespace troupe::transport
