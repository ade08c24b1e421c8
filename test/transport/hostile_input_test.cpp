#define BOOST_TEST_MODULE transport_hostile_input
#include <boost/test/unit_test.hpp>

// A raw UCX client, written here against ucp directly, feeds an actorhost garbage,
// truncated, oversized and out-of-protocol frames. The node must stay up, count every
// drop, and keep serving a well-behaved client.

#include <chrono>
#include <cstring>
#include <map>
#include <random>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <caf/actor_system.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/scoped_actor.hpp>
#include <ucp/api/ucp.h>

#include "base/error.hpp"
#include "runtime/config.hpp"
#include "runtime/node.hpp"
#include "runtime/node_service.hpp"
#include "schema/envelope.capnp.h"
#include "test/support/process.hpp"
#include "transport/detail/ucx_engine.hpp"
#include "transport/middleman.hpp"

using namespace troupe;
using namespace troupe::test;
using namespace std::chrono_literals;

namespace {

constexpr unsigned am_hello = 1;
constexpr unsigned am_envelope = 3;
constexpr unsigned am_batch = 4;
constexpr size_t max_message_bytes = 1 << 20;

std::string bytes_of(capnp::MessageBuilder& message) {
  auto words = capnp::messageToFlatArray(message);
  auto bytes = words.asBytes();
  return std::string{reinterpret_cast<const char*>(bytes.begin()), bytes.size()};
}

/// A fake node identity for the raw client.
struct fake_identity {
  std::string host_id = std::string(20, '\x5a');
  uint32_t pid = 4242;
  void write(schema::NodeId::Builder out) const {
    auto hashed = out.initHashed();
    hashed.setHostId(
      kj::arrayPtr(reinterpret_cast<const kj::byte*>(host_id.data()), host_id.size()));
    hashed.setProcessId(pid);
  }
};

std::string hello_bytes(const fake_identity& me, uint32_t version) {
  capnp::MallocMessageBuilder message;
  auto hello = message.initRoot<schema::Hello>();
  hello.setProtocolVersion(version);
  me.write(hello.initNode());
  hello.setIncarnation(1);
  hello.setAddress("ucx://127.0.0.1:1");
  return bytes_of(message);
}

/// An envelope from actor 1 of the connected node (the connection names the node).
std::string envelope_bytes(uint64_t dest_actor, schema::PayloadKind kind,
                           uint64_t payload_size) {
  capnp::MallocMessageBuilder message;
  auto env = message.initRoot<schema::Envelope>();
  env.setSourceActor(1);
  env.setDestinationActor(dest_actor);
  env.setPayloadKind(kind);
  env.setPayloadSize(payload_size);
  return bytes_of(message);
}

/// The raw client: one context, worker and endpoint, driven from the test thread.
class raw_client {
public:
  explicit raw_client(const std::string& uri) {
    ucp_params_t params{};
    params.field_mask = UCP_PARAM_FIELD_FEATURES;
    params.features = UCP_FEATURE_AM;
    ucp_config_t* config = nullptr;
    BOOST_REQUIRE(ucp_config_read(nullptr, nullptr, &config) == UCS_OK);
    BOOST_REQUIRE(ucp_init(&params, config, &context_) == UCS_OK);
    ucp_config_release(config);
    ucp_worker_params_t wparams{};
    wparams.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wparams.thread_mode = UCS_THREAD_MODE_SINGLE;
    BOOST_REQUIRE(ucp_worker_create(context_, &wparams, &worker_) == UCS_OK);
    // The node answers with its own frames (hello ack, ...): a client must accept them.
    // A hello ack (id 2) is counted, so a test can wait for the handshake.
    for (unsigned id = 1; id <= 3; ++id) {
      ucp_am_handler_param_t hp{};
      hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB
                      | UCP_AM_HANDLER_PARAM_FIELD_ARG;
      hp.id = id;
      hp.arg = id == 2 ? &acks_ : nullptr;
      hp.cb = [](void* arg, const void*, size_t, void*, size_t,
                 const ucp_am_recv_param_t*) {
        if (arg != nullptr)
          ++*static_cast<int*>(arg);
        return UCS_OK;
      };
      BOOST_REQUIRE(ucp_worker_set_am_recv_handler(worker_, &hp) == UCS_OK);
    }
    auto port = static_cast<uint16_t>(std::stoi(uri.substr(uri.rfind(':') + 1)));
    sockaddr_storage addr{};
    unsigned addr_len = 0;
    BOOST_REQUIRE(
      transport::detail::resolve_address("127.0.0.1", port, addr, addr_len).empty());
    ucp_ep_params_t ep_params{};
    ep_params.field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR
                           | UCP_EP_PARAM_FIELD_ERR_HANDLER
                           | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
    ep_params.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
    ep_params.sockaddr.addr = reinterpret_cast<const sockaddr*>(&addr);
    ep_params.sockaddr.addrlen = addr_len;
    ep_params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
    ep_params.err_handler.cb = [](void* arg, ucp_ep_h, ucs_status_t) {
      *static_cast<bool*>(arg) = true;
    };
    ep_params.err_handler.arg = &broken_;
    BOOST_REQUIRE(ucp_ep_create(worker_, &ep_params, &ep_) == UCS_OK);
  }

