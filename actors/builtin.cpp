#include "actors/builtin.hpp"

#include "actors/echo/echo.hpp"

namespace troupe::actors {

void register_builtin_providers(provider_registry& registry) {
  register_echo_provider(registry);
}

} // namespace troupe::actors
