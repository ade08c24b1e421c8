// A small module for loading and removing modules in running nodes (actorsh module):
// provider type "greeter" (answers a string with "hello " and the string). Built three
// ways: as is; with TROUPE_TEST_MESSAGE_TYPE (it also registers a message type, which a
// running node must refuse); with TROUPE_TEST_OTHER_ABI (it claims another module ABI).

#include <string>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/meta/type_name.hpp>

#include "runtime/module.hpp"
#include "runtime/provider_registry.hpp"

namespace {

caf::behavior greeter_actor(caf::event_based_actor*) {
  return {[](const std::string& who) { return "hello " + who; }};
}

[[maybe_unused]] int register_greeter(troupe::module_context& ctx) {
  if (auto err = ctx.providers.add_type(
        "greeter", [](const troupe::provider_context& p) -> caf::expected<caf::actor> {
          return p.system.spawn(greeter_actor);
        })) {
    ctx.error = "provider type \"greeter\" is registered already";
    return 1;
  }
  return 0;
}

} // namespace

#if defined(TROUPE_TEST_MESSAGE_TYPE)
struct troupe_test_point {
  int x = 0;
  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, troupe_test_point& p) {
    return f(caf::meta::type_name("troupe_test_point"), p.x);
  }
};

TROUPE_MODULE(ctx) {
  if (int rc = register_greeter(ctx))
    return rc;
  ctx.system_config.add_message_type<troupe_test_point>("troupe_test_point");
  return 0;
}
#elif defined(TROUPE_TEST_OTHER_ABI)
extern "C" unsigned troupe_module_abi() {
  return 999;
}
extern "C" int troupe_module_init(troupe::module_context& ctx) {
  return register_greeter(ctx);
}
#else
TROUPE_MODULE(ctx) {
  return register_greeter(ctx);
}
#endif