  ~raw_client() {
    ucp_request_param_t rp{};
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    rp.flags = UCP_EP_CLOSE_FLAG_FORCE;
    auto req = ucp_ep_close_nbx(ep_, &rp);
    if (UCS_PTR_IS_PTR(req)) {
      while (ucp_request_check_status(req) == UCS_INPROGRESS)
        ucp_worker_progress(worker_);
      ucp_request_free(req);
    }
    ucp_worker_destroy(worker_);
    ucp_cleanup(context_);
  }

  /// Sends one active message and waits (with a deadline) until UCX is done with it.
  void send(unsigned am_id, const std::string& header, const std::string& payload) {
    ucp_request_param_t rp{};
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    rp.flags = UCP_AM_SEND_FLAG_REPLY;
    auto req = ucp_am_send_nbx(ep_, am_id, header.data(), header.size(), payload.data(),
                               payload.size(), &rp);
    if (UCS_PTR_IS_PTR(req)) {
      auto deadline = std::chrono::steady_clock::now() + 20s;
      while (ucp_request_check_status(req) == UCS_INPROGRESS
             && std::chrono::steady_clock::now() < deadline)
        ucp_worker_progress(worker_);
      ucp_request_free(req);
    }
  }

  /// Keeps the connection progressing for a moment (handshake replies, errors).
  void progress_for(std::chrono::milliseconds d) {
    auto until = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < until)
      ucp_worker_progress(worker_);
  }

  bool broken() const { return broken_; }

  /// Sends a hello and waits (with a deadline) for the node's ack.
  bool handshake(const std::string& hello) {
    auto before = acks_;
    send(1, hello, "");
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (acks_ == before && std::chrono::steady_clock::now() < deadline)
      ucp_worker_progress(worker_);
    return acks_ > before;
  }

private:
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  ucp_ep_h ep_ = nullptr;
  bool broken_ = false;
  int acks_ = 0;
};

struct fixture {
  host_process host{R"({"transport": {"max_message_bytes": )"
                    + std::to_string(max_message_bytes) + R"(},
      "providers": [{"type": "echo", "name": "echo", "provider_id": 1}]})"};
  node client{parse_node_config(R"({"threads": 2})", "client.json")};
  caf::actor service;

  fixture() {
    if (auto err = client.start())
      throw std::runtime_error(describe(err));
    auto found = client.transport().remote_actor(host.address(), node_service_key, 20s);
    if (!found)
      throw std::runtime_error(describe(found.error()));
    service = *found;
  }

  std::map<std::string, uint64_t> stats() {
    std::map<std::string, uint64_t> result;
    caf::scoped_actor self{client.system()};
    self->request(service, 20s, stats_atom::value)
      .receive([&](const std::map<std::string, uint64_t>& m) { result = m; },
               [](const caf::error& err) { BOOST_FAIL(describe(err)); });
    return result;
  }

  /// The drops counted so far for reasons that start with `reason`.
  uint64_t drops(const std::string& reason) {
    uint64_t total = 0;
    for (const auto& [key, count] : stats())
      if (key.rfind("drop:" + reason, 0) == 0)
        total += count;
    return total;
  }

  /// Waits until the drops for `reason` rose above `before` (taken before the send).
  bool wait_for_drop(const std::string& reason, uint64_t before,
                     raw_client* keep_alive = nullptr) {
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (drops(reason) > before)
        return true;
      if (keep_alive != nullptr)
        keep_alive->progress_for(20ms);
    }
    std::string seen;
    for (const auto& [key, count] : stats())
      seen += key + "=" + std::to_string(count) + " ";
    BOOST_TEST_MESSAGE("no drop for \"" << reason << "\"; counters: " << seen);
    return false;
  }

  std::string ask_echo(const std::string& text) {
    auto echo = client.remote_provider(host.address(), "echo", 1, 20s);
    if (!echo)
      return "error: " + describe(echo.error());
    std::string answer;
    caf::scoped_actor self{client.system()};
    self->request(*echo, 20s, text)
      .receive([&](const std::string& s) { answer = s; },
               [&](const caf::error& e) { answer = "error: " + describe(e); });
    return answer;
  }
};

} // namespace

