// troupe-offload across real processes: the root in troupe-offload, child instances as
// actorhost processes (and in-process subtrees). Every claim is checked from what the
// demo writes: its per-job CSV, its report, the logs of its child processes, and a
// file the shell jobs append their ids to (how often each really ran).
#define BOOST_TEST_MODULE offload
#include <boost/test/unit_test.hpp>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "test/support/host_network.hpp"
#include "test/support/process.hpp"
#include "test/support/timing.hpp"

using namespace troupe::test;
using namespace std::chrono_literals;

namespace {

struct csv_row {
  uint64_t id = 0;
  std::string path;
  int exit_status = 0;
  std::string outcome;
  unsigned runs = 0;
  std::string kind;
  std::string output; // unquoted
};

std::vector<csv_row> read_csv(const std::string& path) {
  std::ifstream in{path};
  std::string line;
  std::getline(in, line);
  BOOST_REQUIRE_MESSAGE(line == "job_id,kind,path,submit_s,start_s,end_s,exit_status,outcome,runs,output",
                        path << ": header " << line);
  std::vector<csv_row> rows;
  while (std::getline(in, line)) {
    // Nine plain fields, then the output, quoted ("" for a quote inside).
    std::vector<std::string> f;
    size_t at = 0;
    for (int i = 0; i < 9; ++i) {
      auto comma = line.find(',', at);
      BOOST_REQUIRE_MESSAGE(comma != std::string::npos, "bad CSV line: " << line);
      f.push_back(line.substr(at, comma - at));
      at = comma + 1;
    }
    auto quoted = line.substr(at);
    BOOST_REQUIRE_MESSAGE(quoted.size() >= 2 && quoted.front() == '"' && quoted.back() == '"',
                          "bad CSV output field: " << line);
    std::string output;
    for (size_t i = 1; i + 1 < quoted.size(); ++i) {
      output += quoted[i];
      if (quoted[i] == '"')
        ++i; // "" stands for one quote
    }
    rows.push_back({std::stoull(f[0]), f[2], std::stoi(f[6]), f[7],
                    static_cast<unsigned>(std::stoul(f[8])), f[1], output});
  }
  return rows;
}

// Every job 1..n has exactly one row.
void check_each_job_once(const std::vector<csv_row>& rows, uint64_t n) {
  std::map<uint64_t, int> count;
  for (auto& r : rows)
    ++count[r.id];
  BOOST_TEST(rows.size() == n);
  for (uint64_t id = 1; id <= n; ++id)
    BOOST_TEST(count[id] == 1, "job " << id << " has " << count[id] << " rows");
}

std::string read_all(const std::string& path) {
  std::ifstream in{path};
  return std::string{std::istreambuf_iterator<char>{in}, {}};
}

// The pids of every actorhost started for `instance` (its log holds each ready line).
std::vector<int> pids_in_log(const std::string& log_path) {
  std::vector<int> pids;
  std::regex ready{"actorhost ready: .* pid=([0-9]+)"};
  auto text = read_all(log_path);
  for (std::sregex_iterator it{text.begin(), text.end(), ready}, end; it != end; ++it)
    pids.push_back(std::stoi((*it)[1]));
  return pids;
}

// The progress lines troupe-offload printed so far, as (done) counts.
std::vector<uint64_t> progress_of(child_process& demo) {
  demo.wait_for_line("\x01", 20ms); // reads what is there
  std::vector<uint64_t> done;
  std::regex line{"progress: ([0-9]+)/"};
  auto& out = demo.out();
  for (std::sregex_iterator it{out.begin(), out.end(), line}, end; it != end; ++it)
    done.push_back(std::stoull((*it)[1]));
  return done;
}

struct demo_run {
  temp_dir dir;
  std::string run_dir = dir.path() + "/run";
  std::string csv = run_dir + "/jobs.csv";
  std::string ran = dir.path() + "/ran"; // shell jobs append their ids here
  std::string timeout_s = "120";

  demo_run() { std::filesystem::create_directory(run_dir); }

