// A loadable module for tests. Op types: test.silent, test.fail and test.misplace
// (test_ops.hpp).
// Provider types:
//   "upper"     replies to a string with the string in upper case;
//   "blackhole" takes a string request and never answers it (keeps it in flight), and
//               answers an int with the number of requests it holds, and ok_atom
//               with an empty (void) response;
//   "pointer"   answers a typed Point (test/schema) with a typed Summary of it.
//   "delegator" (target, text) passes the request on to target with a CAF delegation
//               (the answer would go from target to the requester directly);
//               (get_atom, address, text) finds echo provider 1 at address, asks it
//               itself and relays its answer (this node is then connected to it).
//   "region"    (region_alloc_atom, size, seed) allocates a registered region filled
//               with the pattern of seed (test/support/pattern.hpp) and answers its
//               descriptor; (region_read_atom, offset, length) answers those bytes of
//               the region as a string, so the test checks what RDMA wrote itself.
//   "tally"     keeps every string it is sent; answers (get_atom) with how many (an
//               int64_t) and (get_atom, index) with the string at index.
// Reduction functions (actors/overlay): "bitor", the bitwise or of integers.
#include <thread>
#include <cctype>
#include <chrono>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/response_promise.hpp>
#include <caf/stateful_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/overlay/overlay.hpp"
#include "base/error.hpp"
#include "runtime/locator.hpp"
#include "runtime/job_types.hpp"
#include "runtime/module.hpp"
#include "runtime/ops.hpp"
#include "test/modules/test_ops.hpp"
#include "test/support/pattern.hpp"
#include "test/schema/test_protocol.capnp.h"
#include "transport/rdma.hpp"
#include "transport/typed_message.hpp"
#include "runtime/provider_registry.hpp"