BOOST_FIXTURE_TEST_SUITE(hostile_input, fixture)

BOOST_AUTO_TEST_CASE(frames_before_the_handshake_are_dropped) {
  raw_client raw{host.address()};
  auto before = drops("message before handshake");
  raw.send(am_envelope, envelope_bytes(1, schema::PayloadKind::CAF_MESSAGE, 0), "");
  BOOST_TEST(wait_for_drop("message before handshake", before, &raw));
  BOOST_TEST(ask_echo("still up") == "still up");
}

BOOST_AUTO_TEST_CASE(active_messages_of_unknown_kinds_are_dropped) {
  raw_client raw{host.address()};
  fake_identity me;
  BOOST_REQUIRE(raw.handshake(hello_bytes(me, transport::protocol_version)));
  auto before = drops("unknown active message id");
  for (unsigned id : {0u, 7u, 63u, 1000u, 65535u})
    raw.send(id, "junk", "more junk");
  BOOST_TEST(wait_for_drop("unknown active message id", before, &raw));
  BOOST_TEST(ask_echo("still up") == "still up");
  BOOST_TEST(!host.process().wait_exit(0ms).has_value());
}

BOOST_AUTO_TEST_CASE(malformed_batches_are_dropped_and_counted) {
  raw_client raw{host.address()};
  fake_identity me;
  BOOST_REQUIRE(raw.handshake(hello_bytes(me, transport::protocol_version)));
  // A record is two uint32 byte counts (header, payload), then both, word-padded.
  auto record = [](uint32_t header_bytes, uint32_t payload_bytes, size_t present) {
    std::string bytes(8 + present, '\0');
    std::memcpy(bytes.data(), &header_bytes, 4);
    std::memcpy(bytes.data() + 4, &payload_bytes, 4);
    return bytes;
  };
  struct malformed {
    const char* what;
    std::string data;
  };
  for (const auto& bad :
       {malformed{"shorter than a record's sizes", std::string(5, '\x01')},
        malformed{"a header longer than the batch", record(4096, 0, 16)},
        malformed{"a payload longer than the batch", record(8, 1u << 31, 8)},
        malformed{"an empty header", record(0, 8, 8)}}) {
    BOOST_TEST_CONTEXT(bad.what) {
      auto before = drops("malformed batch");
      raw.send(am_batch, "", bad.data);
      BOOST_TEST(wait_for_drop("malformed batch", before, &raw));
    }
  }
  BOOST_TEST(ask_echo("still up") == "still up");
  BOOST_TEST(!host.process().wait_exit(0ms).has_value());
}

BOOST_AUTO_TEST_CASE(a_peer_with_another_protocol_version_is_refused) {
  raw_client raw{host.address()};
  fake_identity me;
  auto before = drops("protocol version mismatch");
  raw.send(am_hello, hello_bytes(me, 999), "");
  BOOST_TEST(wait_for_drop("protocol version mismatch", before, &raw));
  // One clear log line names the refused version.
  BOOST_TEST(host.process().wait_for_text_on_stderr("speaks protocol version 999", 20s));
  BOOST_TEST(ask_echo("still up") == "still up");
}

