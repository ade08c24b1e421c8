#define BOOST_TEST_MODULE events

// Events (actors/events/) across a real `actorhost --size 7` instance (overlay fanout
// 2): publishes from several ranks at once reach every subscriber whose prefix
// matches, in one order, numbered per topic; a rank that loses an event goes on and
// its subscribers see the number jump.

#include <map>

#include <caf/scoped_actor.hpp>

#include "actors/events/events.hpp"
#include "test/actors/instance_fixture.hpp"

using namespace troupe;
using namespace troupe::test;
using namespace std::chrono_literals;

namespace {

struct events_fixture : instance_fixture {
  std::vector<caf::actor> events; // by rank

  void start_events(unsigned size) {
    start(size, 2);
    events = every_rank_s("events");
  }

  /// Subscribes `self` at rank `rank` to `prefix`.
  void subscribe(caf::scoped_actor& self, size_t rank, const std::string& prefix) {
    bool ok = false;
    self->request(events.at(rank), 10s, caf::subscribe_atom::value, prefix, caf::actor{self})
      .receive([&] { ok = true; },
               [&](const caf::error& err) { BOOST_FAIL(describe(err)); });
    BOOST_REQUIRE(ok);
  }

  /// Events `self` gets until it has `count` or `deadline` passes.
  static std::vector<events::event> collect(caf::scoped_actor& self, size_t count,
                                            std::chrono::milliseconds deadline) {
    std::vector<events::event> got;
    auto until = std::chrono::steady_clock::now() + deadline;
    while (got.size() < count && std::chrono::steady_clock::now() < until)
      self->receive([&](events::event& ev) { got.push_back(std::move(ev)); },
                    caf::after(100ms) >> [] {});
    return got;
  }
};

/// Every topic's numbers are 1, 2, 3, ... in the order they came, and the global
/// numbers only grow.
void check_order(const std::vector<events::event>& got) {
  std::map<std::string, uint64_t> last;
  uint64_t last_global = 0;
  for (const auto& ev : got) {
    BOOST_TEST(ev.seq == last[ev.topic] + 1, ev.topic << " " << ev.seq);
    last[ev.topic] = ev.seq;
    BOOST_TEST(ev.global > last_global);
    last_global = ev.global;
  }
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(events_suite, events_fixture)

BOOST_AUTO_TEST_CASE(publishes_from_many_ranks_reach_matching_subscribers_in_order) {
  start_events(7);
  caf::scoped_actor all{client.system()};
  caf::scoped_actor a_topics{client.system()};
  caf::scoped_actor only_ax{client.system()};
  subscribe(all, 6, "");
  subscribe(a_topics, 3, "a.");
  subscribe(only_ax, 0, "a.x");
  subscribe(only_ax, 5, "a.x"); // at two ranks: gets each event twice
  // 60 events on three topics, published at ranks 1, 4 and 6 without waiting.
  const std::vector<std::string> topics{"a.x", "a.y", "b.z"};
  caf::scoped_actor publisher{client.system()};
  const int count = 60;
  for (int i = 0; i < count; ++i)
    publisher->send(events.at(std::vector<size_t>{1, 4, 6}[i % 3]), events::publish_atom::value,
                    topics[i % 3], "payload " + std::to_string(i));
  std::vector<events::publish_receipt> receipts;
  for (int i = 0; i < count; ++i)
    publisher->receive(
      [&](events::publish_receipt& r) { receipts.push_back(r); },
      [&](caf::error& err) { BOOST_FAIL("publish failed: " << describe(err)); },
      caf::after(20s) >> [] { BOOST_FAIL("no receipt"); });
  for (const auto& r : receipts)
    BOOST_TEST(r.ranks == 7u);
  auto got_all = collect(all, count, 20s);
  BOOST_REQUIRE_EQUAL(got_all.size(), size_t(count));
  check_order(got_all);
  auto got_a = collect(a_topics, 40, 20s);
  BOOST_REQUIRE_EQUAL(got_a.size(), 40u);
  for (const auto& ev : got_a)
    BOOST_TEST(ev.topic.rfind("a.", 0) == 0u, ev.topic);
  check_order(got_a);
  // Both ranks' copies of the same 20 events, each rank's in order.
  auto got_ax = collect(only_ax, 40, 20s);
  BOOST_REQUIRE_EQUAL(got_ax.size(), 40u);
  std::map<uint64_t, int> copies;
  for (const auto& ev : got_ax) {
    BOOST_TEST(ev.topic == "a.x");
    ++copies[ev.seq];
  }
  BOOST_TEST(copies.size() == 20u);
  for (const auto& [seq, n] : copies)
    BOOST_TEST(n == 2, "a.x " << seq);
  // The same order everywhere: the subscriber of every topic saw the a.* events in
  // the order the a.* subscriber did.
  std::vector<uint64_t> a_order_in_all, a_order;
  for (const auto& ev : got_all)
    if (ev.topic.rfind("a.", 0) == 0)
      a_order_in_all.push_back(ev.global);
  for (const auto& ev : got_a)
    a_order.push_back(ev.global);
  BOOST_TEST((a_order == a_order_in_all));
  // Nothing more comes: each event once per subscription.
  BOOST_TEST(collect(all, 1, 300ms).empty());
  auto stats = ask<events::events_stats>(events.at(0), caf::get_atom::value);
  BOOST_REQUIRE(stats);
  BOOST_TEST(stats->published == uint64_t(count)); // rank 0 numbered them all
  // A publish without a topic is refused.
  auto bad = ask<events::publish_receipt>(events.at(2), events::publish_atom::value,
                                          std::string{}, std::string{"x"});
  BOOST_TEST(!bad);
}

BOOST_AUTO_TEST_CASE(a_rank_that_loses_an_event_goes_on_and_the_gap_shows) {
  start_events(7);
  caf::scoped_actor at_leaf{client.system()};
  caf::scoped_actor at_root{client.system()};
  subscribe(at_leaf, 6, "g");
  subscribe(at_root, 0, "g");
  // A first event: every rank now follows the root's numbering.
  auto warm = ask<events::publish_receipt>(events.at(2), events::publish_atom::value,
                                           std::string{"warm"}, std::string{});
  BOOST_REQUIRE(warm);
  BOOST_REQUIRE(warm->ranks == 7u);
  // Rank 6's node loses the next overlay message that carries a reduction: the next
  // broadcast, i.e. the first event below.
  drop_next_overlay_messages(6, 1);
  caf::scoped_actor publisher{client.system()};
  std::vector<events::publish_receipt> receipts;
  for (int i = 0; i < 3; ++i) {
    auto r = ask<events::publish_receipt>(events.at(2), events::publish_atom::value,
                                          std::string{"g"}, std::to_string(i));
    BOOST_REQUIRE(r);
    receipts.push_back(*r);
  }
  BOOST_TEST(receipts[0].ranks == 6u); // rank 6 did not get the first
  BOOST_TEST(receipts[1].ranks == 7u);
  auto root_got = collect(at_root, 3, 10s);
  BOOST_REQUIRE_EQUAL(root_got.size(), 3u);
  check_order(root_got);
  // Rank 6 waits for the lost event, then goes on: its subscriber sees 2 and 3.
  auto leaf_got = collect(at_leaf, 2, 10s);
  BOOST_REQUIRE_EQUAL(leaf_got.size(), 2u);
  BOOST_TEST(leaf_got[0].seq == 2u);
  BOOST_TEST(leaf_got[1].seq == 3u);
  BOOST_TEST(leaf_got[0].payload == "1");
  auto stats = ask<events::events_stats>(events.at(6), caf::get_atom::value);
  BOOST_REQUIRE(stats);
  BOOST_TEST(stats->gaps == 1u);
}

BOOST_AUTO_TEST_SUITE_END()
