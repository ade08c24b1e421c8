#pragma once
// The `group` provider: Flock-style group membership as an actor (DESIGN.md, "Groups").
//
// Config (the provider's "config" object):
//   {"bootstrap": "self" | "view" | "file" | "join" | "mpi", or a list tried in order,
//    "group": {"type": "static" | "centralized", "config": {...}},
//    "file": "group.json",              the view file (read by "file" and "join",
//                                       written by the leader / rank 0)
//    "view": {...},                     bootstrap "view": the view itself
//    "join_address": "ucx://h:p",       bootstrap "join": a member to contact (else
//                                       the members of `file`, in rank order)
//    "join_timeout_ms": 5000}
//   Centralized config: {"primary": "ucx://h:p" (default: the view's leader, else
//   rank 0), "ping_interval_ms": 1000 or [min, max], "ping_timeout_ms": 1000,
//   "ping_max_num_timeouts": 3}.
//
// Protocol (every member answers; changes go to the leader, members forward them):
//   (get_atom)                              -> group_view
//   (refresh_atom, view_version known)      -> view_refresh (changed or not)
//   (join_atom, member, caf::actor)         -> group_view with the joiner in it
//   (leave_atom, member_id)                 -> group_view without it
//   (put_atom, key, value) / (delete_atom, key) -> view_version (group metadata)
//   (subscribe_atom, caf::actor)            -> group_view; the actor then receives
//       (member_joined_atom, member, view_version)
//       (member_left_atom, member, view_version)
//       (member_died_atom, member, view_version)
//       (metadata_changed_atom, key, value, bool removed, view_version)
//   (unsubscribe_atom, caf::actor)          -> caf::unit
// Static groups refuse join, leave and metadata changes with troupe.refused.
// Leader -> members: (update_atom, group_view, view_change) after every change and
// (ping_atom, view_version) -> view_version, which also lets a member that missed an
// update catch up.
// Owner: the node's provider registry.

#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>

#include "actors/group/view.hpp"

namespace troupe {
class provider_registry;
} // namespace troupe

namespace troupe::group {

using join_atom = caf::atom_constant<caf::atom("join")>;
using leave_atom = caf::atom_constant<caf::atom("leave")>;
using refresh_atom = caf::atom_constant<caf::atom("refresh")>;
using member_joined_atom = caf::atom_constant<caf::atom("mjoined")>;
using member_left_atom = caf::atom_constant<caf::atom("mleft")>;
using member_died_atom = caf::atom_constant<caf::atom("mdied")>;
using metadata_changed_atom = caf::atom_constant<caf::atom("mdchanged")>;

/// What made a view version.
enum class change_kind : uint8_t { joined, left, died, metadata, sync };

/// One change to a view, as the leader pushes it with the view it produced. `sync`
/// carries no change: a member that fell behind gets the current view.
struct view_change {
  uint8_t kind = static_cast<uint8_t>(change_kind::sync);
  member subject;       ///< joined, left, died
  std::string key;      ///< metadata
  std::string value;    ///< metadata (when set)
  bool removed = false; ///< metadata: the key was removed

  change_kind what() const { return static_cast<change_kind>(kind); }

  /// A member joined, left or died.
  static view_change of_member(change_kind why, member subject) {
    return {static_cast<uint8_t>(why), std::move(subject), {}, {}, false};
  }

  /// Group metadata `key` was set to `value`, or removed.
  static view_change of_metadata(std::string key, std::string value, bool removed) {
    return {static_cast<uint8_t>(change_kind::metadata),
            {},
            std::move(key),
            std::move(value),
            removed};
  }

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, view_change& x) {
    return f(caf::meta::type_name("troupe::group::view_change"), x.kind, x.subject, x.key,
             x.value, x.removed);
  }
};

/// The answer to a refresh: `view` is only filled when `changed`.
struct view_refresh {
  bool changed = false;
  group_view view;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, view_refresh& x) {
    return f(caf::meta::type_name("troupe::group::view_refresh"), x.changed, x.view);
  }
};

/// Registers provider type "group".
void register_group_provider(provider_registry& registry);

/// Registers the group message types (views, members, changes). Every node that sends
/// or receives them calls this before its actor system starts.
void register_group_types(caf::actor_system_config& cfg);

} // namespace troupe::group