  std::vector<std::string> argv(const std::string& config,
                                std::vector<std::string> extra = {}) {
    std::vector<std::string> args{bin_path("troupe-offload"), "-c", dir.write("h.json", config),
                                  "--run-dir", run_dir, "--progress-ms", "100", "--timeout",
                                  timeout_s};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  std::string log_of(const std::string& instance) {
    std::string stem = "instance-";
    for (char c : instance)
      stem += c == '/' ? '-' : c;
    return run_dir + "/" + stem + ".log";
  }

  // How often each id appears in the shell jobs' file.
  std::map<uint64_t, int> shell_runs() {
    std::map<uint64_t, int> runs;
    std::ifstream in{ran};
    uint64_t id;
    while (in >> id)
      ++runs[id];
    return runs;
  }
};

} // namespace

BOOST_AUTO_TEST_SUITE(every_job_completes_once)

BOOST_AUTO_TEST_CASE(two_levels_of_processes_with_mixed_jobs) {
  demo_run run;
  auto r = run_to_end(run.argv(R"({"num_levels": 2,
      "levels": [{"num_children": 2, "cores_per_child": 1}],
      "jobs": {"count": 600, "mix": [{"kind": "noop", "weight": 4},
                                     {"kind": "sleep", "duration_ms": 0.5},
                                     {"kind": "shell", "command": "echo $TROUPE_JOB_ID >> )"
                               + run.ran + R"("}]}})"),
                      120s);
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  auto rows = read_csv(run.csv);
  check_each_job_once(rows, 600);
  std::set<std::string> leaves;
  for (auto& row : rows) {
    BOOST_TEST(row.outcome == "succeeded");
    BOOST_TEST(row.runs == 1u);
    leaves.insert(row.path);
  }
  BOOST_TEST((leaves == std::set<std::string>{"0/0", "0/1"}));
  // 600 jobs, weights 4:1:1: every sixth is a shell job, and each ran once.
  auto shell = run.shell_runs();
  BOOST_TEST(shell.size() == 100u);
  for (auto& [id, n] : shell)
    BOOST_TEST(n == 1, "shell job " << id << " ran " << n << " times");
  BOOST_TEST(r.out.find("report: 600 jobs completed") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("completions seen twice: 0") != std::string::npos, r.out);
}

BOOST_AUTO_TEST_CASE(three_levels_processes_then_in_process_leaves) {
  demo_run run;
  auto r = run_to_end(run.argv(R"({"num_levels": 3, "levels": [
      {"num_children": 2, "cores_per_child": 2},
      {"num_children": 2, "cores_per_child": 1}], "jobs": {"count": 5000}})"),
                      120s);
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  auto rows = read_csv(run.csv);
  check_each_job_once(rows, 5000);
  std::set<std::string> leaves;
  for (auto& row : rows)
    leaves.insert(row.path);
  // Every job ran at a leaf of the third level.
  for (auto& leaf : leaves)
    BOOST_TEST((leaf == "0/0/0" || leaf == "0/0/1" || leaf == "0/1/0" || leaf == "0/1/1"),
               leaf);
}

BOOST_AUTO_TEST_CASE(two_and_three_levels_inside_one_process) {
  for (auto config : {R"({"num_levels": 2, "levels": [
          {"num_children": 8, "cores_per_child": 1, "placement": "in_process"}],
          "jobs": {"count": 3000}})",
                      R"({"num_levels": 3, "levels": [
          {"num_children": 3, "cores_per_child": 2, "placement": "in_process"},
          {"num_children": 2, "cores_per_child": 1, "placement": "in_process"}],
          "jobs": {"count": 3000, "mix": [{"kind": "noop"}, {"kind": "sleep", "duration_ms": 0.2}]}})"}) {
    demo_run run;
    auto r = run_to_end(run.argv(config), 120s);
    BOOST_TEST(r.exit_code == 0, r.out << r.err);
    check_each_job_once(read_csv(run.csv), 3000);
    // No process was started for them.
    BOOST_TEST(!std::filesystem::exists(run.log_of("0/0")));
  }
}

BOOST_AUTO_TEST_CASE(custom_jobs_run_a_job_type_from_a_module_at_leaves_in_processes) {
  demo_run run;
  auto data = run.dir.write("data", "checksum me");
  auto library = std::string{TROUPE_LIB_DIR} + "/example_checksum_jobs.so";
  auto r = run_to_end(run.argv(R"({"num_levels": 3, "levels": [
      {"num_children": 2, "cores_per_child": 2},
      {"num_children": 2, "cores_per_child": 1}],
      "libraries": [")" + library + R"("],
      "jobs": {"count": 300, "mix": [
        {"kind": "custom", "command": "checksum", "argument": ")" + data + R"("},
        {"kind": "custom", "command": "checksum", "argument": "/no/such/file"}]}})"),
                      120s);
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  auto rows = read_csv(run.csv);
  check_each_job_once(rows, 300);
  for (auto& row : rows) {
    BOOST_TEST(row.kind == "custom");
    BOOST_TEST(row.path.size() == 5u, row.path); // a leaf: 0/i/j, in an actorhost
    if (row.id % 2 == 1) { // the mix alternates: odd ids read the data file
      BOOST_TEST(row.outcome == "succeeded");
      BOOST_TEST(row.output == "ed3ff3bb8f9f22cc", row.output); // FNV-1a of "checksum me"
    } else {
      BOOST_TEST(row.outcome == "failed");
      BOOST_TEST(row.exit_status == 2);
      BOOST_TEST(row.output == "/no/such/file: cannot open");
    }
  }
  // A job type no library registers, and a library that does not exist: exit 2.
  demo_run bad;
  auto unknown = run_to_end(bad.argv(R"({"num_levels": 1, "libraries": [")" + library + R"("],
      "jobs": {"count": 1, "mix": [{"kind": "custom", "command": "nosuch"}]}})"), 30s);
  BOOST_TEST(unknown.exit_code == 2, unknown.out << unknown.err);
  BOOST_TEST(unknown.err.find("jobs.mix[0].command: no job type \"nosuch\" in the "
                              "\"libraries\" (registered: checksum)")
               != std::string::npos,
             unknown.err);
  auto missing = run_to_end(bad.argv(R"({"num_levels": 1, "libraries": ["/no/lib.so"]})"), 30s);
  BOOST_TEST(missing.exit_code == 2, missing.out << missing.err);
  BOOST_TEST(missing.err.find("libraries[0]: \"/no/lib.so\": no such file") != std::string::npos,
             missing.err);
}

