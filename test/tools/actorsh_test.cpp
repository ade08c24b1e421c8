#define BOOST_TEST_MODULE actorsh
#include <boost/test/unit_test.hpp>

// actorsh against real actorhost processes: -c scripts, --json output, shutdown,
// unreachable nodes, and one interactive session through a pseudo-terminal.

#include <algorithm>
#include <filesystem>
#include <chrono>
#include <sstream>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <thread>
#include <csignal>
#include <poll.h>
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "test/support/process.hpp"
#include "test/support/timing.hpp"

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

/// The bytes a node's transport has received, read through a connection of its own.
uint64_t bytes_in_at(const std::string& address) {
  auto r = actorsh({"-a", address, "--json", "-c", "stats"});
  if (r.exit_code != 0)
    BOOST_FAIL("stats of " << address << ": " << r.err);
  return json::parse(r.out)["bytes_in"].get<uint64_t>();
}

} // namespace

BOOST_AUTO_TEST_CASE(a_script_inspects_a_node_and_fails_on_any_bad_command) {
  host_process host{echo_node};
  auto r = actorsh({"-a", host.address(), "-c", "info; providers; topology"});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(r.out.find(host.address()) != std::string::npos, r.out);
  BOOST_TEST(r.out.find("echo") != std::string::npos);
  BOOST_TEST(r.out.find("cores") != std::string::npos);
  auto bad = actorsh({"-a", host.address(), "-c", "info; infp"});
  BOOST_TEST(bad.exit_code == 1);
  BOOST_TEST(bad.err.find("did you mean 'info'?") != std::string::npos, bad.err);
}

BOOST_AUTO_TEST_CASE(config_prints_the_effective_config_of_the_node) {
  // A value that is not the default, and defaults the node filled in.
  host_process host{R"({"ops": {"deadline_ms": 4321}, "providers": [{"type": "echo",
                        "name": "echo", "provider_id": 1}]})"};
  auto r = actorsh({"-a", host.address(), "-c", "config"});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  auto doc = json::parse(r.out); // pretty printed, but JSON
  BOOST_TEST(doc["ops"]["deadline_ms"] == 4321);
  BOOST_TEST(doc["ops"]["store_max_bytes"] == 1073741824);
  BOOST_TEST(doc["transport"]["protocol"] == "ucx");
  BOOST_TEST(doc["scheduler"] == "progress");
  BOOST_REQUIRE_EQUAL(doc["providers"].size(), 1u);
  BOOST_TEST(doc["providers"][0]["name"] == "echo");
  BOOST_TEST(doc["providers"][0]["provider_id"] == 1);
  auto j = actorsh({"-a", host.address(), "--json", "-c", "config"});
  BOOST_REQUIRE_MESSAGE(j.exit_code == 0, j.err);
  BOOST_TEST(json::parse(j.out) == doc);
}

BOOST_AUTO_TEST_CASE(connect_actors_and_ping_an_address_reach_the_named_node) {
  host_process first{echo_node}, second{echo_node};
  // connect from a shell started without a node; actors lists what providers lists.
  auto c =
    actorsh({"--json", "-c", "connect " + first.address() + "; info; actors; providers"});
  BOOST_REQUIRE_MESSAGE(c.exit_code == 0, c.err);
  auto docs = json_lines(c.out);
  BOOST_REQUIRE_EQUAL(docs.size(), 4u);
  BOOST_TEST(docs[0]["connected"] == first.address());
  BOOST_TEST(docs[1]["address"] == first.address());
  BOOST_TEST(docs[2] == docs[3]);
  BOOST_REQUIRE_EQUAL(docs[2].size(), 1u);
  BOOST_TEST(docs[2][0]["name"] == "echo");
  // The pretty form says where it is connected.
  auto pretty = actorsh({"-c", "connect " + second.address()});
  BOOST_TEST(pretty.exit_code == 0, pretty.err);
  BOOST_TEST(pretty.out == "connected to " + second.address() + "\n");
  // ping ADDRESS from a shell connected to the first node reaches the second one: its
  // bytes in grow by the pings' payloads, the first node's do not.
  constexpr uint64_t ping_bytes = 64 * 1024;
  auto first_before = bytes_in_at(first.address());
  auto second_before = bytes_in_at(second.address());
  auto p =
    actorsh({"-a", first.address(), "--json", "-c",
             "ping " + second.address() + " -n 4 -s " + std::to_string(ping_bytes)});
  BOOST_REQUIRE_MESSAGE(p.exit_code == 0, p.err);
  auto result = json::parse(p.out);
  BOOST_TEST(result["target"] == second.address());
  BOOST_TEST(result["count"] == 4);
  BOOST_TEST(result["bytes"] == ping_bytes);
  BOOST_TEST(bytes_in_at(second.address()) - second_before >= 4 * ping_bytes);
  BOOST_TEST(bytes_in_at(first.address()) - first_before < ping_bytes);
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
  reserved_port nobody; // a port where nothing listens
  auto dead = nobody.address();
  auto start = std::chrono::steady_clock::now();
  constexpr auto timeout = 3000ms;
  auto r =
    actorsh({"-a", dead, "--timeout", std::to_string(timeout.count()), "-c", "info"});
  auto took = std::chrono::steady_clock::now() - start;
  BOOST_TEST(r.exit_code == 1);
  BOOST_TEST(r.err.find("cannot connect to " + dead) != std::string::npos, r.err);
  BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1, r.err);
  BOOST_TEST((took < timeout + detection_margin), ms_of(took) << " ms");
  auto not_connected = actorsh({"-c", "stats"});
  BOOST_TEST(not_connected.exit_code == 1);
  BOOST_TEST(not_connected.err.find("not connected") != std::string::npos);
}

