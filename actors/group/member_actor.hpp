#pragma once
// The actor behind a `group` provider (one per member). Internal to actors/group.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>

#include "actors/group/view.hpp"

namespace troupe::group::detail {

/// Starts a joining member: (connect_atom, contacts) -> group_view once it is in.
using connect_atom = caf::atom_constant<caf::atom("gconnect")>;

struct ping_settings {
  std::chrono::milliseconds interval_min{1000};
  std::chrono::milliseconds interval_max{1000};
  std::chrono::milliseconds timeout{1000};
  unsigned max_timeouts = 3;
};

struct member_settings {
  std::string group_name;
  bool centralized = false;
  std::string file; ///< written by the leader (or rank 0 of a static group)
  ping_settings ping;
  member self;        ///< this member's address, provider id and incarnation (id unset)
  caf::actor locator; ///< finds other members without blocking
  std::chrono::milliseconds join_timeout{5000};
};

/// Spawns a member that starts with `view`, in which it must be (its member id is
/// taken from there). An empty view spawns a joining member that waits for
/// (connect_atom, contact addresses).
caf::actor spawn_member(caf::actor_system& system, member_settings settings,
                        group_view view);

} // namespace troupe::group::detail