BOOST_AUTO_TEST_CASE(ranks_of_an_mpirun_job_as_child_instances) {
  // placement "mpi": the root starts one `mpirun --oversubscribe -np N actorhost`;
  // each rank takes its place from its MPI rank. 2 ranks as leaves, then 4 ranks with
  // 2 in-process leaves each.
  for (auto [config, leaves] : std::vector<std::pair<std::string, size_t>>{
         {R"({"num_levels": 2, "levels": [
             {"num_children": 2, "cores_per_child": 1, "placement": "mpi"}],
             "jobs": {"count": 1000, "mix": [{"kind": "noop"}, {"kind": "shell",
               "command": "true"}]}})", 2},
         {R"({"num_levels": 3, "levels": [
             {"num_children": 4, "cores_per_child": 2, "placement": "mpi"},
             {"num_children": 2, "cores_per_child": 1}],
             "jobs": {"count": 2000, "mix": [{"kind": "noop", "weight": 3},
               {"kind": "sleep", "duration_ms": 1}]}})", 8}}) {
    demo_run run;
    auto r = run_to_end(run.argv(config), 120s);
    BOOST_TEST(r.exit_code == 0, r.out << r.err);
    auto rows = read_csv(run.csv);
    check_each_job_once(rows, leaves == 2 ? 1000 : 2000);
    std::set<std::string> paths;
    for (auto& row : rows)
      paths.insert(row.path);
    BOOST_TEST(paths.size() == leaves);
    auto ranks = pids_in_log(run.run_dir + "/instance-0-mpi.log");
    BOOST_TEST(ranks.size() == (leaves == 2 ? 2u : 4u));
    for (int pid : ranks)
      BOOST_TEST(eventually(10s, [&] { return process_gone(pid); }), "rank " << pid);
  }
}

BOOST_AUTO_TEST_CASE(on_a_network_address_every_child_listens_on_its_route_to_its_parent) {
  // What a tree across hosts takes, on the one host there is: the root listens on the
  // host's network address (--address); a child process and the ranks of an mpirun
  // job (started with the level's mpirun_args) listen on their host's address towards
  // their parent, and the ranks get their config on their command line (on another
  // host, a file written here would not exist).
  auto own = troupe::test::non_loopback_ipv4();
  BOOST_REQUIRE_MESSAGE(!own.empty(), "this test needs an interface beside loopback");
  demo_run run;
  auto rank_output = run.dir.path() + "/rank-output";
  auto r = run_to_end(run.argv(R"({"num_levels": 3, "levels": [
      {"num_children": 1, "cores_per_child": 2},
      {"num_children": 2, "cores_per_child": 1, "placement": "mpi",
       "mpirun_args": ["--output-filename", ")" + rank_output + R"("]}],
      "jobs": {"count": 600, "mix": [{"kind": "noop"}, {"kind": "shell",
        "command": "true"}]}})",
                                       {"--address", own}),
                      120s);
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  check_each_job_once(read_csv(run.csv), 600);
  auto on_network = "actorhost ready: ucx://" + own + ":";
  BOOST_TEST(r.out.find("root instance at ucx://" + own + ":") != std::string::npos, r.out);
  BOOST_TEST(read_all(run.log_of("0/0")).find(on_network) != std::string::npos,
             read_all(run.log_of("0/0")));
  // mpirun wrote each rank's stdout under --output-filename: the args reached it.
  size_t ranks_on_network = 0;
  if (std::filesystem::exists(rank_output))
    for (auto& f : std::filesystem::recursive_directory_iterator{rank_output})
      if (f.path().filename() == "stdout"
          && read_all(f.path().string()).find(on_network) != std::string::npos)
        ++ranks_on_network;
  BOOST_TEST(ranks_on_network == 2u, "rank outputs under " << rank_output);
  BOOST_TEST(!std::filesystem::exists(run.run_dir + "/instance-0-0-mpi.json"));
}

