#define BOOST_TEST_MODULE ops
#include <boost/test/unit_test.hpp>

// The op framework across real actorhost processes: the built-in ping op on one and
// three targets, 10,000 concurrent pings each completed once, an unknown op id at the
// target, a failing target, the deadline, a node killed in the middle of an op, and
// op-id collisions at registration. Targets run in actorhost processes that load the
// test module (test.silent, test.fail); origins run in this process's node.

#include <atomic>
#include <csignal>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/builtin.hpp"
#include "actors/ops/ping.hpp"
#include "actors/ops/rdma_ping.hpp"
#include "base/error.hpp"
#include "runtime/config.hpp"
#include "runtime/node.hpp"
#include "runtime/node_service.hpp"
#include "runtime/ops.hpp"
#include "test/modules/test_ops.hpp"
#include "test/support/process.hpp"

using namespace troupe;
using namespace troupe::test;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

std::string target_config() {
  return R"({"transport": {"port": 0}, "threads": 2, "libraries": [")"
         + test_library("troupe_test_module.so") + R"("]})";
}

struct ops_fixture {
  node client{parse_node_config(R"({"threads": 2})", "client.json")};

  ops_fixture() {
    BOOST_REQUIRE(!actors::register_builtin_ops(client.ops().registry()));
    auto& reg = client.ops().registry();
    BOOST_REQUIRE(!reg.add<silent_op>());
    BOOST_REQUIRE(!reg.add<fail_op>());
    BOOST_REQUIRE(!reg.add<nowhere_op>());
    if (auto err = client.start())
      throw std::runtime_error(describe(err));
  }

  /// What a node's node service reports on `topic`.
  nlohmann::json topic_of(const std::string& address, const std::string& topic) {
    auto service = client.remote_node(address, 10s);
    if (!service)
      BOOST_FAIL("no node service at " << address << ": " << describe(service.error()));
    caf::scoped_actor self{client.system()};
    nlohmann::json result;
    self->request(*service, 10s, caf::get_atom::value, topic)
      .receive([&](const std::string& text) { result = nlohmann::json::parse(text); },
               [&](const caf::error& err) { BOOST_FAIL(describe(err)); });
    return result;
  }

  nlohmann::json ops_of(const std::string& address) { return topic_of(address, "ops"); }

  size_t inflight_at(const std::string& address) {
    return ops_of(address)["inflight"].size();
  }
};

struct unregistered_op {
  static constexpr const char* name = "test.unregistered";
  using origin = holding_origin;
  using target = holding_target;
};

/// Milliseconds, for messages.
long long ms(clock_type::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

std::string text_of(const ops::op_result& r) {
  return r ? std::string{"(a result)"} : describe(r.error());
}

} // namespace

BOOST_AUTO_TEST_CASE(op_ids_are_name_hashes_and_collisions_are_refused) {
  static_assert(ops::op_id_of("ping") != 0);
  static_assert(ops::op_id_of("ping") != ops::op_id_of("pong"));
  // A real FNV-1a collision: two different names, one id.
  static_assert(ops::op_id_of("op-39124") == ops::op_id_of("op-734300"));
  ops::op_registry reg;
  auto none = [] { return std::unique_ptr<ops::target_side>{}; };
  BOOST_REQUIRE(!reg.add("op-39124", none));
  BOOST_CHECK(!reg.add("op-39124", none)); // the same name again: no change
  auto err = reg.add("op-734300", none);
  BOOST_REQUIRE(err);
  BOOST_TEST(has_code(err, errc::refused));
  BOOST_TEST(describe(err).find("\"op-734300\"") != std::string::npos, describe(err));
  BOOST_TEST(describe(err).find("\"op-39124\"") != std::string::npos, describe(err));
  BOOST_TEST(reg.find(ops::op_id_of("op-39124"))->name == "op-39124");
  BOOST_TEST(reg.all().size() == 1u);
}

BOOST_FIXTURE_TEST_SUITE(ops_across_processes, ops_fixture)

