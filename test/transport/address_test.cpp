#define BOOST_TEST_MODULE transport_address
#include <boost/test/unit_test.hpp>

#include <caf/node_id.hpp>

#include "test/support/host_network.hpp"
#include "base/error.hpp"
#include "transport/address.hpp"
#include "transport/region_codec.hpp"
#include "transport/wire_address.hpp"

#include <capnp/message.h>

using namespace troupe::transport;

namespace {

/// The error's text, or "" (an expected holding a value has no error to read).
template <class T>
std::string why(const caf::expected<T>& x) {
  return x ? std::string{} : troupe::describe(x.error());
}

} // namespace

BOOST_AUTO_TEST_SUITE(node_address_parsing)

BOOST_AUTO_TEST_CASE(ipv4_uri_parses_into_its_parts) {
  auto addr = parse_node_address("ucx://127.0.0.1:7100");
  BOOST_REQUIRE_MESSAGE(addr, why(addr));
  BOOST_TEST(addr->protocol == "ucx");
  BOOST_TEST(addr->host == "127.0.0.1");
  BOOST_TEST(addr->port == 7100);
  BOOST_TEST(addr->to_uri() == "ucx://127.0.0.1:7100");
}

BOOST_AUTO_TEST_CASE(bracketed_ipv6_round_trips) {
  auto addr = parse_node_address("ucx://[::1]:0");
  BOOST_REQUIRE_MESSAGE(addr, why(addr));
  BOOST_TEST(addr->host == "::1");
  BOOST_TEST(addr->port == 0);
  BOOST_TEST(addr->to_uri() == "ucx://[::1]:0");
}

BOOST_AUTO_TEST_CASE(malformed_uris_say_what_is_wrong) {
  struct bad_case {
    const char* uri;
    const char* says;
  };
  for (auto c :
       {bad_case{"127.0.0.1:7100", "missing '://'"},
        bad_case{"tcp://127.0.0.1:7100", "unsupported protocol 'tcp'"},
        bad_case{"ucx://127.0.0.1", "missing ':PORT'"},
        bad_case{"ucx://:7100", "missing host"},
        bad_case{"ucx://host:70000", "out of range"},
        bad_case{"ucx://host:7x", "not a number"}, bad_case{"ucx://::1:7100", "brackets"},
        bad_case{"ucx://[::1:7100", "unterminated"}}) {
    BOOST_TEST_CONTEXT("uri " << c.uri) {
      auto parsed = parse_node_address(c.uri);
      BOOST_REQUIRE(!parsed);
      BOOST_TEST(troupe::has_code(parsed.error(), troupe::errc::invalid_config));
      auto error = troupe::describe(parsed.error());
      BOOST_TEST(error.find(c.says) != std::string::npos, "error was: " << error);
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(address_towards_a_peer)

BOOST_AUTO_TEST_CASE(loopback_leads_to_loopback) {
  auto v4 = local_address_towards("127.0.0.1");
  BOOST_REQUIRE_MESSAGE(v4, why(v4));
  BOOST_TEST(*v4 == "127.0.0.1");
  auto by_name = local_address_towards("localhost");
  BOOST_REQUIRE_MESSAGE(by_name, why(by_name));
  BOOST_TEST((*by_name == "127.0.0.1" || *by_name == "::1"), *by_name);
}

BOOST_AUTO_TEST_CASE(a_peer_on_the_network_is_reached_from_this_host_s_address) {
  // The route to one of this host's own network addresses leaves by that address: what
  // a child of a parent at that address listens on.
  auto own = troupe::test::non_loopback_ipv4();
  BOOST_REQUIRE_MESSAGE(!own.empty(), "this test needs an interface beside loopback");
  auto local = local_address_towards(own);
  BOOST_REQUIRE_MESSAGE(local, why(local));
  BOOST_TEST(*local == own);
}

BOOST_AUTO_TEST_CASE(an_unknown_host_is_an_error_naming_it) {
  auto local = local_address_towards("no-such-host.invalid");
  BOOST_REQUIRE(!local);
  BOOST_TEST(troupe::has_code(local.error(), troupe::errc::unreachable));
  auto error = troupe::describe(local.error());
  BOOST_TEST(error.find("cannot resolve \"no-such-host.invalid\"") != std::string::npos, error);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(wire_actor_address)

BOOST_AUTO_TEST_CASE(actor_address_survives_the_capnp_encoding) {
  caf::node_id::default_data::host_id_type host;
  for (size_t i = 0; i < host.size(); ++i)
    host[i] = static_cast<uint8_t>(i * 7 + 1);
  actor_address in{caf::make_node_id(4242, host), 99};
  auto bytes = encode_actor_address(in);
  actor_address out;
  BOOST_REQUIRE(decode_actor_address(bytes.data(), bytes.size(), out));
  BOOST_TEST(out.actor_id == 99u);
  BOOST_TEST((out.node == in.node));
  BOOST_TEST(caf::to_string(out.node) == caf::to_string(in.node));
}

BOOST_AUTO_TEST_CASE(malformed_bytes_are_rejected_without_throwing) {
  actor_address in{caf::node_id{}, 5};
  auto bytes = encode_actor_address(in);
  actor_address out;
  // Truncated, misaligned length, garbage, and empty input.
  BOOST_TEST(!decode_actor_address(bytes.data(), bytes.size() - 8, out));
  BOOST_TEST(!decode_actor_address(bytes.data(), bytes.size() - 3, out));
  std::string garbage(64, '\xff');
  BOOST_TEST(!decode_actor_address(garbage.data(), garbage.size(), out));
  BOOST_TEST(!decode_actor_address(nullptr, 0, out));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_CASE(region_descriptor_survives_the_capnp_encoding) {
  caf::node_id::default_data::host_id_type host;
  host.fill(3);
  troupe::region_descriptor in;
  in.node = caf::make_node_id(77, host);
  in.address = 0x7f0000001000;
  in.length = 1 << 20;
  in.rkey = {1, 2, 3, 250};
  capnp::MallocMessageBuilder message;
  troupe::write_region_descriptor(in,
                                  message.initRoot<troupe::schema::RegionDescriptor>());
  troupe::region_descriptor out;
  BOOST_REQUIRE(troupe::read_region_descriptor(
    message.getRoot<troupe::schema::RegionDescriptor>().asReader(), out));
  BOOST_TEST((out.node == in.node));
  BOOST_TEST(out.address == in.address);
  BOOST_TEST(out.length == in.length);
  BOOST_TEST((out.rkey == in.rkey));
}