BOOST_AUTO_TEST_CASE(a_tree_across_two_hosts_runs_its_leaves_on_the_other_host) {
  // The second host is a network namespace: its processes reach this host only through
  // a veth pair. mpirun starts the ranks there through an "rsh" that enters it (as ssh
  // would enter another host). A rank listening on 127.0.0.1, or a config only in a
  // file here, would fail this test: the ranks must listen on their own host's address
  // towards the root, and get their config on their command line.
  troupe::test::network_namespace other;
  demo_run run;
  auto rsh = run.dir.write("netns-rsh", "#!/bin/sh\nshift # the host: there is one\nexec "
                                          + other.exec_prefix() + "/bin/sh -c \"$*\"\n");
  std::filesystem::permissions(rsh, std::filesystem::perms::owner_all);
  ::setenv("UCX_TLS", "tcp", 1); // for troupe-offload and, by -x, the ranks: see above
  auto r = run_to_end(run.argv(R"({"num_levels": 3, "levels": [
      {"num_children": 2, "cores_per_child": 1, "placement": "mpi",
       "mpirun_args": ["--host", ")" + other.guest_ip() + R"(:2", "--mca", "plm_rsh_agent",
                       ")" + rsh + R"(", "-x", "UCX_TLS"]},
      {"num_children": 2, "cores_per_child": 1}],
      "jobs": {"count": 400, "mix": [{"kind": "noop"}, {"kind": "shell",
        "command": "ip -4 -o addr | grep -c )" + other.guest_ip() + R"(/"}]}})",
                                       {"--address", other.host_ip()}),
                      120s);
  ::unsetenv("UCX_TLS");
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  auto rows = read_csv(run.csv);
  check_each_job_once(rows, 400);
  std::set<std::string> leaves;
  for (auto& row : rows) {
    leaves.insert(row.path);
    if (row.kind == "shell") // it saw the other host's interface: it ran there
      BOOST_TEST((row.exit_status == 0 && row.output == R"(1\n)"), row.id << ": " << row.output);
  }
  BOOST_TEST(leaves.size() == 4u);
  auto ranks_log = read_all(run.run_dir + "/instance-0-mpi.log");
  size_t ready = 0;
  for (auto at = ranks_log.find("actorhost ready: ucx://" + other.guest_ip() + ":");
       at != std::string::npos;
       at = ranks_log.find("actorhost ready: ucx://" + other.guest_ip() + ":", at + 1))
    ++ready;
  BOOST_TEST(ready == 2u, ranks_log);
  // actorsh on this host reaches a node on the other one (its own node listens towards it).
  child_process there{{"/usr/bin/env", "ip", "netns", "exec", other.name(), bin_path("actorhost"),
                       "--config-text",
                       R"({"transport": {"address": "towards:)" + other.host_ip() + R"("}})"},
                      {"UCX_TLS=tcp"}};
  auto line = there.wait_for_line("actorhost ready: ", 20s);
  BOOST_REQUIRE_MESSAGE(line, there.err());
  std::smatch m;
  BOOST_REQUIRE(std::regex_search(*line, m, std::regex{"(ucx://[0-9.]+:[0-9]+)"}));
  BOOST_TEST(m[1].str().find(other.guest_ip()) != std::string::npos, *line);
  ::setenv("UCX_TLS", "tcp", 1);
  auto ping = run_to_end({bin_path("actorsh"), "-a", m[1].str(), "-c", "ping"}, 30s);
  ::unsetenv("UCX_TLS");
  BOOST_TEST(ping.exit_code == 0, ping.out << ping.err);
  BOOST_TEST(ping.out.find("10 round trips") != std::string::npos, ping.out);
}

BOOST_AUTO_TEST_CASE(a_custom_job_still_running_at_the_deadline_does_not_hold_the_exit) {
  // In-process leaves share troupe-offload's process. A job that looks at
  // stop_requested() returns when its leaf stops; one that never returns is left
  // behind by the process's stop bound (10 s), with a message.
  auto library = test_library("troupe_test_module.so");
  for (auto [type, says] : std::vector<std::pair<std::string, std::string>>{
         {"until_stopped", ""},
         {"never_returns", "the shutdown did not finish within 10000 ms"}}) {
    demo_run run;
    run.timeout_s = "2";
    auto started = std::chrono::steady_clock::now();
    auto r = run_to_end(run.argv(R"({"num_levels": 2, "levels": [
        {"num_children": 2, "cores_per_child": 1, "placement": "in_process"}],
        "libraries": [")" + library + R"("],
        "jobs": {"count": 2, "mix": [{"kind": "custom", "command": ")" + type + R"("}]}})"),
                        60s);
    auto took = std::chrono::steady_clock::now() - started;
    BOOST_TEST_CONTEXT(type) {
      BOOST_TEST(r.exit_code == 1, r.out << r.err);
      BOOST_TEST(r.err.find("timed out after 2 s with 2 jobs not completed") != std::string::npos,
                 r.err);
      BOOST_TEST(r.err.find(says) != std::string::npos, r.err);
      BOOST_TEST((took < (type == "until_stopped" ? 15s : 30s)), troupe::test::ms_of(took) << " ms");
      if (type == "until_stopped")
        BOOST_TEST(r.err.find("did not finish") == std::string::npos, r.err);
    }
  }
}

