#define BOOST_TEST_MODULE logs

// Log aggregation (actors/logs/) across a real `actorhost --size 7` instance (fanout
// 2): a line logged on the farthest rank reaches the root's ring with its rank and
// address, lines above the capture level stay local, and dmesg works at any rank.

#include <caf/scoped_actor.hpp>

#include "actors/logs/logs.hpp"
#include "base/log.hpp"
#include "test/actors/instance_fixture.hpp"

using namespace troupe;
using namespace troupe::test;
using namespace std::chrono_literals;

BOOST_FIXTURE_TEST_SUITE(logs_suite, instance_fixture)

BOOST_AUTO_TEST_CASE(a_line_logged_on_the_farthest_rank_is_in_the_root_s_ring) {
  start(7, 2);
  auto logs = every_rank_s("logs");
  caf::scoped_actor self{client.system()};
  /// Logs `text` at `rank`; the error, if refused.
  auto log_at = [&](size_t rank, uint8_t lvl, const std::string& text) {
    caf::error result = make_error(errc::timeout, "no answer");
    self->request(logs.at(rank), 10s, logs::log_atom::value, lvl, std::string{"test"}, text)
      .receive([&] { result = caf::error{}; }, [&](caf::error& e) { result = std::move(e); });
    return result;
  };
  auto level = [](log::level l) { return static_cast<uint8_t>(l); };
  // Rank 5: a debug line (above the default capture level, info) and then an info one.
  BOOST_REQUIRE(!log_at(5, level(log::level::debug), "not kept"));
  BOOST_REQUIRE(!log_at(5, level(log::level::info), "kept from five"));
  // Rank 6 is two hops below the root.
  BOOST_REQUIRE(!log_at(6, level(log::level::warning), "hello from the farthest rank"));
  std::vector<logs::log_record> seen;
  auto has = [&](const std::string& text) {
    return std::any_of(seen.begin(), seen.end(),
                       [&](const logs::log_record& r) { return r.text == text; });
  };
  // Read at rank 3 (a leaf: its dmesg goes to the root through the tree).
  BOOST_REQUIRE(eventually(10s, [&] {
    auto lines = ask<std::vector<logs::log_record>>(logs.at(3), logs::dmesg_atom::value,
                                                    uint64_t{0}, uint8_t{4});
    if (!lines)
      return false;
    seen = *lines;
    return has("hello from the farthest rank") && has("kept from five");
  }));
  for (const auto& r : seen) {
    if (r.text == "hello from the farthest rank") {
      BOOST_TEST(r.rank == 6u);
      BOOST_TEST(r.address == rank_addresses[6]);
      BOOST_TEST(r.level == static_cast<uint8_t>(log::level::warning));
      BOOST_TEST(r.component == "test");
      BOOST_TEST(r.time_ms > 0);
    }
    BOOST_TEST(r.text != "not kept");
  }
  // Numbered at the root; a level filter and `after` narrow the answer.
  for (size_t i = 1; i < seen.size(); ++i)
    BOOST_TEST(seen[i].seq > seen[i - 1].seq);
  auto warnings = ask<std::vector<logs::log_record>>(
    logs.at(0), logs::dmesg_atom::value, uint64_t{0}, static_cast<uint8_t>(log::level::warning));
  BOOST_REQUIRE(warnings);
  for (const auto& r : *warnings)
    BOOST_TEST(r.level <= static_cast<uint8_t>(log::level::warning));
  auto later = ask<std::vector<logs::log_record>>(logs.at(0), logs::dmesg_atom::value,
                                                  seen.back().seq, uint8_t{4});
  BOOST_REQUIRE(later);
  for (const auto& r : *later)
    BOOST_TEST(r.seq > seen.back().seq);
  // Rank 6 counted what it took and sent (the root's answer to its batch may still be
  // on its way).
  std::optional<logs::logs_stats> stats;
  BOOST_TEST(eventually(5s, [&] {
    auto s = ask<logs::logs_stats>(logs.at(6), caf::get_atom::value);
    if (s)
      stats = *s;
    return s && s->forwarded >= 1u;
  }));
  BOOST_REQUIRE(stats);
  BOOST_TEST(stats->captured >= 1u);
  BOOST_TEST(stats->lost == 0u);
  // A bad level is refused.
  BOOST_TEST(has_code(log_at(2, 9, "x"), errc::invalid_argument));
}

BOOST_AUTO_TEST_SUITE_END()
