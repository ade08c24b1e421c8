#pragma once
// Op types for the op framework's tests, registered by the test module (targets in
// actorhost processes) and by the test itself (origins).
//   test.silent   every target answers the first message once, then holds (state
//                 "holding") until the op ends; the origin waits for all answers and
//                 then holds too: only the deadline, a node's death or the end of the
//                 op ends it.
//   test.fail     the target fails at once with troupe.refused "told to fail".
//   test.nowhere  registered by the test only: unknown at every target.
//   test.misplace an rdma-ping target that puts the data back with a block at a wrong
//                 offset: its first 4 KiB also land over the next 4 KiB (the test
//                 launches it with rdma-ping's origin, which must notice).

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include <capnp/message.h>
#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>

#include "base/error.hpp"
#include "runtime/ops.hpp"
#include "schema/ops.capnp.h"
#include "transport/rdma.hpp"
#include "transport/region_codec.hpp"
#include "transport/typed_message.hpp"

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

class misplacing_target : public ops::target_side {
public:
  ops::step on_start(ops::target_context& ctx, const typed_message& m) override {
    if (!m.holds<schema::ops::RdmaPing>())
      return ops::step::fail(make_error(errc::refused, "expected an RdmaPing"));
    typed_reader<schema::ops::RdmaPing> ping{m};
    length_ = ping.root().getLength();
    if (!read_region_descriptor(ping.root().getRegion(), remote_) || length_ < 2 * block
        || length_ > remote_.length)
      return ops::step::fail(make_error(errc::refused, "8 KiB or more, please"));
    auto region = memory_region::allocate(ctx.self()->system(), length_);
    if (!region)
      return ops::step::fail(region.error());
    local_ = *region;
    rdma_get(ctx.self()->system(), remote_, 0, local_, 0, length_,
             caf::actor_cast<caf::actor>(ctx.self()), 0);
    return ops::step::wait();
  }

  ops::step on_other(ops::target_context& ctx, caf::message& m) override {
    if (!m.match_elements<rdma_done>())
      return target_side::on_other(ctx, m);
    if (auto& error = m.get_as<rdma_done>(0).error)
      return ops::step::fail(error);
    if (!putting_) { // the get is done
      putting_ = true;
      auto* data = local_->data();
      for (uint64_t i = 0; i < length_; ++i)
        ++data[i];
      std::memcpy(data + block, data, block);
      rdma_put(ctx.self()->system(), remote_, 0, local_, 0, length_,
               caf::actor_cast<caf::actor>(ctx.self()), 0);
      return ops::step::wait();
    }
    capnp::MallocMessageBuilder builder;
    builder.initRoot<schema::ops::RdmaPingAck>().setLength(length_);
    ctx.reply(typed_message::of<schema::ops::RdmaPingAck>(builder));
    return ops::step::done();
  }

  static constexpr uint64_t block = 4096;

private:
  region_descriptor remote_;
  uint64_t length_ = 0;
  bool putting_ = false;
  std::shared_ptr<memory_region> local_;
};

/// Says it runs inline, then breaks the rule: waits after its first message, or asks
/// for a timer (which an inline side has not).
template <bool AsksForATimer>
class unruly_inline_target : public ops::target_side {
public:
  bool runs_inline() const override { return true; }
  ops::step on_start(ops::target_context& ctx, const typed_message& m) override {
    ctx.reply(m);
    if (AsksForATimer)
      ctx.start_timer(std::chrono::milliseconds{10}, 1);
    return ops::step::wait();
  }
};

struct inline_wait_op {
  static constexpr const char* name = "test.inline_wait";
  using origin = holding_origin;
  using target = unruly_inline_target<false>;
};

struct inline_timer_op {
  static constexpr const char* name = "test.inline_timer";
  using origin = holding_origin;
  using target = unruly_inline_target<true>;
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

/// Registered by the test module for its target; the test registers its own op of
/// this name with rdma-ping's origin.
struct misplace_op {
  static constexpr const char* name = "test.misplace";
  using origin = holding_origin;
  using target = misplacing_target;
};

} // namespace troupe::test
