#include "runtime/config.hpp"

#include <algorithm>
#include <functional>
#include <initializer_list>
#include <set>

#include <nlohmann/json.hpp>

#include "base/files.hpp"
#include "base/text.hpp"
#include "transport/address.hpp"

namespace troupe {

using nlohmann::json;

namespace {

std::string describe_value(const json& value) {
  std::string text = value.dump();
  if (text.size() > 60)
    text = text.substr(0, 57) + "...";
  switch (value.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "boolean " + text;
    case json::value_t::string:
      return "string " + text;
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return text;
    case json::value_t::number_float:
      return "number " + text;
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    default:
      return text;
  }
}

/// Walks the document and throws `config_error` with file and key path on any problem.
class config_reader {
public:
  explicit config_reader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& path, const std::string& what) const {
    std::string msg = source_ + ": ";
    if (!path.empty())
      msg += path + ": ";
    throw config_error(msg + what);
  }

  [[noreturn]] void expected(const std::string& path, const std::string& what,
                             const json& found) const {
    fail(path, "expected " + what + ", found " + describe_value(found));
  }

  void require_object(const std::string& path, const json& value) const {
    if (!value.is_object())
      expected(path.empty() ? "(top level)" : path, "an object", value);
  }

  void reject_unknown_keys(const std::string& path, const json& object,
                           std::initializer_list<std::string_view> known) const {
    for (auto it = object.begin(); it != object.end(); ++it) {
      if (std::find(known.begin(), known.end(), it.key()) != known.end())
        continue;
      std::string msg = "unknown key (known keys:";
      for (auto k : known) {
        msg += ' ';
        msg += k;
      }
      msg += ')';
      auto suggestion = nearest(it.key(), std::vector<std::string_view>(known));
      if (!suggestion.empty())
        msg += "; did you mean \"" + std::string{suggestion} + "\"?";
      fail(join(path, it.key()), msg);
    }
  }

  std::string read_string(const std::string& path, const json& value,
                          bool allow_empty = false) const {
    if (!value.is_string())
      expected(path, "a string", value);
    auto text = value.get<std::string>();
    if (text.empty() && !allow_empty)
      expected(path, "a non-empty string", value);
    return text;
  }

  int64_t read_integer(const std::string& path, const json& value, int64_t min,
                       int64_t max) const {
    auto range = "an integer from " + std::to_string(min) + " to " + std::to_string(max);
    if (!value.is_number_integer())
      expected(path, range, value);
    if (value.is_number_unsigned() && value.get<uint64_t>() > static_cast<uint64_t>(max))
      expected(path, range, value);
    auto n = value.get<int64_t>();
    if (n < min || n > max)
      expected(path, range, value);
    return n;
  }

  static std::string join(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
  }

  static std::string index(const std::string& path, size_t i) {
    return path + "[" + std::to_string(i) + "]";
  }

