#pragma once
// Troupe's middleman: remote actors over UCX (DESIGN.md, "Transport").
//
// A CAF module in the free `network_manager` slot that is also the proxy backend:
// remote actors are proxies whose enqueue serializes the message into an Envelope and
// sends it from the sender's own thread (or queues it for whichever thread holds the
// UCX worker; see scheduler.hpp and README.md for the threading model). `send`, `request(...).then(...)` and `monitor` to
// a remote actor look the same as to a local one. CAF's own io middleman stays loaded
// only because CAF 0.17 gives a node its node id through it.
//
// Settings: a transport_config (transport_config.hpp), read at init from the actor
// system config when it is a transport_system_config (the runtime's is, filled from
// the node config); defaults otherwise.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/detail/type_list.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>
#include <caf/proxy_registry.hpp>

namespace troupe {
class memory_region;
struct region_descriptor;
} // namespace troupe

namespace troupe::transport {

namespace detail {
struct mapped_memory;
} // namespace detail

/// Counters of one node's transport, for introspection and tests.
struct transport_stats {
  uint64_t messages_out = 0;
  uint64_t bytes_out = 0;
  uint64_t messages_in = 0;
  uint64_t bytes_in = 0;
  uint64_t peers = 0;                    ///< nodes with a live, handshaken connection
  uint64_t remote_keys = 0;              ///< unpacked keys of peers' memory regions
  uint64_t typed_out = 0; ///< actor messages sent as typed Cap'n Proto payloads
  uint64_t typed_in = 0;
  uint64_t caf_out = 0; ///< actor messages sent CAF-serialized
  uint64_t caf_in = 0;
  uint64_t op_out = 0; ///< op framework messages (op_frame) sent in the envelope
  uint64_t op_in = 0;
  uint64_t sends_direct = 0; ///< messages sent from the sender's own thread
  uint64_t sends_queued = 0; ///< ... queued for the worker lock's holder instead
  /// ... held until the end of the sender's turn on a progress worker, then sent
  /// together with the turn's other messages
  uint64_t sends_deferred = 0;
  uint64_t frames_batched = 0; ///< frames sent several to one active message
  uint64_t batches_sent = 0;   ///< ... in that many active messages
  /// Requests sent to other nodes whose response has not come (each holds its
  /// requester, to answer it if the node dies).
  uint64_t requests_awaiting = 0;
  uint64_t worker_sleeps = 0;       ///< progress scheduler: a worker went to sleep
  uint64_t worker_armed_sleeps = 0; ///< ... on the UCX worker's event fd
  uint64_t worker_wakeups = 0;      ///< ... and was woken for a job
  /// A caller polling for its answer (blocking_waiter) gave up after the spin window
  /// and woke a worker to poll for it (the waiter is the spinner meanwhile).
  uint64_t waiter_handoffs = 0;
  uint64_t standby_polls = 0; ///< times the engine's own thread polled for busy workers
  std::map<std::string, uint64_t> drops; ///< dropped input by reason
  /// UCX transports carrying messages ("posix", "sysv", "cma", "tcp", ...), each with
  /// the number of connections that use it: what UCX chose, not what it was allowed.
  std::map<std::string, uint64_t> transports;
};

/// The wire protocol version; a peer that speaks another is refused at handshake.
/// (2: envelopes name actors by id alone; the connection names the nodes. 3: op
/// framework messages in the envelope, `op_frame`. 4: batches, several envelope frames
/// in one active message.)
constexpr uint32_t protocol_version = 4;

class middleman : public caf::actor_system::module, public caf::proxy_registry::backend {
public:
  /// For `cfg.load<middleman>()`.
  static caf::actor_system::module* make(caf::actor_system& sys,
                                         caf::detail::type_list<>);

  /// The middleman of `sys`. Precondition: it was loaded.
  static middleman& of(caf::actor_system& sys);

  ~middleman() override;

  // -- caf::actor_system::module ---------------------------------------------------

