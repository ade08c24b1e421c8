#define BOOST_TEST_MODULE group_centralized
#include <boost/test/unit_test.hpp>

// The centralized group backend across real actorhost processes: concurrent joins
// through any member, graceful leave, failure detection (kill -9 through the
// transport, SIGSTOP through pings), metadata, subscriptions, the view file.

#include <atomic>
#include <filesystem>
#include <chrono>
#include <csignal>
#include <fstream>
#include <functional>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include "actors/builtin.hpp"
#include "actors/group/client.hpp"
#include "actors/group/group.hpp"
#include "actors/group/view.hpp"
#include "base/error.hpp"
#include "runtime/config.hpp"
#include "runtime/node.hpp"
#include "runtime/node_service.hpp"
#include "transport/middleman.hpp"
#include "test/actors/group_client_fixture.hpp"
#include "test/support/process.hpp"
#include "test/support/timing.hpp"

using namespace troupe;
using namespace troupe::test;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

// The leader's pings in these tests (group.config of the centralized backend).
constexpr auto ping_interval = 100ms;
constexpr auto ping_timeout = 200ms;
constexpr int ping_max_num_timeouts = 3;

const std::string fast_pings =
  R"({"ping_interval_ms": )" + std::to_string(ping_interval.count())
  + R"(, "ping_timeout_ms": )" + std::to_string(ping_timeout.count())
  + R"(, "ping_max_num_timeouts": )" + std::to_string(ping_max_num_timeouts) + "}";

/// The longest a member that stopped answering stays in the view: up to one interval
/// until the next tick pings it, then each of the missed pings waits out its timeout
/// and the next tick sends another; plus the margin.
constexpr auto ping_removal_bound =
  ping_interval + ping_max_num_timeouts * (ping_timeout + ping_interval)
  + detection_margin;

std::string host_config(const std::string& group_config) {
  return R"({"transport": {"port": 0, )" + keepalive_setting()
         + R"(}, "threads": 1, "providers": [{"type": "group", "name": "g",
             "provider_id": 42, "config": )"
         + group_config + "}]}";
}

std::string leader_config(const std::string& file) {
  return host_config(R"({"bootstrap": "self", "file": ")" + file
                     + R"(", "group": {"type": "centralized", "config": )" + fast_pings
                     + "}}");
}

std::string joiner_config(const std::string& contact) {
  return host_config(R"({"bootstrap": "join", "join_address": ")" + contact
                     + R"(", "group": {"type": "centralized"}})");
}

/// A leader and `n` members that joined it at the same moment.
struct group_fixture : group_client_fixture {
  temp_dir dir;
  std::string file = dir.path() + "/g.json";
  std::unique_ptr<host_process> leader;
  std::vector<std::unique_ptr<host_process>> members;
  std::vector<caf::actor> handles; // leader first

  void start(size_t n, bool join_through_a_member = false) {
    leader = std::make_unique<host_process>(leader_config(file));
    std::string contact = leader->address();
    if (join_through_a_member) {
      members.push_back(std::make_unique<host_process>(joiner_config(contact)));
      contact = members.back()->address();
    }
    for (size_t i = 0; i < n; ++i)
      members.push_back(std::make_unique<host_process>(host_process::no_wait_t{},
                                                       joiner_config(contact)));
    for (auto& m : members)
      m->wait_ready();
    handles.push_back(group_at(leader->address()));
    for (auto& m : members)
      handles.push_back(group_at(m->address()));
  }

  /// True when every live member reports `members` members and the same digest.
  bool all_agree(size_t members_expected, std::string* digest = nullptr) {
    std::string first;
    for (const auto& h : handles) {
      if (!h)
        continue;
      auto v = try_view_of(h);
      if (!v || v->members.size() != members_expected)
        return false;
      if (first.empty())
        first = v->digest();
      else if (v->digest() != first)
        return false;
    }
    if (digest != nullptr)
      *digest = first;
    return true;
  }
};

/// An actor that records the membership events it receives.
struct event_log {
  std::mutex mtx;
  std::vector<std::string> events;

  void add(std::string e) {
    std::lock_guard<std::mutex> guard{mtx};
    events.push_back(std::move(e));
  }
  bool has(const std::string& e) {
    std::lock_guard<std::mutex> guard{mtx};
    return std::find(events.begin(), events.end(), e) != events.end();
  }
};

