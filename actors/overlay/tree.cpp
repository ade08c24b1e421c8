// The overlay's pure parts (overlay.hpp): the k-ary tree over ranks, combining
// values, the process's reduction functions, status as JSON.

#include <algorithm>
#include <mutex>

#include <nlohmann/json.hpp>

#include "actors/overlay/overlay.hpp"
#include "base/error.hpp"

namespace troupe::overlay {

uint32_t parent_of(uint32_t rank, uint32_t fanout) {
  return rank == 0 ? no_rank : (rank - 1) / fanout;
}

std::vector<uint32_t> children_of(uint32_t rank, uint32_t size, uint32_t fanout) {
  std::vector<uint32_t> result;
  uint64_t first = uint64_t{rank} * fanout + 1;
  for (uint64_t c = first; c < first + fanout && c < size; ++c)
    result.push_back(static_cast<uint32_t>(c));
  return result;
}

std::vector<uint32_t> subtree_of(uint32_t rank, uint32_t size, uint32_t fanout) {
  std::vector<uint32_t> result;
  if (rank >= size)
    return result;
  // Level by level: each level's ranks are contiguous.
  uint64_t lo = rank;
  uint64_t hi = rank;
  while (lo < size) {
    for (uint64_t r = lo; r <= hi && r < size; ++r)
      result.push_back(static_cast<uint32_t>(r));
    lo = lo * fanout + 1;
    hi = hi * fanout + fanout;
  }
  return result;
}

uint32_t next_hop(uint32_t from, uint32_t to, uint32_t fanout) {
  if (from == to)
    return to;
  // Walk up from `to` until the parent is `from` (then that is the child to take) or
  // the root is passed (then `to` is not below `from`: go up).
  uint32_t at = to;
  while (at != 0 && at > from) {
    auto up = parent_of(at, fanout);
    if (up == from)
      return at;
    at = up;
  }
  return parent_of(from, fanout);
}

namespace {

struct function_table {
  std::mutex mtx;
  std::map<std::string, combine_fn> functions;
};

function_table& functions() {
  // Never destroyed: a module unloaded after this library's statics are gone still
  // unregisters its function safely (and functions left behind are never called).
  static auto* table = new function_table;
  return *table;
}

bool is_builtin(const std::string& op) {
  return op == "sum" || op == "min" || op == "max" || op == "concat";
}

caf::error numeric(const std::string& op, value& acc, const value& next) {
  if (next.kind != value::integer && next.kind != value::real)
    return make_error(errc::invalid_argument,
                      "reduction \"" + op + "\" combines numbers, not texts");
  if (acc.kind == value::integer && next.kind == value::integer) {
    if (op == "sum")
      acc.i += next.i;
    else if (op == "min")
      acc.i = std::min(acc.i, next.i);
    else
      acc.i = std::max(acc.i, next.i);
    return caf::none;
  }
  double a = acc.number();
  double b = next.number();
  acc.kind = value::real;
  acc.i = 0;
  acc.d = op == "sum" ? a + b : op == "min" ? std::min(a, b) : std::max(a, b);
  return caf::none;
}

} // namespace

caf::error combine(const std::string& op, value& acc, const value& next) {
  if (next.kind == value::none)
    return caf::none;
  if (acc.kind == value::none && is_builtin(op)) {
    if (op != "concat" && next.kind == value::texts)
      return make_error(errc::invalid_argument,
                        "reduction \"" + op + "\" combines numbers, not texts");
    acc = next;
    return caf::none;
  }
  if (op == "concat") {
    if (next.kind != value::texts || acc.kind != value::texts)
      return make_error(errc::invalid_argument, "reduction \"concat\" combines texts");
    for (const auto& [rank, text] : next.by_rank)
      acc.by_rank[rank] = text;
    return caf::none;
  }
  if (is_builtin(op))
    return numeric(op, acc, next);
  combine_fn fn;
  {
    auto& t = functions();
    std::lock_guard<std::mutex> guard{t.mtx};
    auto i = t.functions.find(op);
    if (i == t.functions.end())
      return make_error(errc::not_found,
                        "no reduction \"" + op
                          + "\" here (built in: sum, min, max, concat; others must be "
                            "registered on every rank)");
    fn = i->second;
  }
  if (acc.kind == value::none) {
    acc = next;
    return caf::none;
  }
  return fn(acc, next);
}

reduction_registration register_reduction(const std::string& name, combine_fn fn) {
  if (name.empty() || !fn)
    return reduction_registration{
      make_error(errc::invalid_argument, "a reduction needs a name and a function")};
  if (is_builtin(name))
    return reduction_registration{
      make_error(errc::refused, "reduction \"" + name + "\" is built in")};
  auto& t = functions();
  std::lock_guard<std::mutex> guard{t.mtx};
  if (!t.functions.emplace(name, std::move(fn)).second)
    return reduction_registration{
      make_error(errc::refused, "reduction \"" + name + "\" is registered already")};
  return reduction_registration{name};
}

reduction_registration::reduction_registration(reduction_registration&& other) noexcept
  : name_(std::move(other.name_)), error_(std::move(other.error_)) {
  other.name_.clear();
}

reduction_registration&
reduction_registration::operator=(reduction_registration&& other) noexcept {
  if (this != &other) {
    release();
    name_ = std::move(other.name_);
    error_ = std::move(other.error_);
    other.name_.clear();
  }
  return *this;
}

reduction_registration::~reduction_registration() {
  release();
}

void reduction_registration::release() {
  if (name_.empty())
    return;
  auto& t = functions();
  std::lock_guard<std::mutex> guard{t.mtx};
  t.functions.erase(name_);
  name_.clear();
}

std::string status_json(const status& s) {
  nlohmann::json j;
  auto rank_or_null = [](uint32_t r) {
    return r == no_rank ? nlohmann::json(nullptr) : nlohmann::json(r);
  };
  j["rank"] = rank_or_null(s.rank);
  j["size"] = s.size;
  j["fanout"] = s.fanout;
  j["parent"] = rank_or_null(s.parent);
  j["children"] = s.children;
  j["address"] = s.address;
  j["view"] = std::to_string(s.view_epoch) + "." + std::to_string(s.view_seq);
  j["rebuilds"] = s.rebuilds;
  return j.dump();
}

} // namespace troupe::overlay
