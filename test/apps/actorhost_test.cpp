#define BOOST_TEST_MODULE actorhost
#include <boost/test/unit_test.hpp>

#include <csignal>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "test/support/process.hpp"

using namespace troupe::test;
using namespace std::chrono_literals;

namespace {

const auto start_deadline = 20s;

std::string read_all(const std::string& path) {
  std::ifstream in{path};
  return std::string{std::istreambuf_iterator<char>{in}, {}};
}

} // namespace

BOOST_AUTO_TEST_SUITE(good_config)

BOOST_AUTO_TEST_CASE(prints_its_address_and_exits_zero_on_sigterm) {
  temp_dir dir;
  auto cfg = dir.write("node.json", R"({
    "transport": {"address": "127.0.0.1", "port": 0},
    "providers": [{"type": "echo", "name": "echo", "provider_id": 1}]})");
  auto addr_file = dir.path() + "/address";
  child_process host{{bin_path("actorhost"), "-c", cfg, "--address-file", addr_file}};
  auto line = host.wait_for_line("actorhost ready:", start_deadline);
  BOOST_REQUIRE_MESSAGE(line, "no ready line; stderr: " << host.err());
  // Port 0: the ready line and the address file carry the port the OS chose.
  auto address = read_all(addr_file);
  BOOST_REQUIRE(address.rfind("ucx://127.0.0.1:", 0) == 0u);
  BOOST_TEST(address != "ucx://127.0.0.1:0\n");
  address.pop_back();
  BOOST_TEST(line->find("actorhost ready: " + address + " ") != std::string::npos, *line);
  BOOST_TEST(line->find("providers=1") != std::string::npos, *line);
  host.signal(SIGTERM);
  auto code = host.wait_exit(20s);
  BOOST_REQUIRE_MESSAGE(code, "actorhost did not exit after SIGTERM");
  BOOST_TEST(*code == 0, "stderr: " << host.err());
  BOOST_TEST(host.err().find("stopped") != std::string::npos, host.err());
  BOOST_TEST(!std::filesystem::exists(addr_file));
}

BOOST_AUTO_TEST_CASE(runs_with_mimalloc_as_its_allocator) {
  // Linked before libc, mimalloc's malloc is the one every library of the process
  // calls (the allocator the performance figures were measured with).
  host_process host{R"({"providers": [{"type": "echo", "name": "echo", "provider_id": 1}]})"};
  auto maps = read_all("/proc/" + std::to_string(host.process().pid()) + "/maps");
  BOOST_TEST(maps.find("libmimalloc") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_config_on_the_command_line_starts_like_a_file) {
  // --config-text is how mpirun's ranks on other hosts get theirs; errors name it.
  child_process host{{bin_path("actorhost"), "--config-text",
                      R"({"transport": {"address": "towards:127.0.0.1"},
                          "providers": [{"type": "echo", "name": "echo", "provider_id": 1}]})"}};
  auto line = host.wait_for_line("actorhost ready:", start_deadline);
  BOOST_REQUIRE_MESSAGE(line, "no ready line; stderr: " << host.err());
  BOOST_TEST(line->find("ready: ucx://127.0.0.1:") != std::string::npos, *line);
  BOOST_TEST(line->find("providers=1") != std::string::npos, *line);
  host.signal(SIGTERM);
  auto code = host.wait_exit(20s);
  BOOST_TEST((code && *code == 0), host.err());
  auto bad = run_to_end({bin_path("actorhost"), "--config-text", R"({"treads": 2})"}, 20s);
  BOOST_TEST(bad.exit_code == 2);
  BOOST_TEST(bad.err.find("--config-text: treads: unknown key") != std::string::npos, bad.err);
}

BOOST_AUTO_TEST_CASE(sigint_also_shuts_down_cleanly) {
  temp_dir dir;
  auto cfg = dir.write("node.json", "{}");
  child_process host{{bin_path("actorhost"), "-c", cfg, "-v", "info"}};
  BOOST_REQUIRE(host.wait_for_line("actorhost ready:", start_deadline));
  host.signal(SIGINT);
  auto code = host.wait_exit(20s);
  BOOST_REQUIRE(code);
  BOOST_TEST(*code == 0);
}

BOOST_AUTO_TEST_CASE(the_example_config_in_apps_starts) {
  // The example as shipped, but on a port of its own so the test cannot collide.
  std::ifstream in{std::string{TROUPE_SOURCE_DIR} + "/apps/examples/node.json"};
  auto example = nlohmann::json::parse(in, nullptr, true, true);
  example["transport"]["port"] = 0;
  temp_dir dir;
  child_process host{
    {bin_path("actorhost"), "-c", dir.write("node.json", example.dump())}};
  auto line = host.wait_for_line("actorhost ready:", start_deadline);
  BOOST_REQUIRE_MESSAGE(line, "stderr: " << host.err());
  BOOST_TEST(line->find("providers=2") != std::string::npos, *line);
  host.signal(SIGTERM);
  BOOST_TEST(host.wait_exit(20s).value_or(-1) == 0);
}

/// An actorhost loading `library` (in build/lib) runs an "upper" provider: it comes up
/// with that one provider (a type nobody registered would stop it with exit 2) and
/// stops cleanly.
void check_upper_provider_from(const std::string& library) {
  temp_dir dir;
  auto cfg = dir.write("node.json", std::string{R"({"libraries": [")"} + TROUPE_LIB_DIR
                                      + "/" + library + R"("],
      "providers": [{"type": "upper", "name": "u", "provider_id": 4}]})");
  child_process host{{bin_path("actorhost"), "-c", cfg}};
  auto line = host.wait_for_line("actorhost ready:", start_deadline);
  BOOST_REQUIRE_MESSAGE(line, "stderr: " << host.err());
  BOOST_TEST(line->find("providers=1") != std::string::npos, *line);
  host.signal(SIGTERM);
  BOOST_TEST(host.wait_exit(20s).value_or(-1) == 0);
}

