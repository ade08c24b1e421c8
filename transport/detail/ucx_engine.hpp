#pragma once
// The UCX part of the middleman: one UCP context and worker (DESIGN.md, "Transport").
// It knows connections and byte frames, nothing of actors. UCX headers stay in the
// .cpp.
//
// Threads: the UCX worker and every connection belong to whichever thread holds the
// engine's worker lock (`try_lock`/`unlock`, or a `poll` round). Any thread may take
// it: the scheduler's idle workers poll through it, actor threads send through it,
// and the engine's own thread polls when nobody else does (all the time when no
// scheduler drives the engine, as a standby otherwise). The lock is never taken
// recursively: a thread that holds it and asks again is refused, and work it wants
// done goes through `post`, which the holder runs before it lets go. Every
// `engine_handler` callback runs under the lock.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "transport/detail/word_buffer.hpp"

struct sockaddr_storage;

namespace troupe::transport::detail {

using conn_id = uint64_t;

/// Active message ids. A batch carries several envelope frames of one connection in
/// one active message (see `engine::send`); the receiver hands them on one by one.
enum class am_kind : uint16_t { hello = 1, hello_ack = 2, envelope = 3, batch = 4 };

struct frame {
  am_kind kind;
  word_buffer header;  ///< the AM header, copied into words
  word_buffer payload; ///< the AM data, received into words
};

/// Receives the engine's events, under the worker lock.
class engine_handler {
public:
  virtual ~engine_handler() = default;
  /// A peer connected to our listener.
  virtual void on_accepted(conn_id conn) = 0;
  /// A whole frame arrived; frames of one connection arrive in send order.
  virtual void on_frame(conn_id conn, frame&& f) = 0;
  /// A frame was dropped before it could be handed on (`reason` names why).
  virtual void on_drop(conn_id conn, const char* reason) = 0;
  /// The connection is gone (peer died, closed, or never came up); `reason` says why.
  virtual void on_conn_failed(conn_id conn, const std::string& reason) = 0;
};

struct engine_options {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  bool busy_poll = false;
  /// Without busy_poll: how long to keep polling after activity before sleeping.
  std::chrono::microseconds spin_window{50};
  /// Small envelope frames sent while posted work runs leave in batches (`send`).
  bool batch_frames = true;
  /// Largest payload accepted from a peer, in bytes; bigger frames are dropped.
  size_t max_payload = size_t{1} << 30;
  /// Something else (the progress scheduler's workers) polls the engine; its own
  /// thread only stands by, polling when nobody else has for `standby_after`.
  bool driven_externally = false;
  std::chrono::microseconds standby_after{1000};
};

/// What one `poll` did.
enum class poll_outcome {
  busy,  ///< it ran a round and something happened
  idle,  ///< it ran a round and nothing happened
  taken, ///< another thread holds the worker lock (or the engine is not running)
};

/// Memory registered with UCX for RDMA (allocated by UCX: registration is then
/// cheapest and transfers fastest). Unmaps on destruction; keeps the UCP context
/// alive until then, so it may outlive the engine.
struct mapped_memory {
  std::shared_ptr<void> context;
  void* memh = nullptr;
  void* address = nullptr;
  size_t length = 0;
  std::string packed_rkey; ///< what a peer needs to reach this memory
  ~mapped_memory();
};

/// Called under the worker lock when an RDMA operation ends: empty string on
/// success, otherwise what failed.
using rma_callback = std::function<void(const std::string& error)>;

class engine {
public:
  engine(engine_handler& handler, engine_options options);
  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  /// Starts the engine's thread and the listener; returns once listening. Returns an
  /// empty string on success, otherwise what failed (with the address).
  std::string start();

  /// Closes every connection and joins the engine's thread. Idempotent. Whoever
  /// else polls must have stopped first.
  void stop();

  /// Whether the engine runs (started and not stopping): work handed to it now will
  /// be done.
  bool running() const;

  /// The port the listener got (the configured one, or the one the OS chose for 0).
  uint16_t port() const;

  /// Runs `fn` under the worker lock, soon: the lock's holder runs it before it lets
  /// go, or the next poll does. Safe from any thread. False (and `fn` dropped) once
  /// the engine stops: the caller owes whoever waits for `fn` an answer.
  bool post(std::function<void()> fn);
  /// The same without waking a sleeping poller: the caller calls `flush_posts` soon.
  bool post_quietly(std::function<void()> fn);

