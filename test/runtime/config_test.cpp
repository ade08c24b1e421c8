#define BOOST_TEST_MODULE runtime_config
#include <boost/test/unit_test.hpp>

#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/config.hpp"
#include "test/support/process.hpp"

using namespace troupe;

namespace {

/// Parses `text` and returns the config_error message ("" if it parsed).
std::string error_of(const std::string& text) {
  try {
    parse_node_config(text, "node.json");
  } catch (const config_error& e) {
    return e.what();
  }
  return {};
}

void check_error(const std::string& text, const std::string& expected_prefix,
                 std::initializer_list<std::string> also_contains = {}) {
  auto msg = error_of(text);
  BOOST_TEST_CONTEXT("config " << text) {
    BOOST_TEST(msg.rfind(expected_prefix, 0) == 0, "message \""
                                                     << msg << "\" should start with \""
                                                     << expected_prefix << "\"");
    for (const auto& part : also_contains)
      BOOST_TEST(msg.find(part) != std::string::npos,
                 "message \"" << msg << "\" should contain \"" << part << "\"");
  }
}

/// The first code block of the guide docs/running-nodes.md after the first line that
/// starts with `heading`, without its fences.
std::string readme_block_after(const std::string& heading) {
  std::ifstream in{std::string{TROUPE_SOURCE_DIR} + "/docs/running-nodes.md"};
  std::string line;
  while (std::getline(in, line) && line.rfind(heading, 0) != 0) {
  }
  while (std::getline(in, line) && line.rfind("```", 0) != 0) {
  }
  std::string block;
  while (std::getline(in, line) && line.rfind("```", 0) != 0)
    block += line + "\n";
  if (block.empty())
    throw std::runtime_error("docs/running-nodes.md has no code block after \"" + heading
                             + "\"");
  return block;
}

} // namespace

BOOST_AUTO_TEST_SUITE(good_configs)

BOOST_AUTO_TEST_CASE(the_node_config_shown_in_the_readme_parses_to_what_it_says) {
  auto text = readme_block_after("### The node config");
  auto cfg = parse_node_config(text, "README.md");
  BOOST_TEST(cfg.transport.protocol == "ucx");
  BOOST_TEST(cfg.transport.address == "127.0.0.1");
  BOOST_TEST(cfg.transport.port == 7100);
  BOOST_TEST(!cfg.transport.busy_poll);
  BOOST_TEST(cfg.transport.keepalive_ms == 500u);
  BOOST_TEST(cfg.transport.max_message_bytes == 1073741824u);
  BOOST_TEST(cfg.transport.spin_us == 50u);
  BOOST_TEST(cfg.transport.batch_sends);
  BOOST_TEST(cfg.ops.deadline_ms == 10000u);
  BOOST_TEST(cfg.ops.store_max_bytes == 1073741824u);
  BOOST_TEST(cfg.threads == 0u); // "auto"
  BOOST_TEST((cfg.policy == scheduler_policy::progress));
  BOOST_TEST((cfg.pinning == pinning_mode::none));
  BOOST_TEST(cfg.libraries == std::vector<std::string>{"/path/libmymodule.so"},
             boost::test_tools::per_element());
  BOOST_REQUIRE_EQUAL(cfg.providers.size(), 2u);
  BOOST_TEST(cfg.providers[0].name == "echo");
  BOOST_TEST(cfg.providers[1].provider_id == 2);
  BOOST_TEST(cfg.providers[1].dependencies.at("upstream") == "echo");
  // The values it shows are the defaults it says they are (but for the port, the
  // library and the providers).
  auto defaults = parse_node_config("{}", "defaults");
  BOOST_TEST(cfg.transport.keepalive_ms == defaults.transport.keepalive_ms);
  BOOST_TEST(cfg.transport.max_message_bytes == defaults.transport.max_message_bytes);
  BOOST_TEST(cfg.transport.spin_us == defaults.transport.spin_us);
  BOOST_TEST(cfg.transport.batch_sends == defaults.transport.batch_sends);
  BOOST_TEST(cfg.ops.deadline_ms == defaults.ops.deadline_ms);
  BOOST_TEST(cfg.ops.store_max_bytes == defaults.ops.store_max_bytes);
  BOOST_TEST(cfg.threads == defaults.threads);
}

