#define BOOST_TEST_MODULE ops
#include <boost/test/unit_test.hpp>

// The op framework across real actorhost processes: the built-in ops (ping on one and
// three targets, rdma-ping and its data, scatter and gather, the DHT over a four-node
// group), 10,000 concurrent pings each completed once, an unknown op id at the target,
// a failing target, a target that puts data back at a wrong offset, the deadline, a
// node killed in the middle of an op and of a scatter, and op-id collisions at
// registration. Targets run in actorhost processes that load the test module
// (test.silent, test.fail, test.misplace); origins run in this process's node.

#include <atomic>
#include <csignal>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/builtin.hpp"
#include "actors/group/view.hpp"
#include "actors/ops/dht.hpp"
#include "actors/ops/ping.hpp"
#include "actors/ops/rdma_ping.hpp"
#include "actors/ops/scatter_gather.hpp"
#include "base/error.hpp"
#include "runtime/config.hpp"
#include "runtime/node.hpp"
#include "runtime/node_service.hpp"
#include "runtime/ops.hpp"
#include "test/modules/test_ops.hpp"
#include "transport/middleman.hpp"
#include "test/support/pattern.hpp"
#include "test/support/process.hpp"
#include "test/support/timing.hpp"

using namespace troupe;
using namespace troupe::test;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

std::string target_config() {
  return R"({"transport": {"port": 0, )" + keepalive_setting()
         + R"(}, "threads": 2, "libraries": [")" + test_library("troupe_test_module.so")
         + R"("]})";
}

/// rdma-ping's origin against the test module's misplacing target.
struct misplaced_rdma_ping_op {
  static constexpr const char* name = misplace_op::name;
  using origin = actors::rdma_ping_origin;
  using target = misplacing_target;
};

struct ops_fixture {
  node client{parse_node_config(R"({"threads": 2})", "client.json")};

