#include "actors/ops/dht.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include <capnp/message.h>
#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>

#include "actors/ops/blob_store.hpp"
#include "actors/ops/scatter_gather.hpp"
#include "actors/ops/window.hpp"
#include "base/error.hpp"
#include "runtime/config.hpp"
#include "runtime/node.hpp"

namespace troupe::actors {

namespace {

constexpr uint64_t got_tag = 1;

uint64_t fnv1a64(std::string_view bytes) {
  uint64_t h = 14695981039346656037ull;
  for (char c : bytes) {
    h ^= static_cast<uint8_t>(c);
    h *= 1099511628211ull;
  }
  return h;
}

/// splitmix64's finalizer: spreads a combined hash over all 64 bits.
uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::shared_ptr<blob_store> table_store(ops::op_runtime& rt, const std::string& table) {
  return rt.local<blob_store>("troupe.dht." + table);
}

/// Keeps `value` (inline bytes) under `key`, within the node's store limit.
caf::error keep_bytes(ops::op_runtime& rt, const std::string& table,
                      const std::string& key, std::string value) {
  reserved_bytes reservation;
  if (auto err = reserve_kept(rt, value.size(), reservation))
    return err;
  table_store(rt, table)->put(
    key, blob{std::make_shared<const std::string>(std::move(value)), nullptr},
    std::move(reservation));
  return caf::none;
}

/// A key as error messages show it: printable, and not too long.
std::string shown(const std::string& key) {
  std::string out;
  for (size_t i = 0; i < key.size() && i < 64; ++i)
    out += (key[i] >= 0x20 && key[i] < 0x7f) ? key[i] : '?';
  return "\"" + out + (key.size() > 64 ? "...\"" : "\"");
}

caf::error no_such_key(const std::string& table, const std::string& key) {
  return make_error(errc::not_found,
                    "dht: no key " + shown(key) + " in table \"" + table + "\"");
}

ops::step unexpected(const char* op) {
  return ops::step::fail(
    make_error(errc::provider_failed, std::string{op}
                                        + ": the peer sent something "
                                          "unexpected"));
}

} // namespace

// -- the table ------------------------------------------------------------------------

dht::dht(node& n, std::vector<std::string> nodes, dht_options options)
  : node_(&n), nodes_(std::move(nodes)), options_(std::move(options)) {
  if (nodes_.empty())
    throw std::invalid_argument("a DHT needs at least one node");
  options_.rdma_threshold = std::min({options_.rdma_threshold, max_inline_bytes,
                                      n.config().transport.max_message_bytes / 4});
  for (const auto& address : nodes_) {
    if (address.empty())
      throw std::invalid_argument("a DHT node address is empty");
    node_hashes_.push_back(fnv1a64(address));
  }
}

dht dht::over(node& n, const group::group_view& view, dht_options options) {
  return dht{n, nodes_of(view), std::move(options)};
}

const std::string& dht::owner_of(std::string_view key) const {
  auto k = fnv1a64(key);
  size_t best = 0;
  uint64_t best_score = 0;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    auto score = mix64(k ^ node_hashes_[i]);
    if (i == 0 || score > best_score) {
      best = i;
      best_score = score;
    }
  }
  return nodes_[best];
}

ops::op_handle dht::put(std::string key, std::string value) const {
  const auto& owner = owner_of(key);
  if (owner == node_->address()) {
    if (auto err = keep_bytes(node_->ops(), options_.table, key, std::move(value)))
      return ops::op_handle::finished(std::move(err));
    return ops::op_handle::finished(caf::message{});
  }
  return ops::launch_with<dht_put_op>(*node_, {options_.deadline}, {owner},
                                      options_.table, std::move(key), std::move(value),
                                      options_.rdma_threshold);
}

ops::op_handle dht::get(std::string key) const {
  const auto& owner = owner_of(key);
  if (owner == node_->address()) {
    auto value = table_store(node_->ops(), options_.table)->get(key);
    if (!value)
      return ops::op_handle::finished(no_such_key(options_.table, key));
    return ops::op_handle::finished(caf::make_message(value->copy()));
  }
  return ops::launch_with<dht_get_op>(*node_, {options_.deadline}, {owner},
                                      options_.table, std::move(key),
                                      options_.rdma_threshold);
}

// -- put ------------------------------------------------------------------------------

dht_put_origin::dht_put_origin(std::string table, std::string key, std::string value,
                               uint64_t rdma_threshold)
  : table_(std::move(table)), key_(std::move(key)), value_(std::move(value)),
    rdma_threshold_(rdma_threshold) {
}

ops::step dht_put_origin::on_start(ops::origin_context& ctx) {
  capnp::MallocMessageBuilder builder;
  auto put = builder.initRoot<schema::ops::DhtPut>();
  put.setTable(table_);
  put.setKey(bytes_of(key_));
  if (value_.size() > rdma_threshold_) {
    auto region = pooled_region(ctx, value_.size(), /*exposed=*/true);
    if (!region)
      return ops::step::fail(region.error());
    exposed_ = *region;
    std::memcpy(exposed_->data(), value_.data(), value_.size());
    value_ = std::string{}; // the region holds it now
    write_window(exposed_->descriptor(), 0, exposed_->size(), put.initRemote());
    ctx.set_state("value exposed, waiting for the owner");
  } else {
    put.setInline(bytes_of(value_));
    ctx.set_state("waiting for the owner");
  }
  ctx.send(0, typed_message::of<schema::ops::DhtPut>(builder));
  return ops::step::wait();
}

