// The raw UCX peer: the same measurements written straight against UCP active
// messages and RMA, as a user of bare UCX would. This file and the transport are the
// only places outside transport/ that include UCX headers: the benchmark's point is
// to compare Troupe with this.

#include "tools/bench/bench.hpp"

#include <arpa/inet.h>
#include <cstring>
#include <deque>
#include <functional>
#include <iostream>
#include <memory>
#include <netinet/in.h>

#include <ucp/api/ucp.h>

namespace troupe::bench {

namespace {

enum : unsigned {
  am_ping = 10,
  am_pong = 11,
  am_oneway = 12,
  am_count = 13,
  am_count_reply = 14,
  am_region = 15,
  am_region_reply = 16,
};

/// An incoming message, copied (eager) or being received (rendezvous).
struct inbound {
  unsigned id = 0;
  ucp_ep_h reply_ep = nullptr;
  std::string header;
  std::vector<char> data;
  void* rndv_desc = nullptr;
  bool complete = false;
};

/// One worker, driven by whoever calls progress(); shared by client and server.
class ucx_peer {
public:
  ucx_peer() {
    ucp_params_t params{};
    params.field_mask = UCP_PARAM_FIELD_FEATURES;
    params.features = UCP_FEATURE_AM | UCP_FEATURE_RMA;
    ucp_config_t* config = nullptr;
    ucp_config_read(nullptr, nullptr, &config);
    check(ucp_init(&params, config, &context_), "ucp_init");
    ucp_config_release(config);
    ucp_worker_params_t wparams{};
    wparams.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wparams.thread_mode = UCS_THREAD_MODE_SINGLE;
    check(ucp_worker_create(context_, &wparams, &worker_), "ucp_worker_create");
    for (unsigned id = am_ping; id <= am_region_reply; ++id) {
      ucp_am_handler_param_t hp{};
      hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB
                      | UCP_AM_HANDLER_PARAM_FIELD_ARG;
      hp.id = id;
      hp.cb = &ucx_peer::on_am;
      hp.arg = this;
      check(ucp_worker_set_am_recv_handler(worker_, &hp), "set_am_recv_handler");
    }
  }

  ~ucx_peer() {
    for (auto memh : mapped_)
      ucp_mem_unmap(context_, memh);
    if (ep_ != nullptr) {
      ucp_request_param_t rp{};
      rp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
      rp.flags = UCP_EP_CLOSE_FLAG_FORCE;
      wait(ucp_ep_close_nbx(ep_, &rp));
    }
    if (listener_ != nullptr)
      ucp_listener_destroy(listener_);
    ucp_worker_destroy(worker_);
    ucp_cleanup(context_);
  }

  static void check(ucs_status_t status, const char* what) {
    if (status != UCS_OK)
      throw std::runtime_error(std::string{what} + ": " + ucs_status_string(status));
  }

  void progress() {
    while (ucp_worker_progress(worker_) != 0) {
    }
    // Start rendezvous receives outside the callback.
    auto pending = std::move(rndv_pending_);
    rndv_pending_.clear();
    for (auto in : pending) {
      auto desc = in->rndv_desc;
      in->rndv_desc = nullptr;
      ucp_request_param_t rp{};
      rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
      rp.cb.recv_am = [](void* req, ucs_status_t, size_t, void* user) {
        static_cast<inbound*>(user)->complete = true;
        ucp_request_free(req);
      };
      rp.user_data = in;
      auto req =
        ucp_am_recv_data_nbx(worker_, desc, in->data.data(), in->data.size(), &rp);
      if (!UCS_PTR_IS_PTR(req))
        in->complete = true;
    }
  }

  /// Pops the next complete message, if any (in arrival order).
  std::unique_ptr<inbound> next() {
    progress();
    if (inbox_.empty() || !inbox_.front()->complete)
      return nullptr;
    auto in = std::move(inbox_.front());
    inbox_.pop_front();
    return in;
  }

  /// Sends; the buffers must live until the returned request completes (wait()).
  ucs_status_ptr_t send(ucp_ep_h ep, unsigned id, const void* header, size_t header_len,
                        const void* data, size_t len) {
    ucp_request_param_t rp{};
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    rp.flags = UCP_AM_SEND_FLAG_REPLY;
    return ucp_am_send_nbx(ep, id, header, header_len, data, len, &rp);
  }

  /// Sends a message whose buffers are copied and freed when UCX is done with them.
  void send_owned(ucp_ep_h ep, unsigned id, std::string header, std::vector<char> data) {
    struct owned {
      std::string header;
      std::vector<char> data;
    };
    auto op = new owned{std::move(header), std::move(data)};
    ucp_request_param_t rp{};
    rp.op_attr_mask =
      UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    rp.flags = UCP_AM_SEND_FLAG_REPLY;
    rp.cb.send = [](void* req, ucs_status_t, void* user) {
      delete static_cast<owned*>(user);
      ucp_request_free(req);
    };
    rp.user_data = op;
    auto req = ucp_am_send_nbx(ep, id, op->header.data(), op->header.size(),
                               op->data.data(), op->data.size(), &rp);
    if (!UCS_PTR_IS_PTR(req))
      delete op;
  }

