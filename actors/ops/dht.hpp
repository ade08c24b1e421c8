#pragma once
// A distributed hash table over a list of nodes (a group's: dht::over), built from two
// built-in ops, `dht-put` and `dht-get`. A key belongs to one node, chosen by
// rendezvous hashing (the node whose hash with the key is highest), so every client
// with the same node list agrees without asking anyone, and a change of list moves
// only the keys of the nodes that came or went. A key this node owns is read and
// written here, without a message. Values up to `rdma_threshold` bytes travel inside
// the op's messages; larger ones move by RDMA from registered memory, and the owner
// keeps them registered, so a get of a large value is a single RDMA read.
//
//   auto table = actors::dht::over(node, client.view());
//   table.put("key", "value").get();                       // the op's result, or error
//   auto v = table.get("key").get();                       // holds a std::string
//
// Values live in memory on their owner until it stops or the key is put again; there
// is no replication and no rebalancing when the list changes (a key whose owner
// changed reads as not found until it is put again).

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "actors/group/view.hpp"
#include "actors/ops/blob_store.hpp"
#include "runtime/ops.hpp"
#include "transport/rdma.hpp"

namespace troupe {
class node;
} // namespace troupe

namespace troupe::actors {

struct dht_options {
  /// Tables with different names are apart (on the same nodes).
  std::string table = "default";
  /// Values larger than this move by RDMA. Capped at dht::max_inline_bytes and at a
  /// quarter of the node's transport.max_message_bytes (an inline value that is
  /// too large for a message would be dropped).
  uint64_t rdma_threshold = 16 * 1024;
  /// Per put or get; 0: the node's `ops.deadline_ms`.
  std::chrono::milliseconds deadline{0};
};

class dht {
public:
  /// The largest value that ever travels inline, whatever the options say.
  static constexpr uint64_t max_inline_bytes = uint64_t{4} << 20;

  /// `nodes`: node addresses ("ucx://host:port"); none may be empty.
  dht(node& n, std::vector<std::string> nodes, dht_options options = {});
  /// Over the nodes of a group's members (nodes_of).
  static dht over(node& n, const group::group_view& view, dht_options options = {});

  /// The node that owns `key`.
  const std::string& owner_of(std::string_view key) const;

  /// Stores `value` under `key` on its owner. Result: an empty message.
  ops::op_handle put(std::string key, std::string value) const;
  /// The value under `key` (a std::string); troupe.not_found when there is none.
  ops::op_handle get(std::string key) const;

  const std::vector<std::string>& nodes() const { return nodes_; }

private:
  node* node_;
  std::vector<std::string> nodes_;
  std::vector<uint64_t> node_hashes_;
  dht_options options_;
};

// -- the ops (registered by register_builtin_ops) --------------------------------------

class dht_put_origin : public ops::origin_side {
public:
  dht_put_origin(std::string table, std::string key, std::string value,
                 uint64_t rdma_threshold);
  ops::step on_start(ops::origin_context& ctx) override;
  ops::step on_message(ops::origin_context& ctx, size_t from,
                       const typed_message& m) override;
  ops::step on_target_done(ops::origin_context& ctx, size_t from) override;

private:
  std::string table_, key_, value_;
  uint64_t rdma_threshold_;
  std::shared_ptr<memory_region> exposed_; // a large value, until the owner has it
};

class dht_put_target : public ops::target_side {
public:
  ops::step on_start(ops::target_context& ctx, const typed_message& m) override;
  ops::step on_other(ops::target_context& ctx, caf::message& m) override;

private:
  std::string table_, key_;
  std::shared_ptr<memory_region> local_;
  reserved_bytes reservation_;
};

struct dht_put_op {
  static constexpr const char* name = "dht-put";
  using origin = dht_put_origin;
  using target = dht_put_target;
};

class dht_get_origin : public ops::origin_side {
public:
  dht_get_origin(std::string table, std::string key, uint64_t rdma_threshold);
  ops::step on_start(ops::origin_context& ctx) override;
  ops::step on_message(ops::origin_context& ctx, size_t from,
                       const typed_message& m) override;
  ops::step on_other(ops::origin_context& ctx, caf::message& m) override;

private:
  std::string table_, key_;
  uint64_t rdma_threshold_;
  std::shared_ptr<memory_region> local_;
};

class dht_get_target : public ops::target_side {
public:
  ops::step on_start(ops::target_context& ctx, const typed_message& m) override;

private:
  std::shared_ptr<memory_region> exposed_; // until the origin ends the op
};

struct dht_get_op {
  static constexpr const char* name = "dht-get";
  using origin = dht_get_origin;
  using target = dht_get_target;
};

} // namespace troupe::actors
