#include "runtime/locator.hpp"

#include <map>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/response_promise.hpp>
#include <caf/stateful_actor.hpp>

#include "base/error.hpp"
#include "transport/middleman.hpp"

namespace troupe {

namespace {

using located_atom = caf::atom_constant<caf::atom("located")>;
using expired_atom = caf::atom_constant<caf::atom("expired")>;

struct locator_state {
  struct pending {
    caf::response_promise promise;
    uint64_t lookup_id = 0;
    std::string uri;
  };
  std::map<uint64_t, pending> lookups; // by token
  uint64_t next_token = 1;
  static inline const char* name = "troupe.locator";
};

caf::behavior locator(caf::stateful_actor<locator_state>* self,
                      transport::middleman* transport,
                      std::chrono::milliseconds deadline) {
  auto start = [self, transport, deadline](const std::string& uri,
                                           const std::string& key) {
    auto token = self->state.next_token++;
    auto& entry = self->state.lookups[token];
    entry.promise = self->make_response_promise();
    entry.uri = uri;
    // The answer comes back as a message: the callback runs on the transport's thread.
    auto weak = caf::actor_cast<caf::weak_actor_ptr>(self);
    entry.lookup_id =
      transport->find_remote_actor(uri, key, [weak, token](caf::expected<caf::actor> r) {
        auto me = caf::actor_cast<caf::actor>(weak.lock());
        if (!me)
          return;
        if (r)
          caf::anon_send(me, located_atom::value, token, std::move(*r));
        else
          caf::anon_send(me, located_atom::value, token, std::move(r.error()));
      });
    self->delayed_send(self, deadline, expired_atom::value, token);
    return entry.promise;
  };
  auto finish = [self](uint64_t token, auto&& outcome) {
    auto it = self->state.lookups.find(token);
    if (it == self->state.lookups.end())
      return; // already answered (or expired)
    auto promise = std::move(it->second.promise);
    self->state.lookups.erase(it);
    promise.deliver(std::forward<decltype(outcome)>(outcome));
  };
  return {
    [start](locate_atom, const std::string& uri, const std::string& key) {
      return start(uri, key);
    },
    [start](locate_atom, const std::string& uri, const std::string& type,
            uint16_t provider_id) {
      return start(uri, transport::provider_key(type, provider_id));
    },
    [finish](located_atom, uint64_t token, caf::actor& handle) {
      finish(token, std::move(handle));
    },
    [finish](located_atom, uint64_t token, caf::error& err) {
      finish(token, std::move(err));
    },
    [self, transport, deadline, finish](expired_atom, uint64_t token) {
      auto it = self->state.lookups.find(token);
      if (it == self->state.lookups.end())
        return;
      transport->cancel_lookup(it->second.lookup_id);
      finish(token,
             make_error(errc::timeout, "no answer from " + it->second.uri + " within "
                                         + std::to_string(deadline.count()) + " ms"));
    },
  };
}

} // namespace

caf::actor spawn_locator(caf::actor_system& system, transport::middleman& transport,
                         std::chrono::milliseconds deadline) {
  return system.spawn(locator, &transport, deadline);
}

} // namespace troupe
