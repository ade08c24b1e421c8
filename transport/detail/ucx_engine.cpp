#include "transport/detail/ucx_engine.hpp"

#include "transport/detail/cpu_relax.hpp"
#include "transport/detail/mpsc_queue.hpp"

#include <arpa/inet.h>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <future>
#include <mutex>
#include <netdb.h>
#include <sys/epoll.h>
#include <thread>
#include <unistd.h>
#include <unordered_map>
#include <vector>

#include <ucp/api/ucp.h>

#include "base/log.hpp"

namespace troupe::transport::detail {

namespace {

constexpr const char* log_component = "transport";

/// How long the engine's own thread sleeps in epoll when nothing happens: bounds how late
/// it notices a stop request that raced with arming the worker.
constexpr int idle_wait_ms = 100;

/// Active message ids travel as 16 bits in UCX's header.
constexpr unsigned max_am_id = 65535;

/// How long stop() lets endpoints flush before it forces them closed.
constexpr auto close_grace = std::chrono::seconds(2);

std::string status_text(ucs_status_t status) {
  return ucs_status_string(status);
}

} // namespace

struct engine::impl {
  struct pending_send {
    am_kind kind;
    word_buffer header;
    word_buffer payload;
  };

  /// A frame in a connection's inbox; delivered only when it and every frame before
  /// it are complete, so a rendezvous message is never overtaken by a later eager one.
  struct inbox_slot {
    frame f;
    void* rndv_desc = nullptr; ///< set until ucp_am_recv_data_nbx is started
    bool complete = false;
    bool failed = false;
  };
  using slot_ptr = std::shared_ptr<inbox_slot>;

  struct cached_rkey {
    ucp_rkey_h handle = nullptr;
    uint32_t users = 0;    ///< operations issued with it and not completed yet
    uint64_t last_use = 0; ///< the connection's rkey_clock at its last use
  };
  /// Keys kept per connection beyond those in use; older unused ones are destroyed.
  static constexpr size_t max_cached_rkeys = 64;

  struct connection {
    conn_id id = 0;
    ucp_ep_h ep = nullptr;
    bool ready = false;
    bool flushing = false;
    bool closing = false; ///< a close has begun: nothing may be sent on `ep` any more
    bool failed = false;
    std::deque<pending_send> waiting;
    std::deque<slot_ptr> inbox;
    /// Unpacked remote keys by packed form; they belong to `ep` and must be
    /// destroyed before it closes. Bounded: ops expose a fresh region each, so a
    /// long-lived connection would otherwise keep one key per region ever reached.
    std::unordered_map<std::string, cached_rkey> rkeys;
    uint64_t rkey_clock = 0;
    std::vector<std::string> transports; // of its active message lanes, once ready
  };

  // Transports in use over ready connections; read by stats from any thread.
  mutable std::mutex transports_mtx;
  std::map<std::string, uint64_t> transports_in_use; // guarded by transports_mtx

  void count_transports(connection& c, bool add);

  /// Whether anything may still be sent on the connection.
  static bool usable(const connection* c) {
    return c != nullptr && !c->failed && !c->closing && c->ep != nullptr;
  }

  std::atomic<uint64_t> remote_keys{0}; // over all connections, for stats

  void drop_rkeys(connection& c) {
    for (auto& kvp : c.rkeys)
      ucp_rkey_destroy(kvp.second.handle);
    remote_keys -= c.rkeys.size();
    c.rkeys.clear();
  }

  /// Destroys the least recently used keys no operation uses, down to the cap.
  void trim_rkeys(connection& c) {
    if (c.rkeys.size() <= max_cached_rkeys)
      return;
    std::vector<std::pair<uint64_t, std::string>> idle;
    for (auto& kvp : c.rkeys)
      if (kvp.second.users == 0)
        idle.emplace_back(kvp.second.last_use, kvp.first);
    std::sort(idle.begin(), idle.end());
    for (auto& [last_use, packed] : idle) {
      if (c.rkeys.size() <= max_cached_rkeys)
        break;
      auto i = c.rkeys.find(packed);
      ucp_rkey_destroy(i->second.handle);
      c.rkeys.erase(i);
      --remote_keys;
    }
  }

