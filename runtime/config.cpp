#include "runtime/config.hpp"

#include <algorithm>
#include <functional>
#include <initializer_list>
#include <set>

#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "base/files.hpp"
#include "runtime/json_reader.hpp"
#include "transport/address.hpp"

namespace troupe {

using nlohmann::json;

namespace {

void read_transport(const json_reader& r, const json& section, transport_config& out) {
  const std::string path = "transport";
  r.require_object(path, section);
  r.reject_unknown_keys(path, section,
                        {"protocol", "address", "port", "busy_poll", "keepalive_ms",
                         "max_message_bytes", "spin_us", "batch_sends"});
  if (auto it = section.find("protocol"); it != section.end()) {
    out.protocol = r.read_string(path + ".protocol", *it);
    if (!transport::is_supported_protocol(out.protocol))
      r.expected(path + ".protocol", "\"ucx\"", *it);
  }
  if (auto it = section.find("address"); it != section.end()) {
    out.address = r.read_string(path + ".address", *it);
    // "towards:HOST": the local address the route to HOST leaves by, so that HOST can
    // reach this node back (a child instance started on another host by mpirun).
    constexpr std::string_view towards = "towards:";
    if (out.address.compare(0, towards.size(), towards) == 0) {
      auto local = transport::local_address_towards(out.address.substr(towards.size()));
      if (!local)
        r.fail(path + ".address", context_text(local.error()));
      out.address = *local;
    }
  }
  if (auto it = section.find("port"); it != section.end())
    out.port = static_cast<uint16_t>(r.read_integer(path + ".port", *it, 0, 65535));
  if (auto it = section.find("busy_poll"); it != section.end()) {
    if (!it->is_boolean())
      r.expected(path + ".busy_poll", "true or false", *it);
    out.busy_poll = it->get<bool>();
  }
  if (auto it = section.find("batch_sends"); it != section.end()) {
    if (!it->is_boolean())
      r.expected(path + ".batch_sends", "true or false", *it);
    out.batch_sends = it->get<bool>();
  }
  if (auto it = section.find("keepalive_ms"); it != section.end())
    out.keepalive_ms =
      static_cast<unsigned>(r.read_integer(path + ".keepalive_ms", *it, 10, 600000));
  if (auto it = section.find("spin_us"); it != section.end())
    out.spin_us =
      static_cast<unsigned>(r.read_integer(path + ".spin_us", *it, 0, 1000000));
  if (auto it = section.find("max_message_bytes"); it != section.end())
    out.max_message_bytes = static_cast<uint64_t>(
      r.read_integer(path + ".max_message_bytes", *it, 4096, int64_t{1} << 40));
  transport::node_address addr{out.protocol, out.address, out.port};
  if (auto parsed = transport::parse_node_address(addr.to_uri()); !parsed)
    r.fail(path + ".address", context_text(parsed.error()));
}

void read_threads(const json_reader& r, const json& value, node_config& out) {
  if (value.is_string() && value.get<std::string>() == "auto") {
    out.threads = 0;
    return;
  }
  if (!value.is_number_integer())
    r.expected("threads", "\"auto\" or an integer from 1 to 1024", value);
  out.threads = static_cast<unsigned>(r.read_integer("threads", value, 1, 1024));
}

void read_policy(const json_reader& r, const json& value, node_config& out) {
  auto text = value.is_string() ? value.get<std::string>() : std::string{};
  if (text == "progress")
    out.policy = scheduler_policy::progress;
  else if (text == "sharing")
    out.policy = scheduler_policy::sharing;
  else if (text == "stealing")
    out.policy = scheduler_policy::stealing;
  else
    r.expected("scheduler", "\"progress\", \"sharing\" or \"stealing\"", value);
}

void read_pinning(const json_reader& r, const json& value, node_config& out) {
  if (value.is_array()) {
    if (value.empty())
      r.expected("pinning", "a non-empty list of core indexes", value);
    out.pinning = pinning_mode::list;
    for (size_t i = 0; i < value.size(); ++i)
      out.pin_cores.push_back(static_cast<unsigned>(
        r.read_integer(json_reader::index("pinning", i), value[i], 0, 65535)));
    return;
  }
  auto text = value.is_string() ? value.get<std::string>() : std::string{};
  if (text == "none")
    out.pinning = pinning_mode::none;
  else if (text == "cores")
    out.pinning = pinning_mode::cores;
  else
    r.expected("pinning", "\"none\", \"cores\" or a list of core indexes", value);
}

provider_config read_provider(const json_reader& r, const std::string& path,
                              const json& entry) {
  r.require_object(path, entry);
  r.reject_unknown_keys(path, entry,
                        {"type", "name", "provider_id", "config", "dependencies"});
  for (auto key : {"type", "name", "provider_id"})
    if (!entry.contains(key))
      r.fail(path, std::string{"missing required key \""} + key + "\"");
  provider_config p;
  p.origin = r.source() + ": " + path;
  p.type = r.read_string(path + ".type", entry["type"]);
  p.name = r.read_string(path + ".name", entry["name"]);
  p.provider_id = static_cast<uint16_t>(
    r.read_integer(path + ".provider_id", entry["provider_id"], 0, max_provider_id));
  if (auto it = entry.find("config"); it != entry.end()) {
    r.require_object(path + ".config", *it);
    p.config = std::make_shared<const json>(*it);
  } else {
    p.config = std::make_shared<const json>(json::object());
  }
  if (auto it = entry.find("dependencies"); it != entry.end()) {
    auto deps_path = path + ".dependencies";
    r.require_object(deps_path, *it);
    for (auto dep = it->begin(); dep != it->end(); ++dep)
      p.dependencies[dep.key()] =
        r.read_string(json_reader::join(deps_path, dep.key()), dep.value());
  }
  return p;
}

void check_provider_uniqueness(const json_reader& r, const node_config& cfg) {
  for (size_t i = 0; i < cfg.providers.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      const auto& a = cfg.providers[j];
      const auto& b = cfg.providers[i];
      auto path = json_reader::index("providers", i);
      if (a.type == b.type && a.provider_id == b.provider_id)
        r.fail(path + ".provider_id",
               "duplicate provider: type \"" + b.type + "\" with provider_id "
                 + std::to_string(b.provider_id) + " is already defined at providers["
                 + std::to_string(j) + "]");
      if (a.name == b.name)
        r.fail(path + ".name", "duplicate provider name \"" + b.name
                                 + "\", already used by providers[" + std::to_string(j)
                                 + "]");
    }
  }
}

} // namespace