// A peer that accepts the connection but never answers (SIGSTOP): actorsh gives up
// after --timeout, not after its default (5000 ms), says so in one line, and exits
// cleanly (it once aborted in UCX's teardown, with a handshake still pending).
BOOST_AUTO_TEST_CASE(timeout_bounds_the_wait_for_a_node_that_never_answers) {
  host_process host{echo_node};
  host.stop_answering();
  constexpr auto timeout = 500ms;
  // Margin: actorsh's own start and stop, tens of ms when idle (the connection that
  // never finished its handshake is closed at once), and a wide allowance for a
  // loaded machine. The bound stays below the default an ignored --timeout would wait.
  constexpr auto margin = 4000ms;
  static_assert(timeout + margin < 5000ms);
  auto start = std::chrono::steady_clock::now();
  auto r = actorsh(
    {"-a", host.address(), "--timeout", std::to_string(timeout.count()), "-c", "info"});
  auto took = std::chrono::steady_clock::now() - start;
  BOOST_TEST(r.err.find("cannot connect to " + host.address() + ": troupe.timeout") == 0u,
             r.err);
  BOOST_TEST(r.err.find("within " + std::to_string(timeout.count()) + " ms")
               != std::string::npos,
             r.err);
  BOOST_TEST((took >= timeout));
  BOOST_TEST((took < timeout + margin), ms_of(took) << " ms");
  host.process().signal(SIGCONT);
  BOOST_TEST(r.exit_code == 1, r.err);
  BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1, r.err);
}

// fault drop-in: the node loses the next ping (a std::string, "@str", rides in it),
// so that ping ends at --timeout with troupe.timeout (the bound of a ping, which is
// the waiter's, not a CAF timeout); the ping after it is answered; a bad use is a
// usage line.
BOOST_AUTO_TEST_CASE(fault_drop_in_loses_exactly_the_messages_asked_for) {
  host_process host{echo_node};
  constexpr auto timeout = 500ms;
  auto start = std::chrono::steady_clock::now();
  auto lost = actorsh({"-a", host.address(), "--timeout", std::to_string(timeout.count()),
                       "-c", "fault drop-in @str 1; ping -n 1"});
  auto took = std::chrono::steady_clock::now() - start;
  BOOST_TEST(lost.exit_code == 1, lost.err);
  BOOST_TEST(lost.out.find("drops the next 1 incoming @str message") != std::string::npos,
             lost.out);
  BOOST_TEST(lost.err.find("troupe.timeout") != std::string::npos, lost.err);
  BOOST_TEST((took >= timeout), ms_of(took) << " ms");
  BOOST_TEST((took < timeout + detection_margin), ms_of(took) << " ms");
  auto answered = actorsh({"-a", host.address(), "-c", "ping -n 20; stats"});
  BOOST_TEST(answered.exit_code == 0, answered.err);
  BOOST_TEST(answered.out.find("20 round trips") != std::string::npos, answered.out);
  BOOST_TEST(answered.out.find("drop:injected fault") != std::string::npos, answered.out);
  auto bad = actorsh({"-a", host.address(), "-c", "fault drop-in"});
  BOOST_TEST(bad.exit_code == 1);
  BOOST_TEST(bad.err.find("usage: fault drop-in TYPE") == 0u, bad.err);
  auto unknown = actorsh({"-a", host.address(), "-c", "fault drop-in @str many"});
  BOOST_TEST(unknown.exit_code == 1);
}

