// A loadable module for tests: registers provider type "upper", which replies to a
// string with the string in upper case.
#include <cctype>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <nlohmann/json.hpp>

#include "runtime/module.hpp"
#include "runtime/provider_registry.hpp"

namespace {

caf::behavior upper_actor(caf::event_based_actor*) {
  return {
    [](std::string text) {
      for (auto& c : text)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      return text;
    },
  };
}

} // namespace

TROUPE_MODULE(ctx) {
  if (auto err = ctx.providers.add_type(
        "upper", [](const troupe::provider_context& p) -> caf::expected<caf::actor> {
          return p.system.spawn(upper_actor);
        })) {
    ctx.error = "provider type \"upper\" is already registered";
    return 1;
  }
  return 0;
}