caf::behavior recorder(caf::event_based_actor*, std::shared_ptr<event_log> log) {
  auto text = [](const char* kind, const group::member& m) {
    return std::string{kind} + " " + m.address;
  };
  return {
    [=](group::member_joined_atom, const group::member& m, const group::view_version&) {
      log->add(text("joined", m));
    },
    [=](group::member_left_atom, const group::member& m, const group::view_version&) {
      log->add(text("left", m));
    },
    [=](group::member_died_atom, const group::member& m, const group::view_version&) {
      log->add(text("died", m));
    },
    [=](group::metadata_changed_atom, const std::string& key, const std::string& value,
        bool removed, const group::view_version&) {
      log->add(removed ? "removed " + key : "set " + key + "=" + value);
    },
  };
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(centralized, group_fixture)

BOOST_AUTO_TEST_CASE(eight_concurrent_joins_through_a_member_end_in_one_view) {
  start(8, true);
  std::string digest;
  BOOST_REQUIRE_MESSAGE(eventually(10s, [&] { return all_agree(10, &digest); }),
                        "the members never agreed on a 10-member view");
  auto v = view_of(leader->address());
  BOOST_TEST(v.members.size() == 10u);
  BOOST_TEST(v.members[0].address == leader->address()); // the leader keeps rank 0
  BOOST_TEST(v.leader == v.members[0].member_id);
  BOOST_TEST(v.version.seq == 9u); // nine joins, nothing lost, nothing twice
  for (auto& m : members)
    BOOST_TEST(v.rank_of(m->address(), 42).has_value(), m->address());
  // The leader's view file catches up with the last change.
  BOOST_TEST(eventually(5s, [&] {
    try {
      return group::read_view_file(file).digest() == digest;
    } catch (const std::exception&) {
      return false;
    }
  }));
}

BOOST_AUTO_TEST_CASE(a_member_that_stops_leaves_at_once_and_the_leader_cannot_leave) {
  start(3);
  BOOST_REQUIRE(eventually(10s, [&] { return all_agree(4); }));
  auto before = view_of(leader->address());
  // SIGTERM: actorhost stops its providers, the member leaves on its way out.
  members[0]->process().signal(SIGTERM);
  BOOST_REQUIRE(members[0]->process().wait_exit(10s));
  handles[1] = nullptr;
  BOOST_TEST(eventually(2s, [&] { return all_agree(3); }));
  auto after = view_of(leader->address());
  BOOST_TEST(!after.rank_of(members[0]->address(), 42));
  BOOST_TEST((before.version < after.version));
  // The survivors keep their order (ranks only close the gap).
  std::vector<std::string> order_before;
  for (const auto& m : before.members)
    if (m.address != members[0]->address())
      order_before.push_back(m.address);
  std::vector<std::string> order_after;
  for (const auto& m : after.members)
    order_after.push_back(m.address);
  BOOST_TEST(order_before == order_after, boost::test_tools::per_element());
  // An explicit leave through another member (forwarded to the leader).
  auto id = after.members[2].member_id;
  auto left = ask<group::group_view>(handles[3], group::leave_atom::value, id);
  BOOST_REQUIRE_MESSAGE(left, error_of(left));
  BOOST_TEST(!left->find(id));
  // The leader refuses to leave, and says why.
  auto refused =
    ask<group::group_view>(handles[3], group::leave_atom::value, after.leader);
  BOOST_REQUIRE(!refused);
  auto text = describe(refused.error());
  BOOST_TEST(text.find("troupe.refused") == 0u, text);
  BOOST_TEST(text.find("is the leader") != std::string::npos, text);
  // A member the group does not have: not found, by id (not a timeout).
  auto unknown =
    ask<group::group_view>(handles[0], group::leave_atom::value, uint64_t{999});
  BOOST_REQUIRE(!unknown);
  BOOST_TEST(has_code(unknown.error(), errc::not_found), error_of(unknown));
  BOOST_TEST(error_of(unknown).find("has no member 999") != std::string::npos,
             error_of(unknown));
}

BOOST_AUTO_TEST_CASE(a_killed_member_leaves_every_view_within_the_death_notice_bound) {
  start(3);
  BOOST_REQUIRE(eventually(10s, [&] { return all_agree(4); }));
  auto victim = members[1]->address();
  members[1]->process().signal(SIGKILL);
  auto killed_at = clock_type::now();
  handles[2] = nullptr;
  BOOST_REQUIRE(eventually(5s, [&] { return all_agree(3); }));
  auto took = clock_type::now() - killed_at;
  BOOST_TEST((took < death_notice_bound), ms_of(took) << " ms");
  BOOST_TEST(!view_of(leader->address()).rank_of(victim, 42));
}

BOOST_AUTO_TEST_CASE(a_silent_member_leaves_every_view_within_the_ping_bound) {
  start(2);
  BOOST_REQUIRE(eventually(10s, [&] { return all_agree(3); }));
  auto victim = members[0]->address();
  members[0]->process().signal(SIGSTOP);
  auto stopped_at = clock_type::now();
  handles[1] = nullptr;
  // Its connection stays up: only the pings can tell.
  bool removed = eventually(5s, [&] { return all_agree(2); });
  auto took = clock_type::now() - stopped_at;
  members[0]->process().signal(SIGCONT);
  BOOST_REQUIRE(removed);
  BOOST_TEST((took < ping_removal_bound), ms_of(took) << " ms");
  BOOST_TEST(!view_of(leader->address()).rank_of(victim, 42));
}

BOOST_AUTO_TEST_CASE(a_silent_member_that_resumes_learns_it_was_removed) {
  start(2);
  BOOST_REQUIRE(eventually(10s, [&] { return all_agree(3); }));
  auto& silent = members[0]->process();
  silent.signal(SIGSTOP);
  handles[1] = nullptr;
  BOOST_REQUIRE(eventually(5s, [&] { return all_agree(2); }));
  silent.signal(SIGCONT);
  // It says so in its log, and its view no longer has it.
  BOOST_TEST(
    silent.wait_for_text_on_stderr("was removed from the group by its leader", 10s),
    silent.err());
  auto own = view_of(members[0]->address());
  BOOST_TEST(!own.rank_of(members[0]->address(), 42));
  BOOST_TEST(own.members.size() == 2u);
}

BOOST_AUTO_TEST_CASE(metadata_and_subscriptions_reach_every_member) {
  start(2);
  BOOST_REQUIRE(eventually(10s, [&] { return all_agree(3); }));
  auto log = std::make_shared<event_log>();
  auto rec = client.system().spawn(recorder, log);
  auto first = ask<group::group_view>(handles[2], caf::subscribe_atom::value, rec);
  BOOST_REQUIRE(first);
  // Set through a member: forwarded to the leader, versioned, pushed everywhere.
  auto v1 = ask<group::view_version>(handles[1], caf::put_atom::value,
                                     std::string{"mode"}, std::string{"fast"});
  BOOST_REQUIRE_MESSAGE(v1, error_of(v1));
  BOOST_TEST((first->version < *v1));
  BOOST_TEST(eventually(5s, [&] {
    for (const auto& h : handles) {
      auto v = try_view_of(h);
      if (!v || v->metadata["mode"] != "fast" || v->version < *v1)
        return false;
    }
    return true;
  }));
  auto v2 =
    ask<group::view_version>(handles[0], caf::delete_atom::value, std::string{"mode"});
  BOOST_REQUIRE(v2);
  BOOST_TEST((*v1 < *v2));
  BOOST_TEST(eventually(
    5s, [&] { return all_agree(3) && view_of(members[1]->address()).metadata.empty(); }));
  // Removing it again: not found, by key (not a timeout).
  auto missing =
    ask<group::view_version>(handles[0], caf::delete_atom::value, std::string{"mode"});
  BOOST_REQUIRE(!missing);
  BOOST_TEST(has_code(missing.error(), errc::not_found), error_of(missing));
  BOOST_TEST(error_of(missing).find("has no metadata key \"mode\"") != std::string::npos,
             error_of(missing));
  // A join, a leave and a death as events.
  host_process late{joiner_config(leader->address())};
  members[0]->process().signal(SIGTERM);
  members[0]->process().wait_exit(10s);
  late.kill_hard();
  BOOST_TEST(eventually(5s, [&] {
    return log->has("set mode=fast") && log->has("removed mode")
           && log->has("joined " + late.address())
           && log->has("left " + members[0]->address())
           && log->has("died " + late.address());
  }));
  caf::anon_send_exit(rec, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_CASE(a_reader_never_sees_a_partial_view_file_while_members_churn) {
  leader = std::make_unique<host_process>(leader_config(file));
  // The leader writes its first view file just after it is ready, not before.
  BOOST_REQUIRE(eventually(10s, [&] { return std::filesystem::exists(file); }));
  std::atomic<bool> stop{false};
  std::atomic<int> reads{0};
  std::atomic<int> bad{0};
  std::string last_error;
  std::thread reader{[&] {
    while (!stop) {
      try {
        group::read_view_file(file);
        ++reads;
      } catch (const std::exception& e) {
        ++bad;
        last_error = e.what();
      }
    }
  }};
  for (int round = 0; round < 3; ++round) {
    std::vector<std::unique_ptr<host_process>> batch;
    for (int i = 0; i < 3; ++i)
      batch.push_back(std::make_unique<host_process>(host_process::no_wait_t{},
                                                     joiner_config(leader->address())));
    for (auto& b : batch)
      b->wait_ready();
    for (auto& b : batch)
      b->process().signal(SIGTERM);
    for (auto& b : batch)
      b->process().wait_exit(10s);
  }
  stop = true;
  reader.join();
  BOOST_TEST(reads.load() > 0);
  BOOST_TEST(bad.load() == 0, last_error);
  // A fresh reader finds the final one-member view.
  BOOST_TEST(
    eventually(5s, [&] { return group::read_view_file(file).members.size() == 1u; }));
}

BOOST_AUTO_TEST_CASE(joining_with_nobody_to_ask_is_a_clear_error_and_exit_2) {
  auto cfg = dir.write("lonely.json", host_config(R"({"bootstrap": "join", "join_address":
                         "ucx://127.0.0.1:1", "join_timeout_ms": 500,
                         "group": {"type": "centralized"}})"));
  auto r = run_to_end({bin_path("actorhost"), "-c", cfg}, 30s);
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(r.err.find("cannot join group \"g\": no member answered")
               != std::string::npos,
             r.err);
  BOOST_TEST(r.err.find("ucx://127.0.0.1:1") != std::string::npos, r.err);
  // A bootstrap list falls back: join if possible, else start alone.
  auto fallback = host_config(
    R"({"bootstrap": ["join", "self"], "join_address": "ucx://127.0.0.1:1",
        "join_timeout_ms": 300, "group": {"type": "centralized"}})");
  host_process alone{fallback};
  BOOST_TEST(view_of(alone.address()).members.size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_joiner_waits_for_the_view_file_of_a_group_not_started_yet) {
  // Started before the group exists: it keeps looking for the file (join_timeout_ms).
  members.push_back(std::make_unique<host_process>(
    host_process::no_wait_t{},
    host_config(R"({"bootstrap": "join", "file": ")" + file
                + R"(", "join_timeout_ms": 20000, "group": {"type": "centralized"}})"),
    std::vector<std::string>{"TROUPE_LOG=info"}));
  BOOST_REQUIRE(
    members[0]->process().wait_for_text_on_stderr("waiting for the view file", 20s));
  leader = std::make_unique<host_process>(leader_config(file));
  members[0]->wait_ready();
  handles.push_back(group_at(leader->address()));
  handles.push_back(group_at(members[0]->address()));
  BOOST_CHECK(eventually(10s, [&] { return all_agree(2); }));
}

BOOST_AUTO_TEST_CASE(members_from_one_view_file_follow_the_configured_primary) {
  // The primary is the last member in the file: its rank must not matter.
  group::group_view v;
  std::vector<std::unique_ptr<reserved_port>> ports; // held while the nodes start
  for (uint64_t i = 1; i <= 3; ++i) {
    ports.push_back(std::make_unique<reserved_port>());
    v.members.push_back({ports.back()->address(), 42, i, 0, {}});
  }
  BOOST_REQUIRE(!group::write_view_file(file, v));
  auto primary = v.members[2].address;
  for (const auto& port : ports)
    members.push_back(std::make_unique<host_process>(
      host_process::no_wait_t{},
      R"({"transport": {"port": )" + std::to_string(port->number())
        + R"(}, "threads": 1, "providers": [{"type": "group", "name": "g",
          "provider_id": 42, "config": {"bootstrap": "file", "file": ")"
        + file + R"(", "group": {"type": "centralized", "config": {"primary": ")"
        + primary + R"(", "ping_interval_ms": 100, "ping_timeout_ms": 200}}}}]})"));
  for (auto& m : members)
    m->wait_ready();
  for (auto& m : members)
    handles.push_back(group_at(m->address()));
  // The leader finds the members itself and brings them to its view.
  std::string digest;
  BOOST_REQUIRE(eventually(10s, [&] { return all_agree(3, &digest); }));
  auto seen = view_of(members[0]->address());
  BOOST_TEST(seen.leader == 3u);
  BOOST_TEST(seen.version.epoch == 1u); // a leader starting from a saved view: new epoch
  // It watches them too: a killed member is removed.
  members[0]->kill_hard();
  handles[0] = nullptr;
  BOOST_TEST(eventually(5s, [&] { return all_agree(2); }));
  BOOST_TEST(!view_of(primary).rank_of(members[0]->address(), 42));
}

