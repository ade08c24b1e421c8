#pragma once
// The `overlay` provider: a k-ary tree over the ranks of an instance's group, for
// request routing to a rank, reductions up the tree and broadcast down it
// (DESIGN.md, "Instance services"; flux-core's overlay, `flux overlay status`).
//
// Every rank runs one, with the same provider id, beside its group provider:
//   {"type": "overlay", "name": "overlay", "provider_id": 1,
//    "dependencies": {"group": "group"},
//    "config": {"fanout": 8, "timeout_ms": 5000}}
// The tree is the group view's members in rank order: rank i's parent is
// (i - 1) / fanout, its children fanout * i + 1 ... fanout * i + fanout; rank 0 is
// the root. It is rebuilt from every view the group provider pushes (a member that
// died, left or joined), so routes and reductions always use the current view.
//
// Protocol (every rank answers):
//   (status_atom)                               -> status (this rank's place)
//   (route_atom, rank, provider name, message)  -> what that provider on `rank`
//       answers; the request travels the tree (up, then down) and the answer the
//       same way back, hop by hop. troupe.not_found for a rank outside the view or
//       a provider the rank does not run.
//   (route_atom, rank, std::vector<uint32_t> path) -> the path with every rank that
//       passed it on and `rank` itself appended (to see the routes)
//   (reduce_atom, reduction)                    -> reduction_result over every rank
//       (asked at any rank, run from the root)
//   (broadcast_atom, provider name, message)    -> reduction_result: the message is
//       sent to that provider on every rank, value = how many got it
// A rank that does not answer within the reduction's time (dead, stopped, or its
// subtree slow) is named in `missing`, with its whole subtree; the others' values
// still count. Errors of a contribution (a provider that refused) are in `errors`.
// States: one. Owner: the node's provider registry.

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/fwd.hpp>
#include <caf/message.hpp>
#include <caf/meta/type_name.hpp>

namespace troupe {
class provider_registry;
} // namespace troupe

namespace troupe::overlay {

using status_atom = caf::atom_constant<caf::atom("ovstatus")>;
using route_atom = caf::atom_constant<caf::atom("ovroute")>;
using reduce_atom = caf::atom_constant<caf::atom("ovreduce")>;
using broadcast_atom = caf::atom_constant<caf::atom("ovbcast")>;

constexpr uint32_t no_rank = UINT32_MAX;

/// A rank's place in the tree.
struct status {
  uint32_t rank = no_rank; ///< no_rank while the node is not (yet) in a view
  uint32_t size = 0;
  uint32_t fanout = 0;
  uint32_t parent = no_rank; ///< no_rank at the root
  std::vector<uint32_t> children;
  std::string address;       ///< this node's
  uint64_t view_epoch = 0;
  uint64_t view_seq = 0;
  uint64_t rebuilds = 0;     ///< trees built since start

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, status& x) {
    return f(caf::meta::type_name("troupe::overlay::status"), x.rank, x.size, x.fanout,
             x.parent, x.children, x.address, x.view_epoch, x.view_seq, x.rebuilds);
  }
};

/// A value reduced up the tree: a number, or texts by rank (concat).
struct value {
  enum kind_type : uint8_t { none, integer, real, texts };
  uint8_t kind = none;
  int64_t i = 0;
  double d = 0;
  std::map<uint32_t, std::string> by_rank;

  static value of_integer(int64_t x) { return {integer, x, 0, {}}; }
  static value of_real(double x) { return {real, 0, x, {}}; }
  static value of_text(uint32_t rank, std::string text) {
    return {texts, 0, 0, {{rank, std::move(text)}}};
  }
  /// The number (integer or real) as a double.
  double number() const { return kind == real ? d : static_cast<double>(i); }

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, value& x) {
    return f(caf::meta::type_name("troupe::overlay::value"), x.kind, x.i, x.d, x.by_rank);
  }
};

