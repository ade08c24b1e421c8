#pragma once
// Prometheus metrics: with `"metrics": {"port": P}` in its config, a node serves
// GET /metrics in Prometheus's text exposition format (version 0.0.4) over HTTP, from
// civetweb (an embedded HTTP server from Debian). The numbers are those `actorsh
// stats` and `actorsh ops` read: transport counters, drops by reason, the progress
// scheduler's sleeps and wakeups, op counters, providers, uptime. Names follow
// Prometheus's conventions: a `troupe_` prefix, `_total` on counters, base units.

#include <functional>
#include <memory>
#include <string>

#include <caf/expected.hpp>

struct mg_context;
struct mg_connection;

namespace troupe {

class node;

/// Where to listen (node config key "metrics").
struct metrics_config {
  bool enabled = false;
  std::string address = "127.0.0.1";
  uint16_t port = 0; ///< 0: any free port (metrics_server::url says which)
};

/// The HTTP server behind /metrics; stops (joining its threads) on destruction.
class metrics_server {
public:
  /// Listens as `cfg` says and answers GET /metrics with `render()` (called on the
  /// server's threads: it must be thread-safe). troupe.unreachable naming the address
  /// and the reason when it cannot listen.
  static caf::expected<std::unique_ptr<metrics_server>>
  start(const metrics_config& cfg, std::function<std::string()> render);
  ~metrics_server();
  metrics_server(const metrics_server&) = delete;
  metrics_server& operator=(const metrics_server&) = delete;

  /// "http://ADDRESS:PORT/metrics".
  const std::string& url() const { return url_; }

private:
  metrics_server() = default;
  static int handle(mg_connection* conn, void* self);

  mg_context* ctx_ = nullptr;
  std::function<std::string()> render_;
  std::string url_;
};

/// `n`'s metrics in the text exposition format.
std::string render_metrics(node& n);

} // namespace troupe
