#define BOOST_TEST_MODULE transport_remote
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <future>
#include <csignal>

#include <caf/actor_system.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include "actors/echo/echo.hpp"
#include "base/error.hpp"
#include "runtime/config.hpp"
#include "runtime/node.hpp"
#include "test/support/pattern.hpp"
#include "test/support/module_host.hpp"
#include "test/support/process.hpp"
#include "test/support/timing.hpp"
#include "test/schema/test_protocol.capnp.h"
#include "transport/middleman.hpp"
#include "transport/rdma.hpp"
#include "transport/typed_message.hpp"

using namespace troupe;
using namespace troupe::test;
using namespace std::chrono_literals;

namespace {

const auto reply_timeout = 20s;

std::string host_config(const std::string& providers, uint16_t port = 0) {
  return module_host_config(providers, port);
}

/// A node in the test process: the client side of every test.
struct client_fixture {
  node client{parse_node_config(R"({"threads": 2})", "client.json")};

  client_fixture() {
    auto err = client.start();
    if (err)
      throw std::runtime_error(describe(err));
  }

  caf::actor lookup(const std::string& address, const std::string& type, uint16_t id) {
    auto found = client.remote_provider(address, type, id, reply_timeout);
    if (!found)
      BOOST_FAIL("lookup failed: " << describe(found.error()));
    return *found;
  }
};

} // namespace

BOOST_FIXTURE_TEST_SUITE(remote_actors, client_fixture)

BOOST_AUTO_TEST_CASE(request_response_carries_payloads_byte_for_byte) {
  host_process host{host_config(echo_provider)};
  auto echo = lookup(host.address(), "echo", 1);
  caf::scoped_actor self{client.system()};
  for (size_t size : {size_t{8}, size_t{64} << 10, size_t{8} << 20}) {
    auto sent = pattern_string(size, size);
    BOOST_TEST_CONTEXT("payload of " << size << " bytes") {
      self->request(echo, reply_timeout, sent)
        .receive([&](const std::string& got) { BOOST_TEST((got == sent)); },
                 [&](const caf::error& err) { BOOST_FAIL(describe(err)); });
    }
  }
  // Several CAF types in one message.
  self->request(echo, reply_timeout, int32_t{-7}, 2.5, std::string{"x"})
    .receive(
      [](int32_t i, double d, const std::string& s) {
        BOOST_TEST(i == -7);
        BOOST_TEST(d == 2.5);
        BOOST_TEST(s == "x");
      },
      [](const caf::error& err) { BOOST_FAIL(describe(err)); });
  auto stats = client.transport().stats();
  BOOST_TEST(stats.peers == 1u);
  BOOST_TEST(stats.messages_out >= 4u);
  BOOST_TEST(stats.bytes_in > (size_t{8} << 20));
  BOOST_TEST(stats.requests_awaiting == 0u); // every answer found its request
}

BOOST_AUTO_TEST_CASE(answered_requests_leave_nothing_behind_not_even_their_requester) {
  // The transport keeps each request to another node until its answer (to answer it
  // itself if the node dies), with a reference to the requester: an answered request
  // must take both out again, or every requester would live on with the peer.
  host_process host{host_config(echo_provider)};
  auto echo = lookup(host.address(), "echo", 1);
  caf::scoped_actor self{client.system()};
  constexpr int requests = 1000, in_flight = 64;
  auto requester = client.system().spawn(
    [echo, report = caf::actor{self}](caf::event_based_actor* req) -> caf::behavior {
      auto sent = std::make_shared<int>(0), answered = std::make_shared<int>(0);
      auto issue = std::make_shared<std::function<void()>>();
      *issue = [=] {
        ++*sent;
        req->request(echo, caf::infinite, std::string{"x"})
          .then(
            [=](const std::string&) {
              if (++*answered == requests) {
                *issue = nullptr;
                req->send(report, caf::ok_atom::value);
                req->quit();
              } else if (*sent < requests) {
                (*issue)();
              }
            },
            [=](caf::error& err) { req->send(report, err); });
      };
      for (int i = 0; i < in_flight; ++i)
        (*issue)();
      return {[](int) {}};
    });
  auto weak = caf::actor_cast<caf::weak_actor_ptr>(requester);
  requester = nullptr;
  self->receive([](caf::ok_atom) {}, [](caf::error& err) { BOOST_FAIL(describe(err)); },
                caf::after(reply_timeout) >> [] { BOOST_FAIL("requests not answered"); });
  BOOST_TEST(client.transport().stats().requests_awaiting == 0u);
  // The requester quit: nothing holds it any more.
  BOOST_TEST(eventually(reply_timeout, [&] { return weak.lock() == nullptr; }));
}

