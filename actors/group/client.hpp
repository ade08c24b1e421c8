#pragma once
// A client's handle on a group: the Flock client API, as a small C++ object over the
// group's actors.
//
//   auto g = group::group_client::open(my_node, "ucx://10.0.0.1:7100", 42);
//   g->view();          // the cached view: no message
//   g->refresh();       // one round trip: "no change" or the new view
//   g->auto_refresh(true); // pushed changes keep the cache current
//
// Every call that talks to the group fails over: when the member it talks to cannot
// be reached, it tries the other members of its cached view in rank order. Metadata
// changes fail over only when the member is surely gone, not when it was slow to
// answer: the change may have been applied, and must not be applied twice. Blocking
// calls; do not call them from inside an actor's handler. Thread-safe; copies share
// one cache, and their calls take turns (one caller actor per handle). Destroy every
// copy before the node stops.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/expected.hpp>

#include "actors/group/view.hpp"

namespace troupe {
class node;
} // namespace troupe

namespace troupe::group {

class group_client {
public:
  /// Opens the group through its member at `address` (group provider `provider_id`).
  static caf::expected<group_client>
  open(node& client_node, const std::string& address, uint16_t provider_id,
       std::chrono::milliseconds timeout = std::chrono::seconds{5});

  /// Opens the group from its view file, through the first member that answers.
  static caf::expected<group_client>
  open_file(node& client_node, const std::string& path,
            std::chrono::milliseconds timeout = std::chrono::seconds{5});

  /// The cached view. Sends nothing.
  group_view view() const;

  /// Asks a member for news: true when the view changed (the cache now holds it).
  caf::expected<bool> refresh();

  /// Keeps the cache current from pushed changes (on) or stops doing so (off).
  caf::error auto_refresh(bool on);

  /// Sets or removes group metadata (through the leader); the new version.
  caf::expected<view_version> set_metadata(const std::string& key,
                                           const std::string& value);
  caf::expected<view_version> remove_metadata(const std::string& key);

  /// Makes `subscriber` receive the group's membership events (group.hpp).
  caf::expected<group_view> subscribe(const caf::actor& subscriber);

  /// The member this handle talks to now.
  std::string member_address() const;

  struct shared;

private:
  explicit group_client(std::shared_ptr<shared> state);
  std::shared_ptr<shared> state_;
};

} // namespace troupe::group