BOOST_AUTO_TEST_CASE(help_documents_every_command) {
  auto r = actorsh({"-c", "help"});
  BOOST_TEST(r.exit_code == 0);
  for (auto cmd :
       {"connect", "info", "providers", "actors", "stats", "topology", "config", "ops",
        "view", "metadata", "watch", "ping", "shutdown", "overlay", "event", "dmesg",
        "log", "barrier", "kvs", "module", "help", "quit"})
    BOOST_TEST(r.out.find(std::string{"  "} + cmd) != std::string::npos,
               "help lacks " << cmd);
}

namespace {

/// actorsh on a pseudo-terminal, as a user would run it, with HOME at `home`.
class terminal_session {
public:
  /// `target` goes after -a, or after -f if it is not an address.
  terminal_session(const std::string& target, const std::string& home) {
    pid_ = ::forkpty(&master_, nullptr, nullptr, nullptr);
    if (pid_ < 0)
      throw std::runtime_error("forkpty failed");
    if (pid_ == 0) {
      ::setenv("HOME", home.c_str(), 1);
      ::setenv("TERM", "dumb", 1);
      auto path = bin_path("actorsh");
      auto flag = target.rfind("ucx://", 0) == 0 ? "-a" : "-f";
      ::execl(path.c_str(), path.c_str(), flag, target.c_str(), nullptr);
      ::_exit(127);
    }
  }

  ~terminal_session() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (master_ >= 0)
      ::close(master_);
  }

  /// Reads until the screen shows `needle` (30 s at most); whether it did.
  bool read_until(const std::string& needle) {
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (screen_.find(needle) == std::string::npos
           && std::chrono::steady_clock::now() < deadline) {
      pollfd p{master_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0)
        continue;
      char buf[1024];
      auto n = ::read(master_, buf, sizeof(buf));
      if (n <= 0)
        break;
      screen_.append(buf, static_cast<size_t>(n));
    }
    return screen_.find(needle) != std::string::npos;
  }

  void type(const std::string& keys) {
    BOOST_REQUIRE(::write(master_, keys.data(), keys.size())
                  == static_cast<ssize_t>(keys.size()));
  }

  /// Types quit; the exit code, or nothing if it did not exit within 20 s.
  std::optional<int> quit() {
    type("quit\n");
    int status = 0;
    auto deadline = std::chrono::steady_clock::now() + 20s;
    pid_t done = 0;
    while ((done = ::waitpid(pid_, &status, WNOHANG)) == 0
           && std::chrono::steady_clock::now() < deadline)
      read_until("\x01"); // keep the terminal drained while it exits
    if (done != pid_ || !WIFEXITED(status))
      return std::nullopt;
    exited_ = true;
    return WEXITSTATUS(status);
  }

  const std::string& screen() const { return screen_; }

private:
  int master_ = -1;
  pid_t pid_ = -1;
  bool exited_ = false;
  std::string screen_;
};

std::string read_file(const std::string& path) {
  std::ifstream in{path};
  return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

} // namespace

BOOST_AUTO_TEST_CASE(an_interactive_session_through_a_pseudo_terminal) {
  host_process host{echo_node};
  temp_dir home;
  terminal_session shell{host.address(), home.path()};
  // The prompt shows where the shell is connected.
  BOOST_TEST(shell.read_until("actorsh(" + host.address() + ")> "), shell.screen());
  // Tab completes a command name: "top<TAB>" becomes "topology".
  shell.type("top\t");
  BOOST_TEST(shell.read_until("topology"), shell.screen());
  shell.type("\n");
  BOOST_TEST(shell.read_until("hardware_threads"), shell.screen());
  BOOST_TEST((shell.quit() == 0), shell.screen());
}

