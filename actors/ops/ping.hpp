#pragma once
// The built-in `ping` op: the origin sends a payload to each target, each target sends
// it back, and the op is done when every target has answered. Its result is the
// payload as a std::string. The smallest complete op: copy it to write your own.
//
//   auto h = ops::launch<actors::ping_op>(node, {address}, std::string{"hello"});
//   auto r = h.get(); // caf::message holding "hello", or the error

#include <string>
#include <vector>

#include "runtime/ops.hpp"

namespace troupe::actors {

class ping_origin : public ops::origin_side {
public:
  explicit ping_origin(std::string payload);
  ops::step on_start(ops::origin_context& ctx) override;
  ops::step on_message(ops::origin_context& ctx, size_t from,
                       const typed_message& m) override;
  /// It only sends and compares: no actor of its own once the target is known.
  bool runs_inline() const override { return true; }

private:
  std::string payload_;
  size_t answered_ = 0;
};

class ping_target : public ops::target_side {
public:
  ops::step on_start(ops::target_context& ctx, const typed_message& m) override;
  /// It answers at once: the dispatcher runs it without an actor.
  bool runs_inline() const override { return true; }
};

struct ping_op {
  static constexpr const char* name = "ping";
  using origin = ping_origin;
  using target = ping_target;
};

} // namespace troupe::actors
