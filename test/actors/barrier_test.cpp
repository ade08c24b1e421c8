#define BOOST_TEST_MODULE barrier

// Barriers (actors/barrier/) across a real `actorhost --size 7` instance: a barrier
// of every rank completes once all entered and not before; names are used again;
// counts must agree; a barrier fails every waiter, naming the rank, when a member
// dies; one that never fills ends at its timeout.

#include <csignal>

#include <caf/scoped_actor.hpp>

#include "actors/barrier/barrier.hpp"
#include "test/actors/instance_fixture.hpp"

using namespace troupe;
using namespace troupe::test;
using namespace std::chrono_literals;

namespace {

struct barrier_fixture : instance_fixture {
  std::vector<caf::actor> barriers; // by rank

  void start_barriers(unsigned size) {
    start(size, 2);
    barriers = every_rank_s("barrier");
  }

  /// Whether what rank `r` was asked before is at the root: a barrier of 1 entered at
  /// `r` after it completes (a rank's entries reach the root in order).
  bool at_root_after(size_t r) {
    return static_cast<bool>(ask<barrier::barrier_done>(
      barriers.at(r), barrier::enter_atom::value, "probe" + std::to_string(r), uint32_t{1}));
  }

  /// Enters barrier `name` of `count` at each of `ranks` (all at once, each from its
  /// own actor); the answers in the same order.
  std::vector<caf::expected<barrier::barrier_done>>
  enter_at(const std::vector<size_t>& ranks, const std::string& name, uint32_t count,
           uint32_t timeout_ms = 0) {
    caf::scoped_actor self{client.system()};
    std::vector<caf::expected<barrier::barrier_done>> answers(ranks.size(),
                                                              caf::error{});
    std::vector<caf::response_handle<caf::blocking_actor, caf::message, true>> handles;
    for (auto r : ranks)
      handles.push_back(self->request(barriers.at(r), 30s, barrier::enter_atom::value,
                                      name, count, timeout_ms));
    for (size_t i = 0; i < handles.size(); ++i)
      handles[i].receive([&](barrier::barrier_done& d) { answers[i] = d; },
                         [&](caf::error& e) { answers[i] = std::move(e); });
    return answers;
  }
};

std::string text_of(const caf::expected<barrier::barrier_done>& x) {
  return x ? std::string{"done"} : describe(x.error());
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(barrier_suite, barrier_fixture)

BOOST_AUTO_TEST_CASE(a_barrier_of_every_rank_completes_and_its_name_is_used_again) {
  start_barriers(7);
  for (uint64_t generation : {1u, 2u}) {
    auto answers = enter_at({0, 1, 2, 3, 4, 5, 6}, "all", 7);
    for (size_t i = 0; i < answers.size(); ++i) {
      BOOST_REQUIRE_MESSAGE(answers[i], "rank " << i << ": " << text_of(answers[i]));
      BOOST_TEST(answers[i]->generation == generation);
      BOOST_TEST(answers[i]->count == 7u);
    }
  }
  // Not before the last one: 3 of 4 entries wait until their timeout.
  auto short_of_one = enter_at({1, 3, 5}, "four", 4, 500);
  for (const auto& a : short_of_one) {
    BOOST_REQUIRE(!a);
    BOOST_TEST(has_code(a.error(), errc::timeout), text_of(a));
    BOOST_TEST(text_of(a).find("barrier 'four': 3 of 4 entered within 500 ms")
                 != std::string::npos,
               text_of(a));
  }
  // Counts must agree, and 0 is no count.
  caf::scoped_actor self{client.system()};
  auto first = self->request(barriers[2], 30s, barrier::enter_atom::value,
                             std::string{"mixed"}, uint32_t{2}, uint32_t{5000});
  BOOST_REQUIRE(at_root_after(2));
  auto wrong = ask<barrier::barrier_done>(barriers[4], barrier::enter_atom::value,
                                          std::string{"mixed"}, uint32_t{3});
  BOOST_REQUIRE(!wrong);
  BOOST_TEST(has_code(wrong.error(), errc::invalid_argument));
  BOOST_TEST(describe(wrong.error()).find("waits for 2 entries, this one counts 3")
               != std::string::npos,
             describe(wrong.error()));
  auto second = ask<barrier::barrier_done>(barriers[6], barrier::enter_atom::value,
                                           std::string{"mixed"}, uint32_t{2});
  BOOST_TEST(static_cast<bool>(second));
  first.receive([](barrier::barrier_done&) {},
                [](caf::error& e) { BOOST_FAIL("first entry: " << describe(e)); });
  auto zero = ask<barrier::barrier_done>(barriers[1], barrier::enter_atom::value,
                                         std::string{"zero"}, uint32_t{0});
  BOOST_TEST(!zero);
}

BOOST_AUTO_TEST_CASE(a_member_that_dies_fails_every_waiter_naming_its_rank) {
  start_barriers(7);
  // Ranks 1, 2 and 3 enter a barrier of 4; rank 3's node then dies (kill -9).
  caf::scoped_actor self{client.system()};
  std::vector<caf::response_handle<caf::blocking_actor, caf::message, true>> waiting;
  for (size_t r : {1, 2, 3})
    waiting.push_back(self->request(barriers[r], 30s, barrier::enter_atom::value,
                                    std::string{"doomed"}, uint32_t{4}));
  for (size_t r : {1, 2, 3})
    BOOST_REQUIRE(at_root_after(r));
  auto victim = rank_addresses[3];
  for (size_t i = 0; i < instance->addresses.size(); ++i)
    if (instance->addresses[i] == victim)
      ::kill(instance->pids[i], SIGKILL);
  auto started = std::chrono::steady_clock::now();
  for (size_t i = 0; i < waiting.size(); ++i) {
    std::string why;
    waiting[i].receive([&](barrier::barrier_done&) { why = "completed"; },
                       [&](caf::error& e) { why = describe(e); });
    BOOST_TEST_CONTEXT("entry " << i) {
      BOOST_TEST(why.find("troupe.unreachable") == 0u, why);
      if (i < 2) // the waiters that lived: the root names the dead rank
        BOOST_TEST(why.find("barrier 'doomed': rank 3 (" + victim
                            + ") died while it waited (3 of 4 entered)")
                     != std::string::npos,
                   why);
    }
  }
  // Within the transport's death notice bound, not a timeout.
  BOOST_TEST((std::chrono::steady_clock::now() - started < death_notice_bound + 2s));
  // The others go on: a barrier of the 6 left completes.
  BOOST_REQUIRE(eventually(10s, [&] {
    return group::read_view_file(instance->view_file).members.size() == 6u;
  }));
  barriers.erase(barriers.begin() + 3);
  auto answers = enter_at({0, 1, 2, 3, 4, 5}, "survivors", 6);
  for (const auto& a : answers)
    BOOST_TEST(static_cast<bool>(a), text_of(a));
}

BOOST_AUTO_TEST_SUITE_END()