  void wait(ucs_status_ptr_t req) {
    if (!UCS_PTR_IS_PTR(req))
      return;
    while (ucp_request_check_status(req) == UCS_INPROGRESS)
      ucp_worker_progress(worker_);
    ucp_request_free(req);
  }

  void* map(size_t bytes, std::string& rkey) {
    ucp_mem_map_params_t params{};
    params.field_mask = UCP_MEM_MAP_PARAM_FIELD_LENGTH | UCP_MEM_MAP_PARAM_FIELD_FLAGS;
    params.length = bytes;
    params.flags = UCP_MEM_MAP_ALLOCATE;
    ucp_mem_h memh = nullptr;
    check(ucp_mem_map(context_, &params, &memh), "ucp_mem_map");
    mapped_.push_back(memh);
    ucp_mem_attr_t attr{};
    attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS;
    check(ucp_mem_query(memh, &attr), "ucp_mem_query");
    void* buf = nullptr;
    size_t len = 0;
    check(ucp_rkey_pack(context_, memh, &buf, &len), "ucp_rkey_pack");
    rkey.assign(static_cast<char*>(buf), len);
    ucp_rkey_buffer_release(buf);
    return attr.address;
  }

  ucp_worker_h worker_ = nullptr;
  ucp_context_h context_ = nullptr;
  ucp_listener_h listener_ = nullptr;
  ucp_ep_h ep_ = nullptr; // the client's endpoint
  std::vector<ucp_ep_h> accepted_;
  bool peer_errors = false; // accepted endpoints with UCP_ERR_HANDLING_MODE_PEER
  std::vector<ucp_mem_h> mapped_;
  std::deque<std::unique_ptr<inbound>> inbox_;
  std::vector<inbound*> rndv_pending_; // in inbox_, receive not started yet

private:
  static ucs_status_t on_am(void* arg, const void* header, size_t header_len, void* data,
                            size_t len, const ucp_am_recv_param_t* param) {
    auto self = static_cast<ucx_peer*>(arg);
    auto in = std::make_unique<inbound>();
    in->reply_ep = param->reply_ep;
    in->header.assign(static_cast<const char*>(header), header_len);
    in->data.resize(len);
    ucs_status_t result = UCS_OK;
    if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0) {
      in->rndv_desc = data;
      self->rndv_pending_.push_back(in.get());
      result = UCS_INPROGRESS;
    } else {
      if (len != 0)
        std::memcpy(in->data.data(), data, len);
      in->complete = true;
    }
    // The AM id is not passed to the callback: each id has its own arg in real code;
    // here the header's first byte says it (set by the sender).
    in->id = header_len > 0 ? static_cast<unsigned char>(in->header[0]) : 0;
    self->inbox_.push_back(std::move(in));
    return result;
  }
};

/// Every message carries its id as the first header byte (see on_am).
std::string header_for(unsigned id, const std::string& rest = {}) {
  return std::string(1, static_cast<char>(id)) + rest;
}

} // namespace

int serve_ucx(bool peer_errors) {
  ucx_peer peer;
  peer.peer_errors = peer_errors;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ucp_listener_params_t lp{};
  lp.field_mask =
    UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER;
  lp.sockaddr.addr = reinterpret_cast<const sockaddr*>(&addr);
  lp.sockaddr.addrlen = sizeof(addr);
  lp.conn_handler.cb = [](ucp_conn_request_h req, void* arg) {
    auto p = static_cast<ucx_peer*>(arg);
    ucp_ep_params_t ep{};
    ep.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST;
    ep.conn_request = req;
    if (p->peer_errors) {
      ep.field_mask |= UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
      ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
    }
    ucp_ep_h handle = nullptr;
    if (ucp_ep_create(p->worker_, &ep, &handle) == UCS_OK)
      p->accepted_.push_back(handle);
  };
  lp.conn_handler.arg = &peer;
  ucx_peer::check(ucp_listener_create(peer.worker_, &lp, &peer.listener_), "listen");
  ucp_listener_attr_t la{};
  la.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR;
  ucx_peer::check(ucp_listener_query(peer.listener_, &la), "listener query");
  auto port = ntohs(reinterpret_cast<sockaddr_in*>(&la.sockaddr)->sin_port);
  std::cout << "address 127.0.0.1:" << port << std::endl;
  uint64_t received = 0;
  for (;;) {
    auto in = peer.next();
    if (!in)
      continue;
    switch (in->id) {
      case am_ping:
        peer.send_owned(in->reply_ep, am_pong, header_for(am_pong), std::move(in->data));
        break;
      case am_oneway:
        ++received;
        break;
      case am_count: {
        std::vector<char> count(sizeof(received));
        std::memcpy(count.data(), &received, sizeof(received));
        peer.send_owned(in->reply_ep, am_count_reply, header_for(am_count_reply),
                        std::move(count));
        break;
      }
      case am_region: {
        uint64_t bytes = 0;
        std::memcpy(&bytes, in->header.data() + 1, sizeof(bytes));
        std::string rkey;
        auto address = reinterpret_cast<uint64_t>(peer.map(bytes, rkey));
        std::string rest(sizeof(address), '\0');
        std::memcpy(rest.data(), &address, sizeof(address));
        peer.send_owned(in->reply_ep, am_region_reply, header_for(am_region_reply, rest),
                        std::vector<char>(rkey.begin(), rkey.end()));
        break;
      }
      default:
        break;
    }
  }
}

