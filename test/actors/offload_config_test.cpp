#define BOOST_TEST_MODULE offload_config
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "actors/offload/hierarchy.hpp"
#include "actors/offload/shell_runner.hpp"
#include "runtime/config.hpp"
#include "test/support/process.hpp"

using namespace troupe;
using namespace troupe::offload;
using namespace std::chrono_literals;

namespace {

// Flux's example hierarchy file, byte for byte as Flux ships it.
const std::string flux_example =
  R"({"levels": [{"cores_per_child": 36, "num_children": 8}, )"
  R"({"cores_per_child": 1, "num_children": 36}], "num_levels": 3})";

/// The config_error message of parsing `text` ("" if it parsed).
std::string error_of(const std::string& text) {
  try {
    parse_hierarchy(text, "hierarchy.json");
  } catch (const config_error& e) {
    return e.what();
  }
  return {};
}

/// A two-level tree (8 x 36) with `jobs` as its jobs section.
std::string with_jobs(const std::string& jobs) {
  return R"({"num_levels": 3, "levels": [{"num_children": 8, "cores_per_child": 36},
            {"num_children": 36, "cores_per_child": 1}], "jobs": )"
         + jobs + "}";
}

std::filesystem::path temp_dir() {
  return std::filesystem::temp_directory_path()
         / ("troupe_offload_test_" + std::to_string(::getpid()));
}

/// Removes the files the tests wrote when the run ends.
struct remove_temp_dir {
  ~remove_temp_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(temp_dir(), ignored);
  }
};

std::string write_temp(const std::string& name, const std::string& content) {
  auto dir = temp_dir();
  std::filesystem::create_directories(dir);
  auto path = (dir / name).string();
  std::ofstream{path} << content;
  return path;
}

std::string kinds_of(const std::vector<job>& jobs) {
  std::string out;
  for (const auto& j : jobs)
    out += to_string(j.what())[0];
  return out;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

} // namespace

BOOST_TEST_GLOBAL_FIXTURE(remove_temp_dir);

BOOST_AUTO_TEST_SUITE(hierarchy_files)

BOOST_AUTO_TEST_CASE(flux_example_file_parses_unchanged_with_default_placements) {
  auto cfg = parse_hierarchy(flux_example, "hierarchy.json");
  BOOST_TEST(cfg.num_levels == 3u);
  BOOST_REQUIRE_EQUAL(cfg.levels.size(), 2u);
  BOOST_TEST(cfg.levels[0].num_children == 8u);
  BOOST_TEST(cfg.levels[0].cores_per_child == 36u);
  BOOST_TEST(cfg.levels[1].num_children == 36u);
  BOOST_TEST(cfg.levels[1].cores_per_child == 1u);
  BOOST_TEST(cfg.leaves() == 288u);
  BOOST_TEST(to_string(cfg.levels[0].where) == std::string{"process"});
  BOOST_TEST(to_string(cfg.levels[1].where) == std::string{"in_process"});
  BOOST_TEST(cfg.max_leaves == 4096u);
  BOOST_TEST(cfg.source == "hierarchy.json");
  // No jobs section: nothing to run, and the mix is one noop entry.
  BOOST_TEST(cfg.jobs.count == 0u);
  BOOST_REQUIRE_EQUAL(cfg.jobs.mix.size(), 1u);
  BOOST_TEST((cfg.jobs.mix[0].kind == job_kind::noop));
}

BOOST_AUTO_TEST_CASE(an_mpi_level_takes_the_arguments_for_its_mpirun) {
  auto cfg = parse_hierarchy(R"({"num_levels": 3, "levels": [
      {"num_children": 4, "cores_per_child": 8, "placement": "mpi",
       "mpirun_args": ["--hostfile", "hosts", "--map-by", "node"]},
      {"num_children": 8, "cores_per_child": 1}]})",
                             "h.json");
  BOOST_TEST((cfg.levels[0].mpirun_args
              == std::vector<std::string>{"--hostfile", "hosts", "--map-by", "node"}));
  BOOST_TEST(cfg.levels[1].mpirun_args.empty());
}

BOOST_AUTO_TEST_CASE(a_lone_root_needs_no_levels_and_has_one_leaf) {
  auto cfg = parse_hierarchy(R"({"num_levels": 1})", "h.json");
  BOOST_TEST(cfg.levels.empty());
  BOOST_TEST(cfg.leaves() == 1u);
}

