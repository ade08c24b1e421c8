#pragma once
// For actors that build on a node's group (the instance services): follow its view.

#include <chrono>
#include <cstdint>
#include <string>

#include <caf/actor.hpp>
#include <caf/message_handler.hpp>
#include <caf/system_messages.hpp>
#include <caf/duration.hpp>

#include "actors/group/group.hpp"
#include "actors/group/view.hpp"
#include "base/error.hpp"
#include "base/log.hpp"

namespace troupe::group {

/// Subscribes `self` to `group` and hands the current view to `adopt`; `self` then
/// receives the group's membership events (group.hpp) and quits when the group
/// provider ends or refuses the subscription. `component` names it in the log.
template <class Self, class Adopt>
void follow_group(Self* self, const caf::actor& group, const char* component,
                  Adopt adopt) {
  self->monitor(group);
  self->set_down_handler([self, group](const caf::down_msg& dm) {
    if (dm.source == group.address())
      self->quit(dm.reason);
  });
  self->request(group, caf::infinite, caf::subscribe_atom::value, caf::actor{self})
    .then([adopt](group_view& v) mutable { adopt(std::move(v)); },
          [self, component](caf::error& err) {
            TROUPE_LOG_ERROR(component, "cannot follow the group: " << describe(err));
            self->quit(err);
          });
}

/// Handlers for the group's membership events (after follow_group): each change reads
/// the view again and hands it to `adopt`; metadata changes are ignored.
template <class Self, class Adopt>
caf::message_handler view_updates(Self* self, const caf::actor& group, Adopt adopt) {
  auto reread = [self, group, adopt]() {
    self->request(group, std::chrono::seconds{10}, caf::get_atom::value)
      .then([adopt](group_view& v) mutable { adopt(std::move(v)); }, [](caf::error&) {});
  };
  return {
    [reread](member_joined_atom, const member&, const view_version&) { reread(); },
    [reread](member_left_atom, const member&, const view_version&) { reread(); },
    [reread](member_died_atom, const member&, const view_version&) { reread(); },
    [](metadata_changed_atom, const std::string&, const std::string&, bool,
       const view_version&) {},
  };
}

/// The rank of the member at `address` in `v`, or UINT32_MAX.
inline uint32_t rank_of_address(const group_view& v, const std::string& address) {
  for (size_t i = 0; i < v.members.size(); ++i)
    if (v.members[i].address == address)
      return static_cast<uint32_t>(i);
  return UINT32_MAX;
}

/// Takes view `v` into `held` unless it is older than the one held (each change
/// rereads the view, and the answers can come out of order), and sets `rank` to the
/// rank of the member at `address` in it (UINT32_MAX if it is not in it). True if
/// taken.
inline bool adopt_view(group_view& held, uint32_t& rank, group_view v,
                       const std::string& address) {
  if (!held.members.empty() && v.version < held.version)
    return false;
  held = std::move(v);
  rank = rank_of_address(held, address);
  return true;
}

} // namespace troupe::group
