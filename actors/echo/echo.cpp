#include "actors/echo/echo.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/scheduled_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "runtime/provider_registry.hpp"

namespace troupe::actors {

namespace {

struct echo_state {
  uint64_t echoed = 0;
  static inline const char* name = "echo";
};

caf::behavior echo_actor(caf::stateful_actor<echo_state>* self) {
  self->set_default_handler([self](caf::scheduled_actor*, caf::message_view& x) {
    ++self->state.echoed;
    return caf::result<caf::message>{x.move_content_to_message()};
  });
  return {
    [self](echo_count_atom) { return self->state.echoed; },
  };
}

caf::expected<caf::actor> make_echo(const provider_context& ctx) {
  const auto& cfg = *ctx.spec.config;
  if (!cfg.empty())
    return make_error(errc::invalid_config,
                      ctx.spec.origin + ".config." + cfg.begin().key()
                        + ": unknown key (the echo provider takes no config keys)");
  return ctx.system.spawn(echo_actor);
}

} // namespace

void register_echo_provider(provider_registry& registry) {
  registry.add_type("echo", make_echo);
}

} // namespace troupe::actors
