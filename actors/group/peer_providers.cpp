// Looking up a service's provider on another member (peer_providers.hpp).

#include "actors/group/peer_providers.hpp"

#include <caf/event_based_actor.hpp>

#include "base/error.hpp"
#include "runtime/locator.hpp"

namespace troupe::group {

std::string peer_providers::key_of(const member& m) {
  return m.address + "#" + std::to_string(m.incarnation);
}

void peer_providers::forget(const member& m) {
  found_.erase(key_of(m));
}

void peer_providers::with(caf::event_based_actor* self, const caf::actor& locator,
                          const member& m, std::chrono::milliseconds timeout,
                          callback then) {
  auto key = key_of(m);
  auto& queue = waiting_[key];
  if (queue.empty()) {
    if (auto i = found_.find(key); i != found_.end()) {
      waiting_.erase(key);
      return then(caf::expected<caf::actor>{i->second});
    }
  }
  queue.emplace_back(std::move(then));
  if (queue.size() > 1)
    return; // its lookup is under way
  // `this` outlives the lookup: it lives in the state of `self`, which the answer
  // reaches only while `self` runs.
  auto finish = [this, key](caf::expected<caf::actor> found) {
    if (found)
      found_[key] = *found;
    auto waiting = std::move(waiting_[key]);
    waiting_.erase(key);
    for (auto& f : waiting)
      f(found);
  };
  auto address = m.address;
  self->request(locator, timeout, locate_atom::value, address, type_, provider_id_)
    .then([finish](const caf::actor& found) { finish(caf::expected<caf::actor>{found}); },
          [finish, address, type = type_](caf::error& err) {
            finish(caf::expected<caf::actor>{
              make_error(errc::unreachable, "no " + type + " provider at " + address
                                              + ": " + describe(err))});
          });
}

} // namespace troupe::group
