#include "transport/middleman.hpp"

#include <atomic>
#include <cstdlib>
#include <future>
#include <random>
#include <mutex>
#include <optional>
#include <set>
#include <sys/socket.h>
#include <unistd.h>
#include <unordered_map>
#include <vector>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <caf/actor_cast.hpp>
#include <caf/actor_config.hpp>
#include <caf/actor_proxy.hpp>
#include <caf/actor_registry.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/exit_reason.hpp>
#include <caf/make_actor.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/message_id.hpp>
#include <caf/scoped_execution_unit.hpp>
#include <caf/sec.hpp>
#include <caf/send.hpp>
#include <kj/exception.h>

#include "base/error.hpp"
#include "base/log.hpp"
#include "schema/envelope.capnp.h"
#include "transport/address.hpp"
#include "transport/blocking_wait.hpp"
#include "transport/detail/ucx_engine.hpp"
#include "transport/detail/node_codec.hpp"
#include "transport/rdma.hpp"
#include "transport/scheduler.hpp"
#include "transport/typed_message.hpp"

// CAF 0.17 declares caf::net::middleman a friend of actor_system for the module in the
// network_manager slot, but never defines it: that module is ours, and this is the
// one thing it needs the friendship for.
namespace caf::net {
class middleman {
public:
  static void set_node(caf::actor_system& sys, caf::node_id id) {
    sys.node_ = std::move(id);
  }
};
} // namespace caf::net