  /// One RDMA operation; shared by its put and its flush, which complete separately.
  struct rma_state {
    conn_id conn = 0;
    std::string packed_rkey; // its cache entry is in use until completion
    rma_callback done;
    std::shared_ptr<void> keep_alive;
    std::string error; // from the put, reported when the flush completes
  };
  using rma_ref = std::shared_ptr<rma_state>;

  /// What a UCX callback gets as user data: which engine, which operation.
  struct rma_token {
    impl* self;
    rma_ref state;
  };

  static void on_rma_put_done(void* request, ucs_status_t status, void* user_data) {
    auto token = std::unique_ptr<rma_token>(static_cast<rma_token*>(user_data));
    if (status != UCS_OK)
      token->state->error = "put failed: " + status_text(status);
    ucp_request_free(request);
  }

  static void on_rma_done(void* request, ucs_status_t status, void* user_data) {
    auto token = std::unique_ptr<rma_token>(static_cast<rma_token*>(user_data));
    if (status != UCS_OK && token->state->error.empty())
      token->state->error = "RDMA failed: " + status_text(status);
    --token->self->rma_in_flight;
    token->self->rma_completions.push_back(std::move(token->state));
    ucp_request_free(request);
  }

  std::vector<rma_ref> rma_completions;

  /// Lives until UCX completes the operation; owns the buffers UCX reads or writes.
  struct send_op {
    impl* self;
    conn_id conn;
    word_buffer header;
    word_buffer payload;
  };

  struct recv_op {
    impl* self;
    conn_id conn;
    slot_ptr slot; // keeps the receive buffer alive until UCX is done with it
  };

  struct flush_op {
    impl* self;
    conn_id conn;
  };

  struct am_handler_arg {
    impl* self;
    am_kind kind;
  };

  impl(engine_handler& h, engine_options o) : handler(h), opts(std::move(o)) {}

  engine_handler& handler;
  engine_options opts;

  // UCX objects, lock holder only. Teardown order: endpoints, listener, worker,
  // context (see shutdown()).
  ucp_context_h context = nullptr;
  std::shared_ptr<void> context_ref; // owns `context`; shared with mapped memory
  ucp_worker_h worker = nullptr;
  ucp_listener_h listener = nullptr;
  int worker_fd = -1;
  int epoll_fd = -1;
  am_handler_arg handler_args[3];

  std::thread thread;
  std::atomic<bool> stop_requested{false};
  std::promise<std::string> started;
  std::atomic<uint16_t> bound_port{0};

  // The worker lock: whoever holds it owns the UCX worker and everything below
  // marked "lock holder". `running` is set once setup is done and cleared, under the
  // lock, when shutdown begins: a thread that takes the lock re-checks it.
  std::atomic<bool> locked{false};
  std::atomic<bool> running{false};
  std::atomic<uint64_t> round_count{0};
  std::atomic<uint64_t> standby_count{0};

  // Work from other threads. `pending` counts posted items not yet run; `armed`
  // counts threads asleep on the worker's event fd. A producer signals the worker
  // only when one may sleep, and a sleeper arms only when nothing is pending (both
  // seq_cst, so one of them always sees the other). `producers` keeps the worker
  // alive across a producer's signal during shutdown.
  mpsc_queue queue;
  std::atomic<uint64_t> pending{0};
  std::atomic<int> armed{0};
  bool sends_in_progress = false; // lock holder: a send left for progress to finish
  // Set when a thread that does not poll left an operation in progress; until the
  // next round, no poller may go to sleep (arming does not see such work).
  bool needs_progress = false; // lock holder
  // RDMA operations issued and not completed. UCX may finish them only while it is
  // progressed, without an event on the worker's fd: pollers do not sleep meanwhile.
  uint64_t rma_in_flight = 0; // lock holder
  std::atomic<bool> accepting_posts{true};
  std::atomic<int> producers{0};

  // The engine's own thread, standing by when the scheduler drives the engine.
  std::mutex standby_mtx;
  std::condition_variable standby_cv;

  uint64_t sleeps = 0, sleep_timeouts = 0; // the engine's own thread
  double slept_us = 0;
  // Lock holder state.
  std::unordered_map<conn_id, std::unique_ptr<connection>> conns;
  std::unordered_map<ucp_ep_h, conn_id> by_ep;
  conn_id next_conn = 1;
  std::vector<ucp_conn_request_h> accepts;            // from the listener callback
  std::vector<std::pair<conn_id, std::string>> fails; // from endpoint error callbacks
  std::vector<std::pair<conn_id, const char*>> drops; // from the AM callbacks
  std::vector<conn_id> ready_to_deliver;              // inboxes with a complete head
  std::vector<std::pair<conn_id, slot_ptr>> rndv_to_start;

