#pragma once
// For the instance services: finding the provider of the same type on another member
// (the root's barrier, the root's KVS), once per member incarnation, without letting
// a lookup reorder what a service sends to that member.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include "actors/group/view.hpp"

namespace troupe::group {

/// Provider (type, id) at members of a group, looked up through the node's locator
/// and kept per member incarnation (a member that restarted is looked up again).
class peer_providers {
public:
  using callback = std::function<void(caf::expected<caf::actor>)>;

  peer_providers(std::string type, uint16_t provider_id)
    : type_(std::move(type)), provider_id_(provider_id) {}

  /// Calls `then` with the provider at `m` (at once when it is known), else after a
  /// lookup by `self` through `locator`; calls for the same member run in the order
  /// they were made, so what the caller sends from them keeps its order. A failed
  /// lookup (troupe.unreachable naming the address) is handed to every waiting call
  /// and not kept: the next call looks up again.
  void with(caf::event_based_actor* self, const caf::actor& locator, const member& m,
            std::chrono::milliseconds timeout, callback then);

  /// Forgets what was found (e.g. after a request to it failed).
  void forget(const member& m);

private:
  static std::string key_of(const member& m);

  std::string type_;
  uint16_t provider_id_;
  std::map<std::string, caf::actor> found_;
  std::map<std::string, std::vector<callback>> waiting_;
};

} // namespace troupe::group
