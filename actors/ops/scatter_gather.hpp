#pragma once
// The built-in `scatter` and `gather` ops over a list of nodes (a group's: nodes_of).
//
// scatter: the origin's registered buffer is cut into one window per target; each
// target gets its window by RDMA and reports it fetched; once every target has, the
// origin commits and each target keeps its bytes under `name` (replacing what it kept
// there). A scatter that fails (a node dies, the deadline passes) commits nowhere:
// the targets drop what they fetched. Result: the bytes scattered (uint64_t).
//
// gather: the reverse: each target puts what it keeps under `name` into its window of
// the origin's registered buffer; the op is done when every target has. A target that
// keeps nothing under `name`, or bytes of another size than its window, fails the op.
// Result: the bytes gathered (uint64_t).
//
//   auto buf = *memory_region::allocate(node.system(), 3 << 20);
//   auto nodes = nodes_of(view);                                  // or any list
//   ops::launch<scatter_op>(node, nodes, "input", buf, equal_windows(3 << 20, 3));
//   ops::launch<gather_op>(node, nodes, "input", out, equal_windows(3 << 20, 3));
//
// The buffer stays the caller's: the op holds it while it runs, and reads or writes
// only the windows.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "actors/group/view.hpp"
#include "actors/ops/blob_store.hpp"
#include "runtime/ops.hpp"
#include "transport/rdma.hpp"

namespace troupe {
class node;
} // namespace troupe

namespace troupe::actors {

/// `n` window lengths covering `bytes`: equal, the last one takes the remainder.
std::vector<uint64_t> equal_windows(uint64_t bytes, size_t n);

/// The nodes a group's members run on, in rank order, each once.
std::vector<std::string> nodes_of(const group::group_view& view);

/// What this node keeps under `name` from scatters, if anything.
std::optional<blob> scattered(node& n, const std::string& name);

/// Per-target windows laid end to end over one buffer.
class windowed_origin : public ops::origin_side {
protected:
  windowed_origin(const char* op, std::string name, std::shared_ptr<memory_region> buffer,
                  std::vector<uint64_t> windows);
  /// Checks the windows against the targets and the buffer and sends each target
  /// its window (a failed step on bad arguments); `progress` names what is counted.
  ops::step send_windows(ops::origin_context& ctx, const char* progress);
  ops::step all_done_or_wait(ops::origin_context& ctx);

  const char* op_;
  std::string name_;
  std::shared_ptr<memory_region> buffer_;
  std::vector<uint64_t> windows_;
  uint64_t total_ = 0;
  size_t done_ = 0;
};

class scatter_origin : public windowed_origin {
public:
  scatter_origin(std::string name, std::shared_ptr<memory_region> buffer,
                 std::vector<uint64_t> windows);
  ops::step on_start(ops::origin_context& ctx) override;
  ops::step on_message(ops::origin_context& ctx, size_t from,
                       const typed_message& m) override;
  ops::step on_target_done(ops::origin_context& ctx, size_t from) override;

private:
  std::vector<bool> fetched_from_;
  bool committed_ = false;
};

class scatter_target : public ops::target_side {
public:
  ops::step on_start(ops::target_context& ctx, const typed_message& m) override;
  ops::step on_message(ops::target_context& ctx, const typed_message& m) override;
  ops::step on_other(ops::target_context& ctx, caf::message& m) override;

private:
  ops::step fetched(ops::target_context& ctx);
  std::string name_;
  uint64_t length_ = 0;
  std::shared_ptr<memory_region> local_; // null for an empty window
  reserved_bytes reservation_;           // released if the scatter never commits
};

struct scatter_op {
  static constexpr const char* name = "scatter";
  using origin = scatter_origin;
  using target = scatter_target;
};

class gather_origin : public windowed_origin {
public:
  gather_origin(std::string name, std::shared_ptr<memory_region> buffer,
                std::vector<uint64_t> windows);
  ops::step on_start(ops::origin_context& ctx) override;
  ops::step on_message(ops::origin_context& ctx, size_t from,
                       const typed_message& m) override;
  ops::step on_target_done(ops::origin_context& ctx, size_t from) override;
};

class gather_target : public ops::target_side {
public:
  ops::step on_start(ops::target_context& ctx, const typed_message& m) override;
  ops::step on_other(ops::target_context& ctx, caf::message& m) override;

private:
  std::shared_ptr<memory_region> kept_; // held while the put runs
};

struct gather_op {
  static constexpr const char* name = "gather";
  using origin = gather_origin;
  using target = gather_target;
};

} // namespace troupe::actors
