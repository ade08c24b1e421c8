#define BOOST_TEST_MODULE runtime_node
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include "actors/builtin.hpp"
#include "base/error.hpp"
#include "runtime/node.hpp"
#include "runtime/ops.hpp"
#include "runtime/provider_registry.hpp"
#include "runtime/topology.hpp"

using namespace troupe;

namespace {

std::string lib(const std::string& name) {
  return std::string{TROUPE_LIB_DIR} + "/" + name;
}

std::string ask(node& n, const caf::actor& who, std::string text) {
  caf::scoped_actor self{n.system()};
  std::string result;
  self->request(who, std::chrono::seconds(5), std::move(text))
    .receive([&](const std::string& s) { result = s; },
             [&](const caf::error& e) { result = "error: " + describe(e); });
  return result;
}

} // namespace

BOOST_AUTO_TEST_CASE(node_starts_providers_from_config_and_stops_them) {
  node n{parse_node_config(R"({"threads": 2, "providers": [
      {"type": "echo", "name": "e2", "provider_id": 2, "dependencies": {"up": "e1"}},
      {"type": "echo", "name": "e1", "provider_id": 1}]})",
                           "node.json")};
  actors::register_builtin_providers(n.providers());
  auto err = n.start();
  BOOST_REQUIRE_MESSAGE(!err, describe(err));
  BOOST_TEST(n.running());
  BOOST_TEST(n.scheduler_threads() == 2u);
  // Port 0 in the config: the transport listens on a port the OS chose.
  BOOST_TEST(n.address().rfind("ucx://127.0.0.1:", 0) == 0u, n.address());
  BOOST_TEST(n.address() != "ucx://127.0.0.1:0");
  BOOST_TEST(n.providers().list().size() == 2u);
  // Dependencies start first.
  BOOST_TEST(n.providers().list()[0].name == "e1");
  BOOST_TEST(ask(n, n.providers().find("e2")->handle, "hi") == "hi");
  n.stop();
  BOOST_TEST(!n.running());
  BOOST_TEST(n.providers().list().empty());
}

BOOST_AUTO_TEST_CASE(register_builtins_registers_what_ships_before_start_only) {
  node n{parse_node_config(R"({"providers": [{"type": "echo", "name": "e",
                                              "provider_id": 1}]})",
                           "builtins.json")};
  BOOST_REQUIRE(!actors::register_builtins(n));
  for (auto type : {"echo", "group", "offload"})
    BOOST_TEST(n.providers().has_type(type), type);
  for (auto op : {"ping", "rdma-ping", "scatter", "gather", "dht-put", "dht-get"}) {
    auto* entry = n.ops().registry().find(ops::op_id_of(op));
    BOOST_TEST((entry != nullptr && entry->name == op), op);
  }
  BOOST_REQUIRE(!n.start());
  auto late = actors::register_builtins(n);
  BOOST_TEST(has_code(late, errc::refused), describe(late));
  n.stop();
}

BOOST_AUTO_TEST_CASE(auto_threads_follow_the_topology) {
  node n{parse_node_config("{}", "node.json")};
  BOOST_REQUIRE(!n.start());
  BOOST_TEST(n.scheduler_threads() == n.machine().cores());
}

BOOST_AUTO_TEST_CASE(pinning_binds_caf_threads_to_the_listed_cores) {
  node n{parse_node_config(R"({"threads": 1, "pinning": [0]})", "node.json")};
  BOOST_REQUIRE(!n.start());
  auto bound = n.placement().bound_cores();
  BOOST_TEST(!bound.empty());
  for (auto core : bound)
    BOOST_TEST(core == 0u);
}

namespace {

/// The Cpus_allowed_list of /proc/self/task/<tid>/status, or of /proc/self/status.
std::string cpus_allowed(const std::string& status_path) {
  std::ifstream in{status_path};
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("Cpus_allowed_list:", 0) == 0)
      return line.substr(line.find_first_not_of(" \t", 18));
  return {};
}