  const std::string& source() const { return source_; }

private:
  std::string source_;
};

void read_transport(const config_reader& r, const json& section, transport_config& out) {
  const std::string path = "transport";
  r.require_object(path, section);
  r.reject_unknown_keys(path, section,
                        {"protocol", "address", "port", "busy_poll", "keepalive_ms",
                         "max_message_bytes", "spin_us"});
  if (auto it = section.find("protocol"); it != section.end()) {
    out.protocol = r.read_string(path + ".protocol", *it);
    if (!transport::is_supported_protocol(out.protocol))
      r.expected(path + ".protocol", "\"ucx\"", *it);
  }
  if (auto it = section.find("address"); it != section.end())
    out.address = r.read_string(path + ".address", *it);
  if (auto it = section.find("port"); it != section.end())
    out.port = static_cast<uint16_t>(r.read_integer(path + ".port", *it, 0, 65535));
  if (auto it = section.find("busy_poll"); it != section.end()) {
    if (!it->is_boolean())
      r.expected(path + ".busy_poll", "true or false", *it);
    out.busy_poll = it->get<bool>();
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
  std::string error;
  transport::node_address addr{out.protocol, out.address, out.port};
  if (!transport::parse_node_address(addr.to_uri(), error))
    r.fail(path + ".address", error);
}

void read_threads(const config_reader& r, const json& value, node_config& out) {
  if (value.is_string() && value.get<std::string>() == "auto") {
    out.threads = 0;
    return;
  }
  if (!value.is_number_integer())
    r.expected("threads", "\"auto\" or an integer from 1 to 1024", value);
  out.threads = static_cast<unsigned>(r.read_integer("threads", value, 1, 1024));
}

void read_policy(const config_reader& r, const json& value, node_config& out) {
  auto text = value.is_string() ? value.get<std::string>() : std::string{};
  if (text == "sharing")
    out.policy = scheduler_policy::sharing;
  else if (text == "stealing")
    out.policy = scheduler_policy::stealing;
  else
    r.expected("scheduler", "\"sharing\" or \"stealing\"", value);
}

void read_pinning(const config_reader& r, const json& value, node_config& out) {
  if (value.is_array()) {
    if (value.empty())
      r.expected("pinning", "a non-empty list of core indexes", value);
    out.pinning = pinning_mode::list;
    for (size_t i = 0; i < value.size(); ++i)
      out.pin_cores.push_back(static_cast<unsigned>(
        r.read_integer(config_reader::index("pinning", i), value[i], 0, 65535)));
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

provider_config read_provider(const config_reader& r, const std::string& path,
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
        r.read_string(config_reader::join(deps_path, dep.key()), dep.value());
  }
  return p;
}

void check_provider_uniqueness(const config_reader& r, const node_config& cfg) {
  for (size_t i = 0; i < cfg.providers.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      const auto& a = cfg.providers[j];
      const auto& b = cfg.providers[i];
      auto path = config_reader::index("providers", i);
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
  config_reader r{source};
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
    "", doc, {"transport", "threads", "scheduler", "pinning", "libraries", "providers"});
  node_config cfg;
  cfg.source = source;
  if (auto it = doc.find("transport"); it != doc.end())
    read_transport(r, *it, cfg.transport);
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
        r.read_string(config_reader::index("libraries", i), (*it)[i]));
  }
  if (auto it = doc.find("providers"); it != doc.end()) {
    if (!it->is_array())
      r.expected("providers", "a list of provider objects", *it);
    for (size_t i = 0; i < it->size(); ++i)
      cfg.providers.push_back(
        read_provider(r, config_reader::index("providers", i), (*it)[i]));
  }
  check_provider_uniqueness(r, cfg);
  cfg.document = std::make_shared<const json>(std::move(doc));
  // Validates dependencies (unknown names, cycles) before anything starts.
  providers_in_start_order(cfg);
  return cfg;
}

node_config load_node_config(const std::string& path) {
  std::string text;
  std::string error;
  if (!read_file(path, text, error))
    throw config_error(error);
  return parse_node_config(text, path);
}

std::vector<const provider_config*> providers_in_start_order(const node_config& cfg) {
  config_reader r{cfg.source};
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
      r.fail(config_reader::index("providers", i) + ".dependencies",
             "dependency cycle: " + cycle + p.name);
    }
    marks[i] = mark::visiting;
    trail.push_back(p.name);
    for (const auto& [slot, target] : p.dependencies) {
      auto found = by_name.find(target);
      if (found == by_name.end())
        r.fail(config_reader::index("providers", i) + ".dependencies." + slot,
               "no provider named \"" + target + "\" in this config");
      if (found->second == i)
        r.fail(config_reader::index("providers", i) + ".dependencies." + slot,
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
                      {"spin_us", cfg.transport.spin_us}};
  doc["threads"] = cfg.threads == 0 ? json("auto") : json(cfg.threads);
  doc["scheduler"] = cfg.policy == scheduler_policy::sharing ? "sharing" : "stealing";
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
