#pragma once
// A group view (DESIGN.md, "Groups"): the members, the group metadata and a version
// that only grows. Each member's rank is its position in `members`.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/meta/type_name.hpp>
#include <nlohmann/json_fwd.hpp>

namespace troupe::group {

struct member {
  std::string address;      ///< the member's node, e.g. "ucx://127.0.0.1:7100"
  uint16_t provider_id = 0; ///< its group provider on that node
  uint64_t member_id = 0;   ///< stable while it is a member
  uint64_t incarnation = 0; ///< which run of the node
  std::map<std::string, std::string> metadata;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, member& x) {
    return f(caf::meta::type_name("troupe::group::member"), x.address, x.provider_id,
             x.member_id, x.incarnation, x.metadata);
  }
};

/// Grows with every change: `seq` counts changes, `epoch` grows when a leader starts
/// over from a saved view (so a restarted leader never reuses a version).
struct view_version {
  uint64_t epoch = 0;
  uint64_t seq = 0;

  friend bool operator<(const view_version& a, const view_version& b) {
    return a.epoch < b.epoch || (a.epoch == b.epoch && a.seq < b.seq);
  }
  friend bool operator==(const view_version& a, const view_version& b) {
    return a.epoch == b.epoch && a.seq == b.seq;
  }
  friend bool operator!=(const view_version& a, const view_version& b) {
    return !(a == b);
  }
  /// True when `next` is the version right after this one.
  bool followed_by(const view_version& next) const {
    return next.epoch == epoch && next.seq == seq + 1;
  }

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, view_version& x) {
    return f(caf::meta::type_name("troupe::group::view_version"), x.epoch, x.seq);
  }
};

struct group_view {
  std::vector<member> members;
  std::map<std::string, std::string> metadata;
  view_version version;
  /// Member id of the centralized backend's leader; 0 for a static group.
  uint64_t leader = 0;

  /// The member with `member_id`, or null.
  const member* find(uint64_t member_id) const;

  /// Rank of (address, provider id), if it is a member.
  std::optional<size_t> rank_of(const std::string& address, uint16_t provider_id) const;

  /// A content digest (hex FNV-1a 64 over members, metadata and version).
  std::string digest() const;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, group_view& x) {
    return f(caf::meta::type_name("troupe::group::group_view"), x.members, x.metadata,
             x.version, x.leader);
  }
};

/// "epoch.seq", e.g. "1.7".
std::string to_string(const view_version& version);

/// The view as JSON (the view file format), digest included.
std::string to_json(const group_view& view, int indent = 2);

/// Reads a view from a parsed JSON document; `source` and `path` name it in errors.
/// Throws troupe::config_error.
group_view view_from_json(const nlohmann::json& doc, const std::string& source,
                          const std::string& path);

/// Parses a view file's text; `source` names it in errors. Throws troupe::config_error
/// naming the key path ("view.json: members[2].provider_id: expected ...").
group_view view_from_json(const std::string& text, const std::string& source);

/// Reads a view file. Throws troupe::config_error.
group_view read_view_file(const std::string& path);

/// Writes a view file atomically (troupe.io naming the path if that fails).
caf::error write_view_file(const std::string& path, const group_view& view);

} // namespace troupe::group
