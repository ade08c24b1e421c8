#include "actors/group/view.hpp"

#include <cstdio>

#include <nlohmann/json.hpp>

#include "base/files.hpp"
#include "runtime/config.hpp"

namespace troupe::group {

using nlohmann::json;

std::optional<size_t> group_view::rank_of(const std::string& address,
                                          uint16_t provider_id) const {
  for (size_t i = 0; i < members.size(); ++i)
    if (members[i].address == address && members[i].provider_id == provider_id)
      return i;
  return std::nullopt;
}

std::string group_view::digest() const {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const std::string& s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ull;
    }
    h ^= 0xff; // field separator
    h *= 1099511628211ull;
  };
  mix(std::to_string(version.epoch));
  mix(std::to_string(version.seq));
  for (const auto& m : members) {
    mix(m.address);
    mix(std::to_string(m.provider_id));
    mix(std::to_string(m.member_id));
    mix(std::to_string(m.incarnation));
    for (const auto& [k, v] : m.metadata) {
      mix(k);
      mix(v);
    }
  }
  for (const auto& [k, v] : metadata) {
    mix(k);
    mix(v);
  }
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(h));
  return text;
}

std::string to_json(const group_view& view, int indent) {
  json doc;
  doc["version"] = {{"epoch", view.version.epoch}, {"seq", view.version.seq}};
  doc["metadata"] = view.metadata;
  doc["members"] = json::array();
  for (const auto& m : view.members)
    doc["members"].push_back({{"address", m.address},
                              {"provider_id", m.provider_id},
                              {"member_id", m.member_id},
                              {"incarnation", m.incarnation},
                              {"metadata", m.metadata}});
  doc["digest"] = view.digest();
  return doc.dump(indent);
}

namespace {

[[noreturn]] void fail(const std::string& source, const std::string& path,
                       const std::string& what) {
  throw config_error(source + ": " + (path.empty() ? "" : path + ": ") + what);
}

std::map<std::string, std::string>
read_strings(const std::string& source, const std::string& path, const json& obj) {
  if (!obj.is_object())
    fail(source, path, "expected an object of strings");
  std::map<std::string, std::string> out;
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (!it->is_string())
      fail(source, path + "." + it.key(), "expected a string, found " + it->dump());
    out[it.key()] = it->get<std::string>();
  }
  return out;
}

uint64_t read_uint(const std::string& source, const std::string& path, const json& v,
                   uint64_t max) {
  if (!v.is_number_unsigned() || v.get<uint64_t>() > max)
    fail(source, path,
         "expected an integer from 0 to " + std::to_string(max) + ", found " + v.dump());
  return v.get<uint64_t>();
}

} // namespace

group_view view_from_json(const std::string& text, const std::string& source) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::parse_error& e) {
    fail(source, "", std::string{"not valid JSON: "} + e.what());
  }
  if (!doc.is_object())
    fail(source, "", "expected a view object with \"members\"");
  group_view view;
  for (auto it = doc.begin(); it != doc.end(); ++it)
    if (it.key() != "version" && it.key() != "metadata" && it.key() != "members"
        && it.key() != "digest")
      fail(source, it.key(), "unknown key (known keys: version metadata members digest)");
  if (auto v = doc.find("version"); v != doc.end()) {
    if (!v->is_object())
      fail(source, "version", "expected {\"epoch\": N, \"seq\": N}");
    view.version.epoch =
      read_uint(source, "version.epoch", v->value("epoch", json(0)), UINT64_MAX);
    view.version.seq =
      read_uint(source, "version.seq", v->value("seq", json(0)), UINT64_MAX);
  }
  if (auto m = doc.find("metadata"); m != doc.end())
    view.metadata = read_strings(source, "metadata", *m);
  auto members = doc.find("members");
  if (members == doc.end() || !members->is_array() || members->empty())
    fail(source, "members", "expected a non-empty list of members");
  for (size_t i = 0; i < members->size(); ++i) {
    const auto& entry = (*members)[i];
    auto path = "members[" + std::to_string(i) + "]";
    if (!entry.is_object())
      fail(source, path, "expected a member object");
    member m;
    if (!entry.contains("address") || !entry["address"].is_string())
      fail(source, path + ".address", "expected a node address string");
    m.address = entry["address"].get<std::string>();
    if (!entry.contains("provider_id"))
      fail(source, path, "missing required key \"provider_id\"");
    m.provider_id = static_cast<uint16_t>(
      read_uint(source, path + ".provider_id", entry["provider_id"], max_provider_id));
    m.member_id = entry.contains("member_id") ? read_uint(source, path + ".member_id",
                                                          entry["member_id"], UINT64_MAX)
                                              : i + 1;
    if (entry.contains("incarnation"))
      m.incarnation =
        read_uint(source, path + ".incarnation", entry["incarnation"], UINT64_MAX);
    if (entry.contains("metadata"))
      m.metadata = read_strings(source, path + ".metadata", entry["metadata"]);
    if (view.rank_of(m.address, m.provider_id))
      fail(source, path,
           "duplicate member " + m.address + " provider "
             + std::to_string(m.provider_id));
    view.members.push_back(std::move(m));
  }
  return view;
}

group_view read_view_file(const std::string& path) {
  std::string text;
  std::string error;
  if (!read_file(path, text, error))
    throw config_error(error);
  return view_from_json(text, path);
}

std::string write_view_file(const std::string& path, const group_view& view) {
  return write_file_atomically(path, to_json(view) + "\n");
}

} // namespace troupe::group