BOOST_AUTO_TEST_CASE(malformed_and_oversized_frames_are_counted_and_dropped) {
  raw_client raw{host.address()};
  fake_identity me;
  BOOST_REQUIRE(raw.handshake(hello_bytes(me, transport::protocol_version)));
  std::mt19937 rng{7};
  std::string garbage(64, '\0');
  for (auto& c : garbage)
    c = static_cast<char>(rng());

  struct bad_frame {
    std::string header;
    std::string payload;
    const char* reason;
  };
  auto good_header = envelope_bytes(1, schema::PayloadKind::CAF_MESSAGE, 10);
  std::vector<bad_frame> frames{
    {garbage, "", "malformed Cap'n Proto message"},
    {good_header.substr(0, good_header.size() - 16), std::string(10, 'x'),
     "malformed Cap'n Proto message"},
    {std::string(5000, '\0'), "", "oversized header"},
    {envelope_bytes(1, schema::PayloadKind::CAF_MESSAGE, 100), std::string(10, 'x'),
     "payload size mismatch"},
    {envelope_bytes(1, schema::PayloadKind::TYPED, 12), std::string(12, 'x'),
     "typed payload is not whole words"},
    {envelope_bytes(1, schema::PayloadKind::OP, 12), std::string(12, 'x'),
     "op payload is not whole words"},
    {envelope_bytes(1, schema::PayloadKind::CAF_MESSAGE, 2 * max_message_bytes),
     std::string(2 * max_message_bytes, 'x'), "oversized payload"},
  };
  for (const auto& f : frames) {
    BOOST_TEST_CONTEXT("frame dropped for " << f.reason) {
      auto before = drops(f.reason);
      raw.send(am_envelope, f.header, f.payload);
      BOOST_TEST(wait_for_drop(f.reason, before, &raw));
    }
  }
  // CAF payloads: a well-formed message for an actor that does not exist, the same
  // message cut short, and one naming a type nobody registered.
  std::vector<char> buf;
  caf::binary_serializer sink{client.system(), buf};
  auto msg = caf::make_message(std::string{"hello?"});
  BOOST_REQUIRE(!sink(msg));
  std::string valid{buf.data(), buf.size()};
  auto before = drops("unknown destination actor");
  raw.send(am_envelope,
           envelope_bytes(999999, schema::PayloadKind::CAF_MESSAGE, valid.size()), valid);
  BOOST_TEST(wait_for_drop("unknown destination actor", before, &raw));
  auto truncated = valid.substr(0, valid.size() - 4);
  before = drops("malformed CAF message");
  raw.send(am_envelope,
           envelope_bytes(1, schema::PayloadKind::CAF_MESSAGE, truncated.size()),
           truncated);
  BOOST_TEST(wait_for_drop("malformed CAF message", before, &raw));
  auto unknown_type = valid;
  auto name_at = unknown_type.find("@str");
  BOOST_REQUIRE(name_at != std::string::npos);
  unknown_type.replace(name_at, 4, "@zzz");
  // The unknown type name is not a crash, only one more drop.
  before = drops("malformed CAF message");
  raw.send(am_envelope,
           envelope_bytes(1, schema::PayloadKind::CAF_MESSAGE, unknown_type.size()),
           unknown_type);
  wait_for_drop("malformed CAF message", before, &raw);
  BOOST_TEST(drops("malformed CAF message") == before + 1);

  // The node is still up and serves a good client.
  BOOST_TEST(ask_echo("after the storm") == "after the storm");
  BOOST_TEST(!host.process().wait_exit(0ms).has_value());
}

BOOST_AUTO_TEST_CASE(an_outgoing_message_over_the_limit_is_refused_with_an_error) {
  // The client node's own limit is the default (1 GiB); the host's is 1 MiB, so the
  // host refuses to receive. Here the client refuses to send beyond its own limit.
  node small{
    parse_node_config(R"({"transport": {"max_message_bytes": 4096}})", "s.json")};
  BOOST_REQUIRE(!small.start());
  auto echo = small.remote_provider(host.address(), "echo", 1, 20s);
  BOOST_REQUIRE(echo);
  caf::scoped_actor self{small.system()};
  std::string answer;
  self->request(*echo, 20s, std::string(8192, 'x'))
    .receive([&](const std::string&) { answer = "answered"; },
             [&](const caf::error& e) { answer = describe(e); });
  BOOST_TEST(answer.find("exceeds transport.max_message_bytes") != std::string::npos,
             answer);
}

BOOST_AUTO_TEST_SUITE_END()
