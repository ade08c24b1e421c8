#pragma once

namespace troupe {
class provider_registry;
} // namespace troupe

namespace troupe::actors {

/// Registers every provider type that ships with Troupe ("echo", ...). Called
/// explicitly by `actorhost`'s main() and by applications that embed a node.
void register_builtin_providers(provider_registry& registry);

} // namespace troupe::actors
