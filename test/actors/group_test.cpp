#define BOOST_TEST_MODULE group
#include <boost/test/unit_test.hpp>

// Groups, first step: the view value and its file, and the static backend with the
// "self" and "file" bootstraps across real actorhost processes.

#include <chrono>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include "actors/builtin.hpp"
#include "actors/group/group.hpp"
#include "actors/group/view.hpp"
#include "base/error.hpp"
#include "runtime/config.hpp"
#include "runtime/node.hpp"
#include "test/actors/group_client_fixture.hpp"
#include "test/support/process.hpp"

using namespace troupe;
using namespace troupe::test;
using namespace std::chrono_literals;

namespace {

std::string group_node_config(uint16_t port, const std::string& group_config) {
  return R"({"transport": {"port": )" + std::to_string(port)
         + R"(}, "providers": [{"type": "group", "name": "g", "provider_id": 42,
             "config": )"
         + group_config + "}]}";
}

} // namespace

BOOST_AUTO_TEST_SUITE(view_values)

BOOST_AUTO_TEST_CASE(a_view_survives_its_json_file_and_keeps_its_digest) {
  group::group_view v;
  v.members = {{"ucx://127.0.0.1:1", 42, 7, 3, {{"role", "a"}}},
               {"ucx://127.0.0.1:2", 42, 8, 0, {}}};
  v.metadata = {{"name", "demo"}};
  v.version = {2, 5};
  temp_dir dir;
  auto path = dir.path() + "/view.json";
  BOOST_REQUIRE(!group::write_view_file(path, v));
  auto back = group::read_view_file(path);
  BOOST_TEST(back.digest() == v.digest());
  BOOST_TEST(back.members.size() == 2u);
  BOOST_TEST(back.members[0].metadata.at("role") == "a");
  BOOST_TEST(back.version.seq == 5u);
  BOOST_TEST(*back.rank_of("ucx://127.0.0.1:2", 42) == 1u);
  v.version.seq = 6;
  BOOST_TEST(back.digest() != v.digest());
}

