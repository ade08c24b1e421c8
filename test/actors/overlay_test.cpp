#define BOOST_TEST_MODULE overlay

// The tree overlay (actors/overlay/): its tree and combining rules on their own, then
// routing, reductions and broadcast across real `actorhost --size` instances of 7
// ranks (fanout 2) and 16 ranks (fanout 8), and the tree rebuilt after a rank dies.

#include <csignal>
#include <set>

#include <nlohmann/json.hpp>

#include "actors/group/view.hpp"
#include "actors/overlay/overlay.hpp"
#include "test/actors/instance_fixture.hpp"
#include "test/support/module_host.hpp"
#include "test/support/process.hpp"
#include "test/support/timing.hpp"

using namespace troupe;
using namespace troupe::test;
using namespace std::chrono_literals;
namespace ov = troupe::overlay;

namespace {

/// Ranks from `from` to `to` as the tree routes (each hop a parent or a child).
std::vector<uint32_t> expected_path(uint32_t from, uint32_t to, uint32_t fanout) {
  std::vector<uint32_t> path{from};
  while (path.back() != to)
    path.push_back(ov::next_hop(path.back(), to, fanout));
  return path;
}

} // namespace

BOOST_AUTO_TEST_SUITE(tree)

BOOST_AUTO_TEST_CASE(parents_children_and_subtrees_of_a_k_ary_tree) {
  BOOST_TEST(ov::parent_of(0, 2) == ov::no_rank);
  BOOST_TEST(ov::parent_of(5, 2) == 2u);
  BOOST_TEST(ov::parent_of(9, 8) == 1u);
  BOOST_TEST((ov::children_of(2, 7, 2) == std::vector<uint32_t>{5, 6}));
  BOOST_TEST((ov::children_of(3, 7, 2).empty()));
  BOOST_TEST((ov::children_of(1, 16, 8) == std::vector<uint32_t>{9, 10, 11, 12, 13, 14, 15}));
  BOOST_TEST((ov::subtree_of(1, 7, 2) == std::vector<uint32_t>{1, 3, 4}));
  BOOST_TEST((ov::subtree_of(0, 16, 8).size() == 16u));
  BOOST_TEST((ov::subtree_of(7, 7, 2).empty()));
  // Every rank is in exactly its ancestors' subtrees, for several shapes.
  for (uint32_t fanout : {1u, 2u, 3u, 8u})
    for (uint32_t size : {1u, 2u, 7u, 16u, 100u})
      for (uint32_t r = 0; r < size; ++r) {
        auto below = ov::subtree_of(r, size, fanout);
        for (auto b : below) {
          auto up = b;
          while (up != r && up != ov::no_rank)
            up = ov::parent_of(up, fanout);
          BOOST_REQUIRE_MESSAGE(up == r, b << " not below " << r << " (fanout "
                                           << fanout << ", size " << size << ")");
        }
      }
}

BOOST_AUTO_TEST_CASE(routes_follow_tree_edges_and_reach_their_rank) {
  for (uint32_t fanout : {1u, 2u, 8u})
    for (uint32_t size : {7u, 16u, 40u})
      for (uint32_t a = 0; a < size; ++a)
        for (uint32_t b = 0; b < size; ++b) {
          auto path = expected_path(a, b, fanout);
          BOOST_REQUIRE(path.size() <= 2 * size);
          for (size_t i = 1; i < path.size(); ++i) {
            auto x = path[i - 1];
            auto y = path[i];
            BOOST_REQUIRE(y < size);
            BOOST_REQUIRE(ov::parent_of(x, fanout) == y || ov::parent_of(y, fanout) == x);
          }
        }
  BOOST_TEST((expected_path(6, 5, 2) == std::vector<uint32_t>{6, 2, 5}));
  BOOST_TEST((expected_path(3, 6, 2) == std::vector<uint32_t>{3, 1, 0, 2, 6}));
}