ops::step dht_put_origin::on_message(ops::origin_context&, size_t, const typed_message&) {
  return unexpected("dht-put");
}

ops::step dht_put_origin::on_target_done(ops::origin_context& ctx, size_t) {
  // The owner has the value: nobody reads this region any more.
  settle_region(ctx, exposed_);
  exposed_.reset();
  return ops::step::done();
}

ops::step dht_put_target::on_start(ops::target_context& ctx, const typed_message& m) {
  if (!m.holds<schema::ops::DhtPut>())
    return unexpected("dht-put");
  typed_reader<schema::ops::DhtPut> reader{m};
  auto put = reader.root();
  table_ = put.getTable();
  key_ = string_of(put.getKey());
  window w;
  if (put.isRemote()) {
    if (auto bad = read_window(put.getRemote(), w); !bad.empty())
      return ops::step::fail(make_error(errc::refused, "dht-put: " + bad));
  }
  if (put.isInline() || w.length == 0) {
    auto value = put.isInline() ? string_of(put.getInline()) : std::string{};
    if (auto err = keep_bytes(ctx.runtime(), table_, key_, std::move(value)))
      return ops::step::fail(std::move(err));
    return ops::step::done();
  }
  // Refused before anything is fetched if this node may not keep it.
  if (auto err = reserve_kept(ctx.runtime(), w.length, reservation_))
    return ops::step::fail(std::move(err));
  if (auto err = fetch_window(ctx, w, local_, got_tag))
    return ops::step::fail(std::move(err));
  return ops::step::wait();
}

ops::step dht_put_target::on_other(ops::target_context& ctx, caf::message& m) {
  auto done = rdma_completion(m);
  if (!done)
    return target_side::on_other(ctx, m);
  if (*done)
    return ops::step::fail(std::move(*done));
  // Kept in the region it arrived in: a get of it is one RDMA read, no copy.
  table_store(ctx.runtime(), table_)
    ->put(key_, blob{nullptr, std::move(local_)}, std::move(reservation_));
  return ops::step::done();
}

// -- get ------------------------------------------------------------------------------

dht_get_origin::dht_get_origin(std::string table, std::string key,
                               uint64_t rdma_threshold)
  : table_(std::move(table)), key_(std::move(key)), rdma_threshold_(rdma_threshold) {
}

ops::step dht_get_origin::on_start(ops::origin_context& ctx) {
  capnp::MallocMessageBuilder builder;
  auto get = builder.initRoot<schema::ops::DhtGet>();
  get.setTable(table_);
  get.setKey(bytes_of(key_));
  get.setInlineLimit(rdma_threshold_);
  ctx.send(0, typed_message::of<schema::ops::DhtGet>(builder));
  ctx.set_state("waiting for the owner");
  return ops::step::wait();
}

ops::step dht_get_origin::on_message(ops::origin_context& ctx, size_t,
                                     const typed_message& m) {
  if (!m.holds<schema::ops::DhtValue>() || local_)
    return unexpected("dht-get");
  typed_reader<schema::ops::DhtValue> reader{m};
  auto value = reader.root();
  if (value.isInline())
    return ops::step::done(caf::make_message(string_of(value.getInline())));
  window w;
  if (auto bad = read_window(value.getRemote(), w); !bad.empty())
    return ops::step::fail(make_error(errc::provider_failed, "dht-get: " + bad));
  if (w.length == 0)
    return ops::step::done(caf::make_message(std::string{}));
  if (auto err = fetch_window(ctx, w, local_, got_tag))
    return ops::step::fail(std::move(err));
  return ops::step::wait();
}

ops::step dht_get_origin::on_other(ops::origin_context& ctx, caf::message& m) {
  auto done = rdma_completion(m);
  if (!done)
    return origin_side::on_other(ctx, m);
  if (*done)
    return ops::step::fail(std::move(*done));
  // Ending the op ends the owner's side, which stops exposing the value.
  return ops::step::done(caf::make_message(
    std::string{reinterpret_cast<const char*>(local_->data()), local_->size()}));
}

ops::step dht_get_target::on_start(ops::target_context& ctx, const typed_message& m) {
  if (!m.holds<schema::ops::DhtGet>())
    return unexpected("dht-get");
  typed_reader<schema::ops::DhtGet> reader{m};
  auto get = reader.root();
  std::string table = get.getTable();
  auto key = string_of(get.getKey());
  // Looked up, not made: a get must not create a table for a name off the network.
  auto store = ctx.runtime().find_local<blob_store>("troupe.dht." + table);
  auto value = store ? store->get(key) : std::nullopt;
  if (!value)
    return ops::step::fail(no_such_key(table, key));
  capnp::MallocMessageBuilder builder;
  auto answer = builder.initRoot<schema::ops::DhtValue>();
  if (value->size() <= std::min(get.getInlineLimit(), dht::max_inline_bytes)) {
    auto bytes = value->copy();
    answer.setInline(bytes_of(bytes));
    ctx.reply(typed_message::of<schema::ops::DhtValue>(builder));
    return ops::step::done();
  }
  auto region = store->exposed(ctx.self()->system(), key);
  if (!region)
    return ops::step::fail(region.error());
  exposed_ = *region;
  expose_region(ctx, exposed_); // the origin may read it even after this side ends
  write_window(exposed_->descriptor(), 0, exposed_->size(), answer.initRemote());
  ctx.reply(typed_message::of<schema::ops::DhtValue>(builder));
  ctx.set_state("value exposed, waiting for the origin");
  return ops::step::wait();
}

} // namespace troupe::actors
