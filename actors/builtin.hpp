#pragma once

#include <caf/fwd.hpp>

#include <caf/error.hpp>

namespace troupe {
class provider_registry;
} // namespace troupe

namespace troupe::ops {
class op_registry;
} // namespace troupe::ops

namespace troupe::actors {

/// Registers every provider type that ships with Troupe ("echo", "group", "offload"). Called
/// explicitly by `actorhost`'s main() and by applications that embed a node.
void register_builtin_providers(provider_registry& registry);

/// Registers every op type that ships with Troupe ("ping", "rdma-ping", "scatter",
/// "gather", "dht-put", "dht-get"). Every node that
/// launches or serves them calls this (`node.ops().registry()`), before or after start.
caf::error register_builtin_ops(ops::op_registry& registry);

/// Registers the message types of the built-in actors (group views, ...). Every node
/// that talks to them calls this before it starts (on `node::system_config()`).
void register_builtin_types(caf::actor_system_config& cfg);

} // namespace troupe::actors
