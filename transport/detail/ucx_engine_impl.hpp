#pragma once
// The engine's state (ucx_engine.hpp), shared by the files that implement it:
// ucx_engine.cpp (construction, the public API's plumbing, the engine's thread, the
// worker lock, posted work and rounds), ucx_engine_setup.cpp (the UCP context, worker,
// handlers and listener, and their teardown), ucx_engine_sleep.cpp (when a poller keeps
// polling, stands by, arms the worker and sleeps), ucx_engine_connect.cpp (endpoints:
// accepting, connecting, wireup, failure and close), ucx_engine_io.cpp (active messages
// out and in, inboxes, frames handed on) and ucx_engine_rdma.cpp (registered memory,
// remote keys, RMA). Includes UCX: for those files only.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <ucp/api/ucp.h>

#include "transport/detail/mpsc_queue.hpp"
#include "transport/detail/ucx_engine.hpp"
#include "transport/detail/word_buffer.hpp"

namespace troupe::transport::detail {

/// The component the engine's log lines name.
inline constexpr const char* log_component = "transport";

inline std::string status_text(ucs_status_t status) {
  return ucs_status_string(status);
}

// -- the engine's state ---------------------------------------------------------------

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
    std::vector<pending_send> held; ///< envelope frames held back for a batch
    std::deque<slot_ptr> inbox;
    /// Unpacked remote keys by packed form; they belong to `ep` and must be
    /// destroyed before it closes. Bounded: ops expose a fresh region each, so a
    /// long-lived connection would otherwise keep one key per region ever reached.
    std::unordered_map<std::string, cached_rkey> rkeys;
    uint64_t rkey_clock = 0;
    std::vector<std::string> transports; // of its active message lanes, once ready
  };

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

  /// Lives until UCX completes the operation; owns the buffers UCX reads or writes.
  struct send_op {
    impl* self;
    conn_id conn;
    word_buffer header;
    word_buffer payload;
    // In the list of sends UCX has not completed (`sends_pending`) while it runs.
    send_op* prev = nullptr;
    send_op* next = nullptr;
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

  // Transports in use over ready connections; read by stats from any thread.
  mutable std::mutex transports_mtx;
  std::map<std::string, uint64_t> transports_in_use; // guarded by transports_mtx

  std::atomic<uint64_t> remote_keys{0}; // over all connections, for stats

  std::vector<rma_ref> rma_completions;

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
  am_handler_arg handler_args[4];

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
  // Sends UCX has not completed yet (lock holder). A worker destroyed with sends
  // still in flight never calls their callbacks: shutdown frees what is left here.
  send_op* sends_pending = nullptr;
  // Set when a thread that does not poll left an operation in progress; until the
  // next round, no poller may go to sleep (arming does not see such work).
  bool needs_progress = false; // lock holder
  // RDMA operations issued and not completed. UCX may finish them only while it is
  // progressed, without an event on the worker's fd: pollers do not sleep meanwhile.
  uint64_t rma_in_flight = 0; // lock holder
  std::atomic<bool> accepting_posts{true};
  // While posted work runs, small envelope frames are held back per connection and
  // sent in batches after it (send_held). Lock holder.
  bool holding_sends = false;
  std::vector<conn_id> conns_with_held;
  std::atomic<uint64_t> frames_batched{0}, batches_sent{0};
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

  // -- helpers used everywhere ------------------------------------------------------

  connection* find(conn_id id) {
    auto it = conns.find(id);
    return it == conns.end() ? nullptr : it->second.get();
  }

  /// Whether anything may still be sent on the connection.
  static bool usable(const connection* c) {
    return c != nullptr && !c->failed && !c->closing && c->ep != nullptr;
  }

  // UCX callbacks (the static `on_*` members below): they record, the loop acts
  // (never call the handler here).

  // -- the engine's thread, the lock and the loop (ucx_engine.cpp) -------------------

  void run();
  bool try_lock();
  bool try_lock_for(std::chrono::microseconds patience);
  void lock();
  void unlock(bool drain = true);
  bool round();
  bool drain_posts();
  bool post(std::function<void()> fn, bool wake);
  void dispatch();

  // -- setup and teardown (ucx_engine_setup.cpp) ------------------------------------

  std::string setup();
  void shutdown();

  // -- polling and sleeping (ucx_engine_sleep.cpp) ----------------------------------

  void run_own_progress();
  void run_standby();
  void wait_for_events();

  // -- connections (ucx_engine_connect.cpp) -----------------------------------------

  conn_id add_connection(ucp_ep_h ep);
  void accept(ucp_conn_request_h request);
  void fail_connection(conn_id id, const std::string& reason);
  void close_endpoint(ucp_ep_h ep, bool force);
  void flushed(conn_id id, ucs_status_t status);
  void count_transports(connection& c, bool add);

  static void on_conn_request(ucp_conn_request_h request, void* arg);
  static void on_ep_error(void* arg, ucp_ep_h ep, ucs_status_t status);
  static void on_flush_done(void* request, ucs_status_t status, void* user_data);

  // -- active messages out and in (ucx_engine_io.cpp) -------------------------------

  void start_send(connection& c, am_kind kind, word_buffer header, word_buffer payload);
  /// Sends the frames held back on `c` (as batches of several, or alone).
  void send_held(connection& c);
  void send_all_held();
  /// Hands the frames of a batch to the handler, in order. False if `id` went away
  /// meanwhile (the handler closed it).
  bool deliver_batch(conn_id id, const word_buffer& batch);
  ucs_status_t handle_am(am_kind kind, const void* header, size_t header_length,
                         void* data, size_t length, const ucp_am_recv_param_t* param);
  void start_rndv(conn_id owner, const slot_ptr& slot);
  void received(conn_id id, inbox_slot* slot, ucs_status_t status);
  void deliver(conn_id id);

  static void on_send_done(void* request, ucs_status_t status, void* user_data);
  static void on_recv_done(void* request, ucs_status_t status, size_t, void* user_data);
  static ucs_status_t on_am(void* arg, const void* header, size_t header_length,
                            void* data, size_t length, const ucp_am_recv_param_t* param);
  static ucs_status_t on_unknown_am(void* arg, const void*, size_t, void*, size_t,
                                    const ucp_am_recv_param_t* param);

  // -- remote keys and RMA (ucx_engine_rdma.cpp) ------------------------------------

  void drop_rkeys(connection& c);
  /// Destroys the least recently used keys no operation uses, down to the cap.
  void trim_rkeys(connection& c);
  /// Lock holder: releases the operation's use of its remote key and runs `done`.
  void finish_rma(rma_state& state);

  static void on_rma_put_done(void* request, ucs_status_t status, void* user_data);
  static void on_rma_done(void* request, ucs_status_t status, void* user_data);
};

} // namespace troupe::transport::detail
