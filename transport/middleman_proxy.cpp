// Proxies of remote actors (detail/middleman_impl.hpp): the proxy class, made by the
// middleman as the proxy registry's backend; the down notice a proxy asks its actor's
// node for once something here watches it; the sweep of proxies nobody holds.

#include "transport/detail/middleman_impl.hpp"

#include <algorithm>

#include <caf/actor_cast.hpp>
#include <caf/actor_config.hpp>
#include <caf/actor_proxy.hpp>
#include <caf/exit_reason.hpp>
#include <caf/make_actor.hpp>
#include <caf/mailbox_element.hpp>

#include "base/error.hpp"

namespace troupe::transport {

namespace {

class ucx_proxy final : public caf::actor_proxy {
public:
  // A weak reference: a proxy that outlives the transport drops its messages (and
  // answers requests with an error) instead of touching freed memory.
  ucx_proxy(caf::actor_config& cfg, std::weak_ptr<middleman::impl> mm)
    : caf::actor_proxy(cfg), mm_(std::move(mm)) {}

  void enqueue(caf::mailbox_element_ptr what, caf::execution_unit*) override {
    if (auto mm = mm_.lock()) {
      mm->forward(node(), id(), std::move(what->sender), what->mid,
                  what->move_content_to_message());
      return;
    }
    // The transport is gone: a request still gets its one reply.
    if (what->mid.is_request() && what->sender)
      what->sender->enqueue(
        caf::make_mailbox_element(
          nullptr, what->mid.response_id(), {},
          caf::make_message(make_error(errc::unreachable, "the transport has stopped"))),
        nullptr);
  }

  void kill_proxy(caf::execution_unit* ctx, caf::error reason) override {
    cleanup(std::move(reason), ctx);
  }

  // A monitor, a link or an attached functor needs the actor's down notice.
  void attach(caf::attachable_ptr ptr) override {
    watched();
    caf::actor_proxy::attach(std::move(ptr));
  }
  void add_link(caf::abstract_actor* other) override {
    watched();
    caf::actor_proxy::add_link(other);
  }
  bool add_backlink(caf::abstract_actor* other) override {
    watched();
    return caf::actor_proxy::add_backlink(other);
  }

  /// For the sweep: true if the proxy was not watched and now never will be (a
  /// later monitor finds it terminated, as after its actor's exit).
  bool claim_for_sweep() {
    int idle = unwatched;
    return state_.compare_exchange_strong(idle, swept);
  }

private:
  enum : int { unwatched, watched_state, swept };

  void watched() {
    int idle = unwatched;
    if (state_.compare_exchange_strong(idle, watched_state))
      if (auto mm = mm_.lock())
        mm->request_down_notice(node(), id());
  }

  std::weak_ptr<middleman::impl> mm_;
  std::atomic<int> state_{unwatched};
};

} // namespace

void middleman::impl::request_down_notice(const caf::node_id& nid, caf::actor_id aid) {
  if (!engine)
    return;
  std::weak_ptr<impl> weak = shared_from_this();
  engine->post([weak, nid, aid] {
    auto self = weak.lock();
    if (!self)
      return;
    auto p = self->peers.find(nid);
    if (p == self->peers.end()) {
      // Its node is already gone (the connection broke before the proxy was
      // monitored): kill the proxy now, or its monitors and links would never fire.
      self->proxies.erase(nid, aid, caf::exit_reason::remote_link_unreachable);
      return;
    }
    capnp::MallocMessageBuilder message{64};
    message.initRoot<schema::Control>().setMonitor(aid);
    self->send_control(p->second.send_conn, message);
  });
}

void middleman::impl::sweep_unused_proxies() {
  uint64_t kept = 0;
  for (const auto& [nid, p] : peers) {
    for (auto& proxy : proxies.get_all(nid)) {
      auto* raw = static_cast<ucx_proxy*>(caf::actor_cast<caf::abstract_actor*>(proxy));
      // Two references, the registry's and `proxy`: nobody else holds it, and new
      // strong references come from the registry, on this thread (or from upgrading a
      // weak handle: the claim settles a race with a monitor through one).
      if (proxy->strong_refs.load() == 2 && raw->claim_for_sweep())
        proxies.erase(nid, proxy->id());
      else
        ++kept;
    }
  }
  next_sweep = proxies_made.load() + std::max(min_sweep_interval, kept);
  last_sweep = std::chrono::steady_clock::now();
}

caf::strong_actor_ptr middleman::make_proxy(caf::node_id nid, caf::actor_id aid) {
  auto& d = *impl_;
  caf::actor_config cfg;
  ++d.proxies_made;
  // No down notice asked for yet: the proxy asks once something here watches it.
  return caf::make_actor<ucx_proxy, caf::strong_actor_ptr>(aid, nid, &d.sys, cfg,
                                                           std::weak_ptr<impl>{impl_});
}

void middleman::set_last_hop(caf::node_id*) {
  // Troupe connects nodes directly; there are no indirect hops to track.
}

} // namespace troupe::transport