BOOST_AUTO_TEST_CASE(troupe_extensions_and_comments_are_read) {
  auto cfg = parse_hierarchy(R"(// a comment, as node configs allow
    {"num_levels": 3, "max_leaves": 10000,
     "levels": [{"num_children": 100, "cores_per_child": 2, "placement": "mpi"},
                {"num_children": 50, "cores_per_child": 1, "placement": "process"}],
     "jobs": {"count": 7, "mix": [
       {"kind": "noop"},
       {"kind": "sleep", "duration_ms": 0.5, "weight": 2},
       {"kind": "shell", "command": "echo hi"},
       {"kind": "shell", "command": "true", "idempotent": true},
       {"kind": "custom", "command": "my-job", "argument": "x=1", "idempotent": false}]}})",
                             "h.json");
  BOOST_TEST(cfg.leaves() == 5000u);
  BOOST_TEST((cfg.levels[0].where == placement::mpi));
  BOOST_TEST((cfg.levels[1].where == placement::process));
  BOOST_TEST(cfg.jobs.count == 7u);
  BOOST_REQUIRE_EQUAL(cfg.jobs.mix.size(), 5u);
  const auto& m = cfg.jobs.mix;
  BOOST_TEST(m[0].idempotent); // noop: idempotent by default
  BOOST_TEST(m[1].duration_us == 500u, "0.5 ms is stored as 500 us");
  BOOST_TEST(m[1].weight == 2u);
  BOOST_TEST(m[1].idempotent);
  BOOST_TEST(!m[2].idempotent, "a shell job is not idempotent by default");
  BOOST_TEST(m[2].command == "echo hi");
  BOOST_TEST(m[3].idempotent, "idempotent can be declared");
  BOOST_TEST((m[4].kind == job_kind::custom));
  BOOST_TEST(m[4].command == "my-job");
  BOOST_TEST(m[4].argument == "x=1");
  BOOST_TEST(!m[4].idempotent);
}

BOOST_AUTO_TEST_CASE(files_are_loaded_and_a_missing_one_names_path_and_reason) {
  auto cfg = load_hierarchy(write_temp("hierarchy.json", flux_example));
  BOOST_TEST(cfg.leaves() == 288u);
  auto spec = load_job_spec(write_temp("jobs.json", R"({"count": 3})"));
  BOOST_TEST(spec.count == 3u);
  BOOST_TEST(spec.mix.size() == 1u);
  try {
    load_hierarchy("/nonexistent/hierarchy.json");
    BOOST_FAIL("a missing file must be an error");
  } catch (const config_error& e) {
    BOOST_TEST(std::string{e.what()}
               == "cannot open '/nonexistent/hierarchy.json': No such file or directory");
  }
}

