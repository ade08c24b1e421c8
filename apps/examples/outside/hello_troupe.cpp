// An application built against an installed Troupe (find_package(troupe) or
// pkg-config): an actor served by a node, a request to it through the node's
// transport from a second node, and an op.
#include <iostream>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include <troupe/actors/builtin.hpp>
#include <troupe/actors/ops/ping.hpp>
#include <troupe/base/error.hpp>
#include <troupe/runtime/config.hpp>
#include <troupe/runtime/node.hpp>
#include <troupe/runtime/ops.hpp>
#include <troupe/runtime/provider_registry.hpp>

caf::behavior greeter(caf::event_based_actor*, std::string greeting) {
  return {
    [greeting](const std::string& who) { return greeting + ", " + who + "!"; },
  };
}

int main() {
  // A node that serves the actor as provider ("greeter", 7).
  troupe::node server{troupe::parse_node_config(R"({
    "providers": [{"type": "greeter", "name": "hello", "provider_id": 7,
                   "config": {"greeting": "Hello"}}]
  })",
                                                 "server.json")};
  if (auto err = troupe::actors::register_builtins(server)) {
    std::cerr << troupe::describe(err) << "\n";
    return 1;
  }
  server.providers().add_type(
    "greeter", [](const troupe::provider_context& ctx) -> caf::expected<caf::actor> {
      return ctx.system.spawn(greeter, ctx.spec.config->value("greeting", "Hi"));
    });
  // A second node, the client: it reaches the provider by address over the transport.
  troupe::node client{troupe::parse_node_config("{}", "client.json")};
  if (auto err = troupe::actors::register_builtins(client)) {
    std::cerr << troupe::describe(err) << "\n";
    return 1;
  }
  for (auto* n : {&server, &client})
    if (auto err = n->start()) {
      std::cerr << troupe::describe(err) << "\n";
      return 1;
    }
  int rc = 1;
  {
    auto hello = client.remote_provider(server.address(), "greeter", 7,
                                        std::chrono::seconds(10));
    if (!hello) {
      std::cerr << troupe::describe(hello.error()) << "\n";
    } else {
      caf::scoped_actor self{client.system()};
      self->request(*hello, std::chrono::seconds(10), std::string{"outside"})
        .receive([&](const std::string& reply) { std::cout << reply << "\n"; rc = 0; },
                 [&](caf::error& err) { std::cerr << troupe::describe(err) << "\n"; });
    }
  }
  // An op from the client to the server node.
  auto pinged = troupe::ops::launch<troupe::actors::ping_op>(client, {server.address()},
                                                              std::string{"ping"})
                  .get();
  if (pinged)
    std::cout << "ping op: " << pinged->get_as<std::string>(0) << "\n";
  else
    rc = 1;
  client.stop();
  server.stop();
  return rc;
}