BOOST_AUTO_TEST_CASE(the_history_file_keeps_commands_across_sessions) {
  host_process host{echo_node};
  temp_dir home;
  auto history = home.path() + "/.actorsh_history";
  {
    terminal_session shell{host.address(), home.path()};
    BOOST_REQUIRE(shell.read_until("> "));
    shell.type("providers\n");
    BOOST_TEST(shell.read_until("provider_id"), shell.screen());
    BOOST_REQUIRE((shell.quit() == 0));
  }
  // Written on exit, one command a line.
  BOOST_TEST(read_file(history) == "providers\nquit\n");
  // A new session reads it: Ctrl-P twice goes back past "quit" to "providers".
  terminal_session again{host.address(), home.path()};
  BOOST_REQUIRE(again.read_until("> "));
  again.type("\x10\x10\n");
  BOOST_TEST(again.read_until("provider_id"), again.screen());
  BOOST_TEST((again.quit() == 0), again.screen());
}

BOOST_AUTO_TEST_CASE(tab_completes_the_targets_of_the_group_a_shell_attached_to) {
  actorhost_instance inst{2};
  temp_dir home;
  auto view = json::parse(actorsh({"-f", inst.view_file, "--json", "-c", "view"}).out);
  std::vector<std::string> addresses;
  for (const auto& m : view["members"])
    addresses.push_back(m["address"]);
  BOOST_REQUIRE_EQUAL(addresses.size(), 2u);
  // The shortest prefix of rank 1's address that no other target starts with.
  auto target = addresses[1];
  auto prefix = target;
  for (size_t n = 1; n <= target.size(); ++n)
    if (addresses[0].rfind(target.substr(0, n), 0) != 0) {
      prefix = target.substr(0, n);
      break;
    }
  terminal_session shell{inst.view_file, home.path()};
  BOOST_REQUIRE(shell.read_until("> "));
  shell.type("ping al\t");
  BOOST_TEST(shell.read_until("ping all"), shell.screen());
  shell.type("\x15ping " + prefix + "\t"); // Ctrl-U clears the line first
  BOOST_TEST(shell.read_until("ping " + target), shell.screen());
  // A command's subcommands complete after it.
  shell.type("\x15kvs du\t");
  BOOST_TEST(shell.read_until("kvs dump"), shell.screen());
  shell.type("\x15");
  BOOST_TEST((shell.quit() == 0), shell.screen());
  inst.launcher->signal(SIGTERM);
  BOOST_REQUIRE(inst.launcher->wait_exit(30s).has_value());
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
  // "ping all" reaches every member: each one's bytes in grow by at least its pings'
  // payloads. Reading the counters costs a connection and the group pings each node,
  // so a window without pings (read twice) shows how little that adds.
  std::vector<std::string> addresses;
  for (const auto& m : doc["members"])
    addresses.push_back(m["address"]);
  std::vector<uint64_t> idle, before;
  for (const auto& address : addresses) {
    idle.push_back(bytes_in_at(address));
    before.push_back(bytes_in_at(address));
  }
  constexpr uint64_t pings_each = 3;
  constexpr uint64_t ping_bytes = 64 * 1024;
  auto p = actorsh(
    {"-f", inst.view_file, "--json", "-c",
     "ping all -n " + std::to_string(pings_each) + " -s " + std::to_string(ping_bytes)});
  BOOST_REQUIRE_MESSAGE(p.exit_code == 0, p.err);
  auto pings = json_lines(p.out);
  BOOST_REQUIRE_EQUAL(pings.size(), addresses.size());
  for (size_t r = 0; r < addresses.size(); ++r) {
    BOOST_TEST_CONTEXT("rank " << r) {
      BOOST_TEST(pings[r]["target"] == addresses[r]);
      BOOST_TEST(pings[r]["count"] == pings_each);
      BOOST_TEST(pings[r]["p50_us"].get<double>() > 0);
      auto grew = bytes_in_at(addresses[r]) - before[r];
      BOOST_TEST(before[r] - idle[r] < ping_bytes); // without pings
      BOOST_TEST(grew >= pings_each * ping_bytes);
    }
  }
  // ping RANK reaches that rank's node and no other.
  auto rank_before = bytes_in_at(addresses[1]);
  auto other_before = bytes_in_at(addresses[2]);
  auto one = actorsh({"-f", inst.view_file, "--json", "-c",
                      "ping 1 -n 2 -s " + std::to_string(ping_bytes)});
  BOOST_REQUIRE_MESSAGE(one.exit_code == 0, one.err);
  BOOST_TEST(json::parse(one.out)["target"] == "1");
  BOOST_TEST(bytes_in_at(addresses[1]) - rank_before >= 2 * ping_bytes);
  BOOST_TEST(bytes_in_at(addresses[2]) - other_before < ping_bytes);
  // metadata set and rm print the new version, and the view shows the change.
  auto epoch = std::to_string(doc["version"]["epoch"].get<uint64_t>()) + ".";
  auto version = doc["version"]["seq"].get<uint64_t>();
  auto m = actorsh({"-f", inst.view_file, "-c", "metadata set stage demo; view"});
  BOOST_REQUIRE_MESSAGE(m.exit_code == 0, m.err);
  BOOST_TEST(
    m.out.find("set stage: version " + epoch + std::to_string(version + 1) + "\n") == 0u,
    m.out);
  BOOST_TEST(m.out.find(R"(metadata {"stage":"demo"})") != std::string::npos, m.out);
  auto rm = actorsh({"-f", inst.view_file, "--json", "-c", "metadata rm stage; view"});
  BOOST_REQUIRE_MESSAGE(rm.exit_code == 0, rm.err);
  auto removed = json_lines(rm.out);
  BOOST_REQUIRE_EQUAL(removed.size(), 2u);
  BOOST_TEST(removed[0]["key"] == "stage");
  BOOST_TEST(removed[0]["removed"] == true);
  BOOST_TEST(removed[0]["version"] == epoch + std::to_string(version + 2));
  BOOST_TEST(removed[1]["metadata"].empty(), removed[1].dump());
  // overlay: every rank reports its place in the instance's tree (fanout 8 by
  // default: 1 and 2 under the root).
  auto o = actorsh({"-f", inst.view_file, "-c", "overlay"});
  BOOST_REQUIRE_MESSAGE(o.exit_code == 0, o.err);
  BOOST_TEST(o.out.find("overlay: 3 ranks, fanout 8, 3 up, 0 lost\n0 " + addresses[0]
                        + " up")
               == 0u,
             o.out);
  BOOST_TEST(o.out.find("\n  2 " + addresses[2] + " up") != std::string::npos, o.out);
  // ... with each rank's heartbeat (the root beats every second by default).
  std::string with_beats;
  BOOST_TEST(eventually(10s, [&] {
    auto b = actorsh({"-f", inst.view_file, "--json", "-c", "overlay"});
    if (b.exit_code != 0)
      return false;
    with_beats = b.out;
    auto up = json::parse(b.out)["up"];
    return up.size() == 3u && std::all_of(up.begin(), up.end(), [](const json& r) {
             return r.contains("heartbeat") && r["heartbeat"]["seq"].get<uint64_t>() > 0
                    && r["heartbeat"]["missed"] == false;
           });
  }), with_beats);
  // event: a subscriber at rank 2 prints what is published at rank 0.
  child_process sub{{bin_path("actorsh"), "-a", addresses[2], "-c", "event sub a. -n 2"}};
  BOOST_REQUIRE_MESSAGE(sub.wait_for_line("subscribed to \"a.\"", 20s), sub.err());
  for (auto topic : {"b.skipped", "a.one", "a.two"}) {
    auto pub = actorsh({"-a", addresses[0], "-c", std::string{"event pub "} + topic + " hi there"});
    BOOST_REQUIRE_MESSAGE(pub.exit_code == 0, pub.err);
    BOOST_TEST(pub.out.find("published " + std::string{topic} + ": seq 1") == 0u, pub.out);
    BOOST_TEST(pub.out.find("3 ranks got it") != std::string::npos, pub.out);
  }
  BOOST_TEST(sub.wait_exit(20s).value_or(-1) == 0, sub.err());
  BOOST_TEST(sub.out().find("a.one  seq 1  hi there\n") != std::string::npos, sub.out());
  BOOST_TEST(sub.out().find("a.two  seq 1  hi there\n") != std::string::npos, sub.out());
  BOOST_TEST(sub.out().find("b.skipped") == std::string::npos, sub.out());
  // log and dmesg: a line logged at rank 2 is in the instance's log, read at rank 1.
  auto logged = actorsh({"-a", addresses[2], "-c", "log --level warning hello from two"});
  BOOST_REQUIRE_MESSAGE(logged.exit_code == 0, logged.err);
  std::string dmesg_out;
  BOOST_TEST(eventually(10s, [&] {
    auto d = actorsh({"-a", addresses[1], "-c", "dmesg --level warning"});
    dmesg_out = d.out;
    return d.exit_code == 0
           && d.out.find(" WARN rank 2 actorsh: hello from two\n") != std::string::npos;
  }), dmesg_out);
  // barrier: two shells at ranks 1 and 2, each done once both entered.
  child_process first_in{{bin_path("actorsh"), "-a", addresses[1], "-c", "barrier demo 2"}};
  auto second_in = actorsh({"-a", addresses[2], "-c", "barrier demo 2"});
  BOOST_TEST(second_in.exit_code == 0, second_in.err);
  BOOST_TEST(second_in.out == "barrier demo: 2 entered (generation 1)\n", second_in.out);
  BOOST_TEST(first_in.wait_exit(20s).value_or(-1) == 0, first_in.err());
  BOOST_TEST(first_in.out() == "barrier demo: 2 entered (generation 1)\n", first_in.out());
  auto alone = actorsh({"-a", addresses[1], "-c", "barrier lonely 2 --timeout 200"});
  BOOST_TEST(alone.exit_code == 1);
  BOOST_TEST(alone.err.find("barrier: troupe.timeout: barrier 'lonely': 1 of 2 entered "
                            "within 200 ms")
               == 0u,
             alone.err);
  auto bad_barrier = actorsh({"-a", addresses[1], "-c", "barrier demo zero"});
  BOOST_TEST(bad_barrier.err.find("usage: barrier NAME COUNT") == 0u, bad_barrier.err);
  auto bad_level = actorsh({"-a", addresses[1], "-c", "dmesg --level loud"});
  BOOST_TEST(bad_level.exit_code == 1);
  BOOST_TEST(bad_level.err.find("dmesg: unknown level 'loud'") == 0u, bad_level.err);
  auto bad_event = actorsh({"-f", inst.view_file, "-c", "event shout x"});
  BOOST_TEST(bad_event.exit_code == 1);
  BOOST_TEST(bad_event.err.find("usage: event pub TOPIC") == 0u, bad_event.err);
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
  // ... and the overlay rebuilds its tree without it.
  BOOST_TEST(eventually(5s, [&] {
    auto tree = actorsh({"-f", inst.view_file, "--json", "-c", "overlay"});
    if (tree.exit_code != 0)
      return false;
    auto j = json::parse(tree.out);
    return j["size"] == 2 && j["up"].size() == 2u && j["lost"].empty();
  }));
  // SIGTERM to the launcher stops every node.
  inst.launcher->signal(SIGTERM);
  auto code = inst.launcher->wait_exit(30s);
  BOOST_REQUIRE(code.has_value());
  BOOST_TEST(*code == 0, inst.launcher->err());
  BOOST_TEST(eventually(5s, [&] { return inst.all_gone(); }));
}