BOOST_AUTO_TEST_CASE(a_view_given_in_the_config_starts_a_group) {
  reserved_port port;
  auto address = port.address();
  auto config = [&](const std::string& member_address) {
    return R"({"transport": {"port": )" + std::to_string(port.number())
           + R"(}, "threads": 1, "providers": [{"type": "group", "name": "g",
             "provider_id": 42, "config": {"bootstrap": "view",
             "group": {"type": "centralized"}, "view": {"members": [{"address": ")"
           + member_address + R"(", "provider_id": 42}]}}}]})";
  };
  {
    host_process host{config(address)};
    auto seen = view_of(host.address());
    BOOST_TEST(seen.members.size() == 1u);
    BOOST_TEST(seen.leader == seen.members[0].member_id);
  }
  auto bad = dir.write("stranger.json", config("ucx://127.0.0.1:1"));
  auto r = run_to_end({bin_path("actorhost"), "-c", bad}, 30s);
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(r.err.find("providers[0].config.view: this provider") != std::string::npos,
             r.err);
  BOOST_TEST(
    r.err.find("is not a member of the view in config.view") != std::string::npos, r.err);
}

BOOST_AUTO_TEST_CASE(a_client_handle_caches_refreshes_follows_and_fails_over) {
  start(2);
  BOOST_REQUIRE(eventually(10s, [&] { return all_agree(3); }));
  {
    // Talk to a member that is not the leader, so its death is a real failover.
    auto opened = group::group_client::open(client, members[0]->address(), 42);
    BOOST_REQUIRE_MESSAGE(opened, error_of(opened));
    auto g = *opened;
    BOOST_TEST(g.view().members.size() == 3u);
    // The cached view costs no message.
    auto sent = client.transport().stats().messages_out;
    for (int i = 0; i < 100; ++i)
      BOOST_TEST(g.view().members.size() == 3u);
    BOOST_TEST(client.transport().stats().messages_out == sent);
    // Refresh with nothing new: "no change".
    auto unchanged = g.refresh();
    BOOST_REQUIRE_MESSAGE(unchanged, error_of(unchanged));
    BOOST_TEST(!*unchanged);
    // A join: refresh brings it.
    host_process third{joiner_config(leader->address())};
    BOOST_REQUIRE(eventually(5s, [&] {
      auto changed = g.refresh();
      return changed && g.view().members.size() == 4u;
    }));
    // Auto-refresh: a pushed change reaches the cache without a refresh().
    BOOST_REQUIRE(!g.auto_refresh(true));
    auto version = g.view().version;
    BOOST_REQUIRE(g.set_metadata("stage", "two"));
    BOOST_TEST(eventually(5s, [&] {
      auto v = g.view();
      return version < v.version && v.metadata["stage"] == "two";
    }));
    // Failover: the member the handle talks to dies; calls go to another member and
    // auto-refresh follows another member too.
    members[0]->kill_hard();
    handles[1] = nullptr;
    auto after_kill = g.refresh();
    BOOST_REQUIRE_MESSAGE(after_kill, error_of(after_kill));
    BOOST_TEST(g.member_address() != members[0]->address());
    BOOST_TEST(eventually(5s, [&] { return g.view().members.size() == 3u; }));
    host_process fourth{joiner_config(leader->address())};
    BOOST_TEST(
      eventually(5s, [&] { return g.view().rank_of(fourth.address(), 42).has_value(); }));
    // A fresh client opens the group from the leader's view file.
    BOOST_REQUIRE(eventually(5s, [&] {
      try {
        return group::read_view_file(file).rank_of(fourth.address(), 42).has_value();
      } catch (const std::exception&) {
        return false;
      }
    }));
    auto from_file = group::group_client::open_file(client, file);
    BOOST_REQUIRE_MESSAGE(from_file, error_of(from_file));
    BOOST_TEST(from_file->view().digest() == g.view().digest());
  } // the handles go before the client node stops
}

