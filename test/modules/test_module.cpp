// A loadable module for tests. Provider types:
//   "upper"     replies to a string with the string in upper case;
//   "blackhole" takes a string request and never answers it (keeps it in flight), and
//               answers an int with the number of requests it holds.
#include <cctype>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/response_promise.hpp>
#include <caf/stateful_actor.hpp>
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

struct blackhole_state {
  std::vector<caf::response_promise> held;
};

caf::behavior blackhole_actor(caf::stateful_actor<blackhole_state>* self) {
  return {
    [self](const std::string&) {
      self->state.held.push_back(self->make_response_promise());
      return self->state.held.back();
    },
    [self](int) { return static_cast<int>(self->state.held.size()); },
  };
}

} // namespace

TROUPE_MODULE(ctx) {
  ctx.providers.add_type(
    "blackhole", [](const troupe::provider_context& p) -> caf::expected<caf::actor> {
      return p.system.spawn(blackhole_actor);
    });
  if (auto err = ctx.providers.add_type(
        "upper", [](const troupe::provider_context& p) -> caf::expected<caf::actor> {
          return p.system.spawn(upper_actor);
        })) {
    ctx.error = "provider type \"upper\" is already registered";
    return 1;
  }
  return 0;
}
