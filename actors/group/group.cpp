#include "actors/group/group.hpp"

#include <random>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/group/member_actor.hpp"
#include "actors/group/mpi_bootstrap.hpp"
#include "actors/group/view.hpp"
#include "base/error.hpp"
#include "base/files.hpp"
#include "base/log.hpp"
#include "runtime/json_reader.hpp"
#include "runtime/provider_registry.hpp"

namespace troupe::group {

namespace {

using nlohmann::json;

constexpr std::string_view bootstrap_names[] = {"self", "view", "file", "join", "mpi"};

struct group_settings {
  std::vector<std::string> bootstraps;
  bool centralized = false;
  std::string file;
  std::optional<json> view;
  std::string join_address;
  std::string primary;
  detail::ping_settings ping;
  std::chrono::milliseconds join_timeout{5000};
};

std::chrono::milliseconds read_ms(const json_reader& r, const std::string& path,
                                  const json& value, int64_t min) {
  return std::chrono::milliseconds{r.read_integer(path, value, min, 3600 * 1000)};
}

void read_centralized(const json_reader& r, const std::string& path, const json& cfg,
                      group_settings& s) {
  r.require_object(path, cfg);
  r.reject_unknown_keys(
    path, cfg,
    {"primary", "ping_interval_ms", "ping_timeout_ms", "ping_max_num_timeouts"});
  if (auto it = cfg.find("primary"); it != cfg.end())
    s.primary = r.read_string(path + ".primary", *it);
  if (auto it = cfg.find("ping_interval_ms"); it != cfg.end()) {
    auto where = path + ".ping_interval_ms";
    if (it->is_array()) {
      if (it->size() != 2)
        r.expected(where, "a number of milliseconds or [min, max]", *it);
      s.ping.interval_min = read_ms(r, where + "[0]", (*it)[0], 1);
      s.ping.interval_max = read_ms(r, where + "[1]", (*it)[1], 1);
      if (s.ping.interval_max < s.ping.interval_min)
        r.fail(where, "expected [min, max] with min <= max");
    } else {
      s.ping.interval_min = s.ping.interval_max = read_ms(r, where, *it, 1);
    }
  }
  if (auto it = cfg.find("ping_timeout_ms"); it != cfg.end())
    s.ping.timeout = read_ms(r, path + ".ping_timeout_ms", *it, 1);
  if (auto it = cfg.find("ping_max_num_timeouts"); it != cfg.end())
    s.ping.max_timeouts = static_cast<unsigned>(
      r.read_integer(path + ".ping_max_num_timeouts", *it, 1, 1000));
}

/// Reads the provider's config; errors name the key under the provider's origin.
group_settings read_settings(const provider_context& ctx) {
  const auto& cfg = *ctx.spec.config;
  json_reader r{ctx.spec.origin, "."};
  const std::string path = "config";
  r.require_object(path, cfg);
  r.reject_unknown_keys(
    path, cfg, {"bootstrap", "group", "file", "view", "join_address", "join_timeout_ms"});
  group_settings s;
  auto b = cfg.find("bootstrap");
  if (b == cfg.end())
    r.fail(path, "missing required key \"bootstrap\" (self, view, file, join or mpi)");
  auto add_bootstrap = [&](const std::string& where, const json& value) {
    auto name = r.read_string(where, value);
    if (std::find(std::begin(bootstrap_names), std::end(bootstrap_names), name)
        == std::end(bootstrap_names))
      r.expected(where, "one of self, view, file, join, mpi", value);
    s.bootstraps.push_back(name);
  };
  if (b->is_array()) {
    if (b->empty())
      r.expected(path + ".bootstrap", "a bootstrap method or a non-empty list", *b);
    for (size_t i = 0; i < b->size(); ++i)
      add_bootstrap(json_reader::index(path + ".bootstrap", i), (*b)[i]);
  } else {
    add_bootstrap(path + ".bootstrap", *b);
  }
  if (auto g = cfg.find("group"); g != cfg.end()) {
    auto where = path + ".group";
    r.require_object(where, *g);
    r.reject_unknown_keys(where, *g, {"type", "config"});
    auto t = g->find("type");
    if (t == g->end())
      r.fail(where, "missing required key \"type\" (static or centralized)");
    auto type = r.read_string(where + ".type", *t);
    if (type != "static" && type != "centralized")
      r.expected(where + ".type", "\"static\" or \"centralized\"", *t);
    s.centralized = type == "centralized";
    if (auto c = g->find("config"); c != g->end()) {
      if (s.centralized)
        read_centralized(r, where + ".config", *c, s);
      else if (!c->is_object() || !c->empty())
        r.expected(where + ".config", "{} (a static group has no settings)", *c);
    }
  }
  if (auto f = cfg.find("file"); f != cfg.end())
    s.file = r.read_string(path + ".file", *f);
  if (auto v = cfg.find("view"); v != cfg.end())
    s.view = *v;
  if (auto j = cfg.find("join_address"); j != cfg.end())
    s.join_address = r.read_string(path + ".join_address", *j);
  if (auto t = cfg.find("join_timeout_ms"); t != cfg.end())
    s.join_timeout = read_ms(r, path + ".join_timeout_ms", *t, 1);
  for (const auto& method : s.bootstraps) {
    if (method == "file" && s.file.empty())
      r.fail(path + ".file", "bootstrap \"file\" needs the view file's path");
    if (method == "view" && !s.view)
      r.fail(path + ".view", "bootstrap \"view\" needs the view (members, ...)");
    if (method == "join" && !s.centralized)
      r.fail(path + ".bootstrap", "bootstrap \"join\" needs group.type \"centralized\" "
                                  "(a static group refuses joins)");
    if (method == "join" && s.join_address.empty() && s.file.empty())
      r.fail(path + ".join_address",
             "bootstrap \"join\" needs a member's address or the group's view file");
  }
  return s;
}

uint64_t random_incarnation() {
  std::random_device rd;
  return ((uint64_t{rd()} << 32) | rd()) | 1; // never 0, which means "unknown"
}

/// Picks the leader of a view read at start: the configured primary, else the
/// leader the view names, else rank 0.
caf::error choose_leader(const provider_context& ctx, const group_settings& s,
                         group_view& view) {
  if (!s.primary.empty()) {
    const member* found = nullptr;
    for (const auto& m : view.members)
      if (m.address == s.primary
          && (found == nullptr || m.provider_id == ctx.spec.provider_id))
        found = &m;
    if (found == nullptr)
      return make_error(errc::invalid_config,
                        ctx.spec.origin + ".config.group.config.primary: " + s.primary
                          + " is not a member of the view");
    view.leader = found->member_id;
  } else if (view.leader == 0) {
    view.leader = view.members.front().member_id;
  }
  return caf::none;
}

/// The outcome of one bootstrap method: an actor, or why this method did not work
/// (`fatal` stops the list; otherwise the next method is tried).
struct attempt {
  caf::actor handle;
  std::string error;
  bool fatal = false;
};

attempt start_from_view(const provider_context& ctx, const group_settings& s,
                        detail::member_settings ms, group_view view,
                        const std::string& key, const std::string& which) {
  auto rank = view.rank_of(ctx.node_address, ctx.spec.provider_id);
  if (!rank)
    return {{},
            ctx.spec.origin + "." + key + ": this provider (" + ctx.node_address
              + ", provider_id " + std::to_string(ctx.spec.provider_id)
              + ") is not a member of the view in " + which,
            true};
  if (s.centralized) {
    if (auto err = choose_leader(ctx, s, view))
      return {{}, context_text(err), true};
    if (view.members[*rank].member_id == view.leader) {
      // A leader starting from a saved view starts a new epoch: versions only grow,
      // even across its restarts.
      ++view.version.epoch;
      view.version.seq = 0;
    }
  } else {
    view.leader = 0;
    if (*rank == 0 && !s.file.empty()) {
      if (auto err = write_view_file(s.file, view))
        return {{}, ctx.spec.origin + ".config.file: " + context_text(err), true};
    }
  }
  return {detail::spawn_member(ctx.system, std::move(ms), std::move(view)), {}, false};
}

/// Whom a joiner asks: the configured member, else the members of the view file (all
/// but this node). Empty with `error` set while the file cannot be read.
std::vector<std::string> join_contacts(const provider_context& ctx,
                                       const group_settings& s, std::string& error) {
  if (!s.join_address.empty())
    return {s.join_address};
  std::vector<std::string> contacts;
  try {
    for (const auto& m : read_view_file(s.file).members)
      if (m.address != ctx.node_address)
        contacts.push_back(m.address);
  } catch (const config_error& e) {
    error = ctx.spec.origin + ".config.file: cannot join: " + e.what();
  }
  return contacts;
}

attempt start_by_joining(const provider_context& ctx, const group_settings& s,
                         detail::member_settings ms) {
  if (!ctx.locator)
    return {{}, ctx.spec.origin + ": cannot join: this node has no transport", true};
  auto timeout = ms.join_timeout;
  auto handle = detail::spawn_member(ctx.system, std::move(ms), {});
  caf::scoped_actor self{ctx.system};
  attempt result;
  // The group may be starting at the same moment (its view file not written yet, its
  // members not listening yet): keep trying until join_timeout_ms has passed.
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool said_waiting = false;
  for (;;) {
    result.error.clear();
    auto contacts = join_contacts(ctx, s, result.error);
    if (contacts.empty() && result.error.empty()) {
      result.error = ctx.spec.origin + ".config.file: cannot join: " + s.file
                     + " names no member but this node";
      break;
    }
    if (!contacts.empty()) {
      self
        ->request(handle, timeout * static_cast<int>(2 * contacts.size() + 1),
                  detail::connect_atom::value, contacts)
        .receive([&](const group_view&) { result.handle = handle; },
                 [&](const caf::error& err) {
                   result.error = ctx.spec.origin + ": " + context_text(err);
                   result.fatal = has_code(err, errc::refused);
                 });
    } else if (!said_waiting) {
      said_waiting = true;
      TROUPE_LOG_INFO("group", "group \"" << ctx.spec.name << "\": waiting for the view "
                                          << "file " << s.file << " (" << result.error
                                          << ")");
    }
    if (result.handle || result.fatal || std::chrono::steady_clock::now() >= deadline)
      break;
    // A missing view file is checked often (a whole group may be waiting for it); a
    // member that did not answer, less often.
    std::this_thread::sleep_for(contacts.empty() ? std::chrono::milliseconds{20}
                                                 : std::chrono::milliseconds{100});
  }
  if (!result.handle)
    self->send_exit(handle, caf::exit_reason::user_shutdown);
  return result;
}

caf::expected<caf::actor> make_group(const provider_context& ctx) {
  group_settings s;
  try {
    s = read_settings(ctx);
  } catch (const config_error& e) {
    return make_error(errc::invalid_config, e.what());
  }
  detail::member_settings ms;
  ms.group_name = ctx.spec.name;
  ms.centralized = s.centralized;
  ms.file = s.file;
  ms.ping = s.ping;
  ms.self = member{ctx.node_address, ctx.spec.provider_id, 0, random_incarnation(), {}};
  ms.locator = ctx.locator;
  ms.join_timeout = s.join_timeout;
  std::string errors;
  for (const auto& method : s.bootstraps) {
    attempt outcome;
    if (method == "self") {
      group_view view;
      auto me = ms.self;
      me.member_id = 1;
      view.members.push_back(me);
      outcome = start_from_view(ctx, s, ms, std::move(view), "config", "bootstrap self");
    } else if (method == "view") {
      try {
        auto view = view_from_json(*s.view, ctx.spec.origin + ".config.view", "");
        outcome =
          start_from_view(ctx, s, ms, std::move(view), "config.view", "config.view");
      } catch (const config_error& e) {
        outcome = {{}, e.what(), true};
      }
    } else if (method == "file") {
      try {
        auto view = read_view_file(s.file);
        outcome = start_from_view(ctx, s, ms, std::move(view), "config.file", s.file);
      } catch (const config_error& e) {
        outcome = {{}, ctx.spec.origin + ".config.file: " + e.what(), false};
      }
    } else if (method == "mpi") {
      // Every rank of the MPI job starts from the same view, in MPI rank order.
      auto gathered = detail::mpi_allgather_members(ms.self);
      if (auto* error = std::get_if<std::string>(&gathered)) {
        outcome = {{}, ctx.spec.origin + ": bootstrap mpi: " + *error, false};
      } else {
        group_view view;
        view.members = std::move(std::get<std::vector<member>>(gathered));
        outcome =
          start_from_view(ctx, s, ms, std::move(view), "config", "the MPI all-gather");
      }
    } else if (method == "join") {
      outcome = start_by_joining(ctx, s, ms);
    }
    if (outcome.handle) {
      TROUPE_LOG_INFO("group", "group \""
                                 << ctx.spec.name << "\": started by bootstrap \""
                                 << method << "\" ("
                                 << (s.centralized ? "centralized" : "static") << ")");
      return outcome.handle;
    }
    if (s.bootstraps.size() > 1) // say which of the methods tried said what
      outcome.error = "bootstrap \"" + method + "\": " + outcome.error;
    errors += (errors.empty() ? "" : "; then ") + outcome.error;
    if (outcome.fatal)
      break;
  }
  return make_error(errc::invalid_config, errors);
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
  cfg.add_message_type<view_change>("troupe::group::view_change");
  cfg.add_message_type<view_refresh>("troupe::group::view_refresh");
}

} // namespace troupe::group
