// An application built against an installed Troupe (find_package(troupe) or
// pkg-config) that talks to a running actorhost: a request to its echo provider, its
// group through a group client handle, and a ping op.
//
//   hello_troupe ucx://HOST:PORT   (an actorhost with providers echo:1 and group:42)
#include <iostream>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include <troupe/actors/builtin.hpp>
#include <troupe/actors/group/client.hpp>
#include <troupe/actors/ops/ping.hpp>
#include <troupe/base/error.hpp>
#include <troupe/runtime/config.hpp>
#include <troupe/runtime/node.hpp>
#include <troupe/runtime/ops.hpp>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: hello_troupe ucx://HOST:PORT\n";
    return 2;
  }
  std::string address = argv[1];
  troupe::node client{troupe::parse_node_config("{}", "hello_troupe")};
  auto err = troupe::actors::register_builtins(client);
  if (!err)
    err = client.start();
  if (err) {
    std::cerr << troupe::describe(err) << "\n";
    return 1;
  }
  int rc = 0;
  auto fail = [&](const caf::error& err) {
    std::cerr << troupe::describe(err) << "\n";
    rc = 1;
  };
  // A remote request: the actorhost's echo provider answers with the message itself.
  if (auto echo = client.remote_provider(address, "echo", 1, std::chrono::seconds(10))) {
    caf::scoped_actor self{client.system()};
    self->request(*echo, std::chrono::seconds(10), std::string{"hello, echo"})
      .receive([](const std::string& back) { std::cout << "echo: " << back << "\n"; },
               fail);
  } else {
    fail(echo.error());
  }
  // A group client handle: the group's view through one of its members.
  if (auto group = troupe::group::group_client::open(client, address, 42)) {
    std::cout << "group: " << group->view().members.size() << " member(s)\n";
  } else {
    fail(group.error());
  }
  // An op: ping the actorhost's node.
  auto pinged =
    troupe::ops::launch<troupe::actors::ping_op>(client, {address}, std::string{"ping"})
      .get();
  if (pinged)
    std::cout << "ping op: " << pinged->get_as<std::string>(0) << "\n";
  else
    fail(pinged.error());
  client.stop();
  return rc;
}