result_set measure_ucx(const std::string& address, const workload& w) {
  result_set r;
  try {
    ucx_peer peer;
    auto colon = address.rfind(':');
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
    inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr);
    ucp_ep_params_t ep{};
    ep.field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR;
    ep.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
    ep.sockaddr.addr = reinterpret_cast<const sockaddr*>(&addr);
    ep.sockaddr.addrlen = sizeof(addr);
    if (w.ucx_peer_errors) {
      ep.field_mask |= UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
      ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
    }
    ucx_peer::check(ucp_ep_create(peer.worker_, &ep, &peer.ep_), "connect");
    std::string phase = "connecting";
    auto await = [&](unsigned id) {
      auto deadline = clock_type::now() + std::chrono::seconds(60);
      for (;;) {
        if (auto in = peer.next(); in && in->id == id)
          return in;
        if (clock_type::now() > deadline)
          throw std::runtime_error("no answer from the raw UCX server within 60 s ("
                                   + phase + ")");
      }
    };
    auto ping_header = header_for(am_ping);

    // (a) round trips, one at a time.
    for (auto size : w.rtt_sizes) {
      phase = "round trips of " + std::to_string(size) + " B";
      std::vector<char> payload(size, 'x');
      std::vector<double> samples;
      for (int i = 0; i < w.warmup + w.rtt_iterations; ++i) {
        auto start = clock_type::now();
        auto req = peer.send(peer.ep_, am_ping, ping_header.data(), ping_header.size(),
                             payload.data(), payload.size());
        await(am_pong);
        peer.wait(req);
        if (i >= w.warmup)
          samples.push_back(micros_since(start));
      }
      r.round_trip[size] = summarize(samples);
    }

    // (b) one-way 64 B messages, then a count request.
    {
      phase = "one-way messages";
      std::vector<char> payload(64, 'x');
      auto header = header_for(am_oneway);
      auto count_header = header_for(am_count);
      auto start = clock_type::now();
      for (int i = 0; i < w.one_way_messages; ++i)
        peer.send_owned(peer.ep_, am_oneway, header, payload);
      peer.send_owned(peer.ep_, am_count, count_header, {});
      await(am_count_reply);
      r.one_way_msgs_per_s = w.one_way_messages / (micros_since(start) / 1e6);
    }

    // (c) requests with a fixed number in flight.
    for (auto window : w.in_flight) {
      phase = std::to_string(window) + " requests in flight";
      std::vector<char> payload(64, 'x');
      int sent = 0;
      int done = 0;
      auto start = clock_type::now();
      for (; sent < window; ++sent)
        peer.send_owned(peer.ep_, am_ping, ping_header, payload);
      while (done < w.in_flight_requests) {
        await(am_pong);
        ++done;
        if (sent < w.in_flight_requests) {
          peer.send_owned(peer.ep_, am_ping, ping_header, payload);
          ++sent;
        }
      }
      r.requests_per_s[window] = w.in_flight_requests / (micros_since(start) / 1e6);
    }

    // (d) RDMA get of 1 MiB, a few in flight.
    {
      std::string bytes(sizeof(uint64_t), '\0');
      uint64_t size = w.rdma_bytes;
      std::memcpy(bytes.data(), &size, sizeof(size));
      peer.send_owned(peer.ep_, am_region, header_for(am_region, bytes), {});
      auto reply = await(am_region_reply);
      uint64_t remote_address = 0;
      std::memcpy(&remote_address, reply->header.data() + 1, sizeof(remote_address));
      ucp_rkey_h rkey = nullptr;
      ucx_peer::check(ucp_ep_rkey_unpack(peer.ep_, reply->data.data(), &rkey), "rkey");
      std::string unused;
      auto local = peer.map(w.rdma_bytes, unused);
      int completed = 0;
      int issued = 0;
      auto get = [&] {
        ucp_request_param_t rp{};
        rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
        rp.cb.send = [](void* req, ucs_status_t, void* user) {
          ++*static_cast<int*>(user);
          ucp_request_free(req);
        };
        rp.user_data = &completed;
        auto req = ucp_get_nbx(peer.ep_, local, w.rdma_bytes, remote_address, rkey, &rp);
        if (!UCS_PTR_IS_PTR(req))
          ++completed;
        ++issued;
      };
      auto start = clock_type::now();
      for (int i = 0; i < w.rdma_window; ++i)
        get();
      while (completed < w.rdma_iterations) {
        ucp_worker_progress(peer.worker_);
        while (issued < w.rdma_iterations && issued - completed < w.rdma_window)
          get();
      }
      r.rdma_get_gb_per_s =
        (double(w.rdma_bytes) * w.rdma_iterations) / (micros_since(start) * 1e3);
      ucp_rkey_destroy(rkey);
    }
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

} // namespace troupe::bench