BOOST_AUTO_TEST_CASE(a_module_from_libraries_provides_its_type) {
  check_upper_provider_from("troupe_test_module.so");
}

BOOST_AUTO_TEST_CASE(the_module_snippet_of_the_readme_provides_its_type) {
  // test/readme_snippets.cmake builds README.md's module snippet as this library.
  check_upper_provider_from("troupe_readme_module.so");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(bad_config)

struct bad_case {
  const char* content;
  const char* key_in_message;
};

BOOST_AUTO_TEST_CASE(exits_2_and_names_file_and_key_without_starting) {
  temp_dir dir;
  int i = 0;
  for (auto c : {
         bad_case{R"({"transport": {"port": 99999}})",
                  "transport.port: expected an integer"},
         bad_case{R"({"treads": 2})", "treads: unknown key"},
         bad_case{R"({"providers": [{"type": "echo", "name": "e"}]})",
                  "providers[0]: missing required key \"provider_id\""},
         bad_case{R"({"providers": [{"type": "nosuch", "name": "e", "provider_id": 1}]})",
                  "providers[0].type: unknown provider type \"nosuch\""},
         bad_case{R"({"providers": [{"type": "echo", "name": "e", "provider_id": 1,
                                     "config": {"x": 1}}]})",
                  "providers[0].config.x: unknown key"},
         bad_case{R"({"libraries": ["/nonexistent/lib.so"]})",
                  "libraries[0]: cannot load"},
         bad_case{"{ not json", "not valid JSON"},
       }) {
    auto path = dir.write("bad" + std::to_string(i++) + ".json", c.content);
    auto r = run_to_end({bin_path("actorhost"), "-c", path}, 20s);
    BOOST_TEST_CONTEXT("config " << c.content) {
      BOOST_TEST(r.exit_code == 2, "stderr: " << r.err);
      BOOST_TEST(r.err.find(path) != std::string::npos, "stderr: " << r.err);
      BOOST_TEST(r.err.find(c.key_in_message) != std::string::npos, "stderr: " << r.err);
      BOOST_TEST(r.out.find("ready") == std::string::npos, "nothing may start");
    }
  }
}