BOOST_AUTO_TEST_CASE(typed_capnp_payloads_cross_nodes_and_are_read_in_place) {
  using namespace troupe::test_protocol;
  host_process host{host_config(R"({"type": "pointer", "name": "p", "provider_id": 3})")};
  auto pointer = lookup(host.address(), "pointer", 3);
  caf::scoped_actor self{client.system()};
  // Small (eager) and large (rendezvous, 8 MiB of samples) typed messages.
  for (size_t count : {size_t{3}, size_t{1} << 20}) {
    capnp::MallocMessageBuilder builder;
    auto point = builder.initRoot<Point>();
    point.setX(3);
    point.setY(-4);
    point.setLabel("origin");
    auto samples = point.initSamples(static_cast<unsigned>(count));
    double expected_sum = 0;
    for (unsigned i = 0; i < count; ++i) {
      samples.set(i, i * 0.5);
      expected_sum += i * 0.5;
    }
    auto before_stats = client.transport().stats();
    auto before = before_stats.bytes_out;
    BOOST_TEST_CONTEXT(count << " samples") {
      self->request(pointer, reply_timeout, typed_message::of<Point>(builder))
        .receive(
          [&](const typed_message& reply) {
            BOOST_REQUIRE(reply.holds<Summary>());
            typed_reader<Summary> r{reply};
            auto summary = r.root();
            BOOST_TEST(summary.getSwappedX() == -4);
            BOOST_TEST(summary.getSwappedY() == 3);
            BOOST_TEST(std::string{summary.getLabel().cStr()} == "ORIGIN");
            BOOST_TEST(summary.getSampleCount() == count);
            BOOST_TEST(summary.getSampleSum() == expected_sum);
          },
          [&](const caf::error& err) { BOOST_FAIL(describe(err)); });
      // Sent as a typed payload: its words plus a small header, no CAF framing; the
      // per-kind counters say neither direction fell back to CAF serialization.
      auto after = client.transport().stats();
      auto sent = after.bytes_out - before;
      BOOST_TEST(sent < count * 8 + 1024);
      BOOST_TEST(after.typed_out - before_stats.typed_out == 1u);
      BOOST_TEST(after.typed_in - before_stats.typed_in == 1u);
      BOOST_TEST(after.caf_out == before_stats.caf_out);
      BOOST_TEST(after.caf_in == before_stats.caf_in);
    }
  }
}

using region_alloc_atom = caf::atom_constant<caf::atom("rgnalloc")>;
using region_read_atom = caf::atom_constant<caf::atom("rgnread")>;

