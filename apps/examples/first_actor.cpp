// Write your first actor: a provider type "greeter" in an application that embeds a
// Troupe node. The README shows this file; the build compiles it and a test runs it.
#include <iostream>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include <troupe/actors/builtin.hpp>
#include <troupe/base/error.hpp>
#include <troupe/runtime/config.hpp>
#include <troupe/runtime/node.hpp>
#include <troupe/runtime/provider_registry.hpp>

// 1. The actor: a behaviour with one handler per message.
caf::behavior greeter(caf::event_based_actor*, std::string greeting) {
  return {
    [greeting](const std::string& who) { return greeting + ", " + who + "!"; },
  };
}

int main() {
  // 2. A node config: the provider's own settings go in "config".
  auto cfg = troupe::parse_node_config(R"({
    "providers": [{"type": "greeter", "name": "hello", "provider_id": 7,
                   "config": {"greeting": "Hello"}}]
  })",
                                       "first_actor.json");

  troupe::node node{std::move(cfg)};
  if (auto err = troupe::actors::register_builtins(node)) { // what ships with Troupe
    std::cerr << troupe::describe(err) << "\n";
    return 1;
  }
  // 3. The provider type: a factory that reads the config and spawns the actor.
  node.providers().add_type(
    "greeter", [](const troupe::provider_context& ctx) -> caf::expected<caf::actor> {
      auto greeting = ctx.spec.config->value("greeting", "Hi");
      return ctx.system.spawn(greeter, greeting);
    });
  if (auto err = node.start()) {
    std::cerr << troupe::describe(err) << "\n";
    return 1;
  }

  // 4. Find the provider by (type, provider id) and ask it something.
  auto hello = node.providers().find("greeter", 7)->handle;
  int rc = 1;
  { // A scoped actor is an actor too: it must be gone before the node stops.
    caf::scoped_actor self{node.system()};
    self->request(hello, std::chrono::seconds(5), std::string{"Troupe"})
      .receive(
        [&](const std::string& reply) {
          std::cout << reply << "\n";
          rc = 0;
        },
        [&](const caf::error& err) { std::cerr << troupe::describe(err) << "\n"; });
  }
  node.stop();
  return rc;
}
