#include "actors/builtin.hpp"

#include "actors/echo/echo.hpp"
#include "actors/group/group.hpp"
#include "actors/ops/ping.hpp"

namespace troupe::actors {

void register_builtin_providers(provider_registry& registry) {
  register_echo_provider(registry);
  group::register_group_provider(registry);
}

caf::error register_builtin_ops(ops::op_registry& registry) {
  return registry.add<ping_op>();
}

void register_builtin_types(caf::actor_system_config& cfg) {
  group::register_group_types(cfg);
}

} // namespace troupe::actors