  // -- setup and teardown -----------------------------------------------------------

  std::string setup();
  void run();
  void shutdown();

  // -- the lock and the loop ---------------------------------------------------------

  bool try_lock();
  void lock();
  void unlock(bool drain = true);
  bool round();
  bool drain_posts();
  void dispatch();
  void wait_for_events();
  void run_own_progress();
  void run_standby();

  // -- connections ------------------------------------------------------------------

  connection* find(conn_id id) {
    auto it = conns.find(id);
    return it == conns.end() ? nullptr : it->second.get();
  }

  conn_id add_connection(ucp_ep_h ep) {
    auto c = std::make_unique<connection>();
    c->id = next_conn++;
    c->ep = ep;
    by_ep.emplace(ep, c->id);
    auto id = c->id;
    conns.emplace(id, std::move(c));
    return id;
  }

  void fail_connection(conn_id id, const std::string& reason);
  void close_endpoint(ucp_ep_h ep, bool force);
  void start_send(connection& c, am_kind kind, word_buffer header, word_buffer payload);
  void accept(ucp_conn_request_h request);

  // -- UCX callbacks: they record, the loop acts (never call the handler here) -------

  static void on_conn_request(ucp_conn_request_h request, void* arg) {
    static_cast<impl*>(arg)->accepts.push_back(request);
  }

  static void on_ep_error(void* arg, ucp_ep_h ep, ucs_status_t status) {
    auto self = static_cast<impl*>(arg);
    auto it = self->by_ep.find(ep);
    if (it != self->by_ep.end())
      self->fails.emplace_back(it->second, "connection lost: " + status_text(status));
  }

  static void on_send_done(void* request, ucs_status_t status, void* user_data) {
    auto op = static_cast<send_op*>(user_data);
    if (status != UCS_OK && status != UCS_ERR_CANCELED)
      op->self->fails.emplace_back(op->conn, "send failed: " + status_text(status));
    delete op;
    ucp_request_free(request);
  }

  static void on_flush_done(void* request, ucs_status_t status, void* user_data) {
    auto op = static_cast<flush_op*>(user_data);
    op->self->flushed(op->conn, status);
    delete op;
    ucp_request_free(request);
  }

  static void on_recv_done(void* request, ucs_status_t status, size_t, void* user_data) {
    auto op = static_cast<recv_op*>(user_data);
    op->self->received(op->conn, op->slot.get(), status);
    delete op;
    ucp_request_free(request);
  }

  static ucs_status_t on_am(void* arg, const void* header, size_t header_length,
                            void* data, size_t length, const ucp_am_recv_param_t* param) {
    auto a = static_cast<am_handler_arg*>(arg);
    return a->self->handle_am(a->kind, header, header_length, data, length, param);
  }

  static ucs_status_t on_unknown_am(void* arg, const void*, size_t, void*, size_t,
                                    const ucp_am_recv_param_t* param) {
    auto self = static_cast<impl*>(arg);
    conn_id conn = 0;
    if ((param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) != 0) {
      auto it = self->by_ep.find(param->reply_ep);
      if (it != self->by_ep.end())
        conn = it->second;
    }
    self->drops.emplace_back(conn, "unknown active message id");
    return UCS_OK; // a rendezvous descriptor is dropped by UCX on UCS_OK
  }

  ucs_status_t handle_am(am_kind kind, const void* header, size_t header_length,
                         void* data, size_t length, const ucp_am_recv_param_t* param);
  void flushed(conn_id id, ucs_status_t status);
  void received(conn_id id, inbox_slot* slot, ucs_status_t status);
  void start_rndv(conn_id owner, const slot_ptr& slot);
  void deliver(conn_id id);
};

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

