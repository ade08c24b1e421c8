#pragma once
// Op types for the op framework's tests, registered by the test module (targets in
// actorhost processes) and by the test itself (origins).
//   test.silent   every target answers the first message once, then holds (state
//                 "holding") until the op ends; the origin waits for all answers and
//                 then holds too: only the deadline, a node's death or the end of the
//                 op ends it.
//   test.fail     the target fails at once with troupe.refused "told to fail".
//   test.nowhere  registered by the test only: unknown at every target.

#include <string>

#include <capnp/message.h>

#include "base/error.hpp"
#include "runtime/ops.hpp"
#include "schema/ops.capnp.h"

namespace troupe::test {

inline typed_message small_ping() {
  capnp::MallocMessageBuilder builder;
  builder.initRoot<schema::ops::Ping>();
  return typed_message::of<schema::ops::Ping>(builder);
}

class holding_origin : public ops::origin_side {
public:
  ops::step on_start(ops::origin_context& ctx) override {
    for (size_t i = 0; i < ctx.targets().size(); ++i)
      ctx.send(i, small_ping());
    return ops::step::wait();
  }
  ops::step on_message(ops::origin_context& ctx, size_t, const typed_message&) override {
    ctx.set_state("answered by " + std::to_string(++answers_));
    return ops::step::wait();
  }

private:
  size_t answers_ = 0;
};

class holding_target : public ops::target_side {
public:
  ops::step on_start(ops::target_context& ctx, const typed_message& m) override {
    ctx.reply(m);
    ctx.set_state("holding");
    return ops::step::wait();
  }
};

class failing_target : public ops::target_side {
public:
  ops::step on_start(ops::target_context&, const typed_message&) override {
    return ops::step::fail(make_error(errc::refused, "told to fail"));
  }
};

struct silent_op {
  static constexpr const char* name = "test.silent";
  using origin = holding_origin;
  using target = holding_target;
};

struct fail_op {
  static constexpr const char* name = "test.fail";
  using origin = holding_origin;
  using target = failing_target;
};

struct nowhere_op {
  static constexpr const char* name = "test.nowhere";
  using origin = holding_origin;
  using target = holding_target;
};

} // namespace troupe::test