node_config parse_node_config(std::string_view text, const std::string& source) {
  json_reader r{source};
  json doc;
  try {
    doc = json::parse(text.begin(), text.end(), nullptr, true, /*ignore_comments=*/true);
  } catch (const json::parse_error& e) {
    // nlohmann's message already says line and column.
    std::string what = e.what();
    if (auto pos = what.find("parse error"); pos != std::string::npos)
      what = what.substr(pos);
    r.fail("", "not valid JSON: " + what);
  }
  r.require_object("", doc);
  r.reject_unknown_keys(
    "", doc,
    {"transport", "ops", "threads", "scheduler", "pinning", "libraries", "providers",
     "metrics"});
  node_config cfg;
  cfg.source = source;
  if (auto it = doc.find("transport"); it != doc.end())
    read_transport(r, *it, cfg.transport);
  if (auto it = doc.find("ops"); it != doc.end()) {
    r.require_object("ops", *it);
    r.reject_unknown_keys("ops", *it, {"deadline_ms", "store_max_bytes"});
    if (auto d = it->find("deadline_ms"); d != it->end())
      cfg.ops.deadline_ms =
        static_cast<unsigned>(r.read_integer("ops.deadline_ms", *d, 1, 86400 * 1000));
    if (auto b = it->find("store_max_bytes"); b != it->end())
      cfg.ops.store_max_bytes = static_cast<uint64_t>(
        r.read_integer("ops.store_max_bytes", *b, 0, int64_t{1} << 50));
  }
  if (auto it = doc.find("metrics"); it != doc.end()) {
    r.require_object("metrics", *it);
    r.reject_unknown_keys("metrics", *it, {"port", "address"});
    cfg.metrics.enabled = true;
    if (auto p = it->find("port"); p != it->end())
      cfg.metrics.port = static_cast<uint16_t>(r.read_integer("metrics.port", *p, 0, 65535));
    if (auto a = it->find("address"); a != it->end())
      cfg.metrics.address = r.read_string("metrics.address", *a);
  }
  if (auto it = doc.find("threads"); it != doc.end())
    read_threads(r, *it, cfg);
  if (auto it = doc.find("scheduler"); it != doc.end())
    read_policy(r, *it, cfg);
  if (auto it = doc.find("pinning"); it != doc.end())
    read_pinning(r, *it, cfg);
  if (auto it = doc.find("libraries"); it != doc.end()) {
    if (!it->is_array())
      r.expected("libraries", "a list of shared library paths", *it);
    for (size_t i = 0; i < it->size(); ++i)
      cfg.libraries.push_back(
        r.read_string(json_reader::index("libraries", i), (*it)[i]));
  }
  if (auto it = doc.find("providers"); it != doc.end()) {
    if (!it->is_array())
      r.expected("providers", "a list of provider objects", *it);
    for (size_t i = 0; i < it->size(); ++i)
      cfg.providers.push_back(
        read_provider(r, json_reader::index("providers", i), (*it)[i]));
  }
  check_provider_uniqueness(r, cfg);
  cfg.document = std::make_shared<const json>(std::move(doc));
  // Validates dependencies (unknown names, cycles) before anything starts.
  providers_in_start_order(cfg);
  return cfg;
}