  /// Runs the posted work now if the worker lock is free (sends held back go out in
  /// batches); otherwise its holder runs it before letting go.
  void flush_posts();

  // -- the worker lock (any thread) -------------------------------------------------

  /// One progress round (progress UCX, hand on what arrived, run posted work) if the
  /// worker lock is free. Frames are handed to the handler on this thread.
  poll_outcome poll();

  /// Takes the worker lock if it is free and the engine runs. False when another
  /// thread holds it, or this one already does (never recursive).
  bool try_lock();

  /// try_lock, retried for up to `patience` while another thread holds the lock.
  bool try_lock_for(std::chrono::microseconds patience);

  /// Lets go of the worker lock. Posted work left behind is announced to a sleeping
  /// poller (the next poll runs it).
  void unlock();

  /// Whether posted work waits to run (a direct send must then queue behind it).
  bool has_posts() const;

  /// Before sleeping: arms the UCX worker so its event fd (the return value) becomes
  /// readable when anything arrives or is posted. -1: events are pending, poll
  /// instead of sleeping; -2: another thread holds the lock, so it polls. A caller
  /// that got an fd calls `end_sleep` when it wakes.
  int begin_sleep();
  void end_sleep();
  /// Whether a thread sleeps on the event fd now (anything that arrives wakes it).
  bool sleeper_armed() const;

  /// Times the engine's own thread stood in for an externally driven poller.
  uint64_t standby_polls() const;

  const engine_options& options() const;

  // -- worker lock holder only ------------------------------------------------------

  /// Starts connecting to `addr`. Returns the connection id; failure arrives through
  /// `on_conn_failed`.
  conn_id connect(const sockaddr_storage& addr, unsigned addr_len);

  /// Sends at once, even before the connection is ready (for the handshake).
  void send_now(conn_id conn, am_kind kind, word_buffer header, word_buffer payload);

  /// Sends once the connection is ready, in call order. Small envelope frames sent
  /// while posted work runs are held back and go out together, several in one active
  /// message, when the posted work is done (one UCX send and one receive callback
  /// for many messages: what a burst of requests or replies costs).
  void send(conn_id conn, am_kind kind, word_buffer header, word_buffer payload);

  /// Frames sent in batches and batches sent, since the start.
  uint64_t frames_batched() const;
  uint64_t batches_sent() const;

  /// Flushes the connection's wireup, then sends what `send` queued and sends
  /// directly from then on.
  void make_ready(conn_id conn);

  /// Closes a connection without reporting it as failed. Gracefully (pending sends
  /// flush, within a grace period) unless `force`, for a peer known to be dead.
  void close(conn_id conn, bool force = false);

  /// RDMA between `local` (inside memory mapped by this engine) and `remote_address`
  /// on the peer of `conn`, described by its packed rkey. A put completes after a
  /// flush, i.e. once the data is in the peer's memory. `keep_alive` is held until
  /// `done` has run (the local region, typically). Returns whether the operation is
  /// still in flight (false: `done` has run already, as over shared memory, where UCX
  /// copies inside the call).
  bool rma(conn_id conn, bool is_put, void* local, size_t length, uint64_t remote_address,
           const std::string& packed_rkey, rma_callback done,
           std::shared_ptr<void> keep_alive);

  // -- any thread -------------------------------------------------------------------

  /// Allocates and registers `bytes` of memory. Returns null and sets `error` on
  /// failure. Valid only between start() and stop().
  std::unique_ptr<mapped_memory> map_memory(size_t bytes, std::string& error);

  /// Unpacked remote keys held over all connections (bounded per connection).
  uint64_t cached_remote_keys() const;

  /// UCX transports carrying active messages on ready connections ("posix", "sysv",
  /// "cma", "tcp", "self", ...), each with how many connections use it: which
  /// transports UCX really chose, not what UCX_TLS allowed.
  std::map<std::string, uint64_t> transports_in_use() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// Resolves "host" and port into a socket address. Returns an empty string on
/// success, otherwise the resolver's reason.
std::string resolve_address(const std::string& host, uint16_t port, sockaddr_storage& out,
                            unsigned& out_len);

} // namespace troupe::transport::detail