/// What a reduction asks of every rank and how the answers combine.
struct reduction {
  /// "sum", "min", "max" (numbers), "concat" (texts by rank), or the name of a
  /// function registered with register_reduction on every rank.
  std::string op = "sum";
  /// What each rank contributes: "rank" (its rank), "one" (1: counts the ranks),
  /// "status" (its status as JSON text), "query" (`content` asked of provider
  /// `provider`, which answers with one value of the type `answer` names) or
  /// "deliver" (`content` sent to `provider`; contributes 1).
  std::string contribution = "one";
  std::string provider;
  caf::message content;
  /// A query's answer: value::integer (an int64_t), value::real (a double) or
  /// value::texts (a std::string).
  uint8_t answer = value::integer;
  uint32_t timeout_ms = 0; ///< 0: the overlay's configured timeout

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, reduction& x) {
    return f(caf::meta::type_name("troupe::overlay::reduction"), x.op, x.contribution,
             x.provider, x.content, x.answer, x.timeout_ms);
  }
};

struct reduction_result {
  value result;
  uint32_t contributors = 0;      ///< ranks whose contribution is in `result`
  std::vector<uint32_t> missing;  ///< ranks that did not answer in time
  std::map<uint32_t, std::string> errors; ///< ranks whose contribution failed
  uint32_t size = 0;              ///< ranks in the view the root reduced over
  uint64_t view_seq = 0;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, reduction_result& x) {
    return f(caf::meta::type_name("troupe::overlay::reduction_result"), x.result,
             x.contributors, x.missing, x.errors, x.size, x.view_seq);
  }
};

// -- the tree (tree.cpp; pure) -----------------------------------------------------

/// Rank `rank`'s parent in a k-ary tree, or no_rank for the root.
uint32_t parent_of(uint32_t rank, uint32_t fanout);
/// Rank `rank`'s children among `size` ranks.
std::vector<uint32_t> children_of(uint32_t rank, uint32_t size, uint32_t fanout);
/// `rank` and every rank below it.
std::vector<uint32_t> subtree_of(uint32_t rank, uint32_t size, uint32_t fanout);
/// The next hop from `from` towards `to` (a child whose subtree holds `to`, else the
/// parent); `to` itself when `from` == `to`.
uint32_t next_hop(uint32_t from, uint32_t to, uint32_t fanout);

/// A combining function (user reductions); it throws nothing, and reports a value it
/// cannot combine through caf::error.
using combine_fn = std::function<caf::error(value& acc, const value& next)>;

/// Combines `next` into `acc` by `op` ("sum", "min", "max", "concat" or a registered
/// function). An empty `acc` takes `next`.
caf::error combine(const std::string& op, value& acc, const value& next);

/// A reduction function's place in this process's table: the function is there while
/// the registration lives. A module keeps it in a static, so that the function leaves
/// the table when the module is unloaded (its code with it), not later.
class [[nodiscard]] reduction_registration {
public:
  reduction_registration() = default;
  explicit reduction_registration(caf::error err) : error_(std::move(err)) {}
  explicit reduction_registration(std::string name) : name_(std::move(name)) {}
  reduction_registration(reduction_registration&& other) noexcept;
  reduction_registration& operator=(reduction_registration&& other) noexcept;
  reduction_registration(const reduction_registration&) = delete;
  reduction_registration& operator=(const reduction_registration&) = delete;
  ~reduction_registration();

  /// Why registering failed (a taken or built-in name), or none.
  const caf::error& error() const { return error_; }

private:
  void release();

  std::string name_; // registered under it; empty when not (or moved from)
  caf::error error_;
};

/// Registers a reduction function under `name` in this process (every rank of an
/// instance must register it, e.g. from a module). The returned registration must be
/// kept; its error() says when the name is taken or built in.
reduction_registration register_reduction(const std::string& name, combine_fn fn);

/// `s` as one line of JSON (the "status" contribution; `actorsh overlay` reads it).
std::string status_json(const status& s);

// -- registration -------------------------------------------------------------------

/// Registers provider type "overlay".
void register_overlay_provider(provider_registry& registry);

/// Registers the overlay's message types. Every node that sends or receives them
/// calls this before its actor system starts.
void register_overlay_types(caf::actor_system_config& cfg);

} // namespace troupe::overlay
