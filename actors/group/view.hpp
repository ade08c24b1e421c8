#pragma once
// A group view (DESIGN.md, "Groups"): the members, the group metadata and a version
// that only grows. Each member's rank is its position in `members`.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <caf/meta/type_name.hpp>

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

struct view_version {
  uint64_t epoch = 0;
  uint64_t seq = 0;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, view_version& x) {
    return f(caf::meta::type_name("troupe::group::view_version"), x.epoch, x.seq);
  }
};

struct group_view {
  std::vector<member> members;
  std::map<std::string, std::string> metadata;
  view_version version;

  /// Rank of (address, provider id), if it is a member.
  std::optional<size_t> rank_of(const std::string& address, uint16_t provider_id) const;

  /// A content digest (hex FNV-1a 64 over members, metadata and version).
  std::string digest() const;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, group_view& x) {
    return f(caf::meta::type_name("troupe::group::group_view"), x.members, x.metadata,
             x.version);
  }
};

/// The view as JSON (the view file format), digest included.
std::string to_json(const group_view& view, int indent = 2);

/// Parses a view file's text; `source` names it in errors. Throws troupe::config_error
/// naming the key path ("view.json: members[2].provider_id: expected ...").
group_view view_from_json(const std::string& text, const std::string& source);

/// Reads a view file. Throws troupe::config_error.
group_view read_view_file(const std::string& path);

/// Writes a view file atomically; returns an empty string or what failed.
std::string write_view_file(const std::string& path, const group_view& view);

} // namespace troupe::group
