#include "actors/builtin.hpp"

#include "actors/barrier/barrier.hpp"
#include "actors/echo/echo.hpp"
#include "actors/events/events.hpp"
#include "actors/group/group.hpp"
#include "actors/heartbeat/heartbeat.hpp"
#include "actors/kvs/kvs.hpp"
#include "actors/logs/logs.hpp"
#include "actors/offload/offload.hpp"
#include "actors/overlay/overlay.hpp"
#include "actors/ops/dht.hpp"
#include "actors/ops/ping.hpp"
#include "actors/ops/rdma_ping.hpp"
#include "actors/ops/scatter_gather.hpp"
#include "actors/supervisor/supervisor.hpp"
#include "base/error.hpp"
#include "runtime/node.hpp"
#include "runtime/ops.hpp"

namespace troupe::actors {

void register_builtin_providers(provider_registry& registry) {
  register_echo_provider(registry);
  group::register_group_provider(registry);
  offload::register_offload_provider(registry);
  overlay::register_overlay_provider(registry);
  events::register_events_provider(registry);
  barrier::register_barrier_provider(registry);
  logs::register_logs_provider(registry);
  heartbeat::register_heartbeat_provider(registry);
  kvs::register_kvs_provider(registry);
}

caf::error register_builtin_ops(ops::op_registry& registry) {
  for (auto err : {registry.add<ping_op>(), registry.add<rdma_ping_op>(),
                   registry.add<scatter_op>(), registry.add<gather_op>(),
                   registry.add<dht_put_op>(), registry.add<dht_get_op>()})
    if (err)
      return err;
  return caf::none;
}

caf::error register_builtins(node& n) {
  if (n.running())
    return make_error(errc::refused, "register_builtins: the node runs already (message "
                                     "types must be registered before it starts)");
  register_builtin_types(n.system_config());
  register_builtin_providers(n.providers());
  return register_builtin_ops(n.ops().registry());
}

void register_builtin_types(caf::actor_system_config& cfg) {
  group::register_group_types(cfg);
  supervision::register_supervision_types(cfg);
  offload::register_offload_types(cfg);
  overlay::register_overlay_types(cfg);
  events::register_events_types(cfg);
  barrier::register_barrier_types(cfg);
  logs::register_logs_types(cfg);
  kvs::register_kvs_types(cfg);
}

} // namespace troupe::actors
