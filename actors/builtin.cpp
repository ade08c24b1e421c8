#include "actors/builtin.hpp"

#include "actors/echo/echo.hpp"
#include "actors/group/group.hpp"
#include "actors/ops/ping.hpp"
#include "actors/ops/rdma_ping.hpp"

namespace troupe::actors {

void register_builtin_providers(provider_registry& registry) {
  register_echo_provider(registry);
  group::register_group_provider(registry);
}

caf::error register_builtin_ops(ops::op_registry& registry) {
  if (auto err = registry.add<ping_op>())
    return err;
  return registry.add<rdma_ping_op>();
}

void register_builtin_types(caf::actor_system_config& cfg) {
  group::register_group_types(cfg);
}

} // namespace troupe::actors
