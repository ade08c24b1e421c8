#define BOOST_TEST_MODULE heartbeat

// The heartbeat (actors/heartbeat/) across a real `actorhost --size 7` instance
// (fanout 2, a beat every 100 ms, 10 missed to tell: a loaded box may delay a few):
// subscribers get the root's beats in order; ranks cut off from the root (their
// parent SIGSTOPped) say they missed beats, and hear them again once it goes on.

#include <csignal>

#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/heartbeat/heartbeat.hpp"
#include "test/actors/instance_fixture.hpp"

using namespace troupe;
using namespace troupe::test;
using namespace std::chrono_literals;

namespace {

const std::string fast_heartbeat =
  R"({"type": "heartbeat", "name": "heartbeat", "provider_id": 1,
      "dependencies": {"group": "group", "overlay": "overlay"},
      "config": {"period_ms": 100, "missed_beats": 10}})";

} // namespace

BOOST_FIXTURE_TEST_SUITE(heartbeat_suite, instance_fixture)

BOOST_AUTO_TEST_CASE(beats_reach_subscribers_and_a_cut_off_rank_reports_missed_beats) {
  start(7, 2, fast_heartbeat);
  auto hearts = every_rank_s("heartbeat");
  caf::scoped_actor self{client.system()};
  bool subscribed = false;
  self->request(hearts[6], 10s, caf::subscribe_atom::value, caf::actor{self})
    .receive([&] { subscribed = true; }, [](caf::error& e) { BOOST_FAIL(describe(e)); });
  BOOST_REQUIRE(subscribed);
  // Five beats at rank 6 (two hops below the root), numbered in order.
  std::vector<uint64_t> seqs;
  auto until = std::chrono::steady_clock::now() + 10s;
  while (seqs.size() < 5 && std::chrono::steady_clock::now() < until)
    self->receive([&](heartbeat::beat_atom, uint64_t seq) { seqs.push_back(seq); },
                  caf::after(100ms) >> [] {});
  BOOST_REQUIRE_EQUAL(seqs.size(), 5u);
  for (size_t i = 1; i < seqs.size(); ++i)
    BOOST_TEST(seqs[i] == seqs[i - 1] + 1);
  caf::anon_send(hearts[6], caf::unsubscribe_atom::value, caf::actor{self});
  auto status_of = [&](size_t rank) {
    auto text = ask<std::string>(hearts.at(rank), heartbeat::status_atom::value);
    return text ? nlohmann::json::parse(*text) : nlohmann::json{};
  };
  BOOST_TEST(status_of(5)["missed"] == false);
  // Rank 2 stops: ranks 5 and 6, below it, hear no beat; rank 3 still does.
  int pid = -1;
  for (size_t i = 0; i < instance->addresses.size(); ++i)
    if (instance->addresses[i] == rank_addresses[2])
      pid = instance->pids[i];
  BOOST_REQUIRE(pid > 0);
  ::kill(pid, SIGSTOP);
  bool cut_off = eventually(5s, [&] {
    return status_of(5)["missed"] == true && status_of(6)["missed"] == true;
  });
  auto rank3 = status_of(3);
  ::kill(pid, SIGCONT);
  BOOST_TEST(cut_off);
  BOOST_TEST(rank3["missed"] == false, rank3.dump());
  // Going on, rank 2 passes beats again.
  BOOST_TEST(eventually(5s, [&] {
    return status_of(5)["missed"] == false && status_of(6)["missed"] == false;
  }));
}

BOOST_AUTO_TEST_SUITE_END()
