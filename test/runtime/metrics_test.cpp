#define BOOST_TEST_MODULE metrics

// A node's /metrics (runtime/metrics.hpp) scraped from a real actorhost over loopback:
// Prometheus's text format that parses line by line, counters that rise after traffic
// and agree with `actorsh stats`, HTTP errors for other paths, methods and garbage
// (the node keeps serving), and a config error for a bad key.

#include <arpa/inet.h>
#include <map>
#include <netinet/in.h>
#include <regex>
#include <sstream>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <nlohmann/json.hpp>

#include "test/support/process.hpp"

using namespace troupe::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

/// Sends `request` to 127.0.0.1:`port` and reads until the server closes.
std::string http(uint16_t port, const std::string& request) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  BOOST_REQUIRE(fd >= 0);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  BOOST_REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  BOOST_REQUIRE(::write(fd, request.data(), request.size())
                == static_cast<ssize_t>(request.size()));
  std::string answer;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0)
    answer.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return answer;
}

std::string get(uint16_t port, const std::string& path) {
  return http(port, "GET " + path
                      + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
}

/// The samples of a scrape (name{labels} -> value); fails on a line that is neither a
/// comment nor a sample.
std::map<std::string, double> samples_of(const std::string& answer) {
  auto body = answer.substr(answer.find("\r\n\r\n") + 4);
  static const std::regex sample{
    R"(^([a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})?) (-?[0-9.e+-]+)$)"};
  std::map<std::string, double> out;
  std::istringstream lines{body};
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0)
      continue;
    std::smatch m;
    BOOST_REQUIRE_MESSAGE(std::regex_match(line, m, sample), "not a sample: " << line);
    out[m[1]] = std::stod(m[3]);
  }
  return out;
}

struct metrics_node {
  host_process node{R"({"threads": 1, "metrics": {"port": 0}})"};
  uint16_t port = 0;

  metrics_node() {
    auto info = run_to_end(
      {bin_path("actorsh"), "-a", node.address(), "--json", "-c", "info"}, 30s);
    BOOST_REQUIRE_MESSAGE(info.exit_code == 0, info.err);
    std::string url = json::parse(info.out)["metrics"];
    std::smatch m;
    BOOST_REQUIRE(
      std::regex_match(url, m, std::regex{R"(http://127\.0\.0\.1:([0-9]+)/metrics)"}));
    port = static_cast<uint16_t>(std::stoul(m[1]));
  }
};

} // namespace

BOOST_FIXTURE_TEST_SUITE(metrics_suite, metrics_node)

BOOST_AUTO_TEST_CASE(a_scrape_parses_and_its_counters_rise_with_traffic) {
  auto first = get(port, "/metrics");
  BOOST_REQUIRE(first.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  BOOST_TEST(first.find("Content-Type: text/plain; version=0.0.4") != std::string::npos);
  BOOST_TEST(first.find("# TYPE troupe_messages_received_total counter\n")
             != std::string::npos);
  auto before = samples_of(first);
  for (auto name :
       {"troupe_messages_received_total", "troupe_sent_bytes_total", "troupe_peers",
        "troupe_worker_sleeps_total", "troupe_providers", "troupe_ops_launched_total"})
    BOOST_TEST(before.count(name) == 1u, name);
  BOOST_TEST(first.find("\ntroupe_build_info{version=\"") != std::string::npos);
  // Traffic: 20 pings of 1 KiB from actorsh; the node counts them.
  auto ping = run_to_end(
    {bin_path("actorsh"), "-a", node.address(), "-c", "ping -n 20 -s 1024"}, 30s);
  BOOST_REQUIRE_MESSAGE(ping.exit_code == 0, ping.err);
  auto after = samples_of(get(port, "/metrics"));
  BOOST_TEST(after["troupe_messages_received_total"]
             >= before["troupe_messages_received_total"] + 20);
  BOOST_TEST(after["troupe_received_bytes_total"]
             >= before["troupe_received_bytes_total"] + 20 * 1024);
  // The same numbers actorsh stats reads (at least as many: the scrape came later).
  auto stats =
    run_to_end({bin_path("actorsh"), "-a", node.address(), "--json", "-c", "stats"}, 30s);
  BOOST_REQUIRE(stats.exit_code == 0);
  auto s = json::parse(stats.out);
  BOOST_TEST(s["messages_in"].get<double>() >= after["troupe_messages_received_total"]);
}

BOOST_AUTO_TEST_CASE(
  other_paths_methods_and_garbage_get_http_errors_and_the_node_goes_on) {
  BOOST_TEST(get(port, "/other").rfind("HTTP/1.1 404", 0) == 0u);
  auto post = http(port, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                         "Connection: close\r\n\r\n");
  BOOST_TEST(post.rfind("HTTP/1.1 405", 0) == 0u, post);
  auto garbage = http(port, std::string("\x01\x02\xff garbage\r\n\r\n", 15));
  BOOST_TEST(
    (garbage.empty() || std::regex_search(garbage, std::regex{"^HTTP/1\\.[01] 4"})),
    garbage);
  BOOST_TEST(get(port, "/metrics").rfind("HTTP/1.1 200 OK", 0) == 0u);
  BOOST_TEST(!node.process().wait_exit(0ms).has_value()); // still running
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_CASE(a_bad_metrics_key_is_a_config_error_naming_it) {
  temp_dir dir;
  auto config = dir.write("bad.json", R"({"metrics": {"port": 70000}})");
  auto r = run_to_end({bin_path("actorhost"), "-c", config}, 30s);
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(r.err.find("metrics.port") != std::string::npos, r.err);
  BOOST_TEST(r.err.find("an integer from 0 to 65535") != std::string::npos, r.err);
}