BOOST_AUTO_TEST_CASE(a_lone_root_runs_its_jobs_itself) {
  demo_run run;
  // 20,000 no-ops in one slice (a no-op that ends at once must not recurse per job) and
  // shell jobs (not idempotent: the root grants their starts itself).
  auto r = run_to_end(run.argv(R"({"num_levels": 1, "jobs": {"count": 20000, "mix": [
      {"kind": "noop", "weight": 999}, {"kind": "shell", "command": "true"}]}})"),
                      60s);
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  auto rows = read_csv(run.csv);
  check_each_job_once(rows, 20000);
  unsigned shells = 0;
  for (auto& row : rows) {
    BOOST_TEST(row.path == "0");
    shells += row.kind == "shell" ? 1 : 0;
  }
  BOOST_TEST(shells == 20u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(failures)

BOOST_AUTO_TEST_CASE(a_mid_level_instance_killed_mid_run_is_restarted_and_no_job_is_lost) {
  demo_run run;
  child_process demo{run.argv(R"({"num_levels": 3, "levels": [
      {"num_children": 2, "cores_per_child": 2},
      {"num_children": 2, "cores_per_child": 1}],
      "jobs": {"count": 400, "mix": [{"kind": "sleep", "duration_ms": 10, "weight": 3},
               {"kind": "shell", "command": "echo $TROUPE_JOB_ID >> )"
                             + run.ran + R"(; sleep 0.01"}]}})")};
  // Once jobs complete, kill instance 0/0 (an actorhost with two in-process leaves).
  BOOST_REQUIRE_MESSAGE(eventually(60s,
                                   [&] {
                                     auto p = progress_of(demo);
                                     return !p.empty() && p.back() >= 40;
                                   }),
                        demo.out() << demo.err());
  auto pids = pids_in_log(run.log_of("0/0"));
  BOOST_REQUIRE_EQUAL(pids.size(), 1u);
  ::kill(pids[0], SIGKILL);
  auto code = demo.wait_exit(120s);
  BOOST_REQUIRE_MESSAGE(code, "troupe-offload did not finish");
  BOOST_TEST(*code == 0, demo.out() << demo.err());
  auto rows = read_csv(run.csv);
  check_each_job_once(rows, 400);
  // Its supervisor started a new 0/0.
  BOOST_TEST(pids_in_log(run.log_of("0/0")).size() == 2u);
  BOOST_TEST(demo.out().find("child instances restarted: 1") != std::string::npos, demo.out());
  // No shell job (not idempotent) ran twice; every one that succeeded ran once; one
  // reported lost ran at most once.
  auto shell = run.shell_runs();
  for (auto& [id, n] : shell)
    BOOST_TEST(n == 1, "shell job " << id << " ran " << n << " times");
  for (auto& row : rows) {
    if (row.kind == "sleep")
      BOOST_TEST((row.outcome == "succeeded"), "sleep job " << row.id << ": " << row.outcome);
    else if (row.outcome == "succeeded")
      BOOST_TEST(shell[row.id] == 1, "shell job " << row.id);
    else
      BOOST_TEST((row.outcome == "lost"), "shell job " << row.id << ": " << row.outcome);
  }
}

BOOST_AUTO_TEST_CASE(a_leaf_killed_while_it_sleeps_has_its_job_rerun_elsewhere) {
  demo_run run;
  child_process demo{run.argv(R"({"num_levels": 2,
      "levels": [{"num_children": 2, "cores_per_child": 1}],
      "jobs": {"count": 4, "mix": [{"kind": "sleep", "duration_ms": 3000}]}})")};
  // Both leaves run a 3 s job; kill one while it sleeps: a second after both were
  // ready (ten progress lines), when its pull (a round trip) has long been answered.
  BOOST_REQUIRE(eventually(30s, [&] {
    return pids_in_log(run.log_of("0/0")).size() == 1
           && pids_in_log(run.log_of("0/1")).size() == 1;
  }));
  auto lines_when_ready = progress_of(demo).size();
  BOOST_REQUIRE(eventually(30s, [&] { return progress_of(demo).size() >= lines_when_ready + 10; }));
  ::kill(pids_in_log(run.log_of("0/1"))[0], SIGKILL);
  auto code = demo.wait_exit(60s);
  BOOST_REQUIRE(code);
  BOOST_TEST(*code == 0, demo.out() << demo.err());
  auto rows = read_csv(run.csv);
  check_each_job_once(rows, 4);
  unsigned reran = 0;
  for (auto& row : rows) {
    BOOST_TEST(row.outcome == "succeeded");
    reran += row.runs == 2 ? 1 : 0;
  }
  BOOST_TEST(reran >= 1u, "no job was re-run after its leaf died");
}

BOOST_AUTO_TEST_CASE(children_stop_when_the_root_dies_and_leave_no_orphans) {
  demo_run run;
  child_process demo{run.argv(R"({"num_levels": 3, "levels": [
      {"num_children": 2, "cores_per_child": 1},
      {"num_children": 1, "cores_per_child": 1}],
      "jobs": {"count": 50, "mix": [{"kind": "sleep", "duration_ms": 100}]}})")};
  BOOST_REQUIRE(eventually(30s, [&] {
    return pids_in_log(run.log_of("0/0")).size() == 1
           && pids_in_log(run.log_of("0/1")).size() == 1;
  }));
  auto a = pids_in_log(run.log_of("0/0"))[0], b = pids_in_log(run.log_of("0/1"))[0];
  demo.signal(SIGKILL);
  demo.wait_exit(10s);
  BOOST_TEST(eventually(10s, [&] { return process_gone(a) && process_gone(b); }),
             "a child instance outlived its parent");
  // They stopped in order (SIGTERM from the parent's death, or the transport's notice).
  BOOST_TEST(eventually(5s, [&] {
    return read_all(run.log_of("0/0")).find("actorhost: stopped") != std::string::npos;
  }));
}

