#define BOOST_TEST_MODULE actorsh
#include <boost/test/unit_test.hpp>

// actorsh against real actorhost processes: -c scripts, --json output, shutdown,
// unreachable nodes, and one interactive session through a pseudo-terminal.

#include <algorithm>
#include <chrono>
#include <sstream>
#include <functional>
#include <thread>
#include <csignal>
#include <poll.h>
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "test/support/process.hpp"

using namespace troupe::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

const std::string echo_node =
  R"({"providers": [{"type": "echo", "name": "echo", "provider_id": 1}]})";

run_result actorsh(std::vector<std::string> args) {
  args.insert(args.begin(), bin_path("actorsh"));
  return run_to_end(std::move(args), 60s);
}

std::vector<json> json_lines(const std::string& out) {
  std::vector<json> docs;
  std::istringstream in{out};
  std::string line;
  while (std::getline(in, line))
    docs.push_back(json::parse(line));
  return docs;
}

} // namespace

BOOST_AUTO_TEST_CASE(a_script_inspects_a_node_and_fails_on_any_bad_command) {
  host_process host{echo_node};
  auto r = actorsh({"-a", host.address(), "-c", "info; providers; topology; config"});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(r.out.find(host.address()) != std::string::npos, r.out);
  BOOST_TEST(r.out.find("echo") != std::string::npos);
  BOOST_TEST(r.out.find("cores") != std::string::npos);
  auto bad = actorsh({"-a", host.address(), "-c", "info; infp"});
  BOOST_TEST(bad.exit_code == 1);
  BOOST_TEST(bad.err.find("did you mean 'info'?") != std::string::npos, bad.err);
}

BOOST_AUTO_TEST_CASE(json_output_parses_and_counters_rise_after_pings) {
  host_process host{echo_node};
  auto r = actorsh({"-a", host.address(), "--json", "-c",
                    "stats; ping -n 25 -s 100; stats; info; providers"});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  auto docs = json_lines(r.out);
  BOOST_REQUIRE_EQUAL(docs.size(), 5u);
  auto before = docs[0]["messages_in"].get<uint64_t>();
  BOOST_TEST(docs[1]["count"] == 25);
  BOOST_TEST(docs[1]["bytes"] == 100);
  for (auto field : {"min_us", "p50_us", "p99_us", "max_us"})
    BOOST_TEST(docs[1][field].get<double>() > 0.0);
  BOOST_TEST(docs[1]["min_us"].get<double>() <= docs[1]["max_us"].get<double>());
  BOOST_TEST(docs[2]["messages_in"].get<uint64_t>() >= before + 25);
  BOOST_TEST(docs[3]["address"] == host.address());
  BOOST_TEST(docs[3].contains("node_id"));
  BOOST_TEST(docs[4][0]["type"] == "echo");
}

BOOST_AUTO_TEST_CASE(shutdown_stops_the_node_cleanly) {
  host_process host{echo_node};
  auto r = actorsh({"-a", host.address(), "-c", "shutdown"});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(r.out.find("is shutting down") != std::string::npos, r.out);
  auto code = host.process().wait_exit(20s);
  BOOST_REQUIRE(code);
  BOOST_TEST(*code == 0);
}

