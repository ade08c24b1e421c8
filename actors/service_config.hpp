#pragma once
// Reading an instance service's "config" object (overlay, events, barrier, logs,
// heartbeat): one shape of check and error for all of them.

#include <initializer_list>
#include <string>
#include <string_view>

#include <caf/actor.hpp>
#include <caf/expected.hpp>

#include <caf/error.hpp>

#include "base/error.hpp"
#include "runtime/config.hpp"
#include "runtime/json_reader.hpp"
#include "runtime/provider_registry.hpp"

namespace troupe::actors {

/// Checks that the provider's config is absent or an object with no keys but `keys`,
/// then lets `read(reader, config)` take them. A bad value (config_error) becomes
/// troupe.invalid_config naming the provider, the key and what was expected.
template <class F>
caf::error read_service_config(const provider_context& ctx,
                               std::initializer_list<std::string_view> keys, F read) {
  try {
    const auto& cfg = *ctx.spec.config;
    if (cfg.is_null())
      return caf::none;
    json_reader r{ctx.spec.origin, "."};
    r.require_object("config", cfg);
    r.reject_unknown_keys("config", cfg, keys);
    read(r, cfg);
  } catch (const config_error& e) {
    return make_error(errc::invalid_config, e.what());
  }
  return caf::none;
}

/// The running provider the config's `dependencies.<slot>` names (e.g. "group": the
/// node's group provider), or troupe.invalid_config saying the slot is missing.
inline caf::expected<caf::actor> dependency(const provider_context& ctx,
                                            const std::string& slot) {
  auto d = ctx.dependencies.find(slot);
  if (d == ctx.dependencies.end())
    return make_error(errc::invalid_config,
                      ctx.spec.origin + ".dependencies." + slot + ": missing (the name of "
                        + "this node's " + slot + " provider, which a " + ctx.spec.type
                        + " provider builds on)");
  return d->second;
}

/// The node's group and overlay providers, for the services built on both (logs,
/// heartbeat, KVS): `dependencies.group` and `dependencies.overlay`.
struct group_and_overlay {
  caf::actor group;
  caf::actor overlay;
};

/// Both, or the error of the first one missing (as `dependency` says it).
inline caf::expected<group_and_overlay> group_and_overlay_of(const provider_context& ctx) {
  auto group = dependency(ctx, "group");
  if (!group)
    return group.error();
  auto overlay = dependency(ctx, "overlay");
  if (!overlay)
    return overlay.error();
  return group_and_overlay{*group, *overlay};
}

} // namespace troupe::actors