namespace troupe::transport {

using detail::am_kind;
using detail::conn_id;
using detail::frame;
using detail::word_buffer;

namespace {

constexpr const char* log_component = "transport";

/// Largest envelope header we accept; real ones are ~150 bytes.
constexpr size_t max_header_bytes = 4096;

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

// -- the middleman's state ------------------------------------------------------------

struct middleman::impl : detail::engine_handler,
                         std::enable_shared_from_this<middleman::impl> {
  struct lookup_result {
    caf::node_id node;
    caf::actor_id aid = 0;
    caf::error err;
  };
  /// Called once, under the worker lock, with a lookup's outcome.
  using lookup_done = std::function<void(lookup_result)>;
  using ready_callback = std::function<void(conn_id, const std::string* error)>;

  struct conn_state {
    bool outgoing = false;
    bool handshaken = false;
    std::string target_uri; // for outgoing connections
    caf::node_id node;
    std::vector<ready_callback> on_ready;
  };

  struct peer {
    caf::node_id node;
    std::string address;
    uint64_t incarnation = 0;
    conn_id send_conn = 0;
    std::set<conn_id> conns;
    /// Requests sent to this node still waiting for their response:
    /// (requester actor id, request id) -> requester.
    /// TODO(soon): a request that timed out locally stays here until its response or
    /// the node's death; a long-lived peer that never answers grows this table.
    std::map<std::pair<caf::actor_id, uint64_t>, caf::strong_actor_ptr> pending;
  };

  struct outgoing_message {
    caf::node_id node;
    word_buffer header;
    word_buffer payload;
    caf::strong_actor_ptr sender;
    caf::message_id mid;
  };

  impl(caf::actor_system& system, middleman& parent)
    : sys(system), proxies(system, parent), exec_unit(&system) {
    exec_unit.proxy_registry_ptr(&proxies);
    std::random_device rd;
    incarnation = (uint64_t{rd()} << 32) | rd();
  }

  caf::actor_system& sys;
  caf::proxy_registry proxies;
  // Proxies ask their actor's node for a down notice only once something here
  // monitors or links them; the others are swept once nothing here holds them (a
  // proxy per new remote sender would otherwise cost two control messages, or stay
  // forever).
  std::atomic<uint64_t> proxies_made{0};
  static constexpr uint64_t min_sweep_interval = 1024;
  uint64_t next_sweep = min_sweep_interval;         // worker lock
  std::chrono::steady_clock::time_point last_sweep; // worker lock
  caf::scoped_execution_unit exec_unit; // deserializes with `proxies` in reach
  detail::engine_options opts;
  std::unique_ptr<detail::engine> engine;
  caf::error start_err;
  std::string address_uri;
  uint64_t incarnation = 0;

  std::atomic<uint64_t> msgs_out{0}, bytes_out{0}, msgs_in{0}, bytes_in{0};
  std::atomic<uint64_t> sends_direct{0}, sends_queued{0};
  std::atomic<uint64_t> typed_out{0}, typed_in{0}, caf_out{0}, caf_in{0};
  std::atomic<uint64_t> peer_count{0};
  mutable std::mutex drops_mtx;
  std::map<std::string, uint64_t> drops;            // guarded by drops_mtx
  std::set<std::pair<conn_id, std::string>> logged; // guarded by drops_mtx

  mutable std::mutex published_mtx;
  std::map<std::string, caf::weak_actor_ptr> published; // guarded by published_mtx

  // State of the worker lock's holder (see detail/ucx_engine.hpp).
  std::unordered_map<conn_id, conn_state> conns;
  std::map<caf::node_id, peer> peers;
  std::map<std::string, conn_id> by_uri; // outgoing connections by target URI
  std::map<uint64_t, lookup_done> lookups;
  std::map<uint64_t, caf::node_id> lookup_nodes; // lookups sent, by the node asked
  std::atomic<uint64_t> next_lookup{1};
  std::set<std::pair<caf::node_id, caf::actor_id>> monitored; // remote holders

  // -- helpers ----------------------------------------------------------------------

  /// Where an actor we hand a message to is scheduled: on this very thread when it
  /// is a progress scheduler worker polling from its scheduling loop (it runs the
  /// actor next, no wakeup), otherwise through the scheduler (e.g. a worker polling
  /// from inside a handler, through a blocking waiter: it may block there).
  caf::execution_unit* enqueue_unit() {
    if (auto worker = polling_progress_worker())
      return worker;
    // A blocking caller polling for its answer: the actor runs on its thread next.
    if (auto caller = caller_execution_unit::on_this_thread(sys))
      return caller;
    return &exec_unit;
  }

  /// Our URI, built where it is needed: the engine may need it before
  /// start() has stored `address_uri` (a peer can connect the moment we listen).
  std::string listen_uri() const {
    return node_address{"ucx", opts.host, engine->port()}.to_uri();
  }

  void count_drop(conn_id conn, const std::string& reason) {
    std::lock_guard<std::mutex> guard{drops_mtx};
    ++drops[reason];
    // Logged once per connection and reason, so a hostile peer cannot flood the log.
    if (logged.emplace(conn, reason).second)
      TROUPE_LOG_WARNING(log_component,
                         "dropped a message (connection "
                           << conn << "): " << reason
                           << "; further drops of this kind are only counted");
  }

  static word_buffer make_envelope(caf::actor_id src, caf::actor_id dst,
                                   caf::message_id mid, schema::PayloadKind kind,
                                   size_t payload_size, uint64_t schema_id = 0) {
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

  /// Serializes a message for the wire; on failure returns nothing and says why (a
  /// type that is not registered with add_message_type, usually).
  std::optional<word_buffer> serialize(caf::message msg, std::string& why) {
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

  bool is_empty_message_encoding(const word_buffer& payload) {
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

  /// Runs `fn` (which sends) on this thread when nobody else holds the worker lock
  /// and nothing was queued before it (per-peer order); otherwise queues it for the
  /// holder, who runs it before letting go. True if it ran here. If the engine
  /// stopped meanwhile, `refused` runs instead (it owes a waiter its answer).
  template <class F, class G>
  bool run_here_or_queue(F&& fn, G&& refused) {
    if (engine->try_lock()) {
      if (!engine->has_posts()) {
        fn();
        engine->unlock();
        // A thread that is not a worker (a blocking actor, typically) waits for the
        // answer elsewhere: get a worker polling while it travels.
        if (opts.driven_externally && current_progress_worker() == nullptr
            && !blocking_waiter::active_on_this_thread())
          nudge_progress_scheduler(sys);
        return true;
      }
      engine->unlock();
    }
    if (!engine->post([self = shared_from_this(), fn = std::forward<F>(fn)]() mutable {
          static_cast<void>(self); // keeps the state `fn` uses alive until it runs
          fn();
        }))
      refused();
    return false;
  }

  /// Every frame leaves through here, so the counters see what on_frame sees on the
  /// other side (handshakes and control traffic included).
  void send_frame(conn_id conn, am_kind kind, word_buffer header, word_buffer payload,
                  bool before_ready = false) {
    msgs_out.fetch_add(1, std::memory_order_relaxed);
    bytes_out.fetch_add(header.size() + payload.size(), std::memory_order_relaxed);
    if (before_ready)
      engine->send_now(conn, kind, std::move(header), std::move(payload));
    else
      engine->send(conn, kind, std::move(header), std::move(payload));
  }

  void send_control(conn_id conn, capnp::MessageBuilder& control) {
    auto it = conns.find(conn);
    if (it == conns.end())
      return;
    auto payload = to_words(control);
    auto header = make_envelope(0, 0, caf::make_message_id(),
                                schema::PayloadKind::CONTROL, payload.size());
    send_frame(conn, am_kind::envelope, std::move(header), std::move(payload));
  }

  void send_hello(conn_id conn, am_kind kind) {
    capnp::MallocMessageBuilder message{64};
    auto hello = message.initRoot<schema::Hello>();
    hello.setProtocolVersion(protocol_version);
    detail::write_node_id(sys.node(), hello.initNode());
    hello.setIncarnation(incarnation);
    hello.setAddress(listen_uri());
    send_frame(conn, kind, to_words(message), {}, /*before_ready=*/true);
  }

  // -- engine_handler ---------------------------------------------------------------

  void on_accepted(conn_id conn) override {
    TROUPE_LOG_DEBUG(log_component, "accepted connection " << conn);
    conns[conn].outgoing = false;
  }

  void on_frame(conn_id conn, frame&& f) override {
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
      }
    } catch (const kj::Exception&) {
      count_drop(conn, "malformed Cap'n Proto message");
    } catch (const std::exception& e) {
      // E.g. CAF allocating a sequence of the length a hostile peer claims.
      count_drop(conn, std::string{"message that could not be decoded: "} + e.what());
    }
  }

  void on_drop(conn_id conn, const char* reason) override { count_drop(conn, reason); }

  void on_conn_failed(conn_id conn, const std::string& reason) override;

  // -- handshake --------------------------------------------------------------------

  void handle_hello(conn_id conn, const frame& f) {
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
      TROUPE_LOG_WARNING(log_component, "refusing peer "
                                          << hello.getAddress().cStr()
                                          << ": it speaks protocol version "
                                          << hello.getProtocolVersion() << ", we speak "
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

  void fail_callbacks(conn_state& state, const std::string& why) {
    auto callbacks = std::move(state.on_ready);
    state.on_ready.clear();
    for (auto& cb : callbacks)
      cb(0, &why);
  }

  void forget_conn(conn_id conn) {
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

  /// Calls `cb` with a handshaken connection to `uri`, connecting if needed.
  void with_connection(const std::string& uri, const sockaddr_storage& addr,
                       unsigned addr_len, ready_callback cb) {
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

  // -- envelopes --------------------------------------------------------------------

  void handle_envelope(conn_id conn, frame& f) {
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
        deliver(conn, peer_node, env, std::move(msg));
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
        deliver(conn, peer_node, env, caf::make_message(std::move(typed)));
        return;
      }
      default:
        count_drop(conn, "unsupported payload kind");
        return;
    }
  }

  void deliver(conn_id conn, const caf::node_id& peer_node, schema::Envelope::Reader env,
               caf::message msg) {
    auto mid = caf::make_message_id(env.getMessageId());
    auto src = env.getSourceActor();
    auto dst = env.getDestinationActor();
    if (mid.is_response()) {
      auto p = peers.find(peer_node);
      if (p != peers.end())
        p->second.pending.erase({dst, mid.request_id().integer_value()});
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

  /// Any thread: asks the node of (nid, aid) for its down notice.
  void request_down_notice(const caf::node_id& nid, caf::actor_id aid) {
    if (!engine)
      return;
    std::weak_ptr<impl> weak = shared_from_this();
    engine->post([weak, nid, aid] {
      auto self = weak.lock();
      if (!self)
        return;
      auto p = self->peers.find(nid);
      if (p == self->peers.end()) {
        // Its node is already gone (the connection broke before the proxy was
        // monitored): kill the proxy now, or its monitors and links would never fire.
        self->proxies.erase(nid, aid, caf::exit_reason::remote_link_unreachable);
        return;
      }
      capnp::MallocMessageBuilder message{64};
      message.initRoot<schema::Control>().setMonitor(aid);
      self->send_control(p->second.send_conn, message);
    });
  }

  /// Progress thread (where proxies are made): drops the proxies that nothing here
  /// monitors and nothing holds but the registry.
  void sweep_unused_proxies();

  void reply_error(conn_id conn, caf::actor_id requester, caf::actor_id from,
                   caf::message_id mid, caf::error err) {
    std::string why;
    auto payload = serialize(caf::make_message(std::move(err)), why);
    if (!payload)
      return;
    auto header = make_envelope(from, requester, mid.response_id(),
                                schema::PayloadKind::CAF_MESSAGE, payload->size());
    send_frame(conn, am_kind::envelope, std::move(header), std::move(*payload));
  }

  // -- control ----------------------------------------------------------------------

  void handle_control(conn_id conn, const word_buffer& payload) {
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

  void answer_lookup(conn_id conn, uint64_t request_id, capnp::Text::Reader key) {
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

  void watch_local_actor(conn_id conn, caf::actor_id aid) {
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

  void send_down(const caf::node_id& node, caf::actor_id aid, const caf::error& reason) {
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
    down.setReason(
      kj::arrayPtr(reinterpret_cast<const kj::byte*>(buf.data()), buf.size()));
    send_control(p->second.send_conn, message);
  }

  // -- sending ----------------------------------------------------------------------

  void route(outgoing_message& m) {
    auto p = peers.find(m.node);
    if (p == peers.end()) {
      // One counter for all such nodes (a node per key would grow the table with
      // every node that ever died); the node is in the log line and in the error.
      TROUPE_LOG_DEBUG(log_component,
                       "no connection to node " << caf::to_string(m.node) << ": dropped");
      count_drop(0, "no connection to the destination node");
      if (m.mid.is_request() && m.sender)
        bounce(m.sender, m.mid,
               make_error(errc::unreachable,
                          "no connection to node " + caf::to_string(m.node)));
      return;
    }
    if (m.mid.is_request() && m.sender)
      p->second.pending.emplace(std::make_pair(m.sender->id(), m.mid.integer_value()),
                                m.sender);
    send_frame(p->second.send_conn, am_kind::envelope, std::move(m.header),
               std::move(m.payload));
  }

  void bounce(const caf::strong_actor_ptr& requester, caf::message_id mid,
              caf::error err) {
    requester->enqueue(caf::make_mailbox_element(nullptr, mid.response_id(), {},
                                                 caf::make_message(std::move(err))),
                       enqueue_unit());
  }

  void forward(const caf::node_id& node, caf::actor_id dest, caf::strong_actor_ptr sender,
               caf::message_id mid, caf::message content) {
    // Replies must find the sender by its id: keep it in the registry.
    if (sender && sender->node() == sys.node())
      sys.registry().put(sender->id(), sender);
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
    if (content.size() == 1 && content.match_element<typed_message>(0)) {
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
        payload =
          serialize(caf::make_message(make_error(errc::invalid_config, why)), why);
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
    if (run_here_or_queue([this, m = std::move(m)]() mutable { route(m); }, stopped))
      sends_direct.fetch_add(1, std::memory_order_relaxed);
    else
      sends_queued.fetch_add(1, std::memory_order_relaxed);
  }
};

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
  for (auto& [key, requester] : lost.pending)
    bounce(requester, caf::make_message_id(key.second),
           make_error(errc::unreachable, why));
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

// -- the proxy ------------------------------------------------------------------------

namespace {

class ucx_proxy final : public caf::actor_proxy {
public:
  // A weak reference: a proxy that outlives the transport drops its messages (and
  // answers requests with an error) instead of touching freed memory.
  ucx_proxy(caf::actor_config& cfg, std::weak_ptr<middleman::impl> mm)
    : caf::actor_proxy(cfg), mm_(std::move(mm)) {}

  void enqueue(caf::mailbox_element_ptr what, caf::execution_unit*) override {
    if (auto mm = mm_.lock()) {
      mm->forward(node(), id(), std::move(what->sender), what->mid,
                  what->move_content_to_message());
      return;
    }
    // The transport is gone: a request still gets its one reply.
    if (what->mid.is_request() && what->sender)
      what->sender->enqueue(
        caf::make_mailbox_element(
          nullptr, what->mid.response_id(), {},
          caf::make_message(make_error(errc::unreachable, "the transport has stopped"))),
        nullptr);
  }

  void kill_proxy(caf::execution_unit* ctx, caf::error reason) override {
    cleanup(std::move(reason), ctx);
  }

  // A monitor, a link or an attached functor needs the actor's down notice.
  void attach(caf::attachable_ptr ptr) override {
    watched();
    caf::actor_proxy::attach(std::move(ptr));
  }
  void add_link(caf::abstract_actor* other) override {
    watched();
    caf::actor_proxy::add_link(other);
  }
  bool add_backlink(caf::abstract_actor* other) override {
    watched();
    return caf::actor_proxy::add_backlink(other);
  }

  /// For the sweep: true if the proxy was not watched and now never will be (a
  /// later monitor finds it terminated, as after its actor's exit).
  bool claim_for_sweep() {
    int idle = unwatched;
    return state_.compare_exchange_strong(idle, swept);
  }

private:
  enum : int { unwatched, watched_state, swept };

  void watched() {
    int idle = unwatched;
    if (state_.compare_exchange_strong(idle, watched_state))
      if (auto mm = mm_.lock())
        mm->request_down_notice(node(), id());
  }

  std::weak_ptr<middleman::impl> mm_;
  std::atomic<int> state_{unwatched};
};

} // namespace

void middleman::impl::sweep_unused_proxies() {
  uint64_t kept = 0;
  for (const auto& [nid, p] : peers) {
    for (auto& proxy : proxies.get_all(nid)) {
      auto* raw = static_cast<ucx_proxy*>(caf::actor_cast<caf::abstract_actor*>(proxy));
      // Two references, the registry's and `proxy`: nobody else holds it, and new
      // strong references come from the registry, on this thread (or from upgrading a
      // weak handle: the claim settles a race with a monitor through one).
      if (proxy->strong_refs.load() == 2 && raw->claim_for_sweep())
        proxies.erase(nid, proxy->id());
      else
        ++kept;
    }
  }
  next_sweep = proxies_made.load() + std::max(min_sweep_interval, kept);
  last_sweep = std::chrono::steady_clock::now();
}

namespace {} // namespace

// -- middleman ------------------------------------------------------------------------

middleman::middleman(caf::actor_system& sys) {
  impl_ = std::make_shared<impl>(sys, *this);
}

middleman::~middleman() = default;

caf::actor_system::module* middleman::make(caf::actor_system& sys,
                                           caf::detail::type_list<>) {
  return new middleman(sys);
}

middleman& middleman::of(caf::actor_system& sys) {
  // CAF 0.17 hands the network_manager slot out as the (never defined) caf::net
  // middleman type: it is our subtype_ptr(), i.e. this middleman.
  auto& slot = sys.network_manager();
  return *reinterpret_cast<middleman*>(&slot);
}

void middleman::init(caf::actor_system_config& cfg) {
  auto& d = *impl_;
  d.opts.host = caf::get_or(cfg, "troupe.transport.host", std::string{"127.0.0.1"});
  d.opts.port =
    static_cast<uint16_t>(caf::get_or(cfg, "troupe.transport.port", size_t{0}));
  d.opts.busy_poll = caf::get_or(cfg, "troupe.transport.busy-poll", false);
  d.opts.spin_window =
    std::chrono::microseconds{caf::get_or(cfg, "troupe.transport.spin-us", size_t{50})};
  auto keepalive_ms = caf::get_or(cfg, "troupe.transport.keepalive-ms", size_t{500});
  d.opts.max_payload =
    caf::get_or(cfg, "troupe.transport.max-message-bytes", size_t{1} << 30);
  // Defaults in code, overridable by the user's environment (setenv does not
  // overwrite): peer error handling needs these for shared-memory lanes, and UCX's
  // default keepalive (20 s) is far too slow to notice a dead peer.
  // (Only when shared memory may be used: UCX warns about variables it does not use.)
  const char* tls = std::getenv("UCX_TLS");
  std::string tls_list = tls != nullptr ? tls : "all";
  if (tls_list.find("all") != std::string::npos
      || tls_list.find("sm") != std::string::npos
      || tls_list.find("posix") != std::string::npos
      || tls_list.find("sysv") != std::string::npos) {
    ::setenv("UCX_POSIX_ERROR_HANDLING", "y", 0);
    ::setenv("UCX_SYSV_ERROR_HANDLING", "y", 0);
  }
  ::setenv("UCX_KEEPALIVE_INTERVAL", (std::to_string(keepalive_ms) + "ms").c_str(), 0);
  // A restarted node must get its address back while old connections linger in
  // TIME_WAIT, as any server does with SO_REUSEADDR.
  ::setenv("UCX_TCP_CM_REUSEADDR", "y", 0);
  // UCX 1.13's tcp PUT zcopy (used by rendezvous and RMA over tcp) aborts the whole
  // process on an assertion in tcp_ep.c when the peer dies mid-transfer (here: about
  // 1 run in 10 of a peer killed under 64 KiB sends on a loaded box). Without it UCX
  // moves those bytes by active messages: a peer's death is then an error, not an abort.
  ::setenv("UCX_TCP_PUT_ENABLE", "n", 0);
  // On loopback, keep UCX's tcp lanes on lo too instead of every interface.
  if (d.opts.host == "127.0.0.1" || d.opts.host == "localhost" || d.opts.host == "::1")
    ::setenv("UCX_NET_DEVICES", "lo", 0);
}

void middleman::start() {
  auto& d = *impl_;
  // CAF's node id is (pid, host hash): two nodes in one process (tests, in-process
  // child instances) would share it, and peers could not tell them apart. Mix this
  // run's random incarnation into the host hash so every node is unique.
  auto host = caf::node_id::default_data::host_id_type{};
  if (d.sys.node()
      && d.sys.node()->implementation_id() == caf::node_id::default_data::class_id)
    host = static_cast<const caf::node_id::default_data&>(*d.sys.node()).host_id();
  for (size_t i = 0; i < 8; ++i)
    host[host.size() - 8 + i] = static_cast<uint8_t>(d.incarnation >> (8 * i));
  caf::net::middleman::set_node(
    d.sys, caf::make_node_id(static_cast<uint32_t>(::getpid()), host));
  // With the progress scheduler, its workers poll the engine; the engine's own
  // thread only stands by.
  d.opts.driven_externally = runs_progress_scheduler(d.sys);
  d.engine = std::make_unique<detail::engine>(d, d.opts);
  auto err = d.engine->start();
  if (!err.empty()) {
    d.start_err = make_error(errc::unreachable, err);
    d.engine.reset();
    return;
  }
  detail::attach_engine(d.sys, d.engine.get());
  d.address_uri = node_address{"ucx", d.opts.host, d.engine->port()}.to_uri();
  TROUPE_LOG_INFO(log_component, "listening on " << d.address_uri);
}

void middleman::stop() {
  auto& d = *impl_;
  if (d.engine) {
    detail::detach_engine(d.sys);
    d.engine->stop();
    // Pending lookups get their one answer.
    auto lookups = std::move(d.lookups);
    d.lookups.clear();
    for (auto& kvp : lookups)
      kvp.second({{}, 0, make_error(errc::unreachable, "transport stopped")});
  }
  d.proxies.clear();
}

caf::actor_system::module::id_t middleman::id() const {
  return network_manager;
}

void* middleman::subtype_ptr() {
  return this;
}

caf::strong_actor_ptr middleman::make_proxy(caf::node_id nid, caf::actor_id aid) {
  auto& d = *impl_;
  caf::actor_config cfg;
  ++d.proxies_made;
  // No down notice asked for yet: the proxy asks once something here watches it.
  return caf::make_actor<ucx_proxy, caf::strong_actor_ptr>(aid, nid, &d.sys, cfg,
                                                           std::weak_ptr<impl>{impl_});
}

void middleman::set_last_hop(caf::node_id*) {
  // Troupe connects nodes directly; there are no indirect hops to track.
}

const caf::error& middleman::start_error() const {
  return impl_->start_err;
}

std::string middleman::address() const {
  return impl_->address_uri;
}

void middleman::publish(const std::string& key, const caf::actor& handle) {
  std::lock_guard<std::mutex> guard{impl_->published_mtx};
  impl_->published[key] = caf::actor_cast<caf::weak_actor_ptr>(handle);
}

void middleman::unpublish(const std::string& key) {
  std::lock_guard<std::mutex> guard{impl_->published_mtx};
  impl_->published.erase(key);
}

uint64_t middleman::find_remote_actor(const std::string& uri, const std::string& key,
                                      lookup_callback done) {
  auto& d = *impl_;
  auto fail = [&](std::string why) {
    done(make_error(errc::unreachable, std::move(why)));
    return uint64_t{0};
  };
  if (!d.engine)
    return fail("the transport is not running");
  std::string error;
  auto addr = parse_node_address(uri, error);
  if (!addr)
    return fail(uri + ": " + error);
  auto sa = std::make_shared<sockaddr_storage>();
  unsigned sa_len = 0;
  error = detail::resolve_address(addr->host, addr->port, *sa, sa_len);
  if (!error.empty())
    return fail(uri + ": " + error);
  auto canonical = addr->to_uri();
  std::weak_ptr<impl> weak = impl_;
  auto request_id = d.next_lookup.fetch_add(1);
  // Turns the answer into a handle: a proxy for a remote actor, the actor itself when
  // the key was published on this very node.
  auto finish = [weak, done = std::move(done)](impl::lookup_result result) {
    auto self = weak.lock();
    if (!self)
      return done(make_error(errc::unreachable, "transport stopped"));
    if (result.err)
      return done(std::move(result.err));
    if (result.node == self->sys.node())
      return done(caf::actor_cast<caf::actor>(self->sys.registry().get(result.aid)));
    done(caf::actor_cast<caf::actor>(self->proxies.get_or_put(result.node, result.aid)));
  };
  if (!d.engine->running())
    return fail("the transport is not running");
  d.engine->post(
    [weak, canonical, sa, sa_len, key, request_id, finish = std::move(finish)]() mutable {
      auto self = weak.lock();
      if (!self)
        return;
      self->lookups.emplace(request_id, std::move(finish));
      self->with_connection(
        canonical, *sa, sa_len,
        [self, canonical, key, request_id](conn_id conn, const std::string* err) {
          auto it = self->lookups.find(request_id);
          if (it == self->lookups.end())
            return; // cancelled
          if (err != nullptr) {
            auto finish = std::move(it->second);
            self->lookups.erase(it);
            finish(
              {{},
               0,
               make_error(errc::unreachable, "cannot reach " + canonical + ": " + *err)});
            return;
          }
          capnp::MallocMessageBuilder message{64};
          auto lookup = message.initRoot<schema::Control>().initLookup();
          lookup.setRequestId(request_id);
          lookup.setKey(key);
          self->lookup_nodes[request_id] = self->conns[conn].node;
          self->send_control(conn, message);
        });
    });
  return request_id;
}

void middleman::cancel_lookup(uint64_t lookup_id) {
  auto& d = *impl_;
  if (!d.engine || lookup_id == 0)
    return;
  std::weak_ptr<impl> weak = impl_;
  d.engine->post([weak, lookup_id] {
    if (auto self = weak.lock()) {
      self->lookups.erase(lookup_id);
      self->lookup_nodes.erase(lookup_id);
    }
  });
}

caf::expected<caf::actor> middleman::remote_actor(const std::string& uri,
                                                  const std::string& key,
                                                  std::chrono::milliseconds timeout) {
  auto promise = std::make_shared<std::promise<caf::expected<caf::actor>>>();
  auto future = promise->get_future();
  auto lookup_id =
    find_remote_actor(uri, key, [promise](caf::expected<caf::actor> result) {
      promise->set_value(std::move(result));
    });
  if (future.wait_for(timeout) != std::future_status::ready) {
    cancel_lookup(lookup_id);
    return make_error(errc::timeout, "no answer from " + uri + " within "
                                       + std::to_string(timeout.count()) + " ms");
  }
  return future.get();
}

transport_stats middleman::stats() const {
  auto& d = *impl_;
  transport_stats s;
  s.messages_out = d.msgs_out.load();
  s.bytes_out = d.bytes_out.load();
  s.messages_in = d.msgs_in.load();
  s.bytes_in = d.bytes_in.load();
  s.peers = d.peer_count.load();
  s.typed_out = d.typed_out.load();
  s.typed_in = d.typed_in.load();
  s.caf_out = d.caf_out.load();
  s.caf_in = d.caf_in.load();
  s.sends_direct = d.sends_direct.load();
  s.sends_queued = d.sends_queued.load();
  auto sched = progress_stats(d.sys);
  s.worker_sleeps = sched.sleeps;
  s.worker_armed_sleeps = sched.armed_sleeps;
  s.worker_wakeups = sched.wakeups_sent;
  if (d.engine) {
    s.remote_keys = d.engine->cached_remote_keys();
    s.standby_polls = d.engine->standby_polls();
    s.transports = d.engine->transports_in_use();
  }
  std::lock_guard<std::mutex> guard{d.drops_mtx};
  s.drops = d.drops;
  return s;
}

caf::actor_system& middleman::system() const {
  return impl_->sys;
}

bool middleman::poll_once() {
  return impl_->engine && impl_->engine->poll() == detail::poll_outcome::busy;
}

std::chrono::microseconds middleman::spin_window() const {
  return impl_->opts.spin_window;
}

caf::proxy_registry& middleman::proxies() {
  return impl_->proxies;
}

std::unique_ptr<detail::mapped_memory> middleman::map_memory(size_t bytes,
                                                             std::string& error) {
  if (!impl_->engine) {
    error = "the transport is not running";
    return nullptr;
  }
  return impl_->engine->map_memory(bytes, error);
}

void middleman::rdma(bool is_put, const region_descriptor& remote, uint64_t remote_offset,
                     std::shared_ptr<memory_region> local, uint64_t local_offset,
                     uint64_t length, const caf::actor& notify, uint64_t tag) {
  auto& d = *impl_;
  auto report = [notify, tag](caf::error err) {
    caf::anon_send(notify, rdma_done{tag, std::move(err)});
  };
  if (!d.engine) {
    report(make_error(errc::unreachable, "the transport is not running"));
    return;
  }
  auto self = impl_.get();
  d.run_here_or_queue(
    [self, is_put, remote_copy = remote, remote_offset, local, local_offset, length,
     report] {
      auto p = self->peers.find(remote_copy.node);
      if (p == self->peers.end()) {
        report(make_error(errc::unreachable, "no connection to node "
                                               + caf::to_string(remote_copy.node)
                                               + ", which holds the region"));
        return;
      }
      std::string rkey{remote_copy.rkey.begin(), remote_copy.rkey.end()};
      self->engine->rma(
        p->second.send_conn, is_put, local->data() + local_offset, length,
        remote_copy.address + remote_offset, rkey,
        [report](const std::string& error) {
          report(error.empty() ? caf::error{} : make_error(errc::unreachable, error));
        },
        local);
    },
    [report] { report(make_error(errc::unreachable, "the transport has stopped")); });
}

std::string provider_key(const std::string& type, uint16_t provider_id) {
  return "provider:" + type + ":" + std::to_string(provider_id);
}

} // namespace troupe::transport
