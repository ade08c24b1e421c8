// The engine's setup and teardown (detail/ucx_engine_impl.hpp): the UCP context and
// worker, the active message handlers, the worker's event fd, the listener; and
// shutdown, which flushes and closes every endpoint before the worker and context go.

#include "transport/detail/ucx_engine_impl.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <sys/epoll.h>
#include <thread>
#include <unistd.h>

#include "base/log.hpp"

namespace troupe::transport::detail {

namespace {

/// Active message ids travel as 16 bits in UCX's header.
constexpr unsigned max_am_id = 65535;

} // namespace

// -- setup ----------------------------------------------------------------------------

std::string engine::impl::setup() {
  ucp_config_t* config = nullptr;
  auto status = ucp_config_read(nullptr, nullptr, &config);
  if (status != UCS_OK)
    return "ucp_config_read: " + status_text(status);
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED;
  params.features = UCP_FEATURE_AM | UCP_FEATURE_RMA | UCP_FEATURE_WAKEUP;
  // Memory is registered from any thread (map_memory): the context must lock.
  params.mt_workers_shared = 1;
  status = ucp_init(&params, config, &context);
  ucp_config_release(config);
  if (status != UCS_OK)
    return "ucp_init: " + status_text(status);
  // Read from other threads by map_memory: swapped atomically.
  std::atomic_store(&context_ref, std::shared_ptr<void>(context, [](void* ctx) {
    ucp_cleanup(static_cast<ucp_context_h>(ctx));
  }));

  ucp_worker_params_t wparams{};
  wparams.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  // One thread at a time, but not always the same one: whoever holds the lock.
  wparams.thread_mode = UCS_THREAD_MODE_SERIALIZED;
  status = ucp_worker_create(context, &wparams, &worker);
  if (status != UCS_OK)
    return "ucp_worker_create: " + status_text(status);

  for (auto kind : {am_kind::hello, am_kind::hello_ack, am_kind::envelope, am_kind::batch}) {
    auto& arg = handler_args[static_cast<int>(kind) - 1];
    arg = {this, kind};
    ucp_am_handler_param_t hp{};
    hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB
                    | UCP_AM_HANDLER_PARAM_FIELD_ARG | UCP_AM_HANDLER_PARAM_FIELD_FLAGS;
    hp.id = static_cast<unsigned>(kind);
    hp.cb = &impl::on_am;
    hp.arg = &arg;
    hp.flags = UCP_AM_FLAG_WHOLE_MSG;
    status = ucp_worker_set_am_recv_handler(worker, &hp);
    if (status != UCS_OK)
      return "ucp_worker_set_am_recv_handler: " + status_text(status);
  }

  // UCX 1.13 crashes in its reply path when a peer sends an active message id that has
  // no handler (seen here: a hostile client took a node down with one frame). Every
  // other id gets a handler that drops and counts.
  for (unsigned id = 0; id <= max_am_id; ++id) {
    if (id >= 1 && id <= 4)
      continue;
    ucp_am_handler_param_t hp{};
    hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB
                    | UCP_AM_HANDLER_PARAM_FIELD_ARG;
    hp.id = id;
    hp.cb = &impl::on_unknown_am;
    hp.arg = this;
    status = ucp_worker_set_am_recv_handler(worker, &hp);
    if (status != UCS_OK)
      return "ucp_worker_set_am_recv_handler: " + status_text(status);
  }

  status = ucp_worker_get_efd(worker, &worker_fd);
  if (status != UCS_OK)
    return "ucp_worker_get_efd: " + status_text(status);
  epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0)
    return std::string{"epoll_create1: "} + std::strerror(errno);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = worker_fd;
  if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, worker_fd, &ev) != 0)
    return std::string{"epoll_ctl: "} + std::strerror(errno);

  sockaddr_storage addr{};
  unsigned addr_len = 0;
  auto err = resolve_address(opts.host, opts.port, addr, addr_len);
  if (!err.empty())
    return err;
  ucp_listener_params_t lparams{};
  lparams.field_mask =
    UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER;
  lparams.sockaddr.addr = reinterpret_cast<const sockaddr*>(&addr);
  lparams.sockaddr.addrlen = addr_len;
  lparams.conn_handler.cb = &impl::on_conn_request;
  lparams.conn_handler.arg = this;
  status = ucp_listener_create(worker, &lparams, &listener);
  if (status != UCS_OK)
    return "cannot listen on " + opts.host + ":" + std::to_string(opts.port) + ": "
           + status_text(status);
  ucp_listener_attr_t lattr{};
  lattr.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR;
  status = ucp_listener_query(listener, &lattr);
  if (status != UCS_OK)
    return "ucp_listener_query: " + status_text(status);
  if (lattr.sockaddr.ss_family == AF_INET)
    bound_port = ntohs(reinterpret_cast<sockaddr_in*>(&lattr.sockaddr)->sin_port);
  else
    bound_port = ntohs(reinterpret_cast<sockaddr_in6*>(&lattr.sockaddr)->sin6_port);
  return {};
}