BOOST_AUTO_TEST_CASE(a_stopped_child_instance_does_not_keep_the_demo_from_exiting) {
  // A SIGSTOPped actorhost answers nothing: the run cannot finish, and at its timeout
  // the tree is stopped anyway; the stopped child is killed (its supervisor's kill,
  // then its process), and nothing is left.
  demo_run run;
  auto args = run.argv(R"({"num_levels": 2,
      "levels": [{"num_children": 2, "cores_per_child": 1}],
      "jobs": {"count": 400, "mix": [{"kind": "sleep", "duration_ms": 20}]}})");
  args[args.size() - 1] = "4"; // --timeout 4
  args.push_back("--silence-ms");
  args.push_back("0"); // the bound on silence has a test of its own
  child_process demo{args};
  BOOST_REQUIRE(eventually(30s, [&] {
    return pids_in_log(run.log_of("0/0")).size() == 1
           && pids_in_log(run.log_of("0/1")).size() == 1;
  }));
  auto stopped = pids_in_log(run.log_of("0/0"))[0];
  auto other = pids_in_log(run.log_of("0/1"))[0];
  ::kill(stopped, SIGSTOP);
  auto code = demo.wait_exit(60s);
  BOOST_REQUIRE_MESSAGE(code, "troupe-offload did not exit");
  BOOST_TEST(*code == 1, demo.out() << demo.err());
  BOOST_TEST(demo.err().find("timed out after 4 s") != std::string::npos, demo.err());
  BOOST_TEST(eventually(10s, [&] { return process_gone(stopped) && process_gone(other); }),
             "a child instance outlived the demo: " << demo.err());
}

BOOST_AUTO_TEST_CASE(a_silent_child_instance_is_taken_for_dead_and_replaced) {
  // SIGSTOP instance 0/0 mid-run: its process answers nothing, yet its transport may
  // not notice. After the bound on silence (2 s here: a heartbeat every 0.5 s, and a
  // loaded 2-core box must not make a live child look silent) its jobs are re-queued, its
  // supervisor kills it (its process too) and starts a new 0/0; every job completes.
  demo_run run;
  auto args = run.argv(R"({"num_levels": 3, "levels": [
      {"num_children": 2, "cores_per_child": 2},
      {"num_children": 2, "cores_per_child": 1}],
      "jobs": {"count": 300, "mix": [{"kind": "sleep", "duration_ms": 20}]}})",
                       {"--silence-ms", "2000"});
  child_process demo{args};
  BOOST_REQUIRE(eventually(60s, [&] {
    auto p = progress_of(demo);
    return !p.empty() && p.back() >= 30;
  }));
  auto stopped = pids_in_log(run.log_of("0/0"));
  BOOST_REQUIRE_EQUAL(stopped.size(), 1u);
  ::kill(stopped[0], SIGSTOP);
  auto code = demo.wait_exit(120s);
  BOOST_REQUIRE_MESSAGE(code, "troupe-offload did not finish");
  BOOST_TEST(*code == 0, demo.out() << demo.err());
  check_each_job_once(read_csv(run.csv), 300);
  BOOST_TEST(pids_in_log(run.log_of("0/0")).size() == 2u);
  BOOST_TEST(demo.err().find("was silent for 2000 ms") != std::string::npos, demo.err());
  BOOST_TEST(eventually(10s, [&] { return process_gone(stopped[0]); }),
             "the silent instance's process was not killed");
}

BOOST_AUTO_TEST_CASE(children_stop_when_their_parent_goes_silent) {
  demo_run run;
  child_process demo{run.argv(R"({"num_levels": 2,
      "levels": [{"num_children": 2, "cores_per_child": 1}],
      "jobs": {"count": 100, "mix": [{"kind": "sleep", "duration_ms": 100}]}})",
                              {"--silence-ms", "2000"})};
  BOOST_REQUIRE(eventually(30s, [&] {
    return pids_in_log(run.log_of("0/0")).size() == 1
           && pids_in_log(run.log_of("0/1")).size() == 1;
  }));
  auto a = pids_in_log(run.log_of("0/0"))[0], b = pids_in_log(run.log_of("0/1"))[0];
  // Both children run (have found the root and pulled): jobs complete.
  BOOST_REQUIRE(eventually(30s, [&] {
    auto p = progress_of(demo);
    return !p.empty() && p.back() >= 4;
  }));
  demo.signal(SIGSTOP); // the root answers nothing from now on
  BOOST_TEST(eventually(10s, [&] { return process_gone(a) && process_gone(b); }),
             "a child instance outlived its silent parent");
  // Whichever noticed first: the bound on silence, or the transport (its keepalive).
  auto log = read_all(run.log_of("0/0"));
  BOOST_TEST((log.find("instance 0/0: its parent did not answer for 2000 ms") != std::string::npos
              || log.find("instance 0/0: its parent is gone") != std::string::npos),
             log);
  demo.signal(SIGKILL);
  demo.wait_exit(10s);
}