  void init(caf::actor_system_config& cfg) override;
  void start() override;
  void stop() override;
  id_t id() const override;
  void* subtype_ptr() override;

  // -- caf::proxy_registry::backend ------------------------------------------------

  caf::strong_actor_ptr make_proxy(caf::node_id nid, caf::actor_id aid) override;
  void set_last_hop(caf::node_id* ptr) override;

  // -- API -------------------------------------------------------------------------

  /// Why the transport failed to start (e.g. the port is taken); none when it runs.
  /// CAF modules cannot fail their start, so the owner checks this after building
  /// the actor system.
  const caf::error& start_error() const;

  /// The URI this node listens on, with the port the OS chose if 0 was configured.
  std::string address() const;

  /// Makes `handle` findable by peers under `key`. Holds a weak reference: an actor
  /// that exits is no longer found. Publishing a key again replaces it.
  void publish(const std::string& key, const caf::actor& handle);
  void unpublish(const std::string& key);

  /// Finds the actor published under `key` on the node at `uri`, connecting to it if
  /// needed. Blocks the caller up to `timeout` (do not call it from an actor's
  /// handler). Errors: troupe.unreachable (address cannot be reached), troupe.not_found
  /// (nothing published under that key there), troupe.timeout.
  caf::expected<caf::actor> remote_actor(const std::string& uri, const std::string& key,
                                         std::chrono::milliseconds timeout);

  using lookup_callback = std::function<void(caf::expected<caf::actor>)>;

  /// `remote_actor` without blocking, for actors: `done` runs exactly once (unless the
  /// lookup is cancelled) with the handle or the error, on the transport's thread or
  /// the caller's, so it must be short (send a message). It has no deadline of its
  /// own: an unreachable address fails at once, a peer that never answers is the
  /// caller's to time out and cancel. Returns an id for `cancel_lookup` (0 when
  /// `done` already ran).
  uint64_t find_remote_actor(const std::string& uri, const std::string& key,
                             lookup_callback done);

  /// Forgets a lookup; its callback is not called afterwards (it may be running now).
  void cancel_lookup(uint64_t lookup_id);

  transport_stats stats() const;

  /// Fault injection (tests, and people checking what breaks): the next `count`
  /// messages arriving from other nodes that hold a value of the type registered as
  /// `type_name` (add_message_type's name, e.g. "troupe::group::view_change") are
  /// dropped as if the network had lost them, and counted under drops as "injected
  /// fault". A count of 0 cancels. Anyone who can reach the node service can ask for
  /// this: peers are not authenticated yet.
  void drop_incoming(const std::string& type_name, uint64_t count);

  /// How long a thread keeps polling after activity before it sleeps (spin_us).
  std::chrono::microseconds spin_window() const;

  /// The actor system this middleman belongs to.
  caf::actor_system& system() const;

  /// One progress round on this thread if nobody else polls right now: for a blocking
  /// caller waiting for an answer (blocking_wait.hpp). True if anything happened.
  bool poll_once();

  /// The proxy registry holding this node's proxies of remote actors.
  caf::proxy_registry& proxies();

  /// For memory_region: allocates and registers memory (troupe.unreachable when the
  /// transport is not running, troupe.refused when UCX cannot register it).
  caf::expected<std::unique_ptr<detail::mapped_memory>> map_memory(size_t bytes);

  /// For rdma_get/rdma_put (rdma.hpp), which check the ranges first.
  void rdma(bool is_put, const region_descriptor& remote, uint64_t remote_offset,
            std::shared_ptr<memory_region> local, uint64_t local_offset, uint64_t length,
            const caf::actor& notify, uint64_t tag);

  struct impl;

private:
  explicit middleman(caf::actor_system& sys);
  std::shared_ptr<impl> impl_;
};

/// Key under which the runtime publishes provider (type, id).
std::string provider_key(const std::string& type, uint16_t provider_id);

} // namespace troupe::transport