BOOST_AUTO_TEST_CASE(kvs_commands_drive_the_instance_s_store) {
  actorhost_instance inst{3};
  auto v = actorsh({"-f", inst.view_file, "--json", "-c", "view"});
  BOOST_REQUIRE_MESSAGE(v.exit_code == 0, v.err);
  std::vector<std::string> addresses;
  auto view = json::parse(v.out);
  for (const auto& m : view["members"])
    addresses.push_back(m["address"]);
  // A watch at rank 2 prints the changes committed at ranks 0 and 1.
  child_process watch{{bin_path("actorsh"), "-a", addresses[2], "-c", "kvs watch job -n 2"}};
  BOOST_REQUIRE_MESSAGE(watch.wait_for_line("watching \"job\" in primary", 20s), watch.err());
  auto put = actorsh({"-a", addresses[0], "-c", "kvs put job.state running now"});
  BOOST_REQUIRE_MESSAGE(put.exit_code == 0, put.err);
  BOOST_TEST(put.out == "committed version 1\n", put.out);
  auto put_json = actorsh({"-a", addresses[1], "--json", "-c",
                           R"(kvs put job.spec {"ranks": 4} --json-value)"});
  BOOST_REQUIRE_MESSAGE(put_json.exit_code == 0, put_json.err);
  BOOST_TEST(json::parse(put_json.out)["version"] == 2);
  BOOST_TEST(watch.wait_exit(20s).value_or(-1) == 0, watch.err());
  BOOST_TEST(watch.out().find("version 1  job.state = running now\n") != std::string::npos,
             watch.out());
  BOOST_TEST(watch.out().find(R"(version 2  job.spec = {"ranks": 4})") != std::string::npos,
             watch.out());
  // Reads at another rank: get, ls, dump, as text and as JSON.
  auto reads = actorsh({"-a", addresses[2], "-c", "kvs get job.state; kvs ls; kvs ls job; kvs dump"});
  BOOST_REQUIRE_MESSAGE(reads.exit_code == 0, reads.err);
  BOOST_TEST(reads.out == "running now\njob.\nspec\nstate\njob.spec = {\"ranks\": 4}\n"
                          "job.state = running now\n",
             reads.out);
  auto get_json = actorsh({"-a", addresses[1], "--json", "-c", "kvs get job.spec"});
  BOOST_REQUIRE_MESSAGE(get_json.exit_code == 0, get_json.err);
  auto got = json::parse(get_json.out);
  BOOST_TEST(got["value"]["ranks"] == 4);
  BOOST_TEST(got["version"] == 2);
  // Errors name what is wrong.
  auto dir = actorsh({"-a", addresses[1], "-c", "kvs get job"});
  BOOST_TEST(dir.exit_code == 1);
  BOOST_TEST(dir.err.find("kvs get: troupe.invalid_argument: 'job' is a directory") == 0u, dir.err);
  auto bad_json = actorsh({"-a", addresses[1], "-c", "kvs put x {oops --json-value"});
  BOOST_TEST(bad_json.exit_code == 1);
  BOOST_TEST(bad_json.err.find("key 'x': the value is not valid JSON") != std::string::npos,
             bad_json.err);
  // A namespace takes commits from its owner only.
  auto ns = actorsh({"-a", addresses[1], "-c",
                     "kvs ns create jobs alice; kvs put j1 queued --ns jobs --as alice; "
                     "kvs get j1 --ns jobs"});
  BOOST_REQUIRE_MESSAGE(ns.exit_code == 0, ns.err);
  BOOST_TEST(ns.out.find("queued\n") != std::string::npos, ns.out);
  auto not_owner = actorsh({"-a", addresses[2], "-c", "kvs put j2 x --ns jobs --as bob"});
  BOOST_TEST(not_owner.exit_code == 1);
  BOOST_TEST(not_owner.err.find("namespace 'jobs' is owned by 'alice'") != std::string::npos,
             not_owner.err);
  auto usage = actorsh({"-a", addresses[1], "-c", "kvs frobnicate"});
  BOOST_TEST(usage.exit_code == 1);
  BOOST_TEST(usage.err.find("usage: kvs get KEY") == 0u, usage.err);
  // The root keeps its store in the instance's directory.
  auto stats = actorsh({"-a", addresses[0], "--json", "-c", "kvs stats"});
  BOOST_REQUIRE_MESSAGE(stats.exit_code == 0, stats.err);
  auto s = json::parse(stats.out);
  BOOST_TEST(s["root"] == true);
  BOOST_TEST(s["store"] == inst.dir.path() + "/inst/kvs.sqlite");
  BOOST_TEST(s["commits"] == 4);
  BOOST_TEST(std::filesystem::exists(s["store"].get<std::string>()));
  inst.launcher->signal(SIGTERM);
  BOOST_REQUIRE(inst.launcher->wait_exit(30s).has_value());
}