node_config load_node_config(const std::string& path) {
  auto text = read_file(path);
  if (!text)
    throw config_error(context_text(text.error()));
  return parse_node_config(*text, path);
}

std::vector<const provider_config*> providers_in_start_order(const node_config& cfg) {
  json_reader r{cfg.source};
  std::map<std::string, size_t> by_name;
  for (size_t i = 0; i < cfg.providers.size(); ++i)
    by_name.emplace(cfg.providers[i].name, i);
  enum class mark { unvisited, visiting, done };
  std::vector<mark> marks(cfg.providers.size(), mark::unvisited);
  std::vector<const provider_config*> order;
  std::vector<std::string> trail;
  std::function<void(size_t)> visit = [&](size_t i) {
    const auto& p = cfg.providers[i];
    if (marks[i] == mark::done)
      return;
    if (marks[i] == mark::visiting) {
      std::string cycle;
      auto start = std::find(trail.begin(), trail.end(), p.name);
      for (auto it = start; it != trail.end(); ++it)
        cycle += *it + " -> ";
      r.fail(json_reader::index("providers", i) + ".dependencies",
             "dependency cycle: " + cycle + p.name);
    }
    marks[i] = mark::visiting;
    trail.push_back(p.name);
    for (const auto& [slot, target] : p.dependencies) {
      auto found = by_name.find(target);
      if (found == by_name.end())
        r.fail(json_reader::index("providers", i) + ".dependencies." + slot,
               "no provider named \"" + target + "\" in this config");
      if (found->second == i)
        r.fail(json_reader::index("providers", i) + ".dependencies." + slot,
               "provider \"" + p.name + "\" depends on itself");
      visit(found->second);
    }
    trail.pop_back();
    marks[i] = mark::done;
    order.push_back(&p);
  };
  for (size_t i = 0; i < cfg.providers.size(); ++i)
    visit(i);
  return order;
}

std::string to_json_text(const node_config& cfg, int indent) {
  json doc;
  doc["transport"] = {{"protocol", cfg.transport.protocol},
                      {"address", cfg.transport.address},
                      {"port", cfg.transport.port},
                      {"busy_poll", cfg.transport.busy_poll},
                      {"keepalive_ms", cfg.transport.keepalive_ms},
                      {"max_message_bytes", cfg.transport.max_message_bytes},
                      {"spin_us", cfg.transport.spin_us},
                      {"batch_sends", cfg.transport.batch_sends}};
  doc["ops"] = {{"deadline_ms", cfg.ops.deadline_ms},
                {"store_max_bytes", cfg.ops.store_max_bytes}};
  if (cfg.metrics.enabled)
    doc["metrics"] = {{"address", cfg.metrics.address}, {"port", cfg.metrics.port}};
  doc["threads"] = cfg.threads == 0 ? json("auto") : json(cfg.threads);
  doc["scheduler"] = cfg.policy == scheduler_policy::progress  ? "progress"
                     : cfg.policy == scheduler_policy::sharing ? "sharing"
                                                               : "stealing";
  if (cfg.pinning == pinning_mode::list)
    doc["pinning"] = cfg.pin_cores;
  else
    doc["pinning"] = cfg.pinning == pinning_mode::cores ? "cores" : "none";
  doc["libraries"] = cfg.libraries;
  doc["providers"] = json::array();
  for (const auto& p : cfg.providers)
    doc["providers"].push_back({{"type", p.type},
                                {"name", p.name},
                                {"provider_id", p.provider_id},
                                {"config", *p.config},
                                {"dependencies", p.dependencies}});
  return doc.dump(indent);
}

} // namespace troupe
