// RDMA between two nodes: node "a" exposes a registered region, node "b" gets it into
// its own region, changes it and puts it back. Both nodes live in this one process
// here; across processes the code is the same (the descriptor travels in a message).
// The README shows this file; the build compiles it and a test runs it.
#include <cstring>
#include <iostream>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include <troupe/base/error.hpp>
#include <troupe/runtime/config.hpp>
#include <troupe/runtime/node.hpp>
#include <troupe/transport/rdma.hpp>

int main() {
  troupe::node a{troupe::parse_node_config("{}", "a.json")};
  troupe::node b{troupe::parse_node_config("{}", "b.json")};
  for (auto* n : {&a, &b}) {
    if (auto err = n->start()) {
      std::cerr << troupe::describe(err) << "\n";
      return 1;
    }
  }
  // 1. Node a registers a region and fills it; its descriptor can go in any message.
  auto exposed = troupe::memory_region::allocate(a.system(), 4096);
  auto mine = troupe::memory_region::allocate(b.system(), 4096);
  if (!exposed || !mine) {
    std::cerr << "cannot register memory\n";
    return 1;
  }
  std::strcpy(reinterpret_cast<char*>((*exposed)->data()), "bulk data from node a");
  troupe::region_descriptor desc = (*exposed)->descriptor();
  // b must be connected to a: any lookup connects, and every node has its node service.
  if (!b.remote_node(a.address(), std::chrono::seconds(5))) {
    std::cerr << "cannot reach node a\n";
    return 1;
  }
  // 2. Node b gets the bytes into its own region; completion arrives as a message.
  int rc = 1;
  {
    caf::scoped_actor self{b.system()};
    auto wait = [&](uint64_t tag) {
      bool ok = false;
      self->receive(
        [&](const troupe::rdma_done& done) {
          ok = done.tag == tag && !done.error;
          if (done.error)
            std::cerr << troupe::describe(done.error) << "\n";
        },
        caf::after(std::chrono::seconds(5)) >> [] { std::cerr << "timed out\n"; });
      return ok;
    };
    troupe::rdma_get(b.system(), desc, 0, *mine, 0, 4096, self, 1);
    if (wait(1)) {
      std::cout << "b got: " << reinterpret_cast<char*>((*mine)->data()) << "\n";
      // 3. ... and puts an answer back; done means it is in a's memory.
      std::strcpy(reinterpret_cast<char*>((*mine)->data()), "reply from node b");
      troupe::rdma_put(b.system(), desc, 0, *mine, 0, 4096, self, 2);
      if (wait(2)) {
        std::cout << "a now holds: " << reinterpret_cast<char*>((*exposed)->data())
                  << "\n";
        rc = 0;
      }
    }
  }
  b.stop();
  a.stop();
  return rc;
}