namespace {

/// How often `needle` occurs in `text`.
size_t count_of(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1))
    ++n;
  return n;
}

} // namespace

BOOST_AUTO_TEST_CASE(modules_are_loaded_listed_and_removed_in_running_nodes) {
  auto lib = [](const std::string& name) { return test_library(name); };
  auto runtime_module = lib("troupe_runtime_module.so");
  // Two nodes that load the module at start and run a provider of its type.
  actorhost_instance inst{2, R"({"threads": 1, "libraries": [")" + runtime_module
                               + R"("], "providers": [{"type": "greeter", "name": "greeter",
                                  "provider_id": 1}]})"};
  auto at_all = [&](const std::string& command) {
    return actorsh({"-f", inst.view_file, "-c", command + " --all"});
  };
  auto list = at_all("module list");
  BOOST_REQUIRE_MESSAGE(list.exit_code == 0, list.err);
  BOOST_TEST(count_of(list.out, runtime_module + "  at start; providers greeter; jobs -; ops -")
               == 2u,
             list.out);
  // Not while its provider runs ...
  auto refused = at_all("module remove troupe_runtime_module.so");
  BOOST_TEST(refused.exit_code == 1);
  BOOST_TEST(count_of(refused.err, "has running providers: greeter (type greeter); --force "
                                   "stops them first")
               == 2u,
             refused.err);
  // ... unless forced: the provider is stopped, then the module goes.
  auto forced = at_all("module remove troupe_runtime_module.so --force");
  BOOST_REQUIRE_MESSAGE(forced.exit_code == 0, forced.err);
  BOOST_TEST(count_of(forced.out, "removed " + runtime_module + " (stopped greeter)") == 2u,
             forced.out);
  BOOST_TEST(count_of(at_all("module list").out, "no modules") == 2u);
  auto view = json::parse(actorsh({"-f", inst.view_file, "--json", "-c", "view"}).out);
  std::string first = view["members"][0]["address"];
  auto providers = actorsh({"-a", first, "-c", "providers"});
  BOOST_TEST(providers.out.find("greeter") == std::string::npos, providers.out);
  // Bad modules are refused, naming why, and leave the node as it was.
  struct bad_case {
    std::string path;
    std::string why;
  };
  for (const auto& [path, why] :
       std::vector<bad_case>{{"/nonexistent/module.so", "cannot open shared object file"},
                             {lib("troupe_not_a_module.so"), "not a Troupe module"},
                             {lib("troupe_other_abi_module.so"), "built for module ABI 999"},
                             {lib("troupe_typed_module.so"),
                              "it registers message type 'troupe_test_point', and a running "
                              "node's message types are fixed"}}) {
    auto bad = actorsh({"-a", first, "-c", "module load " + path});
    BOOST_TEST(bad.exit_code == 1);
    BOOST_TEST(bad.err.find("module load: troupe.module_load_failed") == 0u, bad.err);
    BOOST_TEST(bad.err.find(why) != std::string::npos, bad.err);
  }
  BOOST_TEST(actorsh({"-a", first, "-c", "module list"}).out == "no modules\n");
  // Loaded again into the running nodes: its provider type is back.
  auto loaded = at_all("module load " + runtime_module);
  BOOST_REQUIRE_MESSAGE(loaded.exit_code == 0, loaded.err);
  BOOST_TEST(count_of(loaded.out, runtime_module + "  loaded; providers greeter") == 2u,
             loaded.out);
  auto twice = actorsh({"-a", first, "-c", "module load " + runtime_module});
  BOOST_TEST(twice.err.find("is loaded already") != std::string::npos, twice.err);
  // A module with op types stays until the node restarts.
  auto with_ops = actorsh({"-a", first, "-c", "module load " + lib("troupe_test_module.so")
                                                + "; module remove troupe_test_module.so"});
  BOOST_TEST(with_ops.exit_code == 1);
  BOOST_TEST(with_ops.err.find("cannot be unloaded: it registered op types") != std::string::npos,
             with_ops.err);
  auto json_list = actorsh({"-a", first, "--json", "-c", "module list"});
  auto listed = json::parse(json_list.out);
  BOOST_TEST(listed["list"].size() == 2u, json_list.out);
  auto removed = actorsh({"-a", first, "-c", "module remove troupe_runtime_module.so"});
  BOOST_TEST(removed.exit_code == 0, removed.err);
  inst.launcher->signal(SIGTERM);
  BOOST_REQUIRE(inst.launcher->wait_exit(30s).has_value());
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
  auto victim = inst.addresses.at(1);
  ::kill(inst.pids[1], SIGKILL);
  BOOST_TEST(inst.launcher->wait_for_text_on_stderr("was killed by", 10s));
  // The view actorsh shows loses the killed node (the leader notices its death).
  json shown;
  BOOST_TEST(
    eventually(10s,
               [&] {
                 auto v = actorsh({"-f", inst.view_file, "--json", "-c", "view"});
                 if (v.exit_code != 0)
                   return false;
                 shown = json::parse(v.out);
                 return shown["members"].size() == 2u;
               }),
    shown.dump());
  for (const auto& m : shown["members"])
    BOOST_TEST(m["address"] != victim);
  inst.launcher->signal(SIGTERM);
  BOOST_REQUIRE(inst.launcher->wait_exit(30s).has_value());
  BOOST_TEST(eventually(5s, [&] { return inst.all_gone(); }));
}