BOOST_AUTO_TEST_CASE(the_group_provider_entry_shown_in_the_readme_is_a_provider) {
  auto entry = readme_block_after("Built-in provider types: `echo`");
  auto cfg = parse_node_config("{\"providers\": [" + entry + "]}", "README.md");
  BOOST_REQUIRE_EQUAL(cfg.providers.size(), 1u);
  BOOST_TEST(cfg.providers[0].type == "group");
  BOOST_TEST(cfg.providers[0].provider_id == 42);
  BOOST_TEST((*cfg.providers[0].config)["bootstrap"] == "file");
  BOOST_TEST((*cfg.providers[0].config)["group"]["type"] == "static");
}

BOOST_AUTO_TEST_CASE(empty_object_gives_the_documented_defaults) {
  auto cfg = parse_node_config("{}", "node.json");
  BOOST_TEST(cfg.source == "node.json");
  BOOST_TEST(cfg.transport.protocol == "ucx");
  BOOST_TEST(cfg.transport.address == "127.0.0.1");
  BOOST_TEST(cfg.transport.port == 0);
  BOOST_TEST(cfg.threads == 0u);
  BOOST_TEST((cfg.policy == scheduler_policy::progress));
  BOOST_TEST((cfg.pinning == pinning_mode::none));
  BOOST_TEST(cfg.providers.empty());
  BOOST_TEST(cfg.ops.deadline_ms == 10000u);
  BOOST_TEST(cfg.ops.store_max_bytes == uint64_t{1} << 30);
}

BOOST_AUTO_TEST_CASE(full_config_is_read_into_the_typed_struct) {
  auto cfg = parse_node_config(R"({
    // comments are allowed
    "transport": {"protocol": "ucx", "address": "::1", "port": 7100},
    "threads": 3, "scheduler": "stealing", "pinning": [1, 0],
    "ops": {"deadline_ms": 2500, "store_max_bytes": 4096},
    "libraries": ["libx.so"],
    "providers": [
      {"type": "echo", "name": "b", "provider_id": 2, "dependencies": {"up": "a"}},
      {"type": "echo", "name": "a", "provider_id": 65534, "config": {"k": [1, 2]}}
    ]})",
                               "full.json");
  BOOST_TEST(cfg.transport.address == "::1");
  BOOST_TEST(cfg.transport.port == 7100);
  BOOST_TEST(cfg.threads == 3u);
  BOOST_TEST(cfg.ops.deadline_ms == 2500u);
  BOOST_TEST(cfg.ops.store_max_bytes == 4096u);
  BOOST_TEST((cfg.policy == scheduler_policy::stealing));
  BOOST_TEST((cfg.pinning == pinning_mode::list));
  BOOST_TEST((cfg.pin_cores == std::vector<unsigned>{1, 0}));
  BOOST_TEST((cfg.libraries == std::vector<std::string>{"libx.so"}));
  BOOST_REQUIRE(cfg.providers.size() == 2u);
  BOOST_TEST(cfg.providers[0].dependencies.at("up") == "a");
  BOOST_TEST(cfg.providers[1].provider_id == 65534);
  BOOST_TEST((*cfg.providers[1].config)["k"][1] == 2);
  BOOST_TEST(cfg.providers[0].config->is_object());
  BOOST_TEST(cfg.providers[0].origin == "full.json: providers[0]");
}

BOOST_AUTO_TEST_CASE(start_order_puts_dependencies_first) {
  auto cfg = parse_node_config(R"({"providers": [
      {"type": "t", "name": "c", "provider_id": 3, "dependencies": {"x": "b"}},
      {"type": "t", "name": "b", "provider_id": 2, "dependencies": {"x": "a"}},
      {"type": "t", "name": "a", "provider_id": 1}]})",
                               "node.json");
  auto order = providers_in_start_order(cfg);
  BOOST_REQUIRE(order.size() == 3u);
  BOOST_TEST(order[0]->name == "a");
  BOOST_TEST(order[1]->name == "b");
  BOOST_TEST(order[2]->name == "c");
}