BOOST_AUTO_TEST_CASE(values_combine_by_op_and_mismatches_are_errors) {
  auto v = ov::value::of_integer(3);
  BOOST_TEST(!ov::combine("sum", v, ov::value::of_integer(4)));
  BOOST_TEST(v.i == 7);
  BOOST_TEST(!ov::combine("max", v, ov::value::of_real(9.5)));
  BOOST_TEST(v.kind == ov::value::real);
  BOOST_TEST(v.d == 9.5);
  ov::value none;
  BOOST_TEST(!ov::combine("min", none, ov::value::of_integer(-2)));
  BOOST_TEST(none.i == -2);
  auto t = ov::value::of_text(1, "one");
  BOOST_TEST(!ov::combine("concat", t, ov::value::of_text(0, "zero")));
  BOOST_TEST(t.by_rank.size() == 2u);
  BOOST_TEST(t.by_rank.begin()->second == "zero");
  auto err = ov::combine("sum", t, ov::value::of_text(2, "x"));
  BOOST_TEST(has_code(err, errc::invalid_argument), describe(err));
  err = ov::combine("no-such-op", v, ov::value::of_integer(1));
  BOOST_TEST(has_code(err, errc::not_found), describe(err));
  BOOST_TEST(describe(err).find("no-such-op") != std::string::npos);
  auto builtin = ov::register_reduction("sum", [](ov::value&, const ov::value&) {
    return caf::error{};
  });
  BOOST_TEST(has_code(builtin.error(), errc::refused));
  auto x = ov::value::of_integer(6);
  {
    auto xor_fn = [](ov::value& a, const ov::value& b) {
      a.i ^= b.i;
      return caf::error{};
    };
    auto registration = ov::register_reduction("unit-test-xor", xor_fn);
    BOOST_TEST(!registration.error());
    BOOST_TEST(has_code(ov::register_reduction("unit-test-xor", xor_fn).error(),
                        errc::refused));
    BOOST_TEST(!ov::combine("unit-test-xor", x, ov::value::of_integer(3)));
    BOOST_TEST(x.i == 5);
  }
  // The registration is gone: so is the function.
  BOOST_TEST(has_code(ov::combine("unit-test-xor", x, ov::value::of_integer(3)),
                      errc::not_found));
}

BOOST_AUTO_TEST_SUITE_END()


BOOST_FIXTURE_TEST_SUITE(instance, instance_fixture)