BOOST_AUTO_TEST_CASE(a_rank_killed_mid_run_restarts_its_mpi_job_and_no_job_is_lost) {
  demo_run run;
  child_process demo{run.argv(R"({"num_levels": 3, "levels": [
      {"num_children": 2, "cores_per_child": 2, "placement": "mpi"},
      {"num_children": 2, "cores_per_child": 1}],
      "jobs": {"count": 300, "mix": [{"kind": "sleep", "duration_ms": 20}]}})")};
  auto log = run.run_dir + "/instance-0-mpi.log";
  BOOST_REQUIRE(eventually(60s, [&] {
    auto p = progress_of(demo);
    return pids_in_log(log).size() == 2 && !p.empty() && p.back() >= 30;
  }));
  ::kill(pids_in_log(log)[1], SIGKILL);
  auto code = demo.wait_exit(120s);
  BOOST_REQUIRE_MESSAGE(code, "troupe-offload did not finish");
  BOOST_TEST(*code == 0, demo.out() << demo.err());
  check_each_job_once(read_csv(run.csv), 300);
  // The job was started again, whole: two more ranks.
  BOOST_TEST(pids_in_log(log).size() == 4u, read_all(log));
  BOOST_TEST(demo.out().find("child instances restarted: 1") != std::string::npos, demo.out());
}

BOOST_AUTO_TEST_CASE(a_silent_rank_restarts_its_mpi_job_and_no_job_is_lost) {
  demo_run run;
  // Enough work that the restarted job's two ranks both come up before it is done
  // (with 300 jobs the rest could finish on the first new rank alone).
  child_process demo{run.argv(R"({"num_levels": 2, "levels": [
      {"num_children": 2, "cores_per_child": 2, "placement": "mpi"}],
      "jobs": {"count": 800, "mix": [{"kind": "sleep", "duration_ms": 20}]}})",
                              {"--silence-ms", "2000"})};
  auto log = run.run_dir + "/instance-0-mpi.log";
  BOOST_REQUIRE(eventually(60s, [&] {
    auto p = progress_of(demo);
    return pids_in_log(log).size() == 2 && !p.empty() && p.back() >= 30;
  }));
  auto stopped = pids_in_log(log)[0];
  ::kill(stopped, SIGSTOP);
  auto code = demo.wait_exit(120s);
  BOOST_REQUIRE_MESSAGE(code, "troupe-offload did not finish");
  BOOST_TEST(*code == 0, demo.out() << demo.err());
  check_each_job_once(read_csv(run.csv), 800);
  BOOST_TEST(pids_in_log(log).size() == 4u, read_all(log));
  BOOST_TEST(eventually(15s, [&] { return process_gone(stopped); }),
             "the silent rank was left behind");
}