BOOST_AUTO_TEST_CASE(serialized_config_parses_back_to_the_same_values) {
  auto cfg = parse_node_config(
    R"({"threads": 2, "pinning": "cores", "ops": {"deadline_ms": 777},
        "providers": [{"type": "echo", "name": "e", "provider_id": 9}]})",
    "node.json");
  auto again = parse_node_config(to_json_text(cfg), "again.json");
  BOOST_TEST(again.threads == 2u);
  BOOST_TEST(again.ops.deadline_ms == 777u);
  BOOST_TEST((again.pinning == pinning_mode::cores));
  BOOST_REQUIRE(again.providers.size() == 1u);
  BOOST_TEST(again.providers[0].provider_id == 9);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(errors_name_file_key_expectation_and_finding)

BOOST_AUTO_TEST_CASE(syntax_errors_give_line_and_column) {
  check_error("{\n  \"threads\": 2,\n  oops\n}", "node.json: not valid JSON", {"line 3"});
}

BOOST_AUTO_TEST_CASE(top_level_must_be_an_object) {
  check_error("[1, 2]", "node.json: (top level): expected an object, found an array");
}

BOOST_AUTO_TEST_CASE(unknown_keys_are_rejected_with_a_suggestion) {
  check_error(R"({"thread": 2})", "node.json: thread: unknown key",
              {"did you mean \"threads\"?"});
  check_error(R"({"transport": {"prot": "ucx"}})",
              "node.json: transport.prot: unknown key", {"protocol"});
  check_error(R"({"providers": [{"type": "echo", "name": "e", "provider_id": 1,
                                 "colour": "red"}]})",
              "node.json: providers[0].colour: unknown key");
}

BOOST_AUTO_TEST_CASE(transport_values_are_checked) {
  check_error(R"({"transport": {"port": "7100"}})",
              "node.json: transport.port: expected an integer from 0 to 65535, found "
              "string \"7100\"");
  check_error(
    R"({"transport": {"port": 70000}})",
    "node.json: transport.port: expected an integer from 0 to 65535, found 70000");
  check_error(R"({"transport": {"protocol": "tcp"}})",
              "node.json: transport.protocol: expected \"ucx\", found string \"tcp\"");
  check_error(R"({"transport": {"address": ""}})",
              "node.json: transport.address: expected a non-empty string");
  check_error(R"({"transport": 5})", "node.json: transport: expected an object, found 5");
  check_error(R"({"transport": {"batch_sends": 1}})",
              "node.json: transport.batch_sends: expected true or false, found 1");
  check_error(R"({"transport": {"address": "towards:no-such-host.invalid"}})",
              "node.json: transport.address: cannot resolve \"no-such-host.invalid\"");
}

BOOST_AUTO_TEST_CASE(an_address_towards_a_host_is_this_host_s_address_on_that_route) {
  auto cfg = parse_node_config(R"({"transport": {"address": "towards:127.0.0.1"}})", "n.json");
  BOOST_TEST(cfg.transport.address == "127.0.0.1");
}

BOOST_AUTO_TEST_CASE(ops_values_are_checked) {
  check_error(R"({"ops": {"deadline_ms": 0}})",
              "node.json: ops.deadline_ms: expected an integer from 1 to 86400000");
  check_error(R"({"ops": {"deadline": 5}})", "node.json: ops.deadline: unknown key");
  check_error(R"({"ops": 5})", "node.json: ops: expected an object, found 5");
}

BOOST_AUTO_TEST_CASE(threads_scheduler_and_pinning_are_checked) {
  check_error(R"({"threads": 0})",
              "node.json: threads: expected an integer from 1 to 1024");
  check_error(R"({"threads": "many"})",
              "node.json: threads: expected \"auto\" or an integer from 1 to 1024, found "
              "string \"many\"");
  check_error(R"({"scheduler": "fifo"})",
              "node.json: scheduler: expected \"progress\", \"sharing\" or \"stealing\"");
  check_error(R"({"pinning": "numa"})",
              "node.json: pinning: expected \"none\", \"cores\"");
  check_error(R"({"pinning": []})", "node.json: pinning: expected a non-empty list");
  check_error(R"({"pinning": [0, -1]})",
              "node.json: pinning[1]: expected an integer from 0 to 65535, found -1");
}

BOOST_AUTO_TEST_CASE(libraries_must_be_a_list_of_paths) {
  check_error(R"({"libraries": "x.so"})",
              "node.json: libraries: expected a list of shared library paths");
  check_error(R"({"libraries": ["a.so", 3]})",
              "node.json: libraries[1]: expected a string, found 3");
}