BOOST_AUTO_TEST_CASE(seven_ranks_fanout_two_route_reduce_broadcast_and_rebuild) {
  start(7, 2);
  // Each rank's place is the k-ary tree's.
  for (uint32_t r = 0; r < 7; ++r) {
    auto s = ask<ov::status>(overlays[r], ov::status_atom::value);
    BOOST_REQUIRE(s);
    BOOST_TEST(s->rank == r);
    BOOST_TEST(s->parent == ov::parent_of(r, 2));
    BOOST_TEST((s->children == ov::children_of(r, 7, 2)));
    BOOST_TEST(s->address == rank_addresses[r]);
  }
  // Routes: every pair, hop by hop along the tree.
  for (uint32_t a = 0; a < 7; ++a)
    for (uint32_t b = 0; b < 7; ++b) {
      auto path = ask<std::vector<uint32_t>>(overlays[a], ov::route_atom::value, b,
                                             std::vector<uint32_t>{});
      BOOST_REQUIRE_MESSAGE(path, a << " -> " << b << ": " << error_of(path));
      BOOST_TEST((*path == expected_path(a, b, 2)), a << " -> " << b);
    }
  // A request routed to a provider on another rank gets that provider's answer.
  auto far = ask<ov::status>(overlays[3], ov::route_atom::value, uint32_t{6},
                             std::string{"overlay"}, caf::make_message(ov::status_atom::value));
  BOOST_REQUIRE(far);
  BOOST_TEST(far->rank == 6u);
  BOOST_TEST(far->address == rank_addresses[6]);
  auto nowhere = ask<ov::status>(overlays[3], ov::route_atom::value, uint32_t{99},
                                 std::string{"overlay"},
                                 caf::make_message(ov::status_atom::value));
  BOOST_TEST(!nowhere);
  BOOST_TEST(has_code(nowhere.error(), errc::not_found));
  auto no_provider = ask<ov::status>(overlays[0], ov::route_atom::value, uint32_t{5},
                                     std::string{"nope"},
                                     caf::make_message(ov::status_atom::value));
  BOOST_TEST(!no_provider);
  BOOST_TEST(describe(no_provider.error()).find("rank 5 runs no provider named \"nope\"")
               != std::string::npos,
             describe(no_provider.error()));
  // Reductions, asked at a leaf and run from the root.
  auto sum = reduce(6, spec("sum", "rank"));
  BOOST_TEST(sum.result.i == 21);
  BOOST_TEST(sum.contributors == 7u);
  BOOST_TEST(sum.missing.empty());
  BOOST_TEST(sum.errors.empty());
  BOOST_TEST(reduce(4, spec("max", "rank")).result.i == 6);
  BOOST_TEST(reduce(0, spec("min", "rank")).result.i == 0);
  BOOST_TEST(reduce(2, spec("sum", "one")).result.i == 7);
  BOOST_TEST(reduce(5, spec("bitor", "rank")).result.i == 7); // the module's function
  auto statuses = reduce(1, spec("concat", "status"));
  BOOST_REQUIRE_EQUAL(statuses.result.by_rank.size(), 7u);
  for (const auto& [rank, text] : statuses.result.by_rank) {
    auto j = nlohmann::json::parse(text);
    BOOST_TEST(j["rank"].get<uint32_t>() == rank);
    BOOST_TEST(j["address"].get<std::string>() == rank_addresses[rank]);
  }
  // Bad reductions: every rank's error is reported, nothing hangs.
  auto bad = reduce(3, spec("sum", "status"));
  BOOST_TEST(bad.contributors == 0u);
  BOOST_TEST(bad.errors.size() == 7u);
  auto unknown = reduce(3, spec("no-such-op", "rank"));
  BOOST_TEST(!unknown.errors.empty());
  // Broadcast: the tally of every rank gets the text once.
  auto sent = ask<ov::reduction_result>(overlays[4], ov::broadcast_atom::value,
                                        std::string{"tally"},
                                        caf::make_message(std::string{"hello"}));
  BOOST_REQUIRE(sent);
  BOOST_TEST(sent->result.i == 7);
  auto tallied = spec("sum", "query");
  tallied.provider = "tally";
  tallied.content = caf::make_message(caf::get_atom::value);
  BOOST_TEST(eventually(5s, [&] { return reduce(0, tallied).result.i == 7; }));
  auto got = ask<std::string>(overlays[0], ov::route_atom::value, uint32_t{5},
                              std::string{"tally"},
                              caf::make_message(caf::get_atom::value, int64_t{0}));
  BOOST_REQUIRE(got);
  BOOST_TEST(*got == "hello");
  // Kill rank 2 (an inner node: 5 and 6 hang below it). The view drops it, every
  // overlay rebuilds its tree, and reductions cover the 6 left.
  auto victim = rank_addresses[2];
  int pid = -1;
  for (size_t i = 0; i < instance->addresses.size(); ++i)
    if (instance->addresses[i] == victim)
      pid = instance->pids[i];
  BOOST_REQUIRE(pid > 0);
  ::kill(pid, SIGKILL);
  overlays.erase(overlays.begin() + 2);
  BOOST_REQUIRE(eventually(death_notice_bound + 10s, [&] {
    auto v = group::read_view_file(instance->view_file);
    return v.members.size() == 6u;
  }));
  BOOST_REQUIRE(every_rank_sees(6));
  auto after = reduce(0, spec("sum", "one"));
  BOOST_TEST(after.result.i == 6);
  BOOST_TEST(after.missing.empty());
  auto view = group::read_view_file(instance->view_file);
  auto places = reduce(5, spec("concat", "status"));
  BOOST_REQUIRE_EQUAL(places.result.by_rank.size(), 6u);
  for (const auto& [rank, text] : places.result.by_rank) {
    auto j = nlohmann::json::parse(text);
    BOOST_TEST(j["address"].get<std::string>() == view.members[rank].address);
    BOOST_TEST((j["children"].get<std::vector<uint32_t>>() == ov::children_of(rank, 6, 2)));
  }
}

BOOST_AUTO_TEST_CASE(sixteen_ranks_with_the_default_overlay_fanout_eight) {
  start(16, std::nullopt); // the overlay actorhost --size adds: fanout 8
  auto s = ask<ov::status>(overlays[0], ov::status_atom::value);
  BOOST_REQUIRE(s);
  BOOST_TEST(s->fanout == 8u);
  BOOST_TEST(s->children.size() == 8u);
  BOOST_TEST(reduce(15, spec("sum", "rank")).result.i == 120);
  BOOST_TEST(reduce(9, spec("bitor", "rank")).result.i == 15);
  BOOST_TEST(reduce(3, spec("sum", "one")).result.i == 16);
  auto path = ask<std::vector<uint32_t>>(overlays[15], ov::route_atom::value, uint32_t{9},
                                         std::vector<uint32_t>{});
  BOOST_REQUIRE(path);
  BOOST_TEST((*path == std::vector<uint32_t>{15, 1, 9}));
  path = ask<std::vector<uint32_t>>(overlays[12], ov::route_atom::value, uint32_t{7},
                                    std::vector<uint32_t>{});
  BOOST_REQUIRE(path);
  BOOST_TEST((*path == std::vector<uint32_t>{12, 1, 0, 7}));
}

BOOST_AUTO_TEST_SUITE_END()