BOOST_AUTO_TEST_CASE(ping_returns_the_payload_from_one_and_from_three_nodes) {
  host_process a{target_config()}, b{target_config()}, c{target_config()};
  auto one = ops::launch<actors::ping_op>(client, {a.address()}, std::string{"hello"});
  auto r = one.get_for(20s);
  BOOST_REQUIRE(r);
  BOOST_TEST(one.ready());
  BOOST_REQUIRE_MESSAGE(*r, text_of(*r));
  BOOST_TEST(r->value().get_as<std::string>(0) == "hello");
  std::string big(100000, 'x');
  auto three =
    ops::launch<actors::ping_op>(client, {a.address(), b.address(), c.address()}, big);
  r = three.get_for(20s);
  BOOST_REQUIRE(r);
  BOOST_REQUIRE_MESSAGE(*r, text_of(*r));
  BOOST_TEST(r->value().get_as<std::string>(0) == big);
  // Both sides are gone once the op is done.
  BOOST_CHECK(eventually(5s, [&] {
    return inflight_at(a.address()) == 0 && client.ops().inflight().empty();
  }));
  auto counters = ops_of(a.address())["counters"];
  BOOST_TEST(counters["targets_started"].get<int>() == 2);
}

BOOST_AUTO_TEST_CASE(rdma_ping_moves_1_MiB_and_64_MiB_both_ways_byte_for_byte) {
  host_process a{target_config()};
  for (uint64_t bytes : {uint64_t{1} << 20, uint64_t{64} << 20}) {
    auto r = ops::launch<actors::rdma_ping_op>(client, {a.address()}, bytes).get_for(60s);
    BOOST_REQUIRE(r);
    BOOST_REQUIRE_MESSAGE(*r, text_of(*r)); // the origin checked every byte
    BOOST_TEST(r->value().get_as<uint64_t>(0) == bytes);
  }
  BOOST_CHECK(eventually(5s, [&] {
    return inflight_at(a.address()) == 0 && client.ops().inflight().empty();
  }));
  // Each op exposes a fresh region; the target's cache of unpacked remote keys for
  // this one connection stays bounded however many it has reached.
  for (int i = 0; i < 150; ++i) {
    auto r = ops::launch<actors::rdma_ping_op>(client, {a.address()}, uint64_t{4096})
               .get_for(20s);
    BOOST_REQUIRE(r);
    BOOST_REQUIRE_MESSAGE(*r, text_of(*r));
  }
  auto keys = topic_of(a.address(), "stats")["remote_keys"].get<uint64_t>();
  BOOST_TEST(keys > 0u);
  BOOST_TEST(keys <= 64u);
}

BOOST_AUTO_TEST_CASE(ten_thousand_concurrent_pings_complete_each_exactly_once) {
  host_process a{target_config()}, b{target_config()};
  constexpr size_t n = 10000;
  std::vector<std::atomic<int>> completions(n);
  std::atomic<size_t> failures{0};
  std::atomic<size_t> done{0};
  std::vector<ops::op_handle> handles;
  handles.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    auto target = i % 2 == 0 ? a.address() : b.address();
    auto payload = std::to_string(i);
    handles.push_back(
      ops::launch_with<actors::ping_op>(client, {60000ms}, {target}, payload));
    handles.back().then([&, i, payload](const ops::op_result& r) {
      if (!r || r->get_as<std::string>(0) != payload)
        ++failures;
      ++completions[i];
      ++done;
    });
  }
  BOOST_REQUIRE(eventually(120s, [&] { return done.load() == n; }));
  BOOST_TEST(failures.load() == 0u);
  for (size_t i = 0; i < n; ++i)
    BOOST_REQUIRE(completions[i].load() == 1);
  BOOST_CHECK(eventually(10s, [&] {
    return client.ops().inflight().empty() && inflight_at(a.address()) == 0
           && inflight_at(b.address()) == 0;
  }));
  auto counters = client.ops().counters();
  BOOST_TEST(counters["completed"] >= n);
}

BOOST_AUTO_TEST_CASE(an_unknown_op_id_at_the_target_is_an_error_for_the_caller) {
  host_process a{target_config()};
  auto h = ops::launch<nowhere_op>(client, {a.address()});
  auto r = h.get_for(10s);
  BOOST_REQUIRE(r);
  BOOST_REQUIRE(!*r);
  BOOST_TEST(has_code(r->error(), errc::not_found), describe(r->error()));
  std::ostringstream id;
  id << "unknown op id 0x" << std::hex << ops::op_id_of("test.nowhere");
  BOOST_TEST(describe(r->error()).find(id.str()) != std::string::npos,
             describe(r->error()));
  BOOST_TEST(describe(r->error()).find("test.silent") != std::string::npos,
             describe(r->error())); // it names what the target does know
  BOOST_TEST(ops_of(a.address())["counters"]["unknown_op_id"].get<int>() == 1);
}