BOOST_AUTO_TEST_CASE(a_member_that_missed_a_pushed_view_gets_it_from_the_leader_s_pings) {
  start(2);
  BOOST_REQUIRE(eventually(10s, [&] { return all_agree(3); }));
  // The first member's node loses the next pushed change, as a lossy network would (a
  // view_change travels in the leader's pushes only).
  auto service = client.remote_node(members[0]->address(), 10s);
  BOOST_REQUIRE_MESSAGE(service, error_of(service));
  auto drops = [&] {
    auto s = ask<stats_map>(*service, stats_atom::value);
    return s ? (*s)["drop:injected fault"] : uint64_t{0};
  };
  auto armed = ask<std::string>(*service, fault_atom::value, std::string{"drop-in"},
                                std::string{"troupe::group::view_change"}, uint64_t{1});
  BOOST_REQUIRE_MESSAGE(armed, error_of(armed));
  auto changed = ask<group::view_version>(handles[0], caf::put_atom::value,
                                          std::string{"stage"}, std::string{"missed"});
  BOOST_REQUIRE_MESSAGE(changed, error_of(changed));
  auto has_it = [&](const caf::actor& member) {
    auto v = try_view_of(member);
    return v && v->metadata.count("stage") == 1 && v->metadata["stage"] == "missed";
  };
  // The push to it was lost (its node counted the drop); the other member has it.
  BOOST_REQUIRE(eventually(5s, [&] { return drops() == 1; }));
  auto lost_at = clock_type::now();
  BOOST_TEST(eventually(5s, [&] { return has_it(handles[2]); }));
  // The leader's next ping carries its version; the member answers with its older one
  // and gets the view: within a ping interval, plus the margin.
  bool caught_up =
    eventually(ping_interval + detection_margin, [&] { return has_it(handles[1]); });
  auto took = clock_type::now() - lost_at;
  BOOST_TEST(caught_up, "not caught up after " << ms_of(took) << " ms");
  BOOST_TEST(all_agree(3));
  BOOST_TEST(drops() == 1); // one message lost, no more
}

