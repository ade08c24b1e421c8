// actorsh's `module` command: load, list and remove modules in running nodes (the node
// service's module requests, runtime/node_service.hpp), on the connected node or on
// every member of its group (--all), like `flux module load|list|remove`.
#include "tools/actorsh/shell.hpp"

#include <iostream>

#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "runtime/node.hpp"
#include "runtime/node_service.hpp"

namespace troupe::shell {

namespace {

const char* module_usage =
  "usage: module list [--all] | module load PATH [--all] | module remove NAME [--force] "
  "[--all]\n";

std::string joined(const nlohmann::json& names) {
  std::string out;
  for (const auto& n : names)
    out += (out.empty() ? "" : ", ") + n.get<std::string>();
  return out.empty() ? "-" : out;
}

} // namespace

bool session::module(const std::vector<std::string>& args, std::ostream& out,
                     std::ostream& err) {
  bool all = false;
  bool force = false;
  std::vector<std::string> words;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--all")
      all = true;
    else if (args[i] == "--force")
      force = true;
    else
      words.push_back(args[i]);
  }
  bool usage_ok = !words.empty()
                  && ((words[0] == "list" && words.size() == 1 && !force)
                      || (words[0] == "load" && words.size() == 2 && !force)
                      || (words[0] == "remove" && words.size() == 2));
  if (!usage_ok) {
    err << module_usage;
    return false;
  }
  // The nodes to ask: the connected one, or every member of its group.
  std::vector<std::pair<std::string, caf::actor>> nodes;
  if (!all) {
    auto service = resolve("", err);
    if (!service)
      return false;
    nodes.emplace_back(address_, *service);
  } else {
    auto view = fetch_view(err, std::nullopt);
    if (!view)
      return false;
    for (const auto& m : view->members) {
      auto service = client_.remote_node(m.address, opts_.timeout);
      if (!service) {
        err << "module: cannot reach " << m.address << ": " << describe(service.error())
            << "\n";
        return false;
      }
      nodes.emplace_back(m.address, *service);
    }
  }
  caf::scoped_actor self{client_.system()};
  bool every_ok = true;
  for (const auto& [address, service] : nodes) {
    auto prefix = all ? address + ": " : std::string{};
    auto show = [&, address = address](const std::string& text) {
      auto doc = nlohmann::json::parse(text, nullptr, false);
      if (opts_.json) {
        out << nlohmann::json{{"node", address}, {words[0], doc}}.dump() << "\n";
        return;
      }
      if (words[0] == "remove") {
        out << prefix << "removed " << doc.value("removed", "");
        if (!doc["stopped"].empty())
          out << " (stopped " << joined(doc["stopped"]) << ")";
        out << "\n";
        return;
      }
      auto modules = doc.is_array() ? doc : nlohmann::json::array({doc});
      if (modules.empty())
        out << prefix << "no modules\n";
      for (const auto& m : modules)
        out << prefix << m.value("path", "") << "  "
            << (m.value("at_start", false) ? "at start" : "loaded") << "; providers "
            << joined(m["provider_types"]) << "; jobs " << joined(m["job_types"])
            << "; ops " << joined(m["op_types"]) << "\n";
    };
    auto fail = [&, address = address](const caf::error& e) {
      every_ok = false;
      err << "module " << words[0] << (all ? " at " + address : std::string{}) << ": "
          << describe(e) << "\n";
    };
    if (words[0] == "list")
      self->request(service, opts_.timeout, module_atom::value, words[0])
        .receive([&](const std::string& text) { show(text); }, fail);
    else if (words[0] == "load")
      self->request(service, opts_.timeout, module_atom::value, words[0], words[1])
        .receive([&](const std::string& text) { show(text); }, fail);
    else
      self->request(service, opts_.timeout, module_atom::value, words[0], words[1], force)
        .receive([&](const std::string& text) { show(text); }, fail);
  }
  return every_ok;
}

} // namespace troupe::shell