BOOST_AUTO_TEST_CASE(a_target_that_fails_fails_the_op_with_its_error) {
  host_process a{target_config()};
  auto r = ops::launch<fail_op>(client, {a.address()}).get_for(10s);
  BOOST_REQUIRE(r);
  BOOST_REQUIRE(!*r);
  BOOST_TEST(has_code(r->error(), errc::refused), describe(r->error()));
  BOOST_TEST(describe(r->error()).find("told to fail") != std::string::npos,
             describe(r->error()));
  BOOST_CHECK(eventually(5s, [&] { return inflight_at(a.address()) == 0; }));
}

BOOST_AUTO_TEST_CASE(the_deadline_fails_the_op_and_ends_every_side) {
  host_process a{target_config()}, b{target_config()};
  auto start = clock_type::now();
  auto h = ops::launch_with<silent_op>(client, {300ms}, {a.address(), b.address()});
  // While it runs, both targets show it, holding.
  BOOST_CHECK(eventually(5s, [&] {
    auto ops = ops_of(a.address())["inflight"];
    return ops.size() == 1 && ops[0]["name"] == "test.silent"
           && ops[0]["side"] == "target" && ops[0]["state"] == "holding";
  }));
  auto r = h.get_for(10s);
  auto took = clock_type::now() - start;
  BOOST_REQUIRE(r);
  BOOST_REQUIRE(!*r);
  BOOST_TEST(has_code(r->error(), errc::timeout), describe(r->error()));
  BOOST_TEST(ms(took) >= 300);
  BOOST_TEST(ms(took) < 5000);
  BOOST_CHECK(eventually(5s, [&] {
    return client.ops().inflight().empty() && inflight_at(a.address()) == 0
           && inflight_at(b.address()) == 0;
  }));
}

BOOST_AUTO_TEST_CASE(a_node_killed_in_the_middle_fails_the_op_within_a_second) {
  host_process a{target_config()}, b{target_config()};
  auto h = ops::launch_with<silent_op>(client, {60000ms}, {a.address(), b.address()});
  // Both targets answered: the op is in the middle.
  BOOST_REQUIRE(eventually(10s, [&] {
    auto mine = client.ops().inflight();
    return mine.size() == 1 && mine[0].state == "answered by 2";
  }));
  // actorsh shows the op in flight on a target.
  auto shown = run_to_end({bin_path("actorsh"), "-a", a.address(), "-c", "ops"}, 30s);
  BOOST_TEST(shown.exit_code == 0, shown.err);
  BOOST_TEST(shown.out.find("registered: ") != std::string::npos, shown.out);
  BOOST_TEST(shown.out.find("test.silent") != std::string::npos, shown.out);
  BOOST_TEST(shown.out.find("target") != std::string::npos, shown.out);
  BOOST_TEST(shown.out.find("holding") != std::string::npos, shown.out);
  auto killed = clock_type::now();
  b.kill_hard();
  auto r = h.get_for(10s);
  auto took = clock_type::now() - killed;
  BOOST_REQUIRE(r);
  BOOST_REQUIRE(!*r);
  BOOST_TEST(has_code(r->error(), errc::unreachable), describe(r->error()));
  BOOST_TEST(describe(r->error()).find(b.address()) != std::string::npos,
             describe(r->error()));
  BOOST_TEST(ms(took) < 1500);
  // The survivor's target side is gone too.
  BOOST_CHECK(eventually(5s, [&] { return inflight_at(a.address()) == 0; }));
  BOOST_CHECK(client.ops().inflight().empty());
}

BOOST_AUTO_TEST_CASE(launching_an_unregistered_op_or_with_no_targets_fails_at_once) {
  auto r = ops::launch<unregistered_op>(client, {"ucx://127.0.0.1:1"}).get_for(1s);
  BOOST_REQUIRE(r);
  BOOST_TEST(has_code(r->error(), errc::not_found), describe(r->error()));
  r = ops::launch<actors::ping_op>(client, {}, std::string{"x"}).get_for(1s);
  BOOST_REQUIRE(r);
  BOOST_TEST(has_code(r->error(), errc::refused), describe(r->error()));
  // An address nobody listens on: unreachable, not a hang.
  auto port = free_port();
  r = ops::launch<actors::ping_op>(client, {"ucx://127.0.0.1:" + std::to_string(port)},
                                   std::string{"x"})
        .get_for(20s);
  BOOST_REQUIRE(r);
  BOOST_REQUIRE(!*r);
  BOOST_TEST(has_code(r->error(), errc::unreachable), describe(r->error()));
}

BOOST_AUTO_TEST_SUITE_END()
