#pragma once
// For actors that build on a node's group (the instance services): follow its view.

#include <caf/actor.hpp>
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

} // namespace troupe::group
