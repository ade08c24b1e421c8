#include "actors/group/group.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/group/view.hpp"
#include "base/error.hpp"
#include "base/log.hpp"
#include "runtime/config.hpp"
#include "runtime/provider_registry.hpp"

namespace troupe::group {

namespace {

using nlohmann::json;

struct group_settings {
  std::string bootstrap;
  std::string backend = "static";
  std::string file;
};

/// Reads the provider's config; errors name the key under the provider's origin.
caf::expected<group_settings> read_settings(const provider_context& ctx) {
  const auto& cfg = *ctx.spec.config;
  auto where = ctx.spec.origin + ".config";
  auto bad = [&](const std::string& key, const std::string& what) {
    return make_error(errc::invalid_config,
                      where + (key.empty() ? "" : "." + key) + ": " + what);
  };
  group_settings s;
  for (auto it = cfg.begin(); it != cfg.end(); ++it)
    if (it.key() != "bootstrap" && it.key() != "group" && it.key() != "file")
      return bad(it.key(), "unknown key (known keys: bootstrap group file)");
  auto b = cfg.find("bootstrap");
  if (b == cfg.end() || !b->is_string())
    return bad("bootstrap", "expected \"self\" or \"file\"");
  s.bootstrap = b->get<std::string>();
  if (s.bootstrap == "view" || s.bootstrap == "mpi" || s.bootstrap == "join")
    return bad("bootstrap", "\"" + s.bootstrap
                              + "\" is not supported by this build yet "
                                "(supported: self, file)");
  if (s.bootstrap != "self" && s.bootstrap != "file")
    return bad("bootstrap",
               "expected \"self\" or \"file\", found \"" + s.bootstrap + "\"");
  if (auto g = cfg.find("group"); g != cfg.end()) {
    if (!g->is_object())
      return bad("group", "expected {\"type\": \"static\", \"config\": {}}");
    for (auto it = g->begin(); it != g->end(); ++it)
      if (it.key() != "type" && it.key() != "config")
        return bad("group." + it.key(), "unknown key (known keys: type config)");
    auto t = g->find("type");
    if (t == g->end() || !t->is_string())
      return bad("group.type", "expected \"static\"");
    s.backend = t->get<std::string>();
    if (s.backend == "centralized")
      return bad("group.type", "\"centralized\" is not supported by this build yet "
                               "(supported: static)");
    if (s.backend != "static")
      return bad("group.type", "expected \"static\", found \"" + s.backend + "\"");
  }
  if (auto f = cfg.find("file"); f != cfg.end()) {
    if (!f->is_string() || f->get<std::string>().empty())
      return bad("file", "expected a file path");
    s.file = f->get<std::string>();
  }
  if (s.bootstrap == "file" && s.file.empty())
    return bad("file", "bootstrap \"file\" needs the view file's path");
  return s;
}

struct static_group_state {
  group_view view;
  std::string group_name;
  static inline const char* name = "troupe.group.static"; // CAF's actor name
};

caf::behavior static_group(caf::stateful_actor<static_group_state>* self, group_view view,
                           std::string name) {
  self->state.view = std::move(view);
  self->state.group_name = std::move(name);
  auto refuse = [self](const char* what) {
    return make_error(errc::refused, "group \"" + self->state.group_name
                                       + "\" is static: " + what
                                       + " is refused (membership is fixed)");
  };
  return {
    [self](caf::get_atom) { return self->state.view; },
    [refuse](join_atom, const member&) -> caf::result<group_view> {
      return refuse("join");
    },
    [refuse](leave_atom, uint64_t) -> caf::result<group_view> { return refuse("leave"); },
  };
}

caf::expected<caf::actor> make_group(const provider_context& ctx) {
  auto settings = read_settings(ctx);
  if (!settings)
    return settings.error();
  group_view view;
  if (settings->bootstrap == "self") {
    view.members.push_back(member{ctx.node_address, ctx.spec.provider_id, 1, 0, {}});
    if (!settings->file.empty()) {
      auto err = write_view_file(settings->file, view);
      if (!err.empty())
        return make_error(errc::invalid_config, ctx.spec.origin + ".config.file: " + err);
    }
  } else {
    try {
      view = read_view_file(settings->file);
    } catch (const config_error& e) {
      return make_error(errc::invalid_config,
                        ctx.spec.origin + ".config.file: bad view file: " + e.what());
    }
    if (!view.rank_of(ctx.node_address, ctx.spec.provider_id))
      return make_error(errc::invalid_config,
                        ctx.spec.origin + ".config.file: this provider ("
                          + ctx.node_address + ", provider_id "
                          + std::to_string(ctx.spec.provider_id)
                          + ") is not a member of the view in " + settings->file);
  }
  TROUPE_LOG_INFO("group", "group \"" << ctx.spec.name << "\": " << view.members.size()
                                      << " members, static");
  return ctx.system.spawn(static_group, std::move(view), ctx.spec.name);
}

} // namespace

void register_group_provider(provider_registry& registry) {
  registry.add_type("group", make_group);
}

void register_group_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<member>("troupe::group::member");
  cfg.add_message_type<view_version>("troupe::group::view_version");
  cfg.add_message_type<group_view>("troupe::group::group_view");
  cfg.add_message_type<std::vector<member>>("std::vector<troupe::group::member>");
}

} // namespace troupe::group