/// The CPUs the OS lets each thread of this process named "caf.*" run on.
std::vector<std::string> caf_thread_cpus() {
  std::vector<std::string> result;
  for (const auto& task : std::filesystem::directory_iterator{"/proc/self/task"}) {
    std::ifstream comm{task.path() / "comm"};
    std::string name;
    std::getline(comm, name);
    if (name.rfind("caf.", 0) == 0)
      result.push_back(cpus_allowed((task.path() / "status").string()));
  }
  return result;
}

} // namespace

BOOST_AUTO_TEST_CASE(the_os_runs_pinned_caf_threads_only_on_their_core) {
  if (topology::discover()->cores() < 2) {
    BOOST_TEST_MESSAGE("one core: nothing to tell pinned threads apart by");
    return;
  }
  auto unpinned = cpus_allowed("/proc/self/status");
  std::map<unsigned, std::string> cpus_of;
  for (unsigned core : {0u, 1u}) {
    BOOST_TEST_CONTEXT("pinning [" << core << "]") {
      node n{parse_node_config(
        R"({"threads": 1, "pinning": [)" + std::to_string(core) + "]}", "node.json")};
      BOOST_REQUIRE(!n.start());
      // What sched_getaffinity says for each thread CAF started, not what the runtime
      // reports: one CPU set, narrower than the process's.
      auto cpus = caf_thread_cpus();
      BOOST_REQUIRE(!cpus.empty());
      for (const auto& c : cpus)
        BOOST_TEST(c == cpus.front());
      BOOST_TEST(cpus.front() != unpinned);
      cpus_of[core] = cpus.front();
      n.stop();
    }
  }
  BOOST_TEST(cpus_of[0] != cpus_of[1]);
}

BOOST_AUTO_TEST_CASE(pinning_to_a_core_that_does_not_exist_fails_start) {
  node n{parse_node_config(R"({"pinning": [4096]})", "node.json")};
  auto err = n.start();
  BOOST_TEST(describe(err).find("node.json: pinning[0]: expected a core index below")
               != std::string::npos,
             describe(err));
  BOOST_TEST(!n.running());
}

BOOST_AUTO_TEST_CASE(an_unknown_provider_type_fails_start_and_names_the_entry) {
  node n{parse_node_config(R"({"providers": [
      {"type": "echo", "name": "fine", "provider_id": 1},
      {"type": "nosuch", "name": "x", "provider_id": 1}]})",
                           "node.json")};
  actors::register_builtin_providers(n.providers());
  auto err = n.start();
  BOOST_TEST(describe(err).find("node.json: providers[1].type: unknown provider type")
               != std::string::npos,
             describe(err));
  // What had started is stopped again.
  BOOST_TEST(!n.running());
  BOOST_TEST(n.providers().list().empty());
}

BOOST_AUTO_TEST_CASE(a_module_library_registers_its_provider_types) {
  node n{parse_node_config(R"({"libraries": [")" + lib("troupe_test_module.so") + R"("],
      "providers": [{"type": "upper", "name": "up", "provider_id": 3}]})",
                           "node.json")};
  auto err = n.start();
  BOOST_REQUIRE_MESSAGE(!err, describe(err));
  BOOST_TEST(ask(n, n.providers().find("upper", 3)->handle, "shout") == "SHOUT");
}

BOOST_AUTO_TEST_CASE(libraries_that_cannot_load_are_named) {
  {
    node n{
      parse_node_config(R"({"libraries": ["/nonexistent/libnope.so"]})", "node.json")};
    auto text = describe(n.start());
    BOOST_TEST(text.find("node.json: libraries[0]: cannot load library "
                         "'/nonexistent/libnope.so'")
                 != std::string::npos,
               text);
  }
  {
    node n{parse_node_config(
      R"({"libraries": [")" + lib("troupe_not_a_module.so") + R"("]})", "node.json")};
    auto text = describe(n.start());
    BOOST_TEST(text.find("not a Troupe module") != std::string::npos, text);
  }
}
