#pragma once

#include <caf/fwd.hpp>

#include <caf/error.hpp>

namespace troupe {
class node;
class provider_registry;
} // namespace troupe

namespace troupe::ops {
class op_registry;
} // namespace troupe::ops

namespace troupe::actors {

/// Everything that ships with Troupe, on a node that has not started yet: the built-in
/// actors' message types, provider types and op types (the three calls below). The one
/// call an application embedding a node makes (actorhost makes it too). An error if
/// the node runs already (message types can no longer be added) or an op type clashes.
caf::error register_builtins(node& n);

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