BOOST_AUTO_TEST_CASE(a_client_call_to_a_silent_member_ends_at_the_handle_s_timeout) {
  // A call waits no longer than the handle's timeout (its own bound, not a CAF request
  // timeout), then goes to another member; the silent member's late answer, once it
  // comes, answers no later call.
  start(2);
  BOOST_REQUIRE(eventually(10s, [&] { return all_agree(3); }));
  constexpr auto call_timeout = 300ms;
  auto opened = group::group_client::open(client, members[0]->address(), 42, call_timeout);
  BOOST_REQUIRE_MESSAGE(opened, error_of(opened));
  auto g = *opened;
  members[0]->stop_answering();
  auto stopped_at = std::chrono::steady_clock::now();
  auto r = g.refresh();
  auto took = std::chrono::steady_clock::now() - stopped_at;
  members[0]->process().signal(SIGCONT);
  BOOST_REQUIRE_MESSAGE(r, error_of(r));
  BOOST_TEST(g.member_address() != members[0]->address());
  BOOST_TEST((took >= call_timeout), ms_of(took) << " ms");
  BOOST_TEST((took < call_timeout + detection_margin), ms_of(took) << " ms");
  // The first member answers again: its late answer to the call that timed out
  // reaches the handle's caller meanwhile, and is no later call's answer.
  for (int i = 0; i < 20; ++i) {
    auto again = g.refresh();
    BOOST_REQUIRE_MESSAGE(again, error_of(again));
    auto view = g.view();
    BOOST_TEST(view.members.size() == 3u);
  }
}

BOOST_AUTO_TEST_SUITE_END()
