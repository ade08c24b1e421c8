// The engine's connections (detail/ucx_engine_impl.hpp): accepting and connecting
// endpoints, wireup (make_ready), the transports they use, failure and close.

#include "transport/detail/ucx_engine_impl.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <netdb.h>

#include "base/log.hpp"

namespace troupe::transport::detail {

namespace {

/// How long stop() lets endpoints flush before it forces them closed.
constexpr auto close_grace = std::chrono::seconds(2);

} // namespace

// -- UCX callbacks ---------------------------------------------------------------------

void engine::impl::on_conn_request(ucp_conn_request_h request, void* arg) {
  static_cast<impl*>(arg)->accepts.push_back(request);
}

void engine::impl::on_ep_error(void* arg, ucp_ep_h ep, ucs_status_t status) {
  auto self = static_cast<impl*>(arg);
  auto it = self->by_ep.find(ep);
  if (it != self->by_ep.end())
    self->fails.emplace_back(it->second, "connection lost: " + status_text(status));
}

void engine::impl::on_flush_done(void* request, ucs_status_t status, void* user_data) {
  auto op = static_cast<flush_op*>(user_data);
  op->self->flushed(op->conn, status);
  delete op;
  ucp_request_free(request);
}

// -- connections ----------------------------------------------------------------------

conn_id engine::impl::add_connection(ucp_ep_h ep) {
  auto c = std::make_unique<connection>();
  c->id = next_conn++;
  c->ep = ep;
  by_ep.emplace(ep, c->id);
  auto id = c->id;
  conns.emplace(id, std::move(c));
  return id;
}

void engine::impl::close_endpoint(ucp_ep_h ep, bool force) {
  auto deadline = std::chrono::steady_clock::now() + close_grace;
  auto wait = [&](ucs_status_ptr_t req) {
    while (ucp_request_check_status(req) == UCS_INPROGRESS
           && std::chrono::steady_clock::now() < deadline)
      ucp_worker_progress(worker);
    return ucp_request_check_status(req) != UCS_INPROGRESS;
  };
  ucp_request_param_t none{};
  ucs_status_ptr_t flush = nullptr;
  if (!force) {
    // What was sent goes out first, within the grace period. A peer that never takes
    // it (stopped, or a handshake that never finished) gets a forced close instead:
    // that cancels what is pending, where a graceful close would wait for it, and a
    // request still pending when the worker is destroyed aborts the process.
    flush = ucp_ep_flush_nbx(ep, &none);
    if (UCS_PTR_IS_ERR(flush) || (UCS_PTR_IS_PTR(flush) && !wait(flush)))
      force = true;
  }
  ucp_request_param_t rp{};
  rp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  rp.flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0;
  auto req = ucp_ep_close_nbx(ep, &rp);
  if (UCS_PTR_IS_PTR(req)) {
    if (!wait(req))
      ucp_request_cancel(worker, req);
    ucp_request_free(req);
  }
  if (UCS_PTR_IS_PTR(flush))
    ucp_request_free(flush); // completed by the close if it had not
}

namespace {

/// The transports of an endpoint's active message lanes, from UCX's description of
/// it (lines like "lane[1]:  3:posix/memory.0 md[1]  -> ... am am_bw#0"; UCX 1.13 has
/// no query for them).
std::vector<std::string> am_transports(ucp_ep_h ep) {
  char* text = nullptr;
  size_t size = 0;
  FILE* stream = ::open_memstream(&text, &size);
  if (stream == nullptr)
    return {};
  ucp_ep_print_info(ep, stream);
  std::fclose(stream);
  std::vector<std::string> found;
  std::string all{text, size};
  std::free(text);
  size_t at = 0;
  while ((at = all.find("lane[", at)) != std::string::npos) {
    auto end = all.find('\n', at);
    auto line = all.substr(at, end == std::string::npos ? std::string::npos : end - at);
    at = end == std::string::npos ? all.size() : end;
    auto slash = line.find('/');
    auto colon = line.rfind(':', slash);
    bool am = line.find(" am") != std::string::npos;
    if (!am || slash == std::string::npos || colon == std::string::npos)
      continue;
    auto name = line.substr(colon + 1, slash - colon - 1);
    if (std::find(found.begin(), found.end(), name) == found.end())
      found.push_back(name);
  }
  return found;
}

} // namespace

void engine::impl::count_transports(connection& c, bool add) {
  if (add) {
    if (c.ep == nullptr)
      return;
    c.transports = am_transports(c.ep);
    TROUPE_LOG_DEBUG(log_component, "connection " << c.id << " carries messages over "
                                                  << c.transports.size()
                                                  << " transport(s)");
  }
  std::lock_guard<std::mutex> guard{transports_mtx};
  for (const auto& name : c.transports) {
    auto& n = transports_in_use[name];
    if (add) {
      ++n;
    } else if (--n == 0) {
      transports_in_use.erase(name);
    }
  }
  if (!add)
    c.transports.clear();
}

void engine::impl::accept(ucp_conn_request_h request) {
  ucp_ep_params_t ep_params{};
  ep_params.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST | UCP_EP_PARAM_FIELD_ERR_HANDLER
                         | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
  ep_params.conn_request = request;
  ep_params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  ep_params.err_handler.cb = &impl::on_ep_error;
  ep_params.err_handler.arg = this;
  ucp_ep_h ep = nullptr;
  auto status = ucp_ep_create(worker, &ep_params, &ep);
  if (status != UCS_OK) {
    TROUPE_LOG_WARNING(log_component,
                       "cannot accept a connection: " << status_text(status));
    return;
  }
  handler.on_accepted(add_connection(ep));
}

void engine::impl::fail_connection(conn_id id, const std::string& reason) {
  auto c = find(id);
  if (c == nullptr || c->failed)
    return;
  c->failed = true;
  count_transports(*c, false);
  c->ready = false;
  c->waiting.clear();
  if (c->ep != nullptr) {
    by_ep.erase(c->ep);
    close_endpoint(c->ep, true);
    c->ep = nullptr;
  }
  drop_rkeys(*c);
  // Frames already complete are still handed on: they were accepted before the
  // failure. Incomplete ones are lost with the connection.
  deliver(id);
  c = find(id); // the handler may have closed it meanwhile
  if (c == nullptr) {
    handler.on_conn_failed(id, reason);
    return;
  }
  for (auto& slot : c->inbox)
    if (slot->rndv_desc != nullptr)
      ucp_am_data_release(worker, slot->rndv_desc);
  conns.erase(id);
  handler.on_conn_failed(id, reason);
}

void engine::impl::flushed(conn_id id, ucs_status_t status) {
  auto c = find(id);
  if (!usable(c))
    return;
  c->flushing = false;
  if (status != UCS_OK) {
    fails.emplace_back(id, "wireup failed: " + status_text(status));
    return;
  }
  c->ready = true;
  count_transports(*c, true);
  while (!c->waiting.empty()) {
    auto p = std::move(c->waiting.front());
    c->waiting.pop_front();
    start_send(*c, p.kind, std::move(p.header), std::move(p.payload));
  }
}

conn_id engine::connect(const sockaddr_storage& addr, unsigned addr_len) {
  auto& d = *impl_;
  ucp_ep_params_t ep_params{};
  ep_params.field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR
                         | UCP_EP_PARAM_FIELD_ERR_HANDLER
                         | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
  ep_params.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
  ep_params.sockaddr.addr = reinterpret_cast<const sockaddr*>(&addr);
  ep_params.sockaddr.addrlen = addr_len;
  ep_params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  ep_params.err_handler.cb = &impl::on_ep_error;
  ep_params.err_handler.arg = impl_.get();
  ucp_ep_h ep = nullptr;
  auto status = ucp_ep_create(d.worker, &ep_params, &ep);
  if (status != UCS_OK) {
    // Report through the same path as a later failure, with a connection id.
    auto c = std::make_unique<impl::connection>();
    c->id = d.next_conn++;
    auto id = c->id;
    d.conns.emplace(id, std::move(c));
    d.fails.emplace_back(id, "cannot connect: " + status_text(status));
    return id;
  }
  return d.add_connection(ep);
}

void engine::make_ready(conn_id conn) {
  auto& d = *impl_;
  auto c = d.find(conn);
  if (!impl::usable(c) || c->ready || c->flushing)
    return;
  c->flushing = true;
  auto op = new impl::flush_op{&d, conn};
  ucp_request_param_t rp{};
  rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  rp.cb.send = &impl::on_flush_done;
  rp.user_data = op;
  auto req = ucp_ep_flush_nbx(c->ep, &rp);
  if (req == nullptr) {
    delete op;
    d.flushed(conn, UCS_OK);
  } else if (UCS_PTR_IS_ERR(req)) {
    delete op;
    d.flushed(conn, UCS_PTR_STATUS(req));
  }
}

void engine::close(conn_id conn, bool force) {
  auto& d = *impl_;
  auto c = d.find(conn);
  if (c == nullptr || c->closing)
    return;
  if (!c->failed)
    d.send_held(*c); // sent before the close, like everything sent before it
  c->closing = true;
  d.count_transports(*c, false);
  c->ready = false;
  c->waiting.clear();
  if (c->ep != nullptr) {
    d.by_ep.erase(c->ep);
    d.close_endpoint(c->ep, force || c->failed);
    c->ep = nullptr;
  }
  c = d.find(conn); // callbacks run while closing must not have erased it; be sure
  if (c == nullptr)
    return;
  d.drop_rkeys(*c);
  for (auto& slot : c->inbox)
    if (slot->rndv_desc != nullptr)
      ucp_am_data_release(d.worker, slot->rndv_desc);
  d.conns.erase(conn);
}

std::map<std::string, uint64_t> engine::transports_in_use() const {
  std::lock_guard<std::mutex> guard{impl_->transports_mtx};
  return impl_->transports_in_use;
}

std::string resolve_address(const std::string& host, uint16_t port, sockaddr_storage& out,
                            unsigned& out_len) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* result = nullptr;
  auto service = std::to_string(port);
  int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &result);
  if (rc != 0)
    return "cannot resolve host '" + host + "': " + ::gai_strerror(rc);
  std::memcpy(&out, result->ai_addr, result->ai_addrlen);
  out_len = static_cast<unsigned>(result->ai_addrlen);
  ::freeaddrinfo(result);
  return {};
}

} // namespace troupe::transport::detail
