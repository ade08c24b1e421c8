#pragma once
// An `actorhost --size` instance for the instance services' suites (overlay, events):
// its ranks run the test module's tally, the group, the overlay (fanout from the
// test, or the one actorhost adds) and the events actorhost adds.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "actors/group/view.hpp"
#include "actors/overlay/overlay.hpp"
#include "runtime/node_service.hpp"
#include "test/actors/group_client_fixture.hpp"
#include "test/support/module_host.hpp"
#include "test/support/process.hpp"
#include "test/support/timing.hpp"

namespace troupe::test {

using namespace std::chrono_literals;

/// The config of an instance whose ranks run the test module's tally and an overlay
/// of `fanout` (omitted: the overlay actorhost adds by itself, fanout 8).
/// `extra`: more providers (JSON objects, comma-separated).
inline std::string instance_config(std::optional<uint32_t> fanout,
                                   const std::string& extra = {}) {
  std::string providers =
    R"([{"type": "group", "name": "group", "provider_id": 1, "config": {}},
        {"type": "tally", "name": "tally", "provider_id": 3})";
  if (fanout)
    providers += R"(, {"type": "overlay", "name": "overlay", "provider_id": 1,
                      "dependencies": {"group": "group"},
                      "config": {"fanout": )"
                 + std::to_string(*fanout) + R"(, "timeout_ms": 3000}})";
  if (!extra.empty())
    providers += ", " + extra;
  // A heartbeat that stays quiet during a test (actorhost would add one beating every
  // second, whose broadcasts would share the wire with what a test counts or drops),
  // unless the test brings its own (or leaves the overlay to actorhost too).
  if (fanout && extra.find("\"heartbeat\"") == std::string::npos)
    providers += R"(, {"type": "heartbeat", "name": "heartbeat", "provider_id": 1,
                     "dependencies": {"group": "group", "overlay": "overlay"},
                     "config": {"period_ms": 3600000}})";
  providers += "]";
  return R"({"threads": 1, "transport": {)" + keepalive_setting()
         + R"(}, "libraries": [")" + test_library("troupe_test_module.so")
         + R"("], "providers": )" + providers + "}";
}

struct instance_fixture : group_client_fixture {
  std::unique_ptr<actorhost_instance> instance;
  std::vector<std::string> rank_addresses; // by rank, from the view file
  std::vector<caf::actor> overlays;        // by rank

  void start(unsigned size, std::optional<uint32_t> fanout,
             const std::string& extra_providers = {}) {
    instance =
      std::make_unique<actorhost_instance>(size, instance_config(fanout, extra_providers));
    auto view = group::read_view_file(instance->view_file);
    BOOST_REQUIRE_EQUAL(view.members.size(), size_t{size});
    rank_addresses.clear();
    overlays.clear();
    for (const auto& m : view.members) {
      rank_addresses.push_back(m.address);
      auto o = client.remote_provider(m.address, "overlay", 1, 20s);
      BOOST_REQUIRE_MESSAGE(o, "no overlay at " << m.address << ": " << error_of(o));
      overlays.push_back(*o);
    }
    BOOST_REQUIRE(every_rank_sees(size));
  }

  /// Provider `type` (id 1) of every rank, by rank.
  std::vector<caf::actor> every_rank_s(const std::string& type) {
    std::vector<caf::actor> found;
    for (const auto& address : rank_addresses) {
      auto p = client.remote_provider(address, type, 1, 20s);
      BOOST_REQUIRE_MESSAGE(p, "no " << type << " provider at " << address << ": "
                                      << error_of(p));
      found.push_back(*p);
    }
    return found;
  }

  /// Waits until every overlay still listed has a tree of `size` ranks.
  bool every_rank_sees(unsigned size) {
    return eventually(10s, [&] {
      for (const auto& o : overlays) {
        auto s = ask<overlay::status>(o, overlay::status_atom::value);
        if (!s || s->size != size || s->rank == overlay::no_rank)
          return false;
      }
      return true;
    });
  }

  /// Rank `rank`'s node drops the next `count` messages from other nodes that carry an
  /// overlay reduction (a broadcast, or a part of one), as a lossy network would.
  void drop_next_overlay_messages(size_t rank, uint64_t count) {
    auto service = client.remote_node(rank_addresses.at(rank), 10s);
    BOOST_REQUIRE(service);
    auto armed = ask<std::string>(*service, fault_atom::value, std::string{"drop-in"},
                                  std::string{"troupe::overlay::reduction"}, count);
    BOOST_REQUIRE_MESSAGE(armed, error_of(armed));
  }

  overlay::reduction_result reduce(size_t at, overlay::reduction spec) {
    auto r = ask<overlay::reduction_result>(overlays.at(at), overlay::reduce_atom::value, spec);
    BOOST_REQUIRE_MESSAGE(r, "reduction failed: " << error_of(r));
    return *r;
  }

  static overlay::reduction spec(std::string op, std::string contribution) {
    overlay::reduction s;
    s.op = std::move(op);
    s.contribution = std::move(contribution);
    return s;
  }
};


} // namespace troupe::test