// -- teardown -------------------------------------------------------------------------

void engine::impl::shutdown() {
  // From here on a thread that takes the lock finds the engine stopped.
  running.store(false);
  // What was handed to us before stop() still goes out: run it, then let the
  // endpoints flush it (close_endpoint below waits for that, within close_grace).
  if (worker != nullptr) {
    drain_posts();
    dispatch();
    ucp_worker_progress(worker);
  }
  TROUPE_LOG_DEBUG(log_component, "the engine's thread slept "
                                    << sleeps << " times (" << sleep_timeouts
                                    << " timed out), " << slept_us / 1e3 << " ms in all");
  // No new work; wait for producers inside post() to leave before the worker goes.
  accepting_posts.store(false);
  while (producers.load() != 0)
    std::this_thread::yield();
  drain_posts(); // what raced in: run it too (it only queues sends)
  for (auto& kvp : conns) {
    auto& c = *kvp.second;
    c.closing = true;
    c.waiting.clear();
    if (c.ep != nullptr)
      close_endpoint(c.ep, c.failed || !c.ready); // unready: only a hello to lose
    c.ep = nullptr;
    // Remote keys go only after the close has flushed the operations that use them.
    drop_rkeys(c);
  }
  // Complete or cancel what is still in flight so its buffers are freed.
  // (No worker when UCX failed to start: start_error() says why.)
  for (int i = 0; worker != nullptr && i < 100 && ucp_worker_progress(worker) != 0; ++i) {
  }
  // RDMA operations the closing endpoints cancelled still owe their callers an answer.
  for (auto& state : rma_completions)
    state->done(state->error.empty() ? "the transport stopped" : state->error);
  rma_completions.clear();
  for (auto request : accepts)
    ucp_listener_reject(listener, request);
  accepts.clear();
  for (auto& kvp : conns)
    for (auto& slot : kvp.second->inbox)
      if (slot->rndv_desc != nullptr)
        ucp_am_data_release(worker, slot->rndv_desc);
  conns.clear();
  {
    std::lock_guard<std::mutex> guard{transports_mtx};
    transports_in_use.clear();
  }
  by_ep.clear();
  if (listener != nullptr)
    ucp_listener_destroy(listener);
  listener = nullptr;
  if (epoll_fd >= 0)
    ::close(epoll_fd);
  epoll_fd = -1;
  if (worker != nullptr)
    ucp_worker_destroy(worker);
  worker = nullptr;
  // Sends the worker took with it: their callbacks never come.
  while (sends_pending != nullptr) {
    auto* op = sends_pending;
    sends_pending = op->next;
    delete op;
  }
  // The context goes when the last mapped region does.
  std::atomic_store(&context_ref, std::shared_ptr<void>{});
  context = nullptr;
}

} // namespace troupe::transport::detail