BOOST_AUTO_TEST_CASE(rdma_get_and_put_move_regions_byte_for_byte) {
  host_process host{host_config(R"({"type": "region", "name": "r", "provider_id": 5})")};
  auto remote = lookup(host.address(), "region", 5);
  caf::scoped_actor self{client.system()};
  auto local = memory_region::allocate(client.system(), size_t{64} << 20);
  BOOST_REQUIRE(local);
  auto wait_done = [&](uint64_t tag) {
    caf::error result = make_error(errc::timeout, "no rdma_done");
    self->receive(
      [&](const rdma_done& done) {
        BOOST_TEST(done.tag == tag);
        result = done.error;
      },
      caf::after(reply_timeout) >> [] {});
    return result;
  };
  uint32_t seed = 1;
  for (uint64_t size : {uint64_t{1} << 20, uint64_t{64} << 20}) {
    BOOST_TEST_CONTEXT(size << " bytes") {
      region_descriptor desc;
      self->request(remote, reply_timeout, region_alloc_atom::value, size, seed)
        .receive([&](const region_descriptor& d) { desc = d; },
                 [](const caf::error& err) { BOOST_FAIL(describe(err)); });
      BOOST_TEST(desc.length == size);
      BOOST_TEST((desc.node == remote.node()));
      // get: the remote pattern lands in the local region.
      rdma_get(client.system(), desc, 0, *local, 0, size, self, 10 + seed);
      auto err = wait_done(10 + seed);
      BOOST_REQUIRE_MESSAGE(!err, describe(err));
      auto wrong = pattern_mismatch((*local)->data(), size, seed);
      BOOST_TEST(!wrong, "get: " << wrong.value_or(""));
      // put: a new pattern goes back; the remote region, read back with plain
      // messages (not RDMA), holds all of it.
      fill_pattern((*local)->data(), size, seed + 100);
      rdma_put(client.system(), desc, 0, *local, 0, size, self, 20 + seed);
      err = wait_done(20 + seed);
      BOOST_REQUIRE_MESSAGE(!err, describe(err));
      constexpr uint64_t chunk = uint64_t{8} << 20;
      for (uint64_t at = 0; at < size && !wrong; at += chunk) {
        auto length = std::min(chunk, size - at);
        self->request(remote, reply_timeout, region_read_atom::value, at, length)
          .receive(
            [&](const std::string& got) {
              BOOST_REQUIRE_EQUAL(got.size(), length);
              wrong = pattern_mismatch(got.data(), length, seed + 100, at);
            },
            [](const caf::error& e) { BOOST_FAIL(describe(e)); });
      }
      BOOST_TEST(!wrong, "put: " << wrong.value_or(""));
      // A range outside the remote region is refused with an error, not sent.
      rdma_get(client.system(), desc, 1, *local, 0, size, self, 30);
      err = wait_done(30);
      BOOST_TEST(describe(err).find("outside the remote region") != std::string::npos,
                 describe(err));
    }
    ++seed;
  }
}

