#include "actors/builtin.hpp"

#include "actors/echo/echo.hpp"
#include "actors/group/group.hpp"
#include "actors/offload/offload.hpp"
#include "actors/ops/dht.hpp"
#include "actors/ops/ping.hpp"
#include "actors/ops/rdma_ping.hpp"
#include "actors/ops/scatter_gather.hpp"
#include "actors/supervisor/supervisor.hpp"

namespace troupe::actors {

void register_builtin_providers(provider_registry& registry) {
  register_echo_provider(registry);
  group::register_group_provider(registry);
  offload::register_offload_provider(registry);
}

caf::error register_builtin_ops(ops::op_registry& registry) {
  for (auto err : {registry.add<ping_op>(), registry.add<rdma_ping_op>(),
                   registry.add<scatter_op>(), registry.add<gather_op>(),
                   registry.add<dht_put_op>(), registry.add<dht_get_op>()})
    if (err)
      return err;
  return caf::none;
}

void register_builtin_types(caf::actor_system_config& cfg) {
  group::register_group_types(cfg);
  supervision::register_supervision_types(cfg);
  offload::register_offload_types(cfg);
}

} // namespace troupe::actors