BOOST_AUTO_TEST_CASE(a_jobs_file_reports_paths_from_its_own_top_level) {
  auto path = write_temp("bad_jobs.json", R"({"count": 3, "mix": [{"kind": "slep"}]})");
  try {
    load_job_spec(path);
    BOOST_FAIL("a bad jobs file must be an error");
  } catch (const config_error& e) {
    BOOST_TEST(std::string{e.what()}
               == path
                    + ": mix[0].kind: expected \"noop\", \"sleep\", \"shell\" or "
                      "\"custom\", found string \"slep\"; did you mean \"sleep\"?");
  }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(bad_hierarchy_files)

BOOST_AUTO_TEST_CASE(each_mistake_gets_a_message_with_path_expected_and_found) {
  const std::vector<std::pair<std::string, std::string>> cases = {
    {R"({"num_levels": 3, "levels": [{"num_children": 8, "cores_per_child": 36},
         {"num_children": -3, "cores_per_child": 1}]})",
     "hierarchy.json: levels[1].num_children: expected an integer from 1 to 4096, "
     "found -3"},
    {R"({"num_levels": 2, "levels": [{"num_children": 8, "cores_per_child": 0}]})",
     "hierarchy.json: levels[0].cores_per_child: expected an integer from 1 to 1048576, "
     "found 0"},
    {R"({"num_levels": 0, "levels": []})",
     "hierarchy.json: num_levels: expected an integer from 1 to 32, found 0"},
    {R"({"num_levels": 2, "levels": [{"num_children": 8}]})",
     "hierarchy.json: levels[0]: missing required key \"cores_per_child\""},
    {R"({"levels": []})", "hierarchy.json: missing required key \"num_levels\""},
    {R"({"num_levels": 3})",
     "hierarchy.json: missing required key \"levels\" (2 level objects (num_levels 3 "
     "counts the root, which has no entry))"},
    {R"({"num_levels": 2, "levels": [{"num_children": 8, "cores_per_child": 36},
         {"num_children": 36, "cores_per_child": 1}]})",
     "hierarchy.json: levels: expected 1 level object (num_levels 2 counts the root, "
     "which has no entry), found 2"},
    {R"({"num_levels": 3, "levels": [{"num_children": 100, "cores_per_child": 1},
         {"num_children": 50, "cores_per_child": 1}]})",
     "hierarchy.json: levels: expected at most max_leaves = 4096 leaves, found 5000 "
     "(100 x 50); raise \"max_leaves\" to allow more"},
    {R"({"num_level": 1})",
     "hierarchy.json: num_level: unknown key (known keys: num_levels levels max_leaves "
     "jobs libraries); did you mean \"num_levels\"?"},
    {R"({"num_levels": 2, "levels": [{"num_childen": 8, "cores_per_child": 1}]})",
     "hierarchy.json: levels[0].num_childen: unknown key (known keys: num_children "
     "cores_per_child placement mpirun_args); did you mean \"num_children\"?"},
    {R"({"num_levels": 2, "levels": [{"num_children": 2, "cores_per_child": 1,
         "placement": "mpi", "mpirun_args": "--hostfile h"}]})",
     "hierarchy.json: levels[0].mpirun_args: expected an array of strings, e.g. "
     "[\"--hostfile\", \"hosts\"], found string \"--hostfile h\""},
    {R"({"num_levels": 2, "levels": [{"num_children": 2, "cores_per_child": 1,
         "placement": "mpi", "mpirun_args": ["-x", 3]}]})",
     "hierarchy.json: levels[0].mpirun_args[1]: expected a string, found 3"},
    {R"({"num_levels": 2, "levels": [{"num_children": 8, "cores_per_child": 1,
         "placement": "proces"}]})",
     "hierarchy.json: levels[0].placement: expected \"process\", \"in_process\" or "
     "\"mpi\", found string \"proces\"; did you mean \"process\"?"},
    {with_jobs(R"({"count": 10, "mix": [{"kind": "noop"}, {"kind": "sleep",
         "duration_ms": 1}, {"kind": "shell", "command": "nosuchprog --x"}]})"),
     "hierarchy.json: jobs.mix[2].command: \"nosuchprog --x\": nosuchprog: no such "
     "command in PATH"},
    {with_jobs(R"({"mix": [{"kind": "sleep"}]})"),
     "hierarchy.json: jobs.mix[0]: missing required key \"duration_ms\" (milliseconds "
     "to sleep, e.g. 0.5)"},
    {with_jobs(R"({"mix": [{"kind": "sleep", "duration_ms": "5"}]})"),
     "hierarchy.json: jobs.mix[0].duration_ms: expected a number of milliseconds from "
     "0 to 86400000, found string \"5\""},
    {with_jobs(R"({"mix": [{"kind": "run"}]})"),
     "hierarchy.json: jobs.mix[0].kind: expected \"noop\", \"sleep\", \"shell\" or "
     "\"custom\", found string \"run\""},
    {with_jobs(R"({"mix": [{"kind": "noop", "duration_ms": 3}]})"),
     "hierarchy.json: jobs.mix[0].duration_ms: a noop job takes no duration_ms (only "
     "sleep jobs do)"},
    {with_jobs(R"({"mix": [{"kind": "custom"}]})"),
     "hierarchy.json: jobs.mix[0]: missing required key \"command\" (the name of the "
     "job type)"},
    {with_jobs(R"({"mix": [{"kind": "noop", "weight": 0}]})"),
     "hierarchy.json: jobs.mix[0].weight: expected an integer from 1 to 1000000, found "
     "0"},
    {with_jobs(R"({"mix": []})"),
     "hierarchy.json: jobs.mix: expected a non-empty array of job objects, found an "
     "array"},
    {with_jobs(R"({"count": -1})"),
     "hierarchy.json: jobs.count: expected an integer from 0 to 1000000000, found -1"},
    {with_jobs(R"({"cuont": 1})"),
     "hierarchy.json: jobs.cuont: unknown key (known keys: count mix); did you mean "
     "\"count\"?"},
    {"{\"num_levels\": 1,}", ""}, // checked by prefix below
  };
  for (const auto& [text, expected] : cases) {
    BOOST_TEST_CONTEXT("file " << text) {
      auto msg = error_of(text);
      if (expected.empty())
        BOOST_TEST(msg.rfind("hierarchy.json: not valid JSON: parse error", 0) == 0,
                   "invalid JSON is named as such, got \"" << msg << "\"");
      else
        BOOST_TEST(msg == expected);
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(shell_commands)

BOOST_AUTO_TEST_CASE(commands_are_checked_by_their_first_word) {
  BOOST_TEST(!check_shell_command("true"));
  BOOST_TEST(!check_shell_command("echo hi; nosuchprog"), "only the first word counts");
  BOOST_TEST(!check_shell_command("ls -l /"), "found via PATH");
  BOOST_TEST(!check_shell_command("/bin/sh -c 'exit 0'"), "a path is taken as is");
  BOOST_TEST(!check_shell_command("A=1 B='x y' \"echo\" hi"), "assignments are skipped");
  BOOST_TEST(!check_shell_command("2>/dev/null ls"), "redirections are skipped");
  BOOST_TEST(!check_shell_command("$CMD --x"), "an expansion is not judged");
  BOOST_TEST(!check_shell_command("[ -d / ]"));
  BOOST_TEST(check_shell_command("").value_or("") == "empty command");
  BOOST_TEST(check_shell_command("  ").value_or("") == "empty command");
  BOOST_TEST(check_shell_command("A=b nosuch x").value_or("")
             == "nosuch: no such command in PATH");
  BOOST_TEST(check_shell_command("(nosuch)").value_or("")
             == "nosuch: no such command in PATH");
  BOOST_TEST(check_shell_command("/no/such x").value_or("")
             == "/no/such: No such file or directory");
  BOOST_TEST(check_shell_command("/etc/passwd").value_or("")
             == "/etc/passwd: not executable");
  BOOST_TEST(check_shell_command("/ x").value_or("") == "/: is a directory");
  BOOST_TEST(check_shell_command("| x").value_or("")
             == "unexpected \"|\" before the command");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(job_lists)

BOOST_AUTO_TEST_CASE(kinds_are_interleaved_by_weight_and_ids_are_consecutive) {
  job_spec spec;
  spec.count = 8;
  spec.mix = {job_mix_entry{job_kind::noop, 0, "", "", true, 3},
              job_mix_entry{job_kind::sleep, 250, "", "", true, 1}};
  auto jobs = make_jobs(spec, 10);
  BOOST_REQUIRE_EQUAL(jobs.size(), 8u);
  BOOST_TEST(kinds_of(jobs) == "nnsnnnsn", "3:1 spread out, never in blocks");
  for (size_t i = 0; i < jobs.size(); ++i)
    BOOST_TEST(jobs[i].id == 10 + i);
  BOOST_TEST(jobs[2].duration_us == 250u, "a sleep job carries its duration");

  spec.count = 12;
  spec.mix = {job_mix_entry{job_kind::noop, 0, "", "", true, 2},
              job_mix_entry{job_kind::shell, 0, "true", "", false, 1},
              job_mix_entry{job_kind::custom, 0, "t", "a", true, 1}};
  jobs = make_jobs(spec);
  BOOST_TEST(jobs.front().id == 1u, "ids start at 1 by default");
  auto kinds = kinds_of(jobs);
  BOOST_TEST(std::count(kinds.begin(), kinds.end(), 'n') == 6);
  BOOST_TEST(std::count(kinds.begin(), kinds.end(), 's') == 3);
  BOOST_TEST(std::count(kinds.begin(), kinds.end(), 'c') == 3);
  BOOST_TEST(kinds.find("nnn") == std::string::npos, "no block of one kind");
  auto shell = std::find_if(jobs.begin(), jobs.end(),
                            [](const job& j) { return j.what() == job_kind::shell; });
  BOOST_TEST(shell->command == "true");
  BOOST_TEST(!shell->idempotent);

  BOOST_TEST(make_jobs(job_spec{}).empty(), "count 0 gives no jobs");
  spec.mix.clear();
  BOOST_TEST(kinds_of(make_jobs(spec)) == std::string(12, 'n'), "empty mix: noops");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(running_shell_commands)

BOOST_AUTO_TEST_CASE(exit_codes_and_both_output_streams_are_reported) {
  auto r = run_shell("exit 3", {});
  BOOST_TEST(r.exit_status == 3);
  BOOST_TEST(r.error.empty());
  r = run_shell("echo hi; echo err >&2", {});
  BOOST_TEST(r.exit_status == 0);
  BOOST_TEST(r.output == "hi\nerr\n");
  BOOST_TEST(!r.truncated);
  r = run_shell("cat; echo done", {});
  BOOST_TEST(r.output == "done\n", "stdin is /dev/null, so cat ends at once");
}

BOOST_AUTO_TEST_CASE(output_past_the_limit_is_dropped_without_blocking_the_command) {
  auto start = std::chrono::steady_clock::now();
  run_options opts;
  opts.max_output_bytes = 100;
  auto r = run_shell("yes | head -c 100000", opts);
  BOOST_TEST(r.exit_status == 0);
  BOOST_TEST(r.output.size() == 100u);
  BOOST_TEST(r.output.substr(0, 4) == "y\ny\n");
  BOOST_TEST(r.truncated);
  BOOST_TEST(seconds_since(start) < 5.0, "it returns promptly");
}

BOOST_AUTO_TEST_CASE(a_signal_gives_128_plus_its_number) {
  auto r = run_shell("kill -9 $$", {});
  BOOST_TEST(r.exit_status == 137);
  BOOST_TEST(r.error.empty());
}

BOOST_AUTO_TEST_CASE(a_timeout_kills_the_command_and_says_so) {
  auto start = std::chrono::steady_clock::now();
  run_options opts;
  opts.timeout = 200ms;
  auto r = run_shell("sleep 5", opts);
  BOOST_TEST(seconds_since(start) < 2.0);
  BOOST_TEST(r.exit_status == 137);
  BOOST_TEST(r.error == "timed out after 200 ms");
}

BOOST_AUTO_TEST_CASE(background_jobs_neither_block_the_runner_nor_survive_it) {
  auto start = std::chrono::steady_clock::now();
  auto r = run_shell("sleep 30 & echo $!", {});
  BOOST_TEST(seconds_since(start) < 5.0, "a background job holding the pipe open");
  BOOST_TEST(r.exit_status == 0);
  auto bg = std::stoi(r.output);
  BOOST_TEST(test::eventually(5000ms, [bg] { return test::process_gone(bg); }),
             "the background sleep was killed");
}

BOOST_AUTO_TEST_CASE(environment_variables_are_added_and_replace_existing_ones) {
  run_options opts;
  opts.env = {{"TROUPE_TEST_VAR", "hello world"}, {"HOME", "/nowhere"}};
  auto r = run_shell("printf '%s|%s' \"$TROUPE_TEST_VAR\" \"$HOME\"", opts);
  BOOST_TEST(r.output == "hello world|/nowhere");
}

BOOST_AUTO_TEST_CASE(the_command_is_bound_to_the_given_cpus) {
  run_options opts;
  opts.cpus = {0};
  auto r = run_shell("cat /proc/self/status | grep Cpus_allowed_list", opts);
  BOOST_TEST(r.output == "Cpus_allowed_list:\t0\n");
  opts.cpus = {100000};
  r = run_shell("true", opts);
  BOOST_TEST(r.exit_status == 127);
  BOOST_TEST(r.error == "cannot bind to CPUs 100000: Invalid argument",
             "a binding that fails means the command did not start");
}

BOOST_AUTO_TEST_CASE(commands_run_concurrently_from_several_threads) {
  std::vector<std::future<bool>> results;
  for (int t = 0; t < 4; ++t)
    results.push_back(std::async(std::launch::async, [t] {
      bool ok = true;
      for (int i = 0; i < 5; ++i) {
        auto want = std::to_string(t) + "." + std::to_string(i);
        ok = ok && run_shell("sleep 0.01; echo " + want, {}).output == want + "\n";
      }
      return ok;
    }));
  for (auto& f : results)
    BOOST_TEST(f.get(), "every thread got its own commands' output");
}

BOOST_AUTO_TEST_CASE(no_child_is_left_behind) {
  run_shell("true", {});
  run_options opts;
  opts.timeout = 50ms;
  run_shell("sleep 1 | sleep 1", opts);
  errno = 0;
  BOOST_TEST(::waitpid(-1, nullptr, WNOHANG) == -1);
  BOOST_TEST(errno == ECHILD, "every child was reaped");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_CASE(libraries_are_made_absolute_and_must_exist) {
  auto cfg = troupe::offload::parse_hierarchy(
    R"({"num_levels": 1, "libraries": ["/bin/sh"]})", "hierarchy.json");
  BOOST_TEST(cfg.libraries == std::vector<std::string>{"/bin/sh"});
  try {
    troupe::offload::parse_hierarchy(R"({"num_levels": 1, "libraries": ["/no/lib.so"]})",
                                     "hierarchy.json");
    BOOST_FAIL("a missing library was accepted");
  } catch (const troupe::config_error& e) {
    BOOST_TEST(std::string{e.what()}
               == "hierarchy.json: libraries[0]: \"/no/lib.so\": no such file");
  }
}
