// Define a remote protocol as a .capnp file (geometry.capnp) and use it between two
// nodes: node "a" runs an area calculator, node "b" sends it a Polygon and gets an
// Area back. Both nodes live in this one process here; across processes the code is
// the same. The README shows this file; the build compiles it and a test runs it.
#include <iostream>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include "apps/examples/geometry.capnp.h"
#include <troupe/base/error.hpp>
#include <troupe/runtime/config.hpp>
#include <troupe/runtime/node.hpp>
#include <troupe/runtime/provider_registry.hpp>
#include <troupe/transport/typed_message.hpp>

// 1. The actor reads the Polygon in place (no copy) and answers with an Area.
caf::behavior area_calculator(caf::event_based_actor*) {
  return {
    [](const troupe::typed_message& msg) -> caf::result<troupe::typed_message> {
      if (!msg.holds<geometry::Polygon>())
        return caf::sec::unexpected_message;
      try { // Cap'n Proto throws on malformed input: never let it escape a handler.
        troupe::typed_reader<geometry::Polygon> in{msg};
        auto xs = in.root().getXs();
        auto ys = in.root().getYs();
        double twice_area = 0;
        for (unsigned i = 0; i < xs.size() && i < ys.size(); ++i) {
          auto j = (i + 1) % xs.size();
          twice_area += xs[i] * ys[j] - xs[j] * ys[i];
        }
        capnp::MallocMessageBuilder out;
        out.initRoot<geometry::Area>().setValue(twice_area / 2);
        return troupe::typed_message::of<geometry::Area>(out);
      } catch (const kj::Exception&) {
        return caf::sec::invalid_argument;
      }
    },
  };
}

int main() {
  // 2. Node "a" offers the calculator as provider (area, 1).
  troupe::node a{troupe::parse_node_config(
    R"({"providers": [{"type": "area", "name": "area", "provider_id": 1}]})", "a.json")};
  a.providers().add_type(
    "area", [](const troupe::provider_context& ctx) -> caf::expected<caf::actor> {
      return ctx.system.spawn(area_calculator);
    });
  troupe::node b{troupe::parse_node_config("{}", "b.json")};
  for (auto* n : {&a, &b}) {
    if (auto err = n->start()) {
      std::cerr << troupe::describe(err) << "\n";
      return 1;
    }
  }
  // 3. Node "b" builds a Polygon (a 3 x 2 rectangle) and sends it over the transport.
  auto calc = b.remote_provider(a.address(), "area", 1, std::chrono::seconds(5));
  if (!calc) {
    std::cerr << troupe::describe(calc.error()) << "\n";
    return 1;
  }
  capnp::MallocMessageBuilder builder;
  auto polygon = builder.initRoot<geometry::Polygon>();
  auto xs = polygon.initXs(4);
  auto ys = polygon.initYs(4);
  double corners[4][2] = {{0, 0}, {3, 0}, {3, 2}, {0, 2}};
  for (unsigned i = 0; i < 4; ++i) {
    xs.set(i, corners[i][0]);
    ys.set(i, corners[i][1]);
  }
  int rc = 1;
  {
    caf::scoped_actor self{b.system()};
    self
      ->request(*calc, std::chrono::seconds(5),
                troupe::typed_message::of<geometry::Polygon>(builder))
      .receive(
        [&](const troupe::typed_message& reply) {
          troupe::typed_reader<geometry::Area> area{reply};
          std::cout << "area: " << area.root().getValue() << "\n";
          rc = 0;
        },
        [&](const caf::error& err) { std::cerr << troupe::describe(err) << "\n"; });
  }
  b.stop();
  a.stop();
  return rc;
}
