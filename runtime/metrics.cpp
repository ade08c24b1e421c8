// The /metrics endpoint (metrics.hpp).

#include "runtime/metrics.hpp"

#include <chrono>
#include <civetweb.h>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>

#include <caf/actor_system.hpp>

#include "base/error.hpp"
#include "base/version.hpp"
#include "runtime/node.hpp"
#include "runtime/ops.hpp"
#include "runtime/provider_registry.hpp"
#include "transport/middleman.hpp"
#include "transport/scheduler.hpp"

namespace troupe {

namespace {

/// A label value with Prometheus's escapes (backslash, double quote, newline).
std::string label_value(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '\\' || c == '"')
      out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

class exposition {
public:
  // Every value here is a count: printed whole (a double would round past 2^53 and
  // print six digits by default).
  void metric(const std::string& name, const char* type, const std::string& help,
              uint64_t value, const std::string& labels = {}) {
    if (name != last_) {
      out_ << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type
           << "\n";
      last_ = name;
    }
    out_ << name << (labels.empty() ? "" : "{" + labels + "}") << " " << value << "\n";
  }
  std::string text() const { return out_.str(); }

private:
  std::ostringstream out_;
  std::string last_;
};

std::once_flag civetweb_init;

} // namespace

std::string render_metrics(node& n) {
  exposition e;
  auto& sys = n.system();
  auto s = transport::middleman::of(sys).stats();
  e.metric("troupe_build_info", "gauge", "Troupe's version (the value is 1).", 1,
           "version=\"" + label_value(version()) + "\"");
  e.metric("troupe_messages_received_total", "counter",
           "Messages received from other nodes.", static_cast<uint64_t>(s.messages_in));
  e.metric("troupe_messages_sent_total", "counter", "Messages sent to other nodes.",
           static_cast<uint64_t>(s.messages_out));
  e.metric("troupe_received_bytes_total", "counter", "Bytes received from other nodes.",
           static_cast<uint64_t>(s.bytes_in));
  e.metric("troupe_sent_bytes_total", "counter", "Bytes sent to other nodes.",
           static_cast<uint64_t>(s.bytes_out));
  e.metric("troupe_peers", "gauge", "Nodes connected to this one.",
           static_cast<uint64_t>(s.peers));
  e.metric("troupe_remote_keys", "gauge", "RDMA remote keys held for peers.",
           static_cast<uint64_t>(s.remote_keys));
  for (const auto& [reason, count] : s.drops)
    e.metric("troupe_dropped_messages_total", "counter",
             "Messages from other nodes dropped, by reason.",
             static_cast<uint64_t>(count), "reason=\"" + label_value(reason) + "\"");
  auto p = transport::progress_stats(sys);
  e.metric("troupe_worker_sleeps_total", "counter",
           "Times a scheduler worker went to sleep (each a wakeup later).",
           static_cast<uint64_t>(p.sleeps));
  e.metric("troupe_worker_wakeups_total", "counter",
           "Wakeups sent to sleeping scheduler workers.",
           static_cast<uint64_t>(p.wakeups_sent));
  // Every counter, 0 until it first counts (a series that appears late reads as a
  // reset to rate()).
  std::map<std::string, uint64_t> op_counters{
    {"launched", 0},        {"completed", 0},     {"failed", 0},
    {"targets_started", 0}, {"unknown_op_id", 0}, {"stray_messages", 0}};
  for (const auto& [what, count] : n.ops().counters())
    op_counters[what] = count;
  for (const auto& [what, count] : op_counters)
    e.metric("troupe_ops_" + what + "_total", "counter",
             "Op framework counter: " + what + ".", static_cast<uint64_t>(count));
  e.metric("troupe_providers", "gauge", "Providers running on this node.",
           static_cast<uint64_t>(n.providers().list().size()));
  e.metric("troupe_scheduler_threads", "gauge", "CAF scheduler threads.",
           static_cast<uint64_t>(n.scheduler_threads()));
  return e.text();
}

caf::expected<std::unique_ptr<metrics_server>>
metrics_server::start(const metrics_config& cfg, std::function<std::string()> render) {
  std::call_once(civetweb_init, [] { mg_init_library(0); });
  std::unique_ptr<metrics_server> server{new metrics_server};
  server->render_ = std::move(render);
  auto listen = cfg.address + ":" + std::to_string(cfg.port);
  const char* options[] = {"listening_ports",    listen.c_str(), "num_threads", "2",
                           "request_timeout_ms", "5000",         nullptr};
  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof callbacks);
  char error_text[256] = {0};
  mg_init_data init;
  std::memset(&init, 0, sizeof init);
  init.callbacks = &callbacks;
  init.user_data = server.get();
  init.configuration_options = options;
  unsigned error_code = 0;
  mg_error_data error;
  std::memset(&error, 0, sizeof error);
  error.code = &error_code;
  error.text = error_text;
  error.text_buffer_size = sizeof error_text;
  server->ctx_ = mg_start2(&init, &error);
  if (server->ctx_ == nullptr)
    return make_error(errc::unreachable, "metrics: cannot listen on " + listen + ": "
                                           + (error_text[0] != 0 ? std::string{error_text}
                                                                 : "unknown error"));
  mg_set_request_handler(server->ctx_, "/metrics", &metrics_server::handle, server.get());
  mg_server_port port;
  std::memset(&port, 0, sizeof port);
  mg_get_server_ports(server->ctx_, 1, &port);
  server->url_ = "http://" + cfg.address + ":" + std::to_string(port.port) + "/metrics";
  return server;
}

metrics_server::~metrics_server() {
  if (ctx_ != nullptr)
    mg_stop(ctx_);
}

int metrics_server::handle(mg_connection* conn, void* self) {
  auto* server = static_cast<metrics_server*>(self);
  const auto* request = mg_get_request_info(conn);
  if (request == nullptr || request->request_method == nullptr
      || (std::strcmp(request->request_method, "GET") != 0
          && std::strcmp(request->request_method, "HEAD") != 0)) {
    mg_send_http_error(conn, 405, "%s", "only GET /metrics\n");
    return 405;
  }
  std::string body;
  try {
    body = server->render_();
  } catch (const std::exception& e) {
    mg_send_http_error(conn, 500, "%s\n", e.what());
    return 500;
  }
  mg_printf(
    conn,
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
    "Content-Length: %zu\r\nConnection: close\r\n\r\n",
    body.size());
  if (std::strcmp(request->request_method, "GET") == 0)
    mg_write(conn, body.data(), body.size());
  return 200;
}

} // namespace troupe
