#pragma once
// The middleman's state (middleman.hpp), shared by the files that implement it:
// middleman.cpp (the public API), middleman_receive.cpp (the engine's events, the
// handshake, envelopes in, control messages, lost connections), middleman_send.cpp
// (frames and envelopes out, forward, bounce, serialization) and middleman_proxy.cpp
// (proxies of remote actors). Includes generated Cap'n Proto code: for those transport
// .cpp files only.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <capnp/message.h>
#include <caf/actor_system.hpp>
#include <caf/error.hpp>
#include <caf/message.hpp>
#include <caf/message_id.hpp>
#include <caf/node_id.hpp>
#include <caf/proxy_registry.hpp>
#include <caf/scoped_execution_unit.hpp>

#include "schema/envelope.capnp.h"
#include "transport/address.hpp"
#include "transport/blocking_wait.hpp"
#include "transport/detail/ucx_engine.hpp"
#include "transport/detail/word_buffer.hpp"
#include "transport/middleman.hpp"
#include "transport/op_frame.hpp"
#include "transport/scheduler.hpp"

namespace troupe::transport {

namespace detail {

/// The component the middleman's log lines name.
inline constexpr const char* log_component = "transport";

} // namespace detail

// The middleman's files name these without `detail::`.
using detail::am_kind;
using detail::conn_id;
using detail::frame;
using detail::log_component;
using detail::word_buffer;

// -- the middleman's state ------------------------------------------------------------

struct middleman::impl : detail::engine_handler,
                         std::enable_shared_from_this<middleman::impl> {
  struct lookup_result {
    caf::node_id node;
    caf::actor_id aid = 0;
    caf::error err;
  };
  /// Called once, under the worker lock, with a lookup's outcome.
  using lookup_done = std::function<void(lookup_result)>;
  using ready_callback = std::function<void(conn_id, const std::string* error)>;

  struct conn_state {
    bool outgoing = false;
    bool handshaken = false;
    std::string target_uri; // for outgoing connections
    caf::node_id node;
    std::vector<ready_callback> on_ready;
  };

  struct peer {
    caf::node_id node;
    std::string address;
    uint64_t incarnation = 0;
    conn_id send_conn = 0;
    std::set<conn_id> conns;
    /// Requests sent to this node still waiting for their response, by (requester
    /// actor id, request id without CAF's category bits, which a response id does not
    /// carry); each entry holds the requester and the request's full message id.
    /// TODO(soon): a request that timed out locally stays here until its response or
    /// the node's death; a long-lived peer that never answers grows this table.
    std::map<std::pair<caf::actor_id, uint64_t>,
             std::pair<caf::strong_actor_ptr, caf::message_id>>
      pending;
  };

  struct outgoing_message {
    caf::node_id node;
    word_buffer header;
    word_buffer payload;
    caf::strong_actor_ptr sender;
    caf::message_id mid;
  };

  impl(caf::actor_system& system, middleman& parent);

  caf::actor_system& sys;
  caf::proxy_registry proxies;
  // Proxies ask their actor's node for a down notice only once something here
  // monitors or links them; the others are swept once nothing here holds them (a
  // proxy per new remote sender would otherwise cost two control messages, or stay
  // forever).
  std::atomic<uint64_t> proxies_made{0};
  static constexpr uint64_t min_sweep_interval = 1024;
  uint64_t next_sweep = min_sweep_interval;         // worker lock
  std::chrono::steady_clock::time_point last_sweep; // worker lock
  caf::scoped_execution_unit exec_unit; // deserializes with `proxies` in reach
  detail::engine_options opts;
  std::unique_ptr<detail::engine> engine;
  caf::error start_err;
  std::string address_uri;
  uint64_t incarnation = 0;
  /// Unique among the middlemen this process ever made (keep_registered).
  const uint64_t serial = next_serial();
  static uint64_t next_serial() {
    static std::atomic<uint64_t> made{0};
    return ++made;
  }

  std::atomic<uint64_t> msgs_out{0}, bytes_out{0}, msgs_in{0}, bytes_in{0};
  std::atomic<uint64_t> sends_direct{0}, sends_queued{0}, sends_deferred{0};
  std::atomic<uint64_t> typed_out{0}, typed_in{0}, caf_out{0}, caf_in{0};
  std::atomic<uint64_t> op_out{0}, op_in{0};
  std::atomic<uint64_t> requests_awaiting{0}; // entries of every peer's `pending`

  // Injected faults (drop_incoming): messages still to drop, by type name. Looked at
  // only while `faults_armed` is set, so the receive path pays one load otherwise.
  std::atomic<bool> faults_armed{false};
  std::mutex faults_mtx;
  std::map<std::string, uint64_t> drops_to_inject; // guarded by faults_mtx
  /// True if `msg` is to be dropped by an injected fault (and counts it down).
  bool injected_drop(const caf::message& msg);
  std::atomic<uint64_t> peer_count{0};
  mutable std::mutex drops_mtx;
  std::map<std::string, uint64_t> drops;            // guarded by drops_mtx
  std::set<std::pair<conn_id, std::string>> logged; // guarded by drops_mtx

  mutable std::mutex published_mtx;
  std::map<std::string, caf::weak_actor_ptr> published; // guarded by published_mtx

  // State of the worker lock's holder (see detail/ucx_engine.hpp).
  std::unordered_map<conn_id, conn_state> conns;
  std::map<caf::node_id, peer> peers;
  std::map<std::string, conn_id> by_uri; // outgoing connections by target URI
  std::map<uint64_t, lookup_done> lookups;
  std::map<uint64_t, caf::node_id> lookup_nodes; // lookups sent, by the node asked
  std::atomic<uint64_t> next_lookup{1};
  std::set<std::pair<caf::node_id, caf::actor_id>> monitored; // remote holders

  // -- helpers (middleman_receive.cpp) ----------------------------------------------

  /// Where an actor we hand a message to is scheduled: on this very thread when it
  /// is a progress scheduler worker polling from its scheduling loop (it runs the
  /// actor next, no wakeup), otherwise through the scheduler (e.g. a worker polling
  /// from inside a handler, through a blocking waiter: it may block there).
  caf::execution_unit* enqueue_unit();

  /// Our URI, built where it is needed: the engine may need it before
  /// start() has stored `address_uri` (a peer can connect the moment we listen).
  std::string listen_uri() const {
    return node_address{"ucx", opts.host, engine->port()}.to_uri();
  }

  void count_drop(conn_id conn, const std::string& reason);

  bool is_empty_message_encoding(const word_buffer& payload);

  // -- engine_handler (middleman_receive.cpp) ---------------------------------------

  void on_accepted(conn_id conn) override;
  void on_frame(conn_id conn, frame&& f) override;
  void on_drop(conn_id conn, const char* reason) override { count_drop(conn, reason); }
  void on_conn_failed(conn_id conn, const std::string& reason) override;

  // -- handshake (middleman_receive.cpp) --------------------------------------------

  void handle_hello(conn_id conn, const frame& f);
  void fail_callbacks(conn_state& state, const std::string& why);
  void forget_conn(conn_id conn);

  /// Calls `cb` with a handshaken connection to `uri`, connecting if needed.
  void with_connection(const std::string& uri, const sockaddr_storage& addr,
                       unsigned addr_len, ready_callback cb);

  // -- envelopes (middleman_receive.cpp) --------------------------------------------

  void handle_envelope(conn_id conn, frame& f);
  /// Hands `msg` to the envelope's destination actor, from `src` (an actor of the
  /// peer node; 0: nobody).
  void deliver(conn_id conn, const caf::node_id& peer_node, schema::Envelope::Reader env,
               caf::message msg, caf::actor_id src);

  // -- control (middleman_receive.cpp) ----------------------------------------------

  void handle_control(conn_id conn, const word_buffer& payload);
  void answer_lookup(conn_id conn, uint64_t request_id, capnp::Text::Reader key);
  void watch_local_actor(conn_id conn, caf::actor_id aid);
  void send_down(const caf::node_id& node, caf::actor_id aid, const caf::error& reason);

  // -- sending (middleman_send.cpp) -------------------------------------------------

  static word_buffer make_envelope(caf::actor_id src, caf::actor_id dst,
                                   caf::message_id mid, schema::PayloadKind kind,
                                   size_t payload_size, uint64_t schema_id = 0);
  /// The envelope of an op frame whose payload (`payload_size` bytes) goes beside it.
  static word_buffer make_op_envelope(caf::actor_id dst, const op_frame& op,
                                      size_t payload_size);

  /// Serializes a message for the wire; on failure returns nothing and says why (a
  /// type that is not registered with add_message_type, usually).
  std::optional<word_buffer> serialize(caf::message msg, std::string& why);

  /// Runs `fn` (which sends) on this thread when nobody else holds the worker lock
  /// and nothing was queued before it (per-peer order); otherwise queues it for the
  /// holder, who runs it before letting go. True if it ran here. If the engine
  /// stopped meanwhile, `refused` runs instead (it owes a waiter its answer).
  /// (Defined below: forward and middleman::rdma both instantiate it.)
  template <class F, class G>
  bool run_here_or_queue(F&& fn, G&& refused,
                         std::chrono::microseconds patience = std::chrono::microseconds{0});

  /// Every frame leaves through here, so the counters see what on_frame sees on the
  /// other side (handshakes and control traffic included).
  void send_frame(conn_id conn, am_kind kind, word_buffer header, word_buffer payload,
                  bool before_ready = false);
  void send_control(conn_id conn, capnp::MessageBuilder& control);
  void send_hello(conn_id conn, am_kind kind);
  void reply_error(conn_id conn, caf::actor_id requester, caf::actor_id from,
                   caf::message_id mid, caf::error err);

  /// Puts a local actor into CAF's registry, where answers find it by its id.
  void keep_registered(const caf::strong_actor_ptr& actor);
  void route(outgoing_message& m);
  void bounce(const caf::strong_actor_ptr& requester, caf::message_id mid,
              caf::error err);
  void forward(const caf::node_id& node, caf::actor_id dest, caf::strong_actor_ptr sender,
               caf::message_id mid, caf::message content);

  // -- proxies (middleman_proxy.cpp) ------------------------------------------------

  /// Any thread: asks the node of (nid, aid) for its down notice.
  void request_down_notice(const caf::node_id& nid, caf::actor_id aid);

  /// Progress thread (where proxies are made): drops the proxies that nothing here
  /// monitors and nothing holds but the registry.
  void sweep_unused_proxies();
};

template <class F, class G>
bool middleman::impl::run_here_or_queue(F&& fn, G&& refused,
                                        std::chrono::microseconds patience) {
  if (engine->try_lock_for(patience)) {
    if (!engine->has_posts()) {
      // `fn` may say whether it left anything for UCX to progress (an RDMA that
      // completed inside the call did not).
      bool in_flight = true;
      if constexpr (std::is_same_v<decltype(fn()), bool>)
        in_flight = fn();
      else
        fn();
      engine->unlock();
      // A thread that is not a worker (a blocking actor, typically) waits for the
      // answer elsewhere: get a worker polling while it travels.
      if (in_flight && opts.driven_externally && current_progress_worker() == nullptr
          && !blocking_waiter::active_on_this_thread())
        nudge_progress_scheduler(sys);
      return true;
    }
    engine->unlock();
  }
  if (!engine->post([self = shared_from_this(), fn = std::forward<F>(fn)]() mutable {
        static_cast<void>(self); // keeps the state `fn` uses alive until it runs
        fn();
      }))
    refused();
  return false;
}

} // namespace troupe::transport
