#include "actors/ops/scatter_gather.hpp"

#include <algorithm>
#include <set>

#include <capnp/message.h>
#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>

#include "actors/ops/window.hpp"
#include "base/error.hpp"
#include "runtime/node.hpp"

namespace troupe::actors {

namespace {

/// Where scatter keeps its windows on each node.
constexpr const char* scatter_store = "troupe.scatter";

constexpr uint64_t fetched_tag = 1;
constexpr uint64_t put_tag = 2;

ops::step refuse(const char* op, const std::string& why) {
  return ops::step::fail(make_error(errc::refused, std::string{op} + ": " + why));
}

} // namespace

std::vector<uint64_t> equal_windows(uint64_t bytes, size_t n) {
  if (n == 0)
    return {};
  std::vector<uint64_t> windows(n, bytes / n);
  windows.back() += bytes % n;
  return windows;
}

std::vector<std::string> nodes_of(const group::group_view& view) {
  std::vector<std::string> nodes;
  std::set<std::string> seen;
  for (const auto& m : view.members)
    if (seen.insert(m.address).second)
      nodes.push_back(m.address);
  return nodes;
}

std::optional<blob> scattered(node& n, const std::string& name) {
  return n.ops().local<blob_store>(scatter_store)->get(name);
}

// -- windows over one buffer ----------------------------------------------------------

windowed_origin::windowed_origin(const char* op, std::string name,
                                 std::shared_ptr<memory_region> buffer,
                                 std::vector<uint64_t> windows)
  : op_(op), name_(std::move(name)), buffer_(std::move(buffer)),
    windows_(std::move(windows)) {
}

ops::step windowed_origin::send_windows(ops::origin_context& ctx, const char* progress) {
  if (name_.empty())
    return refuse(op_, "an empty name");
  if (!buffer_)
    return refuse(op_, "no buffer");
  if (windows_.size() != ctx.targets().size())
    return refuse(op_, std::to_string(windows_.size()) + " windows for "
                         + std::to_string(ctx.targets().size()) + " targets");
  // Two windows on one node would land under the same name there.
  std::set<std::string> nodes{ctx.targets().begin(), ctx.targets().end()};
  if (nodes.size() != ctx.targets().size())
    return refuse(op_, "a node is named twice among the targets");
  uint64_t offset = 0;
  for (auto length : windows_) {
    if (length > buffer_->size() - offset)
      return refuse(op_, "the windows need more than the buffer's "
                           + std::to_string(buffer_->size()) + " bytes");
    offset += length;
  }
  total_ = offset;
  offset = 0;
  for (size_t i = 0; i < windows_.size(); ++i) {
    capnp::MallocMessageBuilder builder;
    auto m = builder.initRoot<schema::ops::NamedWindow>();
    m.setName(name_);
    write_window(buffer_->descriptor(), offset, windows_[i], m.initWindow());
    ctx.send(i, typed_message::of<schema::ops::NamedWindow>(builder));
    offset += windows_[i];
  }
  ctx.set_state("0 of " + std::to_string(windows_.size()) + progress);
  return ops::step::wait();
}

ops::step windowed_origin::all_done_or_wait(ops::origin_context& ctx) {
  if (++done_ < ctx.targets().size()) {
    ctx.set_state(std::to_string(done_) + " of " + std::to_string(ctx.targets().size())
                  + " targets done");
    return ops::step::wait();
  }
  return ops::step::done(caf::make_message(total_));
}

// -- scatter --------------------------------------------------------------------------

scatter_origin::scatter_origin(std::string name, std::shared_ptr<memory_region> buffer,
                               std::vector<uint64_t> windows)
  : windowed_origin("scatter", std::move(name), std::move(buffer), std::move(windows)) {
}

ops::step scatter_origin::on_start(ops::origin_context& ctx) {
  return send_windows(ctx, " windows fetched");
}

ops::step scatter_origin::on_message(ops::origin_context& ctx, size_t from,
                                     const typed_message& m) {
  fetched_from_.resize(ctx.targets().size());
  if (!m.holds<schema::ops::ScatterFetched>() || committed_ || fetched_from_[from])
    return ops::step::fail(
      make_error(errc::provider_failed, "scatter: a target sent something unexpected"));
  fetched_from_[from] = true;
  auto n = ctx.targets().size();
  auto fetched =
    static_cast<size_t>(std::count(fetched_from_.begin(), fetched_from_.end(), true));
  if (fetched < n) {
    ctx.set_state(std::to_string(fetched) + " of " + std::to_string(n)
                  + " windows fetched");
    return ops::step::wait();
  }
  // Every window is where it goes: the buffer is no longer read.
  committed_ = true;
  buffer_.reset();
  capnp::MallocMessageBuilder builder;
  builder.initRoot<schema::ops::ScatterCommit>();
  for (size_t i = 0; i < n; ++i)
    ctx.send(i, typed_message::of<schema::ops::ScatterCommit>(builder));
  ctx.set_state("committed, 0 of " + std::to_string(n) + " targets done");
  return ops::step::wait();
}

ops::step scatter_origin::on_target_done(ops::origin_context& ctx, size_t from) {
  if (!committed_)
    return ops::step::fail(
      make_error(errc::provider_failed,
                 "scatter: target " + ctx.targets()[from] + " ended before the commit"));
  return all_done_or_wait(ctx);
}

ops::step scatter_target::on_start(ops::target_context& ctx, const typed_message& m) {
  if (!m.holds<schema::ops::NamedWindow>())
    return refuse("scatter", "expected a NamedWindow");
  typed_reader<schema::ops::NamedWindow> reader{m};
  name_ = reader.root().getName();
  window w;
  if (auto bad = read_window(reader.root().getWindow(), w); !bad.empty())
    return refuse("scatter", bad);
  if (name_.empty())
    return refuse("scatter", "an empty name");
  length_ = w.length;
  // Refused now, before anything is fetched, if this node may not keep it.
  if (auto err = reserve_kept(ctx.runtime(), length_, reservation_))
    return ops::step::fail(std::move(err));
  if (length_ == 0)
    return fetched(ctx);
  if (auto err = fetch_window(ctx, w, local_, fetched_tag))
    return ops::step::fail(std::move(err));
  return ops::step::wait();
}

ops::step scatter_target::fetched(ops::target_context& ctx) {
  capnp::MallocMessageBuilder builder;
  builder.initRoot<schema::ops::ScatterFetched>().setLength(length_);
  ctx.reply(typed_message::of<schema::ops::ScatterFetched>(builder));
  ctx.set_state("fetched, waiting for the commit");
  return ops::step::wait();
}

ops::step scatter_target::on_other(ops::target_context& ctx, caf::message& m) {
  auto done = rdma_completion(m);
  if (!done)
    return target_side::on_other(ctx, m);
  if (*done)
    return ops::step::fail(std::move(*done));
  return fetched(ctx);
}

ops::step scatter_target::on_message(ops::target_context& ctx, const typed_message& m) {
  if (!m.holds<schema::ops::ScatterCommit>())
    return refuse("scatter", "expected a ScatterCommit");
  blob kept;
  if (local_)
    kept.region = std::move(local_);
  else
    kept.bytes = std::make_shared<const std::string>();
  ctx.runtime()
    .local<blob_store>(scatter_store)
    ->put(name_, std::move(kept), std::move(reservation_));
  return ops::step::done();
}

// -- gather ---------------------------------------------------------------------------

gather_origin::gather_origin(std::string name, std::shared_ptr<memory_region> buffer,
                             std::vector<uint64_t> windows)
  : windowed_origin("gather", std::move(name), std::move(buffer), std::move(windows)) {
}

ops::step gather_origin::on_start(ops::origin_context& ctx) {
  return send_windows(ctx, " targets done");
}

ops::step gather_origin::on_message(ops::origin_context&, size_t, const typed_message&) {
  return ops::step::fail(
    make_error(errc::provider_failed, "gather: a target sent something unexpected"));
}

ops::step gather_origin::on_target_done(ops::origin_context& ctx, size_t) {
  return all_done_or_wait(ctx);
}

ops::step gather_target::on_start(ops::target_context& ctx, const typed_message& m) {
  if (!m.holds<schema::ops::NamedWindow>())
    return refuse("gather", "expected a NamedWindow");
  typed_reader<schema::ops::NamedWindow> reader{m};
  std::string name = reader.root().getName();
  window w;
  if (auto bad = read_window(reader.root().getWindow(), w); !bad.empty())
    return refuse("gather", bad);
  auto store = ctx.runtime().local<blob_store>(scatter_store);
  auto kept = store->get(name);
  if (!kept)
    return ops::step::fail(
      make_error(errc::not_found, "gather: nothing is kept under \"" + name + "\""));
  if (kept->size() != w.length)
    return refuse("gather", "\"" + name + "\" holds " + std::to_string(kept->size())
                              + " bytes, the window has " + std::to_string(w.length));
  if (w.length == 0)
    return ops::step::done();
  auto region = store->exposed(ctx.self()->system(), name);
  if (!region)
    return ops::step::fail(region.error());
  kept_ = *region;
  rdma_put(ctx.self()->system(), w.region, w.offset, kept_, 0, w.length,
           caf::actor_cast<caf::actor>(ctx.self()), put_tag);
  ctx.set_state("putting " + std::to_string(w.length) + " bytes");
  return ops::step::wait();
}

ops::step gather_target::on_other(ops::target_context& ctx, caf::message& m) {
  auto done = rdma_completion(m);
  if (!done)
    return target_side::on_other(ctx, m);
  if (*done)
    return ops::step::fail(std::move(*done));
  return ops::step::done();
}

} // namespace troupe::actors