BOOST_AUTO_TEST_CASE(an_unreachable_node_is_a_one_line_error_within_the_timeout) {
  std::string dead;
  {
    host_process host{echo_node};
    dead = host.address();
    host.kill_hard();
  }
  auto start = std::chrono::steady_clock::now();
  auto r = actorsh({"-a", dead, "--timeout", "3000", "-c", "info"});
  auto took = std::chrono::steady_clock::now() - start;
  BOOST_TEST(r.exit_code == 1);
  BOOST_TEST(r.err.find("cannot connect to " + dead) != std::string::npos, r.err);
  BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1, r.err);
  BOOST_TEST((took < 15s));
  auto not_connected = actorsh({"-c", "stats"});
  BOOST_TEST(not_connected.exit_code == 1);
  BOOST_TEST(not_connected.err.find("not connected") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(help_documents_every_command) {
  auto r = actorsh({"-c", "help"});
  BOOST_TEST(r.exit_code == 0);
  for (auto cmd :
       {"connect", "info", "providers", "actors", "stats", "topology", "config", "ops",
        "view", "metadata", "watch", "ping", "shutdown", "help", "quit"})
    BOOST_TEST(r.out.find(std::string{"  "} + cmd) != std::string::npos,
               "help lacks " << cmd);
}

BOOST_AUTO_TEST_CASE(an_interactive_session_through_a_pseudo_terminal) {
  host_process host{echo_node};
  temp_dir home;
  int master = -1;
  auto pid = ::forkpty(&master, nullptr, nullptr, nullptr);
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    ::setenv("HOME", home.path().c_str(), 1);
    ::setenv("TERM", "dumb", 1);
    auto path = bin_path("actorsh");
    ::execl(path.c_str(), path.c_str(), "-a", host.address().c_str(), nullptr);
    ::_exit(127);
  }
  std::string screen;
  auto read_until = [&](const std::string& needle) {
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (screen.find(needle) == std::string::npos
           && std::chrono::steady_clock::now() < deadline) {
      pollfd p{master, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0)
        continue;
      char buf[1024];
      auto n = ::read(master, buf, sizeof(buf));
      if (n <= 0)
        break;
      screen.append(buf, static_cast<size_t>(n));
    }
    return screen.find(needle) != std::string::npos;
  };
  auto type = [&](const std::string& keys) {
    BOOST_REQUIRE(::write(master, keys.data(), keys.size())
                  == static_cast<ssize_t>(keys.size()));
  };
  // The prompt shows where the shell is connected.
  BOOST_TEST(read_until("actorsh(" + host.address() + ")> "), screen);
  // Tab completes a command name: "top<TAB>" becomes "topology".
  type("top\t");
  BOOST_TEST(read_until("topology"), screen);
  type("\n");
  BOOST_TEST(read_until("hardware_threads"), screen);
  type("quit\n");
  int status = 0;
  auto deadline = std::chrono::steady_clock::now() + 20s;
  pid_t done = 0;
  while ((done = ::waitpid(pid, &status, WNOHANG)) == 0
         && std::chrono::steady_clock::now() < deadline)
    read_until("\x01"); // keep the terminal drained while it exits
  if (done == 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  ::close(master);
  BOOST_TEST(done == pid);
  BOOST_TEST(WIFEXITED(status));
  BOOST_TEST(WEXITSTATUS(status) == 0);
}

BOOST_AUTO_TEST_CASE(view_shows_the_group_of_the_connected_node) {
  temp_dir dir;
  host_process host{R"({"providers": [{"type": "group", "name": "g", "provider_id": 42,
      "config": {"bootstrap": "self", "file": ")"
                    + dir.path() + R"(/g.json"}}]})"};
  auto r = actorsh({"-a", host.address(), "-c", "view"});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(r.out.find(host.address()) != std::string::npos, r.out);
  BOOST_TEST(r.out.find("digest") != std::string::npos, r.out);
  auto j = actorsh({"-a", host.address(), "--json", "-c", "view 42"});
  BOOST_REQUIRE_MESSAGE(j.exit_code == 0, j.err);
  auto doc = json::parse(j.out);
  BOOST_TEST(doc["members"].size() == 1u);
  BOOST_TEST(doc["members"][0]["address"] == host.address());
  BOOST_TEST(doc.contains("digest"));
  auto none = actorsh({"-a", host.address(), "-c", "view 7"});
  BOOST_TEST(none.exit_code == 1);
  BOOST_TEST(none.err.find("runs no group provider with provider id 7")
               != std::string::npos,
             none.err);
}

