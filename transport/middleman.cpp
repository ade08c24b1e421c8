#include "transport/middleman.hpp"

#include <cstdlib>
#include <future>
#include <random>
#include <sys/socket.h>
#include <unistd.h>

#include <caf/actor_cast.hpp>
#include <caf/actor_registry.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/send.hpp>

#include "base/error.hpp"
#include "base/log.hpp"
#include "transport/detail/middleman_impl.hpp"
#include "transport/rdma.hpp"
#include "transport/transport_config.hpp"

// CAF 0.17 declares caf::net::middleman a friend of actor_system for the module in the
// network_manager slot, but never defines it: that module is ours, and this is the
// one thing it needs the friendship for.
namespace caf::net {
class middleman {
public:
  static void set_node(caf::actor_system& sys, caf::node_id id) {
    sys.node_ = std::move(id);
  }
};
} // namespace caf::net

namespace troupe::transport {

// -- the middleman's state ------------------------------------------------------------

middleman::impl::impl(caf::actor_system& system, middleman& parent)
  : sys(system), proxies(system, parent), exec_unit(&system) {
  exec_unit.proxy_registry_ptr(&proxies);
  std::random_device rd;
  incarnation = (uint64_t{rd()} << 32) | rd();
}

// -- middleman ------------------------------------------------------------------------

std::map<std::string, std::string> ucx_settings_for(const transport_config& cfg) {
  std::map<std::string, std::string> out;
  // Peer error handling needs these for shared-memory lanes (only where shared
  // memory may be used: UCX warns about settings nobody reads).
  const char* tls = std::getenv("UCX_TLS");
  std::string tls_list = tls != nullptr ? tls : "all";
  if (tls_list.find("all") != std::string::npos || tls_list.find("sm") != std::string::npos
      || tls_list.find("posix") != std::string::npos
      || tls_list.find("sysv") != std::string::npos) {
    out["POSIX_ERROR_HANDLING"] = "y";
    out["SYSV_ERROR_HANDLING"] = "y";
  }
  // UCX's default keepalive (20 s) is far too slow to notice a dead peer.
  out["KEEPALIVE_INTERVAL"] = std::to_string(cfg.keepalive.count()) + "ms";
  // A restarted node must get its address back while old connections linger in
  // TIME_WAIT, as any server does with SO_REUSEADDR.
  out["TCP_CM_REUSEADDR"] = "y";
  // UCX 1.13's tcp PUT zcopy (used by rendezvous and RMA over tcp) aborts the whole
  // process on an assertion in tcp_ep.c when the peer dies mid-transfer (here: about
  // 1 run in 10 of a peer killed under 64 KiB sends on a loaded box). Without it UCX
  // moves those bytes by active messages: a peer's death is then an error, not an abort.
  out["TCP_PUT_ENABLE"] = "n";
  // On loopback, keep UCX's tcp lanes on lo too instead of every interface.
  if (cfg.host == "127.0.0.1" || cfg.host == "localhost" || cfg.host == "::1")
    out["NET_DEVICES"] = "lo";
  return out;
}

middleman::middleman(caf::actor_system& sys) {
  impl_ = std::make_shared<impl>(sys, *this);
}

middleman::~middleman() = default;

caf::actor_system::module* middleman::make(caf::actor_system& sys,
                                           caf::detail::type_list<>) {
  return new middleman(sys);
}

middleman& middleman::of(caf::actor_system& sys) {
  // CAF 0.17 hands the network_manager slot out as the (never defined) caf::net
  // middleman type: it is our subtype_ptr(), i.e. this middleman.
  auto& slot = sys.network_manager();
  return *reinterpret_cast<middleman*>(&slot);
}

void middleman::init(caf::actor_system_config& cfg) {
  auto& d = *impl_;
  transport_config settings;
  if (auto* typed = dynamic_cast<transport_system_config*>(&cfg))
    settings = typed->transport;
  d.opts.host = settings.host;
  d.opts.port = settings.port;
  d.opts.busy_poll = settings.busy_poll;
  d.opts.spin_window = settings.spin;
  d.opts.batch_frames = settings.batch_sends; // frames in batches, sends deferred
  d.opts.max_payload = settings.max_message_bytes;
  // Through the environment, and without overwriting it (a UCX_* variable the user
  // set wins): UCX 1.13 applies only its own UCP-level settings to one context
  // (ucp_config_modify); the transports' settings it reports as "invalid
  // configurations" and ignores (tried: a restarted node could no longer listen on
  // the port it had just released).
  for (const auto& [name, value] : ucx_settings_for(settings))
    ::setenv(("UCX_" + name).c_str(), value.c_str(), 0);
}

void middleman::start() {
  auto& d = *impl_;
  // CAF's node id is (pid, host hash): two nodes in one process (tests, in-process
  // child instances) would share it, and peers could not tell them apart. Mix this
  // run's random incarnation into the host hash so every node is unique.
  auto host = caf::node_id::default_data::host_id_type{};
  if (d.sys.node()
      && d.sys.node()->implementation_id() == caf::node_id::default_data::class_id)
    host = static_cast<const caf::node_id::default_data&>(*d.sys.node()).host_id();
  for (size_t i = 0; i < 8; ++i)
    host[host.size() - 8 + i] = static_cast<uint8_t>(d.incarnation >> (8 * i));
  caf::net::middleman::set_node(
    d.sys, caf::make_node_id(static_cast<uint32_t>(::getpid()), host));
  // With the progress scheduler, its workers poll the engine; the engine's own
  // thread only stands by.
  d.opts.driven_externally = runs_progress_scheduler(d.sys);
  d.engine = std::make_unique<detail::engine>(d, d.opts);
  auto err = d.engine->start();
  if (!err.empty()) {
    d.start_err = make_error(errc::unreachable, err);
    d.engine.reset();
    return;
  }
  detail::attach_engine(d.sys, d.engine.get());
  d.address_uri = node_address{"ucx", d.opts.host, d.engine->port()}.to_uri();
  TROUPE_LOG_INFO(log_component, "listening on " << d.address_uri);
}

void middleman::stop() {
  auto& d = *impl_;
  if (d.engine) {
    detail::detach_engine(d.sys);
    d.engine->stop();
    // Pending lookups get their one answer.
    auto lookups = std::move(d.lookups);
    d.lookups.clear();
    for (auto& kvp : lookups)
      kvp.second({{}, 0, make_error(errc::unreachable, "transport stopped")});
  }
  d.proxies.clear();
}

caf::actor_system::module::id_t middleman::id() const {
  return network_manager;
}

void* middleman::subtype_ptr() {
  return this;
}

const caf::error& middleman::start_error() const {
  return impl_->start_err;
}

std::string middleman::address() const {
  return impl_->address_uri;
}

void middleman::publish(const std::string& key, const caf::actor& handle) {
  std::lock_guard<std::mutex> guard{impl_->published_mtx};
  impl_->published[key] = caf::actor_cast<caf::weak_actor_ptr>(handle);
}

void middleman::unpublish(const std::string& key) {
  std::lock_guard<std::mutex> guard{impl_->published_mtx};
  impl_->published.erase(key);
}

uint64_t middleman::find_remote_actor(const std::string& uri, const std::string& key,
                                      lookup_callback done) {
  auto& d = *impl_;
  auto fail = [&](std::string why) {
    done(make_error(errc::unreachable, std::move(why)));
    return uint64_t{0};
  };
  if (!d.engine)
    return fail("the transport is not running");
  auto addr = parse_node_address(uri);
  if (!addr)
    return fail(uri + ": " + context_text(addr.error()));
  auto sa = std::make_shared<sockaddr_storage>();
  unsigned sa_len = 0;
  auto error = detail::resolve_address(addr->host, addr->port, *sa, sa_len);
  if (!error.empty())
    return fail(uri + ": " + error);
  auto canonical = addr->to_uri();
  std::weak_ptr<impl> weak = impl_;
  auto request_id = d.next_lookup.fetch_add(1);
  // Turns the answer into a handle: a proxy for a remote actor, the actor itself when
  // the key was published on this very node.
  auto finish = [weak, done = std::move(done)](impl::lookup_result result) {
    auto self = weak.lock();
    if (!self)
      return done(make_error(errc::unreachable, "transport stopped"));
    if (result.err)
      return done(std::move(result.err));
    if (result.node == self->sys.node())
      return done(caf::actor_cast<caf::actor>(self->sys.registry().get(result.aid)));
    done(caf::actor_cast<caf::actor>(self->proxies.get_or_put(result.node, result.aid)));
  };
  if (!d.engine->running())
    return fail("the transport is not running");
  d.engine->post(
    [weak, canonical, sa, sa_len, key, request_id, finish = std::move(finish)]() mutable {
      auto self = weak.lock();
      if (!self)
        return;
      self->lookups.emplace(request_id, std::move(finish));
      self->with_connection(
        canonical, *sa, sa_len,
        [self, canonical, key, request_id](conn_id conn, const std::string* err) {
          auto it = self->lookups.find(request_id);
          if (it == self->lookups.end())
            return; // cancelled
          if (err != nullptr) {
            auto finish = std::move(it->second);
            self->lookups.erase(it);
            finish(
              {{},
               0,
               make_error(errc::unreachable, "cannot reach " + canonical + ": " + *err)});
            return;
          }
          capnp::MallocMessageBuilder message{64};
          auto lookup = message.initRoot<schema::Control>().initLookup();
          lookup.setRequestId(request_id);
          lookup.setKey(key);
          self->lookup_nodes[request_id] = self->conns[conn].node;
          self->send_control(conn, message);
        });
    });
  return request_id;
}

void middleman::cancel_lookup(uint64_t lookup_id) {
  auto& d = *impl_;
  if (!d.engine || lookup_id == 0)
    return;
  std::weak_ptr<impl> weak = impl_;
  d.engine->post([weak, lookup_id] {
    if (auto self = weak.lock()) {
      self->lookups.erase(lookup_id);
      self->lookup_nodes.erase(lookup_id);
    }
  });
}

caf::expected<caf::actor> middleman::remote_actor(const std::string& uri,
                                                  const std::string& key,
                                                  std::chrono::milliseconds timeout) {
  auto promise = std::make_shared<std::promise<caf::expected<caf::actor>>>();
  auto future = promise->get_future();
  auto lookup_id =
    find_remote_actor(uri, key, [promise](caf::expected<caf::actor> result) {
      promise->set_value(std::move(result));
    });
  if (future.wait_for(timeout) != std::future_status::ready) {
    cancel_lookup(lookup_id);
    return make_error(errc::timeout, "no answer from " + uri + " within "
                                       + std::to_string(timeout.count()) + " ms");
  }
  return future.get();
}

void middleman::drop_incoming(const std::string& type_name, uint64_t count) {
  auto& d = *impl_;
  std::lock_guard<std::mutex> guard{d.faults_mtx};
  if (count == 0)
    d.drops_to_inject.erase(type_name);
  else
    d.drops_to_inject[type_name] = count;
  d.faults_armed.store(!d.drops_to_inject.empty());
}

transport_stats middleman::stats() const {
  auto& d = *impl_;
  transport_stats s;
  s.messages_out = d.msgs_out.load();
  s.bytes_out = d.bytes_out.load();
  s.messages_in = d.msgs_in.load();
  s.bytes_in = d.bytes_in.load();
  s.peers = d.peer_count.load();
  s.typed_out = d.typed_out.load();
  s.typed_in = d.typed_in.load();
  s.caf_out = d.caf_out.load();
  s.caf_in = d.caf_in.load();
  s.op_out = d.op_out.load();
  s.op_in = d.op_in.load();
  s.sends_direct = d.sends_direct.load();
  s.sends_queued = d.sends_queued.load();
  s.sends_deferred = d.sends_deferred.load();
  s.requests_awaiting = d.requests_awaiting.load();
  auto sched = progress_stats(d.sys);
  s.worker_sleeps = sched.sleeps;
  s.worker_armed_sleeps = sched.armed_sleeps;
  s.worker_wakeups = sched.wakeups_sent;
  s.waiter_handoffs = sched.waiter_handoffs;
  if (d.engine) {
    s.remote_keys = d.engine->cached_remote_keys();
    s.standby_polls = d.engine->standby_polls();
    s.frames_batched = d.engine->frames_batched();
    s.batches_sent = d.engine->batches_sent();
    s.transports = d.engine->transports_in_use();
  }
  std::lock_guard<std::mutex> guard{d.drops_mtx};
  s.drops = d.drops;
  return s;
}

caf::actor_system& middleman::system() const {
  return impl_->sys;
}

bool middleman::poll_once() {
  return impl_->engine && impl_->engine->poll() == detail::poll_outcome::busy;
}

std::chrono::microseconds middleman::spin_window() const {
  return impl_->opts.spin_window;
}

caf::proxy_registry& middleman::proxies() {
  return impl_->proxies;
}

caf::expected<std::unique_ptr<detail::mapped_memory>>
middleman::map_memory(size_t bytes) {
  if (!impl_->engine)
    return make_error(errc::unreachable, "the transport is not running");
  std::string error;
  auto mapped = impl_->engine->map_memory(bytes, error);
  if (!mapped)
    return make_error(errc::refused, error);
  return mapped;
}

namespace {

/// How long an RDMA's caller waits for the UCX worker's lock (a poller holds it for a
/// round) before it hands the transfer to the holder. Over shared memory UCX copies
/// inside the call: made by the caller, the copy stays on one thread and its report
/// waits in the caller's mailbox when it looks; handed over, each transfer cost a
/// copy on another core and a wakeup of the caller (1 MiB gets, 4 in flight, reached
/// 76-92 % of raw UCX's rate that way, 90-95 % waiting; measured).
constexpr std::chrono::microseconds rdma_lock_patience{50};

} // namespace

void middleman::rdma(bool is_put, const region_descriptor& remote, uint64_t remote_offset,
                     std::shared_ptr<memory_region> local, uint64_t local_offset,
                     uint64_t length, const caf::actor& notify, uint64_t tag) {
  auto& d = *impl_;
  auto report = [notify, tag](caf::error err) {
    caf::anon_send(notify, rdma_done{tag, std::move(err)});
  };
  if (!d.engine) {
    report(make_error(errc::unreachable, "the transport is not running"));
    return;
  }
  auto self = impl_.get();
  d.run_here_or_queue(
    [self, is_put, remote_copy = remote, remote_offset, local, local_offset, length,
     report] {
      auto p = self->peers.find(remote_copy.node);
      if (p == self->peers.end()) {
        report(make_error(errc::unreachable, "no connection to node "
                                               + caf::to_string(remote_copy.node)
                                               + ", which holds the region"));
        return false;
      }
      std::string rkey{remote_copy.rkey.begin(), remote_copy.rkey.end()};
      return self->engine->rma(
        p->second.send_conn, is_put, local->data() + local_offset, length,
        remote_copy.address + remote_offset, rkey,
        [report](const std::string& error) {
          report(error.empty() ? caf::error{} : make_error(errc::unreachable, error));
        },
        local);
    },
    [report] { report(make_error(errc::unreachable, "the transport has stopped")); },
    rdma_lock_patience);
}

std::string provider_key(const std::string& type, uint16_t provider_id) {
  return "provider:" + type + ":" + std::to_string(provider_id);
}

} // namespace troupe::transport