  ops_fixture() {
    BOOST_REQUIRE(!actors::register_builtin_ops(client.ops().registry()));
    auto& reg = client.ops().registry();
    BOOST_REQUIRE(!reg.add<silent_op>());
    BOOST_REQUIRE(!reg.add<fail_op>());
    BOOST_REQUIRE(!reg.add<inline_wait_op>());
    BOOST_REQUIRE(!reg.add<inline_timer_op>());
    BOOST_REQUIRE(!reg.add<nowhere_op>());
    BOOST_REQUIRE(!reg.add<misplaced_rdma_ping_op>());
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

  /// Kills `victim` in the middle of `h`: the caller hears that it is unreachable, by
  /// name, within the death notice bound.
  void kill_and_expect_unreachable(host_process& victim, const ops::op_handle& h) {
    auto killed = std::chrono::steady_clock::now();
    victim.kill_hard();
    auto r = h.get_for(10s);
    auto took = std::chrono::steady_clock::now() - killed;
    BOOST_REQUIRE(r);
    BOOST_REQUIRE(!*r);
    BOOST_TEST(has_code(r->error(), errc::unreachable), describe(r->error()));
    BOOST_TEST(describe(r->error()).find(victim.address()) != std::string::npos,
               describe(r->error()));
    BOOST_TEST((took < death_notice_bound), ms_of(took) << " ms");
  }
};

/// ping's origin that notes the thread each of its steps ran on.
class thread_noting_origin : public actors::ping_origin {
public:
  explicit thread_noting_origin(std::shared_ptr<std::vector<std::thread::id>> seen)
    : actors::ping_origin("12345678"), seen_(std::move(seen)) {}
  ops::step on_start(ops::origin_context& ctx) override {
    seen_->push_back(std::this_thread::get_id());
    return actors::ping_origin::on_start(ctx);
  }
  ops::step on_message(ops::origin_context& ctx, size_t from,
                       const typed_message& m) override {
    seen_->push_back(std::this_thread::get_id());
    return actors::ping_origin::on_message(ctx, from, m);
  }

private:
  std::shared_ptr<std::vector<std::thread::id>> seen_;
};

struct unregistered_op {
  static constexpr const char* name = "test.unregistered";
  using origin = holding_origin;
  using target = holding_target;
};

std::string text_of(const ops::op_result& r) {
  return r ? std::string{"(a result)"} : describe(r.error());
}

/// A registered buffer of `bytes` holding the pattern of `seed` (every word encodes
/// its offset: test/support/pattern.hpp).
std::shared_ptr<memory_region> patterned(node& n, size_t bytes, uint64_t seed) {
  auto region = memory_region::allocate(n.system(), bytes);
  if (!region)
    throw std::runtime_error(describe(region.error()));
  fill_pattern((*region)->data(), bytes, seed);
  return *region;
}

/// The value the DHT tests store under key `i`: every hundredth one larger than the
/// RDMA threshold.
std::string dht_value(size_t i) {
  auto size = i % 100 == 0 ? 64 * 1024 + i : 10 + i % 190;
  std::string v(size, '\0');
  for (size_t k = 0; k < size; ++k)
    v[k] = static_cast<char>((k * 31 + i * 7) & 0xff);
  return v;
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

BOOST_AUTO_TEST_CASE(rdma_ping_data_encodes_its_offset_so_a_misplaced_block_is_caught) {
  // 64 KiB and a tail that is not a whole word.
  constexpr uint64_t n = (uint64_t{64} << 10) + 5;
  constexpr uint64_t seed = 7;
  std::vector<uint8_t> sent(n);
  actors::rdma_ping_fill(sent.data(), n, seed);
  // The origin's data is the tests' pattern of its seed (support/pattern.hpp, written
  // apart from the op): every 8-byte word holds its own index.
  auto mismatch = pattern_mismatch(sent.data(), n, seed);
  BOOST_TEST(!mismatch, mismatch.value_or(""));
  // Data the target left as it was is wrong from its first byte on.
  BOOST_TEST(actors::rdma_ping_first_unexpected(sent.data(), n, seed) == 0u);
  auto back = sent;
  actors::rdma_ping_add_one(back.data(), n);
  for (uint64_t i = 0; i < n; ++i)
    if (back[i] != static_cast<uint8_t>(sent[i] + 1))
      BOOST_FAIL("rdma_ping_add_one left byte " << i << " without its 1");
  BOOST_TEST(actors::rdma_ping_first_unexpected(back.data(), n, seed) == n);
  uint64_t at = 0;
  // A 4 KiB block put back at another 4 KiB-aligned offset (the old data repeated
  // every 2 KiB and passed) is caught in its first word (whose first bytes may agree:
  // word indices 1024 and 3072 differ in their second byte only).
  auto moved = back;
  std::memcpy(moved.data() + 24576, back.data() + 8192, 4096);
  at = actors::rdma_ping_first_unexpected(moved.data(), n, seed);
  BOOST_TEST(at / 8 == 24576u / 8, at);
  // So is a block one byte off, and a tail that lost its last byte.
  auto shifted = back;
  std::memmove(shifted.data() + 1001, back.data() + 1000, 64);
  at = actors::rdma_ping_first_unexpected(shifted.data(), n, seed);
  BOOST_TEST((at >= 1001u && at < 1001u + 64u), at);
  auto tail = back;
  tail[n - 1] = back[n - 2];
  BOOST_TEST(actors::rdma_ping_first_unexpected(tail.data(), n, seed) == n - 1);
  // Another op's data (another seed) never passes for this op's.
  std::vector<uint8_t> other(n);
  actors::rdma_ping_fill(other.data(), n, seed + 1);
  actors::rdma_ping_add_one(other.data(), n);
  BOOST_TEST(actors::rdma_ping_first_unexpected(other.data(), n, seed) < 8u);
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

BOOST_AUTO_TEST_CASE(an_op_launched_from_a_caller_s_own_thread_starts_on_it) {
  // No scheduler hop for the first step: the origin's on_start runs in launch, on the
  // caller's thread, whatever the target. With this node as the target, the whole op
  // runs there while the caller waits in get (dispatcher, target side, the answer),
  // once the first op has located the node's dispatcher: no worker is woken for it.
  host_process a{target_config()};
  for (const auto& target : {a.address(), client.address()}) {
    BOOST_TEST_CONTEXT("target " << target) {
      for (int i = 0; i < 20; ++i) {
        auto seen = std::make_shared<std::vector<std::thread::id>>();
        auto h = ops::launch(client, actors::ping_op::name,
                             std::make_unique<thread_noting_origin>(seen), {target});
        auto r = h.get_for(20s);
        BOOST_REQUIRE(r);
        BOOST_REQUIRE_MESSAGE(*r, text_of(*r));
        BOOST_REQUIRE_EQUAL(seen->size(), 2u);
        BOOST_TEST(((*seen)[0] == std::this_thread::get_id()));
        if (target == client.address() && i > 0) // the first op located the dispatcher
          BOOST_TEST(((*seen)[1] == std::this_thread::get_id()), "op " << i);
      }
    }
  }
  // From inside an actor (a scheduler worker): ping's origin runs without an actor, so
  // its first step runs right there, on that worker's thread, too.
  caf::scoped_actor self{client.system()};
  auto seen = std::make_shared<std::vector<std::thread::id>>();
  std::optional<ops::op_handle> launched;
  std::thread::id worker; // written in the actor before its answer, read after it
  auto from_actor = client.system().spawn([&](caf::event_based_actor*) -> caf::behavior {
    return {[&](int) {
      worker = std::this_thread::get_id();
      launched = ops::launch(client, actors::ping_op::name,
                             std::make_unique<thread_noting_origin>(seen), {a.address()});
      return 0;
    }};
  });
  self->request(from_actor, 10s, 1).receive([](int) {},
                                            [](caf::error& e) { BOOST_FAIL(describe(e)); });
  BOOST_REQUIRE(launched);
  auto r = launched->get_for(20s);
  BOOST_REQUIRE(r);
  BOOST_REQUIRE_MESSAGE(*r, text_of(*r));
  BOOST_TEST(!launched->origin()); // no actor was spawned for it
  BOOST_REQUIRE_EQUAL(seen->size(), 2u);
  BOOST_TEST(((*seen)[0] == worker));
  self->send_exit(from_actor, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_CASE(an_origin_without_an_actor_meets_its_deadline_triggers_death_and_stop) {
  // ping's origin runs without an actor once its targets' dispatchers are known; the
  // framework's rules hold for it as for an actor origin.
  host_process a{target_config()}, b{target_config()};
  auto warm =
    ops::launch<actors::ping_op>(client, {a.address(), b.address()}, std::string{"warm"})
      .get_for(20s);
  BOOST_REQUIRE(warm && *warm);
  // Deadline: a target that never answers.
  a.stop_answering();
  constexpr auto deadline = 300ms;
  auto before = client.transport().stats();
  auto start = clock_type::now();
  auto late = ops::launch_with<actors::ping_op>(client, {deadline}, {a.address()},
                                                std::string{"late"});
  BOOST_TEST(!late.origin()); // no actor
  auto r = late.get_for(10s);
  auto took = clock_type::now() - start;
  // Its op message went in the envelope: it was not CAF-serialized.
  auto after = client.transport().stats();
  BOOST_TEST(after.op_out - before.op_out == 1u);
  BOOST_TEST(after.caf_out == before.caf_out);
  BOOST_REQUIRE(r);
  BOOST_REQUIRE(!*r);
  BOOST_TEST(has_code(r->error(), errc::timeout), describe(r->error()));
  BOOST_TEST((took >= deadline), ms_of(took) << " ms");
  BOOST_TEST((took < deadline + detection_margin), ms_of(took) << " ms");
  // A trigger (ping has no on_trigger: the op fails with that), then the origin
  // waits for the target that never answered, and tells it once it does.
  auto triggered = ops::launch_with<actors::ping_op>(client, {60000ms}, {a.address()},
                                                     std::string{"trigger"});
  triggered.trigger(caf::make_message(1));
  r = triggered.get_for(10s);
  BOOST_REQUIRE(r);
  BOOST_REQUIRE(!*r);
  BOOST_TEST(describe(r->error()).find("triggers") != std::string::npos,
             describe(r->error()));
  auto mine = client.ops().inflight();
  BOOST_REQUIRE_EQUAL(mine.size(), 1u);
  BOOST_TEST(mine[0].side == "origin");
  BOOST_TEST(mine[0].state.find("waiting to tell") != std::string::npos, mine[0].state);
  a.process().signal(SIGCONT);
  BOOST_CHECK(eventually(10s, [&] {
    return client.ops().inflight().empty() && inflight_at(a.address()) == 0;
  }));
  // The death of a target's node.
  b.stop_answering();
  auto orphaned = ops::launch_with<actors::ping_op>(client, {60000ms}, {b.address()},
                                                    std::string{"dies"});
  kill_and_expect_unreachable(b, orphaned);
  BOOST_CHECK(eventually(5s, [&] { return client.ops().inflight().empty(); }));
  // The node's stop fails an op still running.
  node other{parse_node_config(R"({"threads": 2})", "other.json")};
  BOOST_REQUIRE(!actors::register_builtin_ops(other.ops().registry()));
  BOOST_REQUIRE(!other.start());
  BOOST_REQUIRE(
    ops::launch<actors::ping_op>(other, {a.address()}, std::string{"warm"}).get_for(20s));
  a.stop_answering();
  auto stopped = ops::launch_with<actors::ping_op>(other, {60000ms}, {a.address()},
                                                   std::string{"stop"});
  BOOST_TEST(!stopped.origin());
  other.stop();
  r = stopped.get_for(5s);
  BOOST_REQUIRE(r);
  BOOST_REQUIRE(!*r);
  BOOST_TEST(describe(r->error()).find("its node stops") != std::string::npos,
             describe(r->error()));
  a.process().signal(SIGCONT);
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
  // 150 ops at once expose 150 different regions; the target's cache of unpacked
  // remote keys for this one connection stays bounded however many it has reached.
  std::vector<ops::op_handle> pings;
  for (int i = 0; i < 150; ++i)
    pings.push_back(
      ops::launch<actors::rdma_ping_op>(client, {a.address()}, uint64_t{4096}));
  for (auto& h : pings) {
    auto r = h.get_for(30s);
    BOOST_REQUIRE(r);
    BOOST_REQUIRE_MESSAGE(*r, text_of(*r));
  }
  auto keys = topic_of(a.address(), "stats")["remote_keys"].get<uint64_t>();
  BOOST_TEST(keys > 0u);
  BOOST_TEST(keys <= 64u);
}

BOOST_AUTO_TEST_CASE(rdma_ping_fails_when_a_block_comes_back_at_a_wrong_offset) {
  // The target (test.misplace) gets the bytes by RDMA, adds 1 to each and puts them
  // back with its first 4 KiB also over the next 4 KiB: rdma-ping's origin must name
  // the first misplaced byte and where its word belongs.
  host_process a{target_config()};
  auto r = ops::launch<misplaced_rdma_ping_op>(client, {a.address()}, uint64_t{1} << 20)
             .get_for(60s);
  BOOST_REQUIRE(r);
  BOOST_REQUIRE(!*r);
  auto why = describe(r->error());
  BOOST_TEST(has_code(r->error(), errc::provider_failed), why);
  // The first wrong byte is in the first misplaced word (the word it holds, word 0,
  // may agree with word 512 in its first bytes).
  auto at = why.find("byte ");
  BOOST_REQUIRE_MESSAGE(at != std::string::npos, why);
  auto first = std::stoull(why.substr(at + 5));
  BOOST_TEST(first / 8 == misplacing_target::block / 8, why);
  BOOST_TEST(why.find("its word belongs at offset 0") != std::string::npos, why);
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
  // Each target side that answered left a proxy here; nothing monitors them, so they
  // were swept instead of each costing a monitor request and a down notice.
  auto service = client.remote_node(a.address(), 10s);
  BOOST_REQUIRE(service);
  size_t proxies = 0;
  auto& registry = transport::middleman::of(client.system()).proxies();
  BOOST_CHECK_MESSAGE(eventually(10s,
                                 [&] {
                                   inflight_at(a.address()); // traffic: a sweep runs
                                   proxies = registry.count_proxies(service->node());
                                   return proxies < n / 4;
                                 }),
                      proxies << " proxies of " << a.address() << " remain");
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

BOOST_AUTO_TEST_CASE(an_inline_target_that_breaks_its_rule_fails_the_op_clearly) {
  // A target side that says it runs inline gets no actor: waiting after its first
  // message, or asking for a timer, is the op's failure, named, and nothing lingers.
  host_process a{target_config()};
  auto waits = ops::launch<inline_wait_op>(client, {a.address()});
  auto timer = ops::launch<inline_timer_op>(client, {a.address()});
  for (auto [h, says] : std::vector<std::pair<ops::op_handle, std::string>>{
         {waits, "runs inline (runs_inline) but did not finish at its first message"},
         {timer, "op test.inline_timer (target): its target side runs inline "
                 "(runs_inline), so it has no timers"}}) {
    auto r = h.get_for(10s);
    BOOST_REQUIRE(r);
    BOOST_REQUIRE(!*r);
    BOOST_TEST(describe(r->error()).find(says) != std::string::npos, describe(r->error()));
  }
  BOOST_TEST(inflight_at(a.address()) == 0u);
  auto counters = ops_of(a.address())["counters"];
  BOOST_TEST(counters["targets_started"].get<int>() == 2);
}

BOOST_AUTO_TEST_CASE(the_deadline_fails_the_op_on_time_and_ends_every_side) {
  host_process a{target_config()}, b{target_config()};
  constexpr auto deadline = 300ms;
  auto start = clock_type::now();
  auto h = ops::launch_with<silent_op>(client, {deadline}, {a.address(), b.address()});
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
  // Not before the deadline; after it, no later than the margin allows.
  BOOST_TEST((took >= deadline), ms_of(took) << " ms");
  BOOST_TEST((took < deadline + detection_margin), ms_of(took) << " ms");
  BOOST_CHECK(eventually(5s, [&] {
    return client.ops().inflight().empty() && inflight_at(a.address()) == 0
           && inflight_at(b.address()) == 0;
  }));
}

BOOST_AUTO_TEST_CASE(a_node_killed_mid_op_fails_it_within_the_death_notice_bound) {
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
  kill_and_expect_unreachable(b, h);
  // The survivor's target side is gone too.
  BOOST_CHECK(eventually(5s, [&] {
    return inflight_at(a.address()) == 0 && client.ops().inflight().empty();
  }));
}

BOOST_AUTO_TEST_CASE(a_target_that_had_not_answered_when_the_op_ended_is_told_later) {
  host_process a{target_config()}, b{target_config()};
  auto warm =
    ops::launch<actors::ping_op>(client, {a.address(), b.address()}, std::string{"warm"})
      .get_for(20s);
  BOOST_REQUIRE(warm && *warm);
  b.stop_answering(); // its target side cannot start yet
  auto h = ops::launch_with<silent_op>(client, {60000ms}, {a.address(), b.address()});
  BOOST_REQUIRE(eventually(10s, [&] {
    auto mine = client.ops().inflight();
    return mine.size() == 1 && mine[0].state == "answered by 1";
  }));
  h.trigger(caf::make_message(1)); // the holding origin fails on a trigger
  auto r = h.get_for(10s);
  BOOST_REQUIRE(r);
  BOOST_REQUIRE(!*r);
  BOOST_TEST(describe(r->error()).find("triggers") != std::string::npos,
             describe(r->error()));
  // a answered: told at once. b's side starts only now; the origin, still there for
  // it, tells it at its first word.
  BOOST_CHECK(eventually(5s, [&] { return inflight_at(a.address()) == 0; }));
  auto mine = client.ops().inflight();
  BOOST_REQUIRE_EQUAL(mine.size(), 1u);
  BOOST_TEST(mine[0].state.find("waiting to tell") != std::string::npos, mine[0].state);
  b.process().signal(SIGCONT);
  BOOST_CHECK(eventually(10s, [&] {
    return inflight_at(b.address()) == 0 && client.ops().inflight().empty();
  }));
  BOOST_TEST(ops_of(b.address())["counters"]["targets_started"].get<int>() == 2);
}

BOOST_AUTO_TEST_CASE(target_sides_end_when_their_origin_node_goes) {
  host_process a{target_config()};
  // A second node in this process, as the origin: its stop kills the origin actor
  // (no end message), then its transport, which the target's node sees go.
  node other{parse_node_config(R"({"threads": 2})", "other.json")};
  BOOST_REQUIRE(!other.ops().registry().add<silent_op>());
  BOOST_REQUIRE(!other.start());
  auto h = ops::launch_with<silent_op>(other, {60000ms}, {a.address()});
  BOOST_REQUIRE(eventually(10s, [&] { return inflight_at(a.address()) == 1; }));
  other.stop();
  auto r = h.get_for(5s);
  BOOST_REQUIRE(r);
  BOOST_TEST(!*r);
  BOOST_CHECK(eventually(5s, [&] { return inflight_at(a.address()) == 0; }));
}

BOOST_AUTO_TEST_CASE(scatter_then_gather_moves_every_window_byte_for_byte) {
  host_process a{target_config()}, b{target_config()}, c{target_config()};
  std::vector<std::string> nodes{a.address(), b.address(), c.address()};
  // Uneven windows, one of them empty.
  std::vector<uint64_t> windows{1 << 20, 0, (2 << 20) + 7};
  size_t total = (3 << 20) + 7;
  auto source = patterned(client, total, 1);
  auto r =
    ops::launch<actors::scatter_op>(client, nodes, "input", source, windows).get_for(60s);
  BOOST_REQUIRE(r);
  BOOST_REQUIRE_MESSAGE(*r, text_of(*r));
  BOOST_TEST(r->value().get_as<uint64_t>(0) == total);
  auto back = patterned(client, total, 2);
  r = ops::launch<actors::gather_op>(client, nodes, "input", back, windows).get_for(60s);
  BOOST_REQUIRE(r);
  BOOST_REQUIRE_MESSAGE(*r, text_of(*r));
  BOOST_TEST(r->value().get_as<uint64_t>(0) == total);
  // back held the pattern of seed 2: now every window holds seed 1's at its offset.
  auto wrong = pattern_mismatch(back->data(), total, 1);
  BOOST_TEST(!wrong, wrong.value_or(""));
  // Equal windows over the same nodes replace what they keep.
  auto again = patterned(client, 3000, 3);
  auto equal = actors::equal_windows(3000, 3);
  BOOST_TEST(equal == (std::vector<uint64_t>{1000, 1000, 1000}));
  r = ops::launch<actors::scatter_op>(client, nodes, "input", again, equal).get_for(60s);
  BOOST_REQUIRE(r && *r);
  auto small = patterned(client, 3000, 4);
  r = ops::launch<actors::gather_op>(client, nodes, "input", small, equal).get_for(60s);
  BOOST_REQUIRE(r);
  BOOST_REQUIRE_MESSAGE(*r, text_of(*r));
  wrong = pattern_mismatch(small->data(), 3000, 3);
  BOOST_TEST(!wrong, wrong.value_or(""));
  // A window of the wrong size, a name nobody keeps, windows that do not fit.
  r = ops::launch<actors::gather_op>(client, nodes, "input", back, windows).get_for(20s);
  BOOST_REQUIRE(r && !*r);
  BOOST_TEST(has_code(r->error(), errc::refused), describe(r->error()));
  BOOST_TEST(describe(r->error()).find("\"input\" holds 1000 bytes, the window has ")
               != std::string::npos,
             describe(r->error()));
  r = ops::launch<actors::gather_op>(client, {a.address()}, "nothing", back,
                                     std::vector<uint64_t>{10})
        .get_for(20s);
  BOOST_REQUIRE(r && !*r);
  BOOST_TEST(has_code(r->error(), errc::not_found), describe(r->error()));
  BOOST_TEST(describe(r->error()).find(a.address()) != std::string::npos,
             describe(r->error()));
  r = ops::launch<actors::scatter_op>(client, nodes, "x", small,
                                      std::vector<uint64_t>{2000, 2000, 2000})
        .get_for(20s);
  BOOST_REQUIRE(r && !*r);
  BOOST_TEST(has_code(r->error(), errc::refused), describe(r->error()));
  BOOST_CHECK(eventually(5s, [&] {
    return client.ops().inflight().empty() && inflight_at(a.address()) == 0
           && inflight_at(b.address()) == 0 && inflight_at(c.address()) == 0;
  }));
}

BOOST_AUTO_TEST_CASE(a_node_killed_mid_scatter_fails_it_in_bound_and_nothing_is_kept) {
  host_process a{target_config()}, b{target_config()}, c{target_config()};
  std::vector<std::string> nodes{a.address(), b.address(), c.address()};
  // Everyone connected first, then c stops answering: a and b fetch their windows
  // and wait for a commit that needs c.
  auto warm =
    ops::launch<actors::ping_op>(client, nodes, std::string{"warm"}).get_for(20s);
  BOOST_REQUIRE(warm && *warm);
  c.stop_answering();
  auto source = patterned(client, 3 << 20, 5);
  auto h = ops::launch_with<actors::scatter_op>(
    client, {60000ms}, nodes, "doomed", source, actors::equal_windows(3 << 20, 3));
  BOOST_REQUIRE(eventually(20s, [&] {
    auto mine = client.ops().inflight();
    return mine.size() == 1 && mine[0].state == "2 of 3 windows fetched";
  }));
  for (const auto* survivor : {&a, &b}) {
    auto ops = ops_of(survivor->address())["inflight"];
    BOOST_REQUIRE_EQUAL(ops.size(), 1u);
    BOOST_TEST(ops[0]["state"] == "fetched, waiting for the commit");
  }
  kill_and_expect_unreachable(c, h);
  // The survivors' sides are gone, and they kept nothing.
  BOOST_CHECK(eventually(5s, [&] {
    return inflight_at(a.address()) == 0 && inflight_at(b.address()) == 0
           && client.ops().inflight().empty();
  }));
  // Each survivor on its own: a gather over both would stop at the first refusal.
  auto out = patterned(client, 1 << 20, 6);
  for (const auto* survivor : {&a, &b}) {
    BOOST_TEST_CONTEXT(survivor->address()) {
      auto g = ops::launch<actors::gather_op>(client, {survivor->address()}, "doomed",
                                              out, std::vector<uint64_t>{1 << 20})
                 .get_for(20s);
      BOOST_REQUIRE(g && !*g);
      BOOST_TEST(has_code(g->error(), errc::not_found), describe(g->error()));
      BOOST_TEST(describe(g->error()).find(survivor->address()) != std::string::npos,
                 describe(g->error()));
      // Its reservation for the window is given back too.
      BOOST_TEST(eventually(5s, [&] {
        return ops_of(survivor->address())["kept"]["bytes"].get<uint64_t>() == 0u;
      }));
    }
  }
}

BOOST_AUTO_TEST_CASE(a_dht_over_a_four_node_group_returns_each_of_10000_values) {
  actorhost_instance inst{4};
  auto view = group::read_view_file(inst.view_file);
  auto nodes = actors::nodes_of(view);
  BOOST_REQUIRE_EQUAL(nodes.size(), 4u);
  actors::dht_options options;
  options.deadline = 60s;
  auto table = actors::dht::over(client, view, options);
  constexpr size_t n = 10000;
  std::atomic<size_t> done{0}, failures{0};
  std::string first_failure;
  std::mutex mtx;
  auto count = [&](const ops::op_result& r, size_t i, bool is_get) {
    bool ok = r && (!is_get || r->get_as<std::string>(0) == dht_value(i));
    if (!ok) {
      std::lock_guard<std::mutex> guard{mtx};
      if (failures++ == 0)
        first_failure = "key " + std::to_string(i) + ": "
                        + (r ? std::string{"a wrong value"} : describe(r.error()));
    }
    ++done;
  };
  std::map<std::string, size_t> owned;
  for (size_t i = 0; i < n; ++i) {
    ++owned[table.owner_of("key-" + std::to_string(i))];
    table.put("key-" + std::to_string(i), dht_value(i)).then([&, i](const auto& r) {
      count(r, i, false);
    });
  }
  BOOST_REQUIRE(eventually(120s, [&] { return done.load() == n; }));
  BOOST_REQUIRE_MESSAGE(failures.load() == 0, first_failure);
  // Rendezvous hashing spreads the keys over every node.
  BOOST_TEST(owned.size() == 4u);
  for (const auto& [address, keys] : owned)
    BOOST_TEST(keys > n / 8, address << " owns " << keys);
  done = 0;
  for (size_t i = 0; i < n; ++i)
    table.get("key-" + std::to_string(i)).then([&, i](const auto& r) {
      count(r, i, true);
    });
  BOOST_REQUIRE(eventually(120s, [&] { return done.load() == n; }));
  BOOST_REQUIRE_MESSAGE(failures.load() == 0, first_failure);
  auto missing = table.get("no-such-key").get_for(20s);
  BOOST_REQUIRE(missing && !*missing);
  BOOST_TEST(has_code(missing->error(), errc::not_found), describe(missing->error()));
  BOOST_TEST(describe(missing->error()).find("no key \"no-such-key\"")
               != std::string::npos,
             describe(missing->error()));
  BOOST_CHECK(eventually(10s, [&] {
    if (!client.ops().inflight().empty())
      return false;
    for (const auto& address : nodes)
      if (inflight_at(address) != 0)
        return false;
    return true;
  }));
}

BOOST_AUTO_TEST_CASE(dht_keys_this_node_owns_never_touch_the_network) {
  host_process a{target_config()};
  auto table = actors::dht(client, {client.address(), a.address()});
  auto launched_before = client.ops().counters()["launched"];
  size_t remote = 0;
  for (size_t i = 0; i < 400; ++i) {
    auto key = "k" + std::to_string(i);
    if (table.owner_of(key) != client.address())
      ++remote;
    auto put = table.put(key, dht_value(i)).get_for(20s);
    BOOST_REQUIRE(put);
    BOOST_REQUIRE_MESSAGE(*put, text_of(*put));
  }
  for (size_t i = 0; i < 400; ++i) {
    auto got = table.get("k" + std::to_string(i)).get_for(20s);
    BOOST_REQUIRE(got);
    BOOST_REQUIRE_MESSAGE(*got, text_of(*got));
    BOOST_REQUIRE(got->value().get_as<std::string>(0) == dht_value(i));
  }
  BOOST_TEST(remote > 100u);
  BOOST_TEST(remote < 300u);
  // Only the remote keys launched ops (a put and a get each).
  BOOST_TEST(client.ops().counters()["launched"] - launched_before == 2 * remote);
  BOOST_TEST(ops_of(a.address())["counters"]["targets_started"].get<size_t>()
             == 2 * remote);
  // A list with one more node moves only the keys the new node takes.
  auto more = actors::dht(client, {client.address(), a.address(), "ucx://127.0.0.1:1"});
  size_t moved = 0;
  for (size_t i = 0; i < 400; ++i) {
    auto key = "k" + std::to_string(i);
    if (more.owner_of(key) == "ucx://127.0.0.1:1")
      ++moved;
    else
      BOOST_TEST(more.owner_of(key) == table.owner_of(key));
  }
  BOOST_TEST(moved > 60u);
  BOOST_TEST(moved < 220u);
  BOOST_CHECK_THROW(actors::dht(client, {}), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(a_node_keeps_no_more_than_its_store_limit) {
  host_process a{R"({"transport": {"port": 0}, "ops": {"store_max_bytes": 100000}})"};
  auto table = actors::dht(client, {a.address()});
  auto put = [&](const std::string& key, size_t bytes) {
    auto r = table.put(key, std::string(bytes, 'v')).get_for(20s);
    BOOST_REQUIRE(r);
    return *r ? caf::error{} : r->error();
  };
  BOOST_TEST(!put("k1", 40000));
  auto refused = put("k2", 70000);
  BOOST_TEST(has_code(refused, errc::refused), describe(refused));
  BOOST_TEST(describe(refused).find("ops.store_max_bytes") != std::string::npos,
             describe(refused));
  BOOST_TEST(!put("k1", 40000)); // a value replaced gives its bytes back
  BOOST_TEST(!put("k3", 1000));  // small values are counted too (inline)
  auto missing = table.get("k2").get_for(20s);
  BOOST_REQUIRE(missing && !*missing);
  BOOST_TEST(has_code(missing->error(), errc::not_found), describe(missing->error()));
  // A scatter that does not fit is refused before anything is fetched or kept.
  auto source = patterned(client, 80000, 7);
  auto s = ops::launch<actors::scatter_op>(client, {a.address()}, "big", source,
                                           std::vector<uint64_t>{80000})
             .get_for(20s);
  BOOST_REQUIRE(s && !*s);
  BOOST_TEST(describe(s->error()).find("ops.store_max_bytes") != std::string::npos,
             describe(s->error()));
  // What is kept still fits: 41,000 of 100,000 bytes, so 59,000 more do.
  BOOST_TEST(!put("k4", 59000));
  BOOST_TEST(has_code(put("k5", 1), errc::refused));
  auto kept = ops_of(a.address())["kept"];
  BOOST_TEST(kept["bytes"].get<uint64_t>() == 100000u);
  BOOST_TEST(kept["limit"].get<uint64_t>() == 100000u);
  auto shown = run_to_end({bin_path("actorsh"), "-a", a.address(), "-c", "ops"}, 30s);
  BOOST_TEST(shown.out.find("kept: 100000 of 100000 bytes") != std::string::npos,
             shown.out);
  BOOST_CHECK(eventually(5s, [&] { return inflight_at(a.address()) == 0; }));
}

BOOST_AUTO_TEST_CASE(launching_an_unregistered_op_or_with_no_targets_fails_at_once) {
  auto r = ops::launch<unregistered_op>(client, {"ucx://127.0.0.1:1"}).get_for(1s);
  BOOST_REQUIRE(r);
  BOOST_TEST(has_code(r->error(), errc::not_found), describe(r->error()));
  r = ops::launch<actors::ping_op>(client, {}, std::string{"x"}).get_for(1s);
  BOOST_REQUIRE(r);
  BOOST_TEST(has_code(r->error(), errc::refused), describe(r->error()));
  // An address nobody listens on: unreachable, not a hang.
  reserved_port nobody;
  r = ops::launch<actors::ping_op>(client, {nobody.address()}, std::string{"x"})
        .get_for(20s);
  BOOST_REQUIRE(r);
  BOOST_REQUIRE(!*r);
  BOOST_TEST(has_code(r->error(), errc::unreachable), describe(r->error()));
}

BOOST_AUTO_TEST_SUITE_END()