BOOST_AUTO_TEST_CASE(provider_entries_are_checked) {
  check_error(R"({"providers": {}})",
              "node.json: providers: expected a list of provider objects");
  check_error(R"({"providers": ["echo"]})",
              "node.json: providers[0]: expected an object, found string");
  check_error(R"({"providers": [{"name": "e", "provider_id": 1}]})",
              "node.json: providers[0]: missing required key \"type\"");
  check_error(R"({"providers": [{"type": "echo", "provider_id": 1}]})",
              "node.json: providers[0]: missing required key \"name\"");
  check_error(R"({"providers": [{"type": "echo", "name": "e"}]})",
              "node.json: providers[0]: missing required key \"provider_id\"");
  check_error(R"({"providers": [{"type": "echo", "name": "e", "provider_id": 65535}]})",
              "node.json: providers[0].provider_id: expected an integer from 0 to 65534, "
              "found 65535");
  check_error(R"({"providers": [{"type": "echo", "name": "e", "provider_id": -1}]})",
              "node.json: providers[0].provider_id: expected an integer from 0 to 65534, "
              "found -1");
  check_error(R"({"providers": [{"type": "echo", "name": "e", "provider_id": 1.5}]})",
              "node.json: providers[0].provider_id: expected an integer from 0 to 65534, "
              "found number 1.5");
  check_error(R"({"providers": [{"type": "", "name": "e", "provider_id": 1}]})",
              "node.json: providers[0].type: expected a non-empty string");
  check_error(R"({"providers": [{"type": "echo", "name": "e", "provider_id": 1,
                                 "config": []}]})",
              "node.json: providers[0].config: expected an object, found an array");
  check_error(R"({"providers": [{"type": "echo", "name": "e", "provider_id": 1,
                                 "dependencies": {"up": 4}}]})",
              "node.json: providers[0].dependencies.up: expected a string, found 4");
}

BOOST_AUTO_TEST_CASE(duplicate_providers_are_config_errors) {
  check_error(R"({"providers": [
      {"type": "echo", "name": "a", "provider_id": 1},
      {"type": "echo", "name": "b", "provider_id": 1}]})",
              "node.json: providers[1].provider_id: duplicate provider",
              {"\"echo\" with provider_id 1", "providers[0]"});
  check_error(R"({"providers": [
      {"type": "echo", "name": "a", "provider_id": 1},
      {"type": "other", "name": "a", "provider_id": 1}]})",
              "node.json: providers[1].name: duplicate provider name \"a\"");
}

BOOST_AUTO_TEST_CASE(dependency_problems_are_config_errors) {
  check_error(R"({"providers": [
      {"type": "t", "name": "a", "provider_id": 1, "dependencies": {"db": "nope"}}]})",
              "node.json: providers[0].dependencies.db: no provider named \"nope\"");
  check_error(
    R"({"providers": [
      {"type": "t", "name": "a", "provider_id": 1, "dependencies": {"me": "a"}}]})",
    "node.json: providers[0].dependencies.me: provider \"a\" depends on itself");
  check_error(R"({"providers": [
      {"type": "t", "name": "a", "provider_id": 1, "dependencies": {"x": "b"}},
      {"type": "t", "name": "b", "provider_id": 2, "dependencies": {"x": "a"}}]})",
              "node.json: providers[", {"dependency cycle: a -> b -> a"});
}

BOOST_AUTO_TEST_CASE(a_missing_file_is_named) {
  try {
    load_node_config("/nonexistent/troupe.json");
    BOOST_FAIL("loading a missing file must throw");
  } catch (const config_error& e) {
    std::string msg = e.what();
    BOOST_TEST(msg.find("/nonexistent/troupe.json") != std::string::npos, msg);
    BOOST_TEST(msg.find("No such file") != std::string::npos, msg);
  }
}

BOOST_AUTO_TEST_CASE(file_errors_are_prefixed_with_the_path) {
  troupe::test::temp_dir dir;
  auto path = dir.write("bad.json", R"({"threads": -3})");
  try {
    load_node_config(path);
    BOOST_FAIL("a bad file must throw");
  } catch (const config_error& e) {
    BOOST_TEST(std::string{e.what()}.rfind(path + ": threads: expected", 0) == 0,
               e.what());
  }
}

BOOST_AUTO_TEST_SUITE_END()