BOOST_AUTO_TEST_CASE(a_three_node_instance_driven_from_its_view_file) {
  actorhost_instance inst{3};
  BOOST_REQUIRE_EQUAL(inst.pids.size(), 3u);
  auto v = actorsh({"-f", inst.view_file, "--json", "-c", "view"});
  BOOST_REQUIRE_MESSAGE(v.exit_code == 0, v.err);
  auto doc = json::parse(v.out);
  BOOST_TEST(doc["members"].size() == 3u);
  BOOST_TEST(doc["version"]["seq"] == 2); // two joins after the first node
  auto before = json_lines(actorsh({"-f", inst.view_file, "--json", "-c", "stats"}).out);
  auto p = actorsh({"-f", inst.view_file, "--json", "-c", "ping all -n 3"});
  BOOST_REQUIRE_MESSAGE(p.exit_code == 0, p.err);
  auto pings = json_lines(p.out);
  BOOST_TEST(pings.size() == 3u);
  for (const auto& one : pings)
    BOOST_TEST(one["p50_us"].get<double>() > 0);
  auto after = json_lines(actorsh({"-f", inst.view_file, "--json", "-c", "stats"}).out);
  BOOST_REQUIRE(!before.empty() && !after.empty());
  BOOST_TEST(after[0]["messages_in"].get<uint64_t>()
             > before[0]["messages_in"].get<uint64_t>());
  auto m =
    actorsh({"-f", inst.view_file, "-c", "metadata set stage demo; metadata rm stage"});
  BOOST_TEST(m.exit_code == 0, m.err);
  auto rank_ping = actorsh({"-f", inst.view_file, "-c", "ping 9"});
  BOOST_TEST(rank_ping.exit_code == 1);
  BOOST_TEST(rank_ping.err.find("no rank 9: the group has 3 members")
               != std::string::npos,
             rank_ping.err);
  // A node shut down through actorsh leaves the group at once.
  auto s = actorsh({"-f", inst.view_file, "-c", "shutdown 2"});
  BOOST_TEST(s.exit_code == 0, s.err);
  BOOST_TEST(eventually(5s, [&] {
    auto again = actorsh({"-f", inst.view_file, "--json", "-c", "view"});
    return again.exit_code == 0 && json::parse(again.out)["members"].size() == 2u;
  }));
  // SIGTERM to the launcher stops every node.
  inst.launcher->signal(SIGTERM);
  auto code = inst.launcher->wait_exit(30s);
  BOOST_REQUIRE(code.has_value());
  BOOST_TEST(*code == 0, inst.launcher->err());
  BOOST_TEST(eventually(5s, [&] { return inst.all_gone(); }));
}

BOOST_AUTO_TEST_CASE(a_launcher_killed_with_sigkill_leaves_no_orphans) {
  actorhost_instance inst{2};
  BOOST_REQUIRE_EQUAL(inst.pids.size(), 2u);
  inst.launcher->signal(SIGKILL);
  BOOST_REQUIRE(inst.launcher->wait_exit(10s).has_value());
  BOOST_TEST(eventually(10s, [&] { return inst.all_gone(); }));
}

BOOST_AUTO_TEST_CASE(watch_prints_membership_and_metadata_events) {
  actorhost_instance inst{2};
  child_process watcher{
    {bin_path("actorsh"), "-f", inst.view_file, "-c", "watch -n 2 --for 30000"}};
  BOOST_REQUIRE(watcher.wait_for_line("watching 2 members", 20s));
  auto m = actorsh({"-f", inst.view_file, "-c", "metadata set stage two"});
  BOOST_REQUIRE_MESSAGE(m.exit_code == 0, m.err);
  BOOST_TEST(watcher.wait_for_line("metadata-set  stage=two", 20s).has_value());
  auto s = actorsh({"-f", inst.view_file, "-c", "shutdown 1"});
  BOOST_REQUIRE_MESSAGE(s.exit_code == 0, s.err);
  BOOST_TEST(watcher.wait_for_line("  left  ", 20s).has_value(), watcher.out());
  auto code = watcher.wait_exit(20s); // -n 2: it ends after two events
  BOOST_REQUIRE(code.has_value());
  BOOST_TEST(*code == 0, watcher.err());
  inst.launcher->signal(SIGTERM);
  BOOST_REQUIRE(inst.launcher->wait_exit(30s).has_value());
}

BOOST_AUTO_TEST_CASE(a_killed_node_leaves_no_orphans_when_the_launcher_stops) {
  actorhost_instance inst{3};
  BOOST_REQUIRE_EQUAL(inst.pids.size(), 3u);
  ::kill(inst.pids[1], SIGKILL);
  BOOST_TEST(inst.launcher->wait_for_text_on_stderr("was killed by", 10s));
  auto v = actorsh({"-f", inst.view_file, "--json", "-c", "view"});
  BOOST_TEST(v.exit_code == 0, v.err);
  inst.launcher->signal(SIGTERM);
  BOOST_REQUIRE(inst.launcher->wait_exit(30s).has_value());
  BOOST_TEST(eventually(5s, [&] { return inst.all_gone(); }));
}
