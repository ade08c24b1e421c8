#include "actors/group/view.hpp"

#include <cstdio>

#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "base/files.hpp"
#include "runtime/config.hpp"
#include "runtime/json_reader.hpp"

namespace troupe::group {

using nlohmann::json;

const member* group_view::find(uint64_t member_id) const {
  for (const auto& m : members)
    if (m.member_id == member_id)
      return &m;
  return nullptr;
}

std::string to_string(const view_version& version) {
  return std::to_string(version.epoch) + "." + std::to_string(version.seq);
}

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
  mix(std::to_string(leader));
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
  if (view.leader != 0)
    doc["leader"] = view.leader;
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

uint64_t read_uint(const json_reader& r, const std::string& path, const json& v) {
  if (!v.is_number_unsigned())
    r.expected(path, "an integer from 0 to " + std::to_string(UINT64_MAX), v);
  return v.get<uint64_t>();
}

std::map<std::string, std::string>
read_strings(const json_reader& r, const std::string& path, const json& obj) {
  if (!obj.is_object())
    r.expected(path, "an object of strings", obj);
  std::map<std::string, std::string> out;
  for (auto it = obj.begin(); it != obj.end(); ++it)
    out[it.key()] = r.read_string(json_reader::join(path, it.key()), *it, true);
  return out;
}

} // namespace

group_view view_from_json(const json& doc, const std::string& source,
                          const std::string& path) {
  json_reader r{source};
  auto at = [&](const std::string& key) { return json_reader::join(path, key); };
  if (!doc.is_object())
    r.expected(path.empty() ? "(top level)" : path, "a view object with \"members\"",
               doc);
  r.reject_unknown_keys(path, doc,
                        {"version", "metadata", "members", "leader", "digest"});
  group_view view;
  if (auto v = doc.find("version"); v != doc.end()) {
    if (!v->is_object())
      r.expected(at("version"), "{\"epoch\": N, \"seq\": N}", *v);
    r.reject_unknown_keys(at("version"), *v, {"epoch", "seq"});
    // Defaults must be unsigned JSON numbers: read_uint accepts only those.
    view.version.epoch = read_uint(r, at("version.epoch"), v->value("epoch", json(0u)));
    view.version.seq = read_uint(r, at("version.seq"), v->value("seq", json(0u)));
  }
  if (auto m = doc.find("metadata"); m != doc.end())
    view.metadata = read_strings(r, at("metadata"), *m);
  auto members = doc.find("members");
  if (members == doc.end() || !members->is_array() || members->empty())
    r.fail(at("members"), "expected a non-empty list of members");
  for (size_t i = 0; i < members->size(); ++i) {
    const auto& entry = (*members)[i];
    auto where = json_reader::index(at("members"), i);
    r.require_object(where, entry);
    r.reject_unknown_keys(
      where, entry, {"address", "provider_id", "member_id", "incarnation", "metadata"});
    member m;
    if (!entry.contains("address"))
      r.fail(where, "missing required key \"address\"");
    m.address = r.read_string(where + ".address", entry["address"]);
    if (!entry.contains("provider_id"))
      r.fail(where, "missing required key \"provider_id\"");
    m.provider_id = static_cast<uint16_t>(
      r.read_integer(where + ".provider_id", entry["provider_id"], 0, max_provider_id));
    m.member_id = entry.contains("member_id")
                    ? read_uint(r, where + ".member_id", entry["member_id"])
                    : i + 1;
    if (m.member_id == 0)
      r.fail(where + ".member_id", "member ids start at 1");
    if (entry.contains("incarnation"))
      m.incarnation = read_uint(r, where + ".incarnation", entry["incarnation"]);
    if (entry.contains("metadata"))
      m.metadata = read_strings(r, where + ".metadata", entry["metadata"]);
    if (view.rank_of(m.address, m.provider_id))
      r.fail(where, "duplicate member " + m.address + " provider "
                      + std::to_string(m.provider_id));
    if (view.find(m.member_id))
      r.fail(where + ".member_id", "duplicate member id " + std::to_string(m.member_id));
    view.members.push_back(std::move(m));
  }
  if (auto l = doc.find("leader"); l != doc.end()) {
    view.leader = read_uint(r, at("leader"), *l);
    if (view.leader != 0 && !view.find(view.leader))
      r.fail(at("leader"), "no member has member_id " + std::to_string(view.leader));
  }
  return view;
}

group_view view_from_json(const std::string& text, const std::string& source) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::parse_error& e) {
    throw config_error(source + ": not valid JSON: " + e.what());
  }
  return view_from_json(doc, source, "");
}

group_view read_view_file(const std::string& path) {
  auto text = read_file(path);
  if (!text)
    throw config_error(context_text(text.error()));
  return view_from_json(*text, path);
}

caf::error write_view_file(const std::string& path, const group_view& view) {
  return write_file_atomically(path, to_json(view) + "\n");
}

} // namespace troupe::group
