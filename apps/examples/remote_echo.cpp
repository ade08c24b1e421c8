// Talk to an actor on another node: look up provider (echo, 1) on the node whose
// address is given, send it a request, print the reply. The README shows this file;
// the build compiles it and a test runs it against a real actorhost.
//
//   build/bin/example-remote-echo ucx://127.0.0.1:7100 "hello"
#include <iostream>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include <troupe/base/error.hpp>
#include <troupe/runtime/config.hpp>
#include <troupe/runtime/node.hpp>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: " << argv[0] << " ADDRESS TEXT\n";
    return 2;
  }
  // 1. A node of our own (port 0: any free port); it is the client here.
  troupe::node node{troupe::parse_node_config("{}", "client")};
  if (auto err = node.start()) {
    std::cerr << troupe::describe(err) << "\n";
    return 1;
  }
  // 2. Find the remote provider by (type, provider id); it is an ordinary caf::actor.
  auto echo = node.remote_provider(argv[1], "echo", 1, std::chrono::seconds(5));
  if (!echo) {
    std::cerr << troupe::describe(echo.error()) << "\n";
    return 1;
  }
  // 3. Request and response look the same as with a local actor.
  int rc = 1;
  {
    caf::scoped_actor self{node.system()};
    self->request(*echo, std::chrono::seconds(5), std::string{argv[2]})
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