BOOST_AUTO_TEST_CASE(providers_are_found_by_name_and_missing_keys_are_errors) {
  host_process host{host_config(echo_provider)};
  auto by_name = client.transport().remote_actor(host.address(), "echo", reply_timeout);
  if (!by_name)
    BOOST_FAIL(describe(by_name.error()));
  BOOST_TEST((*by_name == lookup(host.address(), "echo", 1)));
  auto missing = client.remote_provider(host.address(), "echo", 2, reply_timeout);
  BOOST_REQUIRE(!missing);
  BOOST_TEST(describe(missing.error()).find("troupe.not_found") == 0u,
             describe(missing.error()));
  BOOST_TEST(describe(missing.error()).find("provider:echo:2") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(an_unreachable_address_fails_fast_with_a_clear_error) {
  // A port with no listener, held so that no other test's node takes it meanwhile.
  reserved_port nobody;
  auto dead_address = nobody.address();
  auto start = std::chrono::steady_clock::now();
  auto r = client.remote_provider(dead_address, "echo", 1, 10s);
  auto took = std::chrono::steady_clock::now() - start;
  BOOST_REQUIRE(!r);
  auto text = describe(r.error());
  BOOST_TEST(text.find("troupe.unreachable") == 0u, text);
  BOOST_TEST(text.find(dead_address) != std::string::npos, text);
  BOOST_TEST((took < 5s));
  auto bad = client.transport().remote_actor("ucx://127.0.0.1", "echo", 1s);
  BOOST_TEST(describe(bad.error()).find("missing ':PORT'") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_lookup_waiting_on_a_node_that_dies_fails_at_once) {
  host_process host{host_config(echo_provider)};
  host_process other{host_config(echo_provider)};
  BOOST_REQUIRE(client.remote_node(host.address(), reply_timeout)); // connected
  host.stop_answering();
  auto answer = std::make_shared<std::promise<caf::expected<caf::actor>>>();
  auto lookup = answer->get_future();
  client.transport().find_remote_actor(
    host.address(), transport::provider_key("echo", 1),
    [answer](caf::expected<caf::actor> found) { answer->set_value(std::move(found)); });
  // The transport's thread takes work in the order it is posted: once a later lookup
  // (of another node) is answered, this one has been sent to the silent node.
  BOOST_REQUIRE(client.remote_provider(other.address(), "echo", 1, reply_timeout));
  BOOST_REQUIRE((lookup.wait_for(0s) == std::future_status::timeout)); // waiting
  auto killed_at = std::chrono::steady_clock::now();
  host.kill_hard();
  // A lookup has no timeout of its own: only the node's death can end it.
  BOOST_REQUIRE((lookup.wait_for(reply_timeout) == std::future_status::ready));
  auto result = lookup.get();
  auto took = std::chrono::steady_clock::now() - killed_at;
  BOOST_REQUIRE(!result);
  BOOST_TEST(describe(result.error()).find("troupe.unreachable") == 0u,
             describe(result.error()));
  BOOST_TEST((took < 10s));
}

BOOST_AUTO_TEST_CASE(a_request_passed_on_by_a_delegation_is_refused_not_misrouted) {
  // This process asks node a's delegator to pass a request on to node b's echo. b
  // does not know this process's node as the requester a would name, so a refuses.
  host_process a{host_config(R"({"type": "delegator", "name": "d", "provider_id": 6})")};
  host_process b{host_config(echo_provider)};
  auto delegator = lookup(a.address(), "delegator", 6);
  auto echo = lookup(b.address(), "echo", 1);
  caf::scoped_actor self{client.system()};
  auto answer_to = [&](auto... xs) {
    std::string answer;
    self->request(delegator, reply_timeout, xs...)
      .receive([&](const std::string& s) { answer = s; },
               [&](const caf::error& e) { answer = "error: " + describe(e); });
    return answer;
  };
  // Relayed by a itself: a reaches b (and is connected to it from now on).
  BOOST_TEST(answer_to(caf::get_atom::value, b.address(), std::string{"relayed"})
             == "relayed");
  auto refused = answer_to(echo, std::string{"delegated"});
  BOOST_TEST(refused.find("error: troupe.unreachable") == 0u, refused);
  BOOST_TEST(refused.find("routing through a third node is not supported")
               != std::string::npos,
             refused);
  // b never got it: its echo echoed the relayed request only.
  uint64_t echoed = 0;
  self->request(echo, reply_timeout, actors::echo_count_atom::value)
    .receive([&](uint64_t n) { echoed = n; },
             [](const caf::error& e) { BOOST_FAIL(describe(e)); });
  BOOST_TEST(echoed == 1u);
}

BOOST_AUTO_TEST_CASE(a_large_message_is_not_overtaken_by_a_later_small_one) {
  host_process host{host_config(echo_provider)};
  auto echo = lookup(host.address(), "echo", 1);
  caf::scoped_actor self{client.system()};
  auto big = pattern_string(size_t{8} << 20, 1);
  // Asynchronous sends: the echo answers each to the sender, in the order it got them.
  for (int round = 0; round < 3; ++round) {
    self->send(echo, big);
    self->send(echo, std::string{"small"});
    std::vector<size_t> sizes;
    for (int i = 0; i < 2; ++i)
      self->receive([&](const std::string& s) { sizes.push_back(s.size()); },
                    caf::after(reply_timeout) >> [] { BOOST_FAIL("no echo"); });
    BOOST_REQUIRE(sizes.size() == 2u);
    BOOST_TEST(sizes[0] == big.size());
    BOOST_TEST(sizes[1] == 5u);
  }
}

BOOST_AUTO_TEST_CASE(monitoring_a_remote_actor_reports_its_exit) {
  host_process host{host_config(echo_provider)};
  auto echo = lookup(host.address(), "echo", 1);
  caf::scoped_actor self{client.system()};
  self->monitor(echo);
  self->send_exit(echo, caf::exit_reason::user_shutdown);
  bool down = false;
  self->receive(
    [&](const caf::down_msg& msg) {
      down = true;
      BOOST_TEST((msg.source == echo.address()));
      BOOST_TEST((msg.reason == caf::exit_reason::user_shutdown), describe(msg.reason));
    },
    caf::after(reply_timeout) >> [] {});
  BOOST_TEST(down);
}

BOOST_AUTO_TEST_CASE(links_to_remote_actors_work_in_both_directions) {
  host_process host{host_config(echo_provider + R"(, {"type": "echo", "name": "echo2",
                                                      "provider_id": 2})")};
  caf::scoped_actor self{client.system()};
  // A local actor linked to a remote one, reporting the exit message it traps.
  auto make_linked = [&](const caf::actor& remote) {
    return client.system().spawn(
      [remote, report = caf::actor{self}](caf::event_based_actor* a) -> caf::behavior {
        a->set_exit_handler([=](const caf::exit_msg& msg) {
          a->send(report, std::string{"linked exit"}, msg.reason);
          a->quit(msg.reason);
        });
        a->link_to(remote);
        return {[](int x) { return x; }};
      });
  };
  // Remote exits -> the local linked actor gets exit_msg with the remote's reason.
  auto echo = lookup(host.address(), "echo", 1);
  auto local = make_linked(echo);
  // Its answer means it linked: the link's down-notice request is on its way before
  // the exit below (a proxy asks for it when first linked or monitored).
  self->request(local, reply_timeout, 0)
    .receive([](int) {}, [](const caf::error& err) { BOOST_FAIL(describe(err)); });
  self->send_exit(echo, caf::exit_reason::user_shutdown);
  bool got = false;
  self->receive(
    [&](const std::string& what, const caf::error& reason) {
      got = what == "linked exit";
      BOOST_TEST((reason == caf::exit_reason::user_shutdown), describe(reason));
    },
    caf::after(reply_timeout) >> [] {});
  BOOST_TEST(got);
  // Local exits -> the remote linked actor gets exit_msg and (not trapping) exits.
  auto echo2 = lookup(host.address(), "echo", 2);
  self->monitor(echo2);
  auto other = client.system().spawn([echo2](caf::event_based_actor* a) -> caf::behavior {
    a->link_to(echo2);
    return {[a](int) { a->quit(caf::exit_reason::user_shutdown); }};
  });
  self->send(other, 1);
  bool remote_down = false;
  self->receive(
    [&](const caf::down_msg& msg) {
      remote_down = msg.source == echo2.address();
      BOOST_TEST((msg.reason == caf::exit_reason::user_shutdown), describe(msg.reason));
    },
    caf::after(reply_timeout) >> [] {});
  BOOST_TEST(remote_down);
}

BOOST_AUTO_TEST_CASE(
  a_killed_node_fails_requests_and_fires_monitors_in_the_death_notice_bound) {
  host_process host{host_config(blackhole_provider)};
  auto hole = lookup(host.address(), "blackhole", 9);
  caf::scoped_actor self{client.system()};
  self->monitor(hole);
  constexpr int in_flight = 3;
  auto requester = client.system().spawn(
    [hole, report = caf::actor{self}](caf::event_based_actor* req) -> caf::behavior {
      for (int i = 0; i < in_flight; ++i)
        req->request(hole, 120s, std::string{"wait"})
          .then([=](const std::string&) { req->send(report, std::string{"answered"}); },
                [=](caf::error& err) { req->send(report, err); });
      return {[](int) {}};
    });
  // A local actor linked to the remote one gets its exit message when the node dies.
  auto linked = client.system().spawn(
    [hole, report = caf::actor{self}](caf::event_based_actor* a) -> caf::behavior {
      a->set_exit_handler([=](const caf::exit_msg& msg) {
        a->send(report, std::string{"linked exit"}, msg.reason);
        a->quit(msg.reason);
      });
      a->link_to(hole);
      return {[](int) {}};
    });
  // An empty (void) response crosses the wire as one.
  bool void_reply = false;
  self->request(hole, reply_timeout, caf::ok_atom::value)
    .receive([&] { void_reply = true; },
             [](const caf::error& err) { BOOST_FAIL(describe(err)); });
  BOOST_TEST(void_reply);
  // Wait until the blackhole holds every request, so they are really in flight.
  auto deadline = std::chrono::steady_clock::now() + reply_timeout;
  int held = 0;
  while (held < in_flight && std::chrono::steady_clock::now() < deadline)
    self->request(hole, reply_timeout, 0)
      .receive([&](int n) { held = n; }, [](const caf::error&) {});
  BOOST_REQUIRE_EQUAL(held, in_flight);

  auto killed_at = std::chrono::steady_clock::now();
  host.kill_hard();
  int errors = 0;
  bool down = false;
  bool link_fired = false;
  while (errors < in_flight || !down || !link_fired) {
    bool got = false;
    self->receive(
      [&](const caf::error& err) {
        got = true;
        ++errors;
        BOOST_TEST(describe(err).find("troupe.unreachable") == 0u, describe(err));
      },
      [&](const caf::down_msg& msg) {
        got = true;
        down = true;
        BOOST_TEST((msg.source == hole.address()));
      },
      [&](const std::string& what, const caf::error&) {
        got = true;
        link_fired = what == "linked exit";
      },
      [&](const std::string& s) { BOOST_FAIL("a held request was answered: " << s); },
      caf::after(10s) >> [] {});
    if (!got)
      break;
  }
  auto took = std::chrono::steady_clock::now() - killed_at;
  BOOST_TEST(errors == in_flight);
  BOOST_TEST(down);
  BOOST_TEST(link_fired);
  BOOST_TEST(client.transport().stats().requests_awaiting == 0u); // answered by us
  BOOST_TEST((took < death_notice_bound),
             "failure noticed after " << ms_of(took) << " ms");
  caf::anon_send_exit(requester, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_CASE(survivors_keep_working_and_a_restarted_node_is_a_new_node) {
  reserved_port port_a; // a's port stays a's while it is down
  auto a = std::make_unique<host_process>(host_config(echo_provider, port_a.number()));
  host_process b{host_config(echo_provider)};
  auto echo_a = lookup(a->address(), "echo", 1);
  auto echo_b = lookup(b.address(), "echo", 1);
  caf::scoped_actor self{client.system()};
  auto ask = [&](const caf::actor& who, const std::string& text) {
    std::string answer;
    self->request(who, reply_timeout, text)
      .receive([&](const std::string& s) { answer = s; },
               [&](const caf::error& e) { answer = "error: " + describe(e); });
    return answer;
  };
  BOOST_TEST(ask(echo_a, "to a") == "to a");
  BOOST_TEST(ask(echo_b, "to b") == "to b");
  auto address_a = a->address();
  auto old_node = echo_a.node();
  a->kill_hard();
  BOOST_TEST(ask(echo_b, "b still there") == "b still there");
  // A request to the dead node's proxy fails instead of hanging.
  BOOST_TEST(ask(echo_a, "to dead a").find("error: ") == 0u);
  // The same address again: a new process, so a new node.
  a = std::make_unique<host_process>(host_config(echo_provider, port_a.number()));
  BOOST_REQUIRE_EQUAL(a->address(), address_a);
  auto echo_a2 = lookup(a->address(), "echo", 1);
  BOOST_TEST((echo_a2.node() != old_node));
  BOOST_TEST(ask(echo_a2, "to new a") == "to new a");
}

BOOST_AUTO_TEST_SUITE_END()