BOOST_AUTO_TEST_CASE(bad_command_lines_exit_2) {
  auto missing = run_to_end({bin_path("actorhost")}, 20s);
  BOOST_TEST(missing.exit_code == 2);
  BOOST_TEST(missing.err.find("--config is required") != std::string::npos, missing.err);
  auto no_file = run_to_end({bin_path("actorhost"), "-c", "/nonexistent.json"}, 20s);
  BOOST_TEST(no_file.exit_code == 2);
  BOOST_TEST(no_file.err.find("/nonexistent.json") != std::string::npos, no_file.err);
  temp_dir dir;
  auto cfg = dir.write("node.json", "{}");
  auto both = run_to_end({bin_path("actorhost"), "-c", cfg, "--config-text", "{}"}, 20s);
  BOOST_TEST(both.exit_code == 2);
  BOOST_TEST(both.err.find("excludes") != std::string::npos, both.err);
  auto bad_level = run_to_end({bin_path("actorhost"), "-c", cfg, "-v", "loud"}, 20s);
  BOOST_TEST(bad_level.exit_code == 2);
  BOOST_TEST(bad_level.err.find("--verbosity") != std::string::npos, bad_level.err);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_CASE(help_documents_every_option_and_config_key) {
  auto r = run_to_end({bin_path("actorhost"), "--help"}, 20s);
  BOOST_TEST(r.exit_code == 0);
  for (auto word : {"--config", "--config-text", "towards:", "--verbosity", "--address-file", "--version", "transport",
                    "threads", "pinning", "libraries", "providers", "echo"})
    BOOST_TEST(r.out.find(word) != std::string::npos, "help lacks " << word);
}

BOOST_AUTO_TEST_CASE(the_readme_example_actor_runs) {
  auto r = run_to_end({bin_path("example-first-actor")}, 30s);
  BOOST_TEST(r.exit_code == 0, "stderr: " << r.err);
  BOOST_TEST(r.out == "Hello, Troupe!\n");
}

BOOST_AUTO_TEST_CASE(the_readme_remote_example_talks_to_a_real_actorhost) {
  host_process host{
    R"({"providers": [{"type": "echo", "name": "echo", "provider_id": 1}]})"};
  auto r = run_to_end({bin_path("example-remote-echo"), host.address(), "over UCX"}, 30s);
  BOOST_TEST(r.exit_code == 0, "stderr: " << r.err);
  BOOST_TEST(r.out == "over UCX\n");
  auto bad = run_to_end({bin_path("example-remote-echo"), "ucx://127.0.0.1", "x"}, 30s);
  BOOST_TEST(bad.exit_code == 1);
  BOOST_TEST(bad.err.find("missing ':PORT'") != std::string::npos, bad.err);
}

BOOST_AUTO_TEST_CASE(the_readme_typed_protocol_example_computes_an_area) {
  auto r = run_to_end({bin_path("example-typed-protocol")}, 30s);
  BOOST_TEST(r.exit_code == 0, "stderr: " << r.err);
  BOOST_TEST(r.out == "area: 6\n");
}

BOOST_AUTO_TEST_CASE(the_readme_rdma_example_moves_bytes_both_ways) {
  auto r = run_to_end({bin_path("example-rdma-copy")}, 30s);
  BOOST_TEST(r.exit_code == 0, "stderr: " << r.err);
  BOOST_TEST(r.out == "b got: bulk data from node a\na now holds: reply from node b\n");
}

BOOST_AUTO_TEST_CASE(the_readme_op_example_counts_words_on_two_targets) {
  auto r = run_to_end({bin_path("example-word-count-op")}, 30s);
  BOOST_TEST(r.exit_code == 0, "stderr: " << r.err);
  BOOST_TEST(r.out == "words: 10\n");
}

BOOST_AUTO_TEST_CASE(the_readme_supervision_example_restarts_twice_then_gives_up) {
  auto r = run_to_end({bin_path("example-supervised-worker")}, 30s);
  BOOST_TEST(r.exit_code == 0, "stderr: " << r.err);
  BOOST_TEST(r.out
             == "started doubler\n"
                "exited doubler: troupe.refused: told to crash\n"
                "restarting doubler: troupe.refused: told to crash\n"
                "started doubler\n"
                "exited doubler: troupe.refused: told to crash\n"
                "restarting doubler: troupe.refused: told to crash\n"
                "started doubler\n"
                "exited doubler: troupe.refused: told to crash\n"
                "gave_up doubler: supervisor 'doublers' gave up: child 'doubler' needed 3 "
                "restarts within 5000 ms (at most 2 allowed); its last exit: troupe.refused: "
                "told to crash\n");
}

BOOST_AUTO_TEST_CASE(a_busy_polling_node_serves_remote_requests) {
  host_process host{R"({"transport": {"busy_poll": true, "spin_us": 0},
      "providers": [{"type": "echo", "name": "echo", "provider_id": 1}]})"};
  auto r = run_to_end({bin_path("example-remote-echo"), host.address(), "spinning"}, 30s);
  BOOST_TEST(r.exit_code == 0, "stderr: " << r.err);
  BOOST_TEST(r.out == "spinning\n");
}