namespace {

caf::behavior upper_actor(caf::event_based_actor*) {
  return {
    [](std::string text) {
      for (auto& c : text)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      return text;
    },
  };
}

struct blackhole_state {
  std::vector<caf::response_promise> held;
};

caf::behavior blackhole_actor(caf::stateful_actor<blackhole_state>* self) {
  return {
    [self](const std::string&) {
      self->state.held.push_back(self->make_response_promise());
      return self->state.held.back();
    },
    [self](int) { return static_cast<int>(self->state.held.size()); },
    [](caf::ok_atom) {
      // A void handler: the requester gets an empty response.
    },
  };
}

caf::behavior pointer_actor(caf::event_based_actor*) {
  using namespace troupe::test_protocol;
  return {
    [](const troupe::typed_message& msg) -> caf::result<troupe::typed_message> {
      if (!msg.holds<Point>())
        return caf::sec::unexpected_message;
      // Peer input: a malformed message throws, and nothing may escape a handler.
      try {
        troupe::typed_reader<Point> in{msg};
        auto point = in.root();
        capnp::MallocMessageBuilder out;
        auto summary = out.initRoot<Summary>();
        summary.setSwappedX(point.getY());
        summary.setSwappedY(point.getX());
        std::string label = point.getLabel();
        for (auto& c : label)
          c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        summary.setLabel(label);
        double sum = 0;
        for (auto v : point.getSamples())
          sum += v;
        summary.setSampleCount(point.getSamples().size());
        summary.setSampleSum(sum);
        return troupe::typed_message::of<Summary>(out);
      } catch (const kj::Exception&) {
        return caf::sec::invalid_argument;
      }
    },
  };
}

caf::behavior delegator_actor(caf::event_based_actor* self, caf::actor locator) {
  return {
    [self](const caf::actor& target, const std::string& text) {
      return self->delegate(target, text);
    },
    [self, locator](caf::get_atom, const std::string& address, const std::string& text) {
      auto rp = self->make_response_promise();
      auto timeout = std::chrono::seconds{10};
      self
        ->request(locator, timeout, troupe::locate_atom::value, address,
                  std::string{"echo"}, uint16_t{1})
        .then(
          [self, rp, text, timeout](const caf::actor& echo) mutable {
            self->request(echo, timeout, text)
              .then([rp](const std::string& answer) mutable { rp.deliver(answer); },
                    [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
          },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
  };
}

using region_alloc_atom = caf::atom_constant<caf::atom("rgnalloc")>;
using region_read_atom = caf::atom_constant<caf::atom("rgnread")>;

struct region_state {
  std::shared_ptr<troupe::memory_region> region;
};

caf::behavior region_actor(caf::stateful_actor<region_state>* self) {
  return {
    [self](region_alloc_atom, uint64_t size,
           uint32_t seed) -> caf::result<troupe::region_descriptor> {
      auto region = troupe::memory_region::allocate(self->system(), size);
      if (!region)
        return region.error();
      troupe::test::fill_pattern((*region)->data(), size, seed);
      self->state.region = *region;
      return (*region)->descriptor();
    },
    [self](region_read_atom, uint64_t offset,
           uint64_t length) -> caf::result<std::string> {
      auto& r = self->state.region;
      if (!r || offset > r->size() || length > r->size() - offset)
        return caf::sec::invalid_argument;
      return std::string{reinterpret_cast<const char*>(r->data() + offset), length};
    },
  };
}

struct tally_state {
  std::vector<std::string> seen;
};

caf::behavior tally_actor(caf::stateful_actor<tally_state>* self) {
  return {
    [self](std::string& text) { self->state.seen.push_back(std::move(text)); },
    [self](caf::get_atom) { return static_cast<int64_t>(self->state.seen.size()); },
    [self](caf::get_atom, int64_t index) -> caf::result<std::string> {
      if (index < 0 || static_cast<size_t>(index) >= self->state.seen.size())
        return caf::sec::invalid_argument;
      return self->state.seen[static_cast<size_t>(index)];
    },
  };
}

} // namespace

TROUPE_MODULE(ctx) {
  ctx.providers.add_type(
    "tally", [](const troupe::provider_context& p) -> caf::expected<caf::actor> {
      return p.system.spawn(tally_actor);
    });
  // Kept while the module is loaded (a static of the module's): its function leaves
  // the table when the module is unloaded. (A second node in the same process loads
  // the module again: the static is made once.)
  static auto bitor_registration = troupe::overlay::register_reduction(
    "bitor", [](troupe::overlay::value& acc, const troupe::overlay::value& next) {
      if (acc.kind != troupe::overlay::value::integer
          || next.kind != troupe::overlay::value::integer)
        return troupe::make_error(troupe::errc::invalid_argument,
                                  "bitor combines integers");
      acc.i |= next.i;
      return caf::error{};
    });
  if (bitor_registration.error()) {
    ctx.error = troupe::describe(bitor_registration.error());
    return 1;
  }
  ctx.providers.add_type(
    "region", [](const troupe::provider_context& p) -> caf::expected<caf::actor> {
      return p.system.spawn(region_actor);
    });
  ctx.providers.add_type(
    "pointer", [](const troupe::provider_context& p) -> caf::expected<caf::actor> {
      return p.system.spawn(pointer_actor);
    });
  ctx.providers.add_type(
    "delegator", [](const troupe::provider_context& p) -> caf::expected<caf::actor> {
      return p.system.spawn(delegator_actor, p.locator);
    });
  ctx.providers.add_type(
    "blackhole", [](const troupe::provider_context& p) -> caf::expected<caf::actor> {
      return p.system.spawn(blackhole_actor);
    });
  if (auto err = ctx.providers.add_type(
        "upper", [](const troupe::provider_context& p) -> caf::expected<caf::actor> {
          return p.system.spawn(upper_actor);
        })) {
    ctx.error = "provider type \"upper\" is already registered";
    return 1;
  }
  // Job types for the offload demo's stop tests: one that returns once its leaf stops,
  // one that never returns (the process's stop bound must end it).
  for (auto err :
       {ctx.job_types.add("until_stopped",
                          [](const troupe::job_call& call) -> troupe::job_outcome_of_type {
                            while (!call.stop_requested())
                              std::this_thread::sleep_for(std::chrono::milliseconds{5});
                            return {0, "stopped"};
                          }),
        ctx.job_types.add("never_returns",
                          [](const troupe::job_call&) -> troupe::job_outcome_of_type {
                            for (;;)
                              std::this_thread::sleep_for(std::chrono::seconds{1});
                          })})
    if (err) {
      ctx.error = "cannot register the test job types";
      return 1;
    }
  for (auto err :
       {ctx.ops.add<troupe::test::silent_op>(), ctx.ops.add<troupe::test::fail_op>(),
        ctx.ops.add<troupe::test::misplace_op>(), ctx.ops.add<troupe::test::inline_wait_op>(),
        ctx.ops.add<troupe::test::inline_timer_op>()})
    if (err) {
      ctx.error = "cannot register the test ops";
      return 1;
    }
  return 0;
}