BOOST_AUTO_TEST_CASE(bad_view_files_name_the_key) {
  auto error_of = [](const std::string& text) {
    try {
      group::view_from_json(text, "view.json");
    } catch (const config_error& e) {
      return std::string{e.what()};
    }
    return std::string{};
  };
  BOOST_TEST(
    error_of(R"({"members": []})").find("view.json: members: expected a non-empty")
    == 0u);
  BOOST_TEST(error_of(R"({"members": [{"address": "ucx://h:1"}]})")
               .find("members[0]: missing required key \"provider_id\"")
             != std::string::npos);
  BOOST_TEST(error_of(R"({"members": [{"address": "ucx://h:1", "provider_id": 70000}]})")
               .find("members[0].provider_id: expected an integer from 0 to 65534")
             != std::string::npos);
  BOOST_TEST(error_of(R"({"members": [{"address": "a", "provider_id": 1},
                                      {"address": "a", "provider_id": 1}]})")
               .find("members[1]: duplicate member")
             != std::string::npos);
  BOOST_TEST(error_of(R"({"memebrs": []})").find("memebrs: unknown key")
             != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_FIXTURE_TEST_SUITE(static_groups, group_client_fixture)

BOOST_AUTO_TEST_CASE(four_processes_start_from_one_view_file_and_agree) {
  temp_dir dir;
  std::vector<std::unique_ptr<reserved_port>> ports; // held while the nodes start
  group::group_view v;
  for (int i = 0; i < 4; ++i) {
    ports.push_back(std::make_unique<reserved_port>());
    v.members.push_back(
      {ports.back()->address(), 42, static_cast<uint64_t>(i + 1), 0, {}});
  }
  auto file = dir.path() + "/group.json";
  BOOST_REQUIRE(!group::write_view_file(file, v));
  std::vector<std::unique_ptr<host_process>> hosts;
  for (const auto& port : ports)
    hosts.push_back(std::make_unique<host_process>(group_node_config(
      port->number(), R"({"bootstrap": "file", "group": {"type": "static"}, "file": ")"
                        + file + R"("})")));
  for (size_t i = 0; i < hosts.size(); ++i) {
    auto seen = view_of(hosts[i]->address());
    BOOST_TEST_CONTEXT("member " << i) {
      BOOST_TEST(seen.members.size() == 4u);
      BOOST_TEST(seen.digest() == v.digest());
      BOOST_TEST(*seen.rank_of(hosts[i]->address(), 42) == i);
    }
  }
  // A static group refuses a join, with the reason.
  auto g = client.remote_provider(hosts[0]->address(), "group", 42, 20s);
  BOOST_REQUIRE(g);
  caf::scoped_actor self{client.system()};
  std::string answer;
  self
    ->request(*g, 20s, group::join_atom::value,
              group::member{client.address(), 42, 0, 0, {}}, caf::actor{self})
    .receive([&](const group::group_view&) { answer = "accepted"; },
             [&](const caf::error& e) { answer = describe(e); });
  BOOST_TEST(answer.find("troupe.refused") == 0u, answer);
  BOOST_TEST(answer.find("static: join is refused") != std::string::npos, answer);
  // ... a leave, even of a member it has, and metadata changes, through any member.
  auto leave =
    ask<group::group_view>(*g, group::leave_atom::value, v.members[1].member_id);
  BOOST_REQUIRE(!leave);
  BOOST_TEST(has_code(leave.error(), errc::refused), error_of(leave));
  BOOST_TEST(error_of(leave).find("static: leave is refused") != std::string::npos,
             error_of(leave));
  auto other = group_at(hosts[2]->address());
  auto put = ask<group::view_version>(other, caf::put_atom::value, std::string{"stage"},
                                      std::string{"two"});
  auto rm =
    ask<group::view_version>(other, caf::delete_atom::value, std::string{"stage"});
  for (const auto* change : {&put, &rm}) {
    BOOST_REQUIRE(!*change);
    BOOST_TEST(has_code(change->error(), errc::refused), error_of(*change));
    BOOST_TEST(error_of(*change).find("static: a metadata change is refused")
                 != std::string::npos,
               error_of(*change));
  }
  // Nothing changed anywhere.
  for (const auto& host : hosts)
    BOOST_TEST(view_of(host->address()).digest() == v.digest(), host->address());
}

BOOST_AUTO_TEST_CASE(self_bootstrap_writes_a_one_member_view_file) {
  temp_dir dir;
  auto file = dir.path() + "/self.json";
  host_process host{
    group_node_config(0, R"({"bootstrap": "self", "file": ")" + file + R"("})")};
  auto seen = view_of(host.address());
  BOOST_REQUIRE(seen.members.size() == 1u);
  BOOST_TEST(seen.members[0].address == host.address());
  auto written = group::read_view_file(file);
  BOOST_TEST(written.digest() == seen.digest());
}

BOOST_AUTO_TEST_CASE(group_config_errors_stop_actorhost_with_the_key) {
  temp_dir dir;
  struct bad_case {
    std::string group_config;
    std::string says;
  };
  auto other = dir.path() + "/other.json";
  group::group_view v;
  v.members.push_back({"ucx://127.0.0.1:1", 42, 1, 0, {}});
  BOOST_REQUIRE(!group::write_view_file(other, v));
  int i = 0;
  for (const auto& c : std::vector<bad_case>{
         {R"({"bootstrap": []})",
          "config.bootstrap: expected a bootstrap method or a non-empty list"},
         {R"({"bootstrap": "file"})", "config.file: bootstrap \"file\" needs"},
         {R"({"bootstrap": "self", "group": {"type": "gossip"}})",
          "config.group.type: expected \"static\" or \"centralized\", found string "
          "\"gossip\""},
         {R"({"bootstrap": "chance"})",
          "config.bootstrap: expected one of self, view, file, join, mpi"},
         {R"({"bootstrap": "self", "colour": 1})", "config.colour: unknown key"},
         {R"({"bootstrap": "file", "file": ")" + other + R"("})",
          "is not a member of the view in " + other},
       }) {
    auto cfg = dir.write("bad" + std::to_string(i++) + ".json",
                         group_node_config(0, c.group_config));
    auto r = run_to_end({bin_path("actorhost"), "-c", cfg}, 30s);
    BOOST_TEST_CONTEXT(c.group_config) {
      BOOST_TEST(r.exit_code == 2);
      BOOST_TEST(r.err.find("providers[0].config") != std::string::npos, r.err);
      BOOST_TEST(r.err.find(c.says) != std::string::npos, r.err);
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