BOOST_AUTO_TEST_CASE(a_child_that_dies_at_every_start_makes_its_parent_give_up) {
  demo_run run;
  auto r = run_to_end(run.argv(R"({"num_levels": 2,
      "levels": [{"num_children": 1, "cores_per_child": 1}], "jobs": {"count": 10}})",
                               {"--actorhost", "/bin/false"}),
                      60s);
  BOOST_TEST(r.exit_code == 1, r.out << r.err);
  BOOST_TEST(r.err.find("supervisor 'instance 0' gave up: child '0/0' needed 6 restarts "
                        "within 10000 ms (at most 5 allowed)")
               != std::string::npos,
             r.err);
  BOOST_TEST(r.err.find("its actorhost exited before it was ready") != std::string::npos, r.err);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_CASE(actorsh_shows_any_instance_s_place_in_the_tree_and_its_queue) {
  demo_run run;
  child_process demo{run.argv(R"({"num_levels": 3, "levels": [
      {"num_children": 2, "cores_per_child": 2},
      {"num_children": 2, "cores_per_child": 1}],
      "jobs": {"count": 200, "mix": [{"kind": "sleep", "duration_ms": 50}]}})")};
  auto line = demo.wait_for_line("root instance at ", 30s);
  BOOST_REQUIRE_MESSAGE(line, demo.out() << demo.err());
  std::smatch m;
  BOOST_REQUIRE(std::regex_search(*line, m, std::regex{"at (ucx://[0-9.:]+)"}));
  std::string root = m[1];
  auto child_address_file = run.run_dir + "/instance-0-1.address";
  BOOST_REQUIRE(eventually(30s, [&] { return !read_all(child_address_file).empty(); }));
  auto child = read_all(child_address_file);
  child.erase(child.find_last_not_of("\n") + 1);
  // Once both children run: the root sees them, each with its counters.
  run_result at_root;
  BOOST_TEST(eventually(20s, [&] {
    at_root = run_to_end({bin_path("actorsh"), "-a", root, "-c", "tree"}, 20s);
    return at_root.exit_code == 0 && at_root.out.find("0/1         running") != std::string::npos
           && at_root.out.find("0/0         running") != std::string::npos;
  }), at_root.out << at_root.err);
  BOOST_TEST(at_root.out.find("instance 0 at " + root) != std::string::npos, at_root.out);
  BOOST_TEST(at_root.out.find("parent: none (the root)") != std::string::npos, at_root.out);
  BOOST_TEST(at_root.out.find("children: 2") != std::string::npos, at_root.out);
  BOOST_TEST(at_root.out.find(child + "  queued ") != std::string::npos, at_root.out);
  // A child instance knows its parent and its own in-process children.
  auto at_child = run_to_end({bin_path("actorsh"), "-a", child, "-c", "tree; offload"}, 20s);
  BOOST_TEST(at_child.exit_code == 0, at_child.out << at_child.err);
  BOOST_TEST(at_child.out.find("instance 0/1 at " + child) != std::string::npos, at_child.out);
  BOOST_TEST(at_child.out.find("parent: 0 at " + root) != std::string::npos, at_child.out);
  BOOST_TEST(at_child.out.find("0/1/0       running") != std::string::npos, at_child.out);
  BOOST_TEST(at_child.out.find("0/1/1       running") != std::string::npos, at_child.out);
  BOOST_TEST(at_child.out.find("leased    ") != std::string::npos, at_child.out);
  auto as_json = run_to_end({bin_path("actorsh"), "-a", child, "--json", "-c", "offload"}, 20s);
  BOOST_TEST(as_json.out.find("\"path\":\"0/1\"") != std::string::npos, as_json.out);
  // A node without an offload instance says so.
  host_process plain{"{}"};
  auto none = run_to_end({bin_path("actorsh"), "-a", plain.address(), "-c", "tree"}, 20s);
  BOOST_TEST(none.exit_code != 0);
  BOOST_TEST(none.err.find("runs no offload instance") != std::string::npos, none.err);
  auto code = demo.wait_exit(60s);
  BOOST_TEST((code && *code == 0), demo.out() << demo.err());
}

BOOST_AUTO_TEST_CASE(bad_configs_name_the_file_and_key_and_start_nothing) {
  struct bad {
    const char* config;
    const char* message;
  };
  for (auto [config, message] : std::vector<bad>{
         {R"({"num_levels": 2, "levels": [{"num_children": -2, "cores_per_child": 1}]})",
          "h.json: levels[0].num_children: expected an integer from 1"},
         {R"({"num_levels": 2, "levels": [{"num_children": 2}]})",
          "h.json: levels[0]: missing required key \"cores_per_child\""},
         {R"({"levels": []})", "h.json: missing required key \"num_levels\""},
         {R"({"num_levels": 3, "levels": [{"num_children": 100, "cores_per_child": 1},
                                          {"num_children": 100, "cores_per_child": 1}]})",
          "max_leaves"},
         {R"({"num_levels": 2, "levels": [{"num_children": 1, "cores_per_child": 1}],
              "jobs": {"count": 1, "mix": [{"kind": "shell", "command": "no-such-program-x"}]}})",
          "h.json: jobs.mix[0].command"},
         {R"({"num_levels": 3, "levels": [
              {"num_children": 1, "cores_per_child": 2, "placement": "in_process"},
              {"num_children": 2, "cores_per_child": 1, "placement": "process"}]})",
          "h.json: levels[1].placement: \"process\" cannot be below an \"in_process\" level"},
         {R"({"num_levels": 3, "levels": [
              {"num_children": 1, "cores_per_child": 2, "placement": "in_process"},
              {"num_children": 2, "cores_per_child": 1, "placement": "mpi"}]})",
          "h.json: levels[1].placement: \"mpi\" cannot be below an \"in_process\" level"},
         {R"({"num_levels": 3, "levels": [
              {"num_children": 2, "cores_per_child": 2, "placement": "mpi"},
              {"num_children": 2, "cores_per_child": 1, "placement": "mpi"}]})",
          "h.json: levels[1].placement: \"mpi\" cannot be below an \"mpi\" level"},
         {R"({"num_levels": 2, "levels": [
              {"num_children": 2, "cores_per_child": 1, "mpirun_args": ["-x", "A"]}]})",
          "h.json: levels[0].mpirun_args: only for a level with \"placement\": \"mpi\""}}) {
    demo_run run;
    auto r = run_to_end(run.argv(config), 30s);
    BOOST_TEST(r.exit_code == 2, config << ": " << r.out << r.err);
    BOOST_TEST(r.err.find(message) != std::string::npos, config << ": " << r.err);
    BOOST_TEST(std::filesystem::is_empty(run.run_dir), "something was started for " << config);
  }
}