  for (auto kind : {am_kind::hello, am_kind::hello_ack, am_kind::envelope}) {
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
    if (id >= 1 && id <= 3)
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
  // The context goes when the last mapped region does.
  std::atomic_store(&context_ref, std::shared_ptr<void>{});
  context = nullptr;
}

// -- the lock and the loop -------------------------------------------------------------

namespace {

/// The engine whose worker lock this thread holds, if any: the lock is never taken
/// recursively (CAF calls proxies from inside the callbacks the holder runs).
thread_local const void* lock_held_by_this_thread = nullptr;

} // namespace

bool engine::impl::try_lock() {
  if (lock_held_by_this_thread == this)
    return false;
  if (locked.load(std::memory_order_relaxed)
      || locked.exchange(true, std::memory_order_acquire))
    return false;
  lock_held_by_this_thread = this;
  return true;
}

void engine::impl::lock() {
  // Holders keep it for one round or one send: a short spin, then yield.
  for (int i = 0; !try_lock(); ++i) {
    if (i < 64)
      cpu_relax();
    else
      std::this_thread::yield();
  }
}

void engine::impl::unlock(bool drain) {
  // Work posted while we held the lock and not run yet: a poller runs it now rather
  // than leave it to the next poll (it is in engine code, where that is safe; a
  // sender may be inside CAF, so it leaves it).
  // (Stop when nothing could be popped: a producer that counted its item but has not
  // linked it yet must not keep this thread spinning with the lock held; the check
  // after the release below signals a sleeper for it.)
  while (drain && pending.load() != 0 && running.load(std::memory_order_relaxed)) {
    if (!drain_posts())
      break;
    dispatch();
  }
  // A send that did not complete at once needs progress; a poller's next round
  // gives it that, anybody else's release wakes a sleeping poller.
  // So does an RDMA that completed at once: its completion is reported by the next
  // round's dispatch.
  bool kick = (sends_in_progress || !rma_completions.empty()) && !drain;
  sends_in_progress = false;
  if (kick)
    needs_progress = true;
  lock_held_by_this_thread = nullptr;
  // Counted as a producer before letting go: shutdown (which needs the lock) waits
  // for producers before it destroys the worker this may still signal.
  producers.fetch_add(1);
  locked.store(false); // seq_cst: pairs with post()'s check of the lock
  // A post that came between the drain and the release found the lock taken: its
  // producer counts on the holder. If nobody takes the lock again soon, a sleeping
  // poller must wake for it.
  if ((kick || pending.load() != 0) && armed.load() != 0 && accepting_posts.load())
    ucp_worker_signal(worker);
  producers.fetch_sub(1);
}

bool engine::impl::round() {
  round_count.fetch_add(1, std::memory_order_relaxed);
  needs_progress = false;
  bool busy = ucp_worker_progress(worker) != 0;
  dispatch();
  busy = drain_posts() || busy;
  dispatch();
  return busy;
}

void engine::impl::run() {
  auto err = setup();
  if (!err.empty()) {
    shutdown();
    started.set_value(err);
    return;
  }
  running.store(true);
  started.set_value({});
  if (opts.driven_externally)
    run_standby();
  else
    run_own_progress();
  lock();
  shutdown();
  lock_held_by_this_thread = nullptr;
  locked.store(false);
}

void engine::impl::run_own_progress() {
  // Sleeping in epoll costs a wakeup (tens of microseconds on a small VM) per message
  // in a request/response exchange, so after any activity the thread keeps polling
  // for `spin_window` before it arms the worker and sleeps.
  auto last_activity = std::chrono::steady_clock::now();
  while (!stop_requested.load(std::memory_order_acquire)) {
    lock();
    bool busy = round();
    unlock();
    if (opts.busy_poll)
      continue;
    auto now = std::chrono::steady_clock::now();
    if (busy)
      last_activity = now;
    else if (now - last_activity >= opts.spin_window)
      wait_for_events();
    else
      std::this_thread::yield(); // let a runnable actor thread have this core
  }
}

void engine::impl::run_standby() {
  // The scheduler's workers poll when idle and sleep on the worker's event fd. When
  // all of them are busy (a long or blocking handler), nobody polls: this thread
  // notices that no round ran for `standby_after` and polls until things are quiet.
  // While a worker sleeps on the event fd it looks rarely.
  auto seen = round_count.load();
  while (!stop_requested.load(std::memory_order_acquire)) {
    auto period =
      armed.load() != 0 ? std::chrono::microseconds{20000} : opts.standby_after;
    {
      std::unique_lock<std::mutex> guard{standby_mtx};
      standby_cv.wait_for(guard, period, [this] { return stop_requested.load(); });
    }
    if (stop_requested.load())
      break;
    auto now_rounds = round_count.load();
    if (now_rounds != seen || armed.load() != 0) {
      seen = now_rounds;
      continue;
    }
    standby_count.fetch_add(1, std::memory_order_relaxed);
    auto last_activity = std::chrono::steady_clock::now();
    for (;;) {
      if (!try_lock())
        break; // somebody else polls again
      bool busy = round();
      unlock();
      auto now = std::chrono::steady_clock::now();
      if (busy)
        last_activity = now;
      else if (now - last_activity >= opts.spin_window || armed.load() != 0)
        break;
      std::this_thread::yield();
    }
    seen = round_count.load();
  }
}

bool engine::impl::drain_posts() {
  bool any = false;
  std::function<void()> fn;
  while (queue.pop(fn)) {
    pending.fetch_sub(1);
    fn();
    any = true;
  }
  return any;
}

void engine::impl::wait_for_events() {
  auto fd = -1;
  {
    lock();
    armed.fetch_add(1);
    // ucp_worker_arm says BUSY when events are pending: then progress again.
    if (pending.load() == 0 && !needs_progress && rma_in_flight == 0
        && ucp_worker_arm(worker) == UCS_OK)
      fd = epoll_fd;
    // Through unlock: a post that found the lock taken while we armed is signalled
    // there (we count as armed), so the epoll below returns at once for it.
    unlock(false);
  }
  if (fd >= 0) {
    epoll_event ev;
    auto t0 = std::chrono::steady_clock::now();
    int n = ::epoll_wait(fd, &ev, 1, idle_wait_ms);
    ++sleeps;
    if (n == 0)
      ++sleep_timeouts;
    slept_us +=
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
        .count();
  }
  armed.fetch_sub(1);
}

namespace {

/// Hands every queued item to `handle`, including items that handlers queue meanwhile
/// (the queue is moved out first, so handlers may append to it safely).
template <class Queue, class F>
void drain(Queue& queue, F&& handle) {
  while (!queue.empty()) {
    auto batch = std::move(queue);
    queue.clear();
    for (auto& item : batch)
      handle(item);
  }
}

} // namespace

void engine::impl::dispatch() {
  drain(accepts, [this](ucp_conn_request_h request) { accept(request); });
  // Rendezvous receives the AM callbacks asked for.
  drain(rndv_to_start,
        [this](auto& pending) { start_rndv(pending.first, pending.second); });
  drain(drops, [this](auto& drop) { handler.on_drop(drop.first, drop.second); });
  drain(ready_to_deliver, [this](auto id) { deliver(id); });
  drain(rma_completions, [this](auto& state) {
    if (auto c = find(state->conn)) {
      auto i = c->rkeys.find(state->packed_rkey);
      if (i != c->rkeys.end() && i->second.users > 0)
        --i->second.users;
      trim_rkeys(*c);
    }
    state->done(state->error);
  });
  drain(fails, [this](auto& failed) { fail_connection(failed.first, failed.second); });
}

// -- connections ----------------------------------------------------------------------

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

void engine::impl::start_send(connection& c, am_kind kind, word_buffer header,
                              word_buffer payload) {
  auto op = new send_op{this, c.id, std::move(header), std::move(payload)};
  ucp_request_param_t rp{};
  rp.op_attr_mask =
    UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
  rp.cb.send = &impl::on_send_done;
  rp.user_data = op;
  // REPLY makes UCX tell the receiver which endpoint a message came on.
  rp.flags = UCP_AM_SEND_FLAG_REPLY;
  auto req =
    ucp_am_send_nbx(c.ep, static_cast<unsigned>(kind), op->header.data(),
                    op->header.size(), op->payload.data(), op->payload.size(), &rp);
  if (req == nullptr) {
    delete op; // completed in place
  } else if (UCS_PTR_IS_PTR(req)) {
    sends_in_progress = true; // someone must progress the worker for it
  } else if (UCS_PTR_IS_ERR(req)) {
    fails.emplace_back(c.id, "send failed: " + status_text(UCS_PTR_STATUS(req)));
    delete op;
  }
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

// -- receiving ------------------------------------------------------------------------

ucs_status_t engine::impl::handle_am(am_kind kind, const void* header,
                                     size_t header_length, void* data, size_t length,
                                     const ucp_am_recv_param_t* param) {
  connection* c = nullptr;
  if ((param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) != 0) {
    auto it = by_ep.find(param->reply_ep);
    if (it != by_ep.end())
      c = find(it->second);
  }
  if (c == nullptr || c->failed) {
    drops.emplace_back(0, "unknown connection");
    return UCS_OK; // a rendezvous descriptor is dropped by UCX on UCS_OK
  }
  if (length > opts.max_payload) {
    drops.emplace_back(c->id, "oversized payload");
    return UCS_OK;
  }
  auto slot = std::make_shared<inbox_slot>();
  slot->f.kind = kind;
  // Neither the header nor eager data is 8-byte aligned: copy into words.
  slot->f.header = word_buffer::copy_of(header, header_length);
  bool rndv = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
  ucs_status_t result = UCS_OK;
  if (rndv) {
    try {
      slot->f.payload = word_buffer{length};
    } catch (const std::bad_alloc&) {
      drops.emplace_back(c->id, "no memory for a payload");
      return UCS_OK; // UCX drops the rendezvous descriptor
    }
    slot->rndv_desc = data;
    rndv_to_start.emplace_back(c->id, slot);
    result = UCS_INPROGRESS;
  } else {
    slot->f.payload = word_buffer::copy_of(data, length);
    slot->complete = true;
  }
  bool was_empty = c->inbox.empty();
  c->inbox.push_back(std::move(slot));
  if (was_empty && c->inbox.front()->complete)
    ready_to_deliver.push_back(c->id);
  return result;
}

void engine::impl::start_rndv(conn_id owner, const slot_ptr& slot) {
  if (find(owner) == nullptr)
    return; // its connection failed meanwhile and released the descriptor
  auto desc = slot->rndv_desc;
  slot->rndv_desc = nullptr;
  auto op = new recv_op{this, owner, slot};
  ucp_request_param_t rp{};
  rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  rp.cb.recv_am = &impl::on_recv_done;
  rp.user_data = op;
  // The request must live until its callback: freeing it early hangs the receive.
  auto req = ucp_am_recv_data_nbx(worker, desc, slot->f.payload.data(),
                                  slot->f.payload.size(), &rp);
  if (req == nullptr) {
    delete op;
    received(owner, slot.get(), UCS_OK);
  } else if (UCS_PTR_IS_ERR(req)) {
    delete op;
    received(owner, slot.get(), UCS_PTR_STATUS(req));
  }
}

void engine::impl::received(conn_id id, inbox_slot* slot, ucs_status_t status) {
  auto c = find(id);
  if (c == nullptr)
    return;
  slot->complete = true;
  slot->failed = status != UCS_OK;
  if (!c->inbox.empty() && c->inbox.front().get() == slot)
    ready_to_deliver.push_back(id);
}

void engine::impl::deliver(conn_id id) {
  auto c = find(id);
  if (c == nullptr)
    return;
  while (!c->inbox.empty() && c->inbox.front()->complete) {
    auto slot = std::move(c->inbox.front());
    c->inbox.pop_front();
    if (slot->failed) {
      handler.on_drop(id, "payload receive failed");
      continue;
    }
    handler.on_frame(id, std::move(slot->f));
    // The handler may have failed or closed this connection.
    c = find(id);
    if (c == nullptr)
      return;
  }
}

// -- engine ---------------------------------------------------------------------------

engine::engine(engine_handler& handler, engine_options options)
  : impl_(std::make_unique<impl>(handler, std::move(options))) {
}

engine::~engine() {
  stop();
}

std::string engine::start() {
  auto result = impl_->started.get_future();
  impl_->thread = std::thread{[this] { impl_->run(); }};
  auto err = result.get();
  if (!err.empty())
    impl_->thread.join();
  return err;
}

void engine::stop() {
  if (!impl_->thread.joinable())
    return;
  impl_->stop_requested.store(true);
  { std::lock_guard<std::mutex> guard{impl_->standby_mtx}; }
  impl_->standby_cv.notify_all();
  post([] {}); // wakes the engine's thread if it sleeps on the worker
  impl_->thread.join();
}

bool engine::running() const {
  return impl_->running.load() && impl_->accepting_posts.load();
}

uint16_t engine::port() const {
  return impl_->bound_port;
}

bool engine::post(std::function<void()> fn) {
  auto& d = *impl_;
  d.producers.fetch_add(1);
  if (!d.accepting_posts.load() || d.worker == nullptr) {
    d.producers.fetch_sub(1);
    return false;
  }
  // Counted before it is pushed: `pending` may count an item not in the queue yet,
  // never miss one that is. (Counted after, a holder could pop it first and bring
  // the count to 0 with another thread's item still queued; a direct send checking
  // has_posts() then overtook that item: per-pair order broke, seen by the order test
  // under ASan.)
  d.pending.fetch_add(1);
  d.queue.push(std::move(fn));
  // Whoever holds the lock runs it before letting go (unlock re-checks). Otherwise a
  // poller asleep on the worker must wake: ucp_worker_signal is the one worker call
  // that is safe from any thread, and it costs a system call, so only then.
  if (d.armed.load() != 0 && !d.locked.load())
    ucp_worker_signal(d.worker);
  d.producers.fetch_sub(1);
  return true;
}

poll_outcome engine::poll() {
  auto& d = *impl_;
  if (!try_lock())
    return poll_outcome::taken;
  bool busy = d.round();
  d.unlock();
  return busy ? poll_outcome::busy : poll_outcome::idle;
}

bool engine::try_lock() {
  auto& d = *impl_;
  if (!d.try_lock())
    return false;
  if (!d.running.load(std::memory_order_relaxed)) {
    d.unlock(false);
    return false;
  }
  return true;
}

void engine::unlock() {
  impl_->unlock(false);
}

bool engine::has_posts() const {
  return impl_->pending.load() != 0;
}

int engine::begin_sleep() {
  auto& d = *impl_;
  // A sender holds the lock for a moment only: wait that long for it.
  bool got = false;
  for (int i = 0; i < 256 && !(got = d.try_lock()); ++i)
    cpu_relax();
  if (!got)
    return -2;
  if (!d.running.load(std::memory_order_relaxed)) {
    d.unlock(false);
    return -2;
  }
  d.armed.fetch_add(1);
  int fd = -1;
  if (d.pending.load() == 0 && !d.needs_progress && d.rma_in_flight == 0
      && ucp_worker_arm(d.worker) == UCS_OK)
    fd = d.worker_fd;
  else
    d.armed.fetch_sub(1);
  d.unlock(false);
  return fd;
}

void engine::end_sleep() {
  impl_->armed.fetch_sub(1);
}

bool engine::sleeper_armed() const {
  return impl_->armed.load() != 0;
}

uint64_t engine::standby_polls() const {
  return impl_->standby_count.load(std::memory_order_relaxed);
}

const engine_options& engine::options() const {
  return impl_->opts;
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

void engine::send_now(conn_id conn, am_kind kind, word_buffer header,
                      word_buffer payload) {
  auto c = impl_->find(conn);
  if (!impl::usable(c))
    return;
  impl_->start_send(*c, kind, std::move(header), std::move(payload));
}

void engine::send(conn_id conn, am_kind kind, word_buffer header, word_buffer payload) {
  auto c = impl_->find(conn);
  if (!impl::usable(c))
    return;
  if (!c->ready) {
    c->waiting.push_back({kind, std::move(header), std::move(payload)});
    return;
  }
  impl_->start_send(*c, kind, std::move(header), std::move(payload));
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

void engine::rma(conn_id conn, bool is_put, void* local, size_t length,
                 uint64_t remote_address, const std::string& packed_rkey,
                 rma_callback done, std::shared_ptr<void> keep_alive) {
  auto& d = *impl_;
  auto c = d.find(conn);
  if (!impl::usable(c)) {
    done("the connection to the region's node is gone");
    return;
  }
  auto& cached = c->rkeys[packed_rkey];
  if (cached.handle == nullptr) {
    auto status = ucp_ep_rkey_unpack(c->ep, packed_rkey.data(), &cached.handle);
    if (status != UCS_OK) {
      c->rkeys.erase(packed_rkey);
      done("cannot unpack the region's remote key: " + status_text(status));
      return;
    }
    ++d.remote_keys;
  }
  ++cached.users;
  cached.last_use = ++c->rkey_clock;
  ucp_rkey_h rkey = cached.handle;
  auto state = std::make_shared<impl::rma_state>();
  state->conn = conn;
  state->packed_rkey = packed_rkey;
  state->done = std::move(done);
  state->keep_alive = std::move(keep_alive);
  // Each request gets its own token: UCX frees nothing of ours, and a callback that
  // never comes (immediate completion) leaks nothing.
  auto issue = [&](auto&& start, ucp_send_nbx_callback_t cb) {
    auto token = std::make_unique<impl::rma_token>(impl::rma_token{&d, state});
    ucp_request_param_t rp{};
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    rp.cb.send = cb;
    rp.user_data = token.get();
    ucs_status_ptr_t req = start(rp);
    if (UCS_PTR_IS_PTR(req)) {
      token.release(); // the callback owns it now
      return UCS_INPROGRESS;
    }
    return UCS_PTR_STATUS(req);
  };
  ucs_status_t status;
  if (is_put) {
    status = issue(
      [&](ucp_request_param_t& rp) {
        return ucp_put_nbx(c->ep, local, length, remote_address, rkey, &rp);
      },
      &impl::on_rma_put_done);
    if (status != UCS_OK && status != UCS_INPROGRESS)
      state->error = "put failed: " + status_text(status);
    // A put completes locally; the flush completes once the data is remote.
    status = issue([&](ucp_request_param_t& rp) { return ucp_ep_flush_nbx(c->ep, &rp); },
                   &impl::on_rma_done);
  } else {
    status = issue(
      [&](ucp_request_param_t& rp) {
        return ucp_get_nbx(c->ep, local, length, remote_address, rkey, &rp);
      },
      &impl::on_rma_done);
  }
  if (status == UCS_INPROGRESS) {
    d.sends_in_progress = true; // someone must progress the worker for it
    ++d.rma_in_flight;
  }
  if (status != UCS_INPROGRESS) {
    if (status != UCS_OK && state->error.empty())
      state->error = "RDMA failed: " + status_text(status);
    d.rma_completions.push_back(std::move(state));
  }
}

std::map<std::string, uint64_t> engine::transports_in_use() const {
  std::lock_guard<std::mutex> guard{impl_->transports_mtx};
  return impl_->transports_in_use;
}

uint64_t engine::cached_remote_keys() const {
  return impl_->remote_keys.load();
}

mapped_memory::~mapped_memory() {
  if (memh != nullptr)
    ucp_mem_unmap(static_cast<ucp_context_h>(context.get()),
                  static_cast<ucp_mem_h>(memh));
}

std::unique_ptr<mapped_memory> engine::map_memory(size_t bytes, std::string& error) {
  auto ctx = std::atomic_load(&impl_->context_ref);
  if (!ctx) {
    error = "the transport is not running";
    return nullptr;
  }
  auto result = std::make_unique<mapped_memory>();
  result->context = ctx;
  ucp_mem_map_params_t params{};
  params.field_mask = UCP_MEM_MAP_PARAM_FIELD_LENGTH | UCP_MEM_MAP_PARAM_FIELD_FLAGS;
  params.length = bytes;
  params.flags = UCP_MEM_MAP_ALLOCATE;
  ucp_mem_h memh = nullptr;
  auto status = ucp_mem_map(static_cast<ucp_context_h>(ctx.get()), &params, &memh);
  if (status != UCS_OK) {
    error = "cannot register " + std::to_string(bytes) + " bytes: " + status_text(status);
    return nullptr;
  }
  result->memh = memh;
  ucp_mem_attr_t attr{};
  attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS | UCP_MEM_ATTR_FIELD_LENGTH;
  status = ucp_mem_query(memh, &attr);
  if (status != UCS_OK) {
    error = "ucp_mem_query: " + status_text(status);
    return nullptr;
  }
  result->address = attr.address;
  result->length = bytes;
  void* rkey_buffer = nullptr;
  size_t rkey_size = 0;
  status =
    ucp_rkey_pack(static_cast<ucp_context_h>(ctx.get()), memh, &rkey_buffer, &rkey_size);
  if (status != UCS_OK) {
    error = "ucp_rkey_pack: " + status_text(status);
    return nullptr;
  }
  result->packed_rkey.assign(static_cast<const char*>(rkey_buffer), rkey_size);
  ucp_rkey_buffer_release(rkey_buffer);
  return result;
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
