#include "actors/ops/ping.hpp"

#include <capnp/message.h>

#include "base/error.hpp"
#include "schema/ops.capnp.h"

namespace troupe::actors {

namespace {

typed_message make_ping(const std::string& payload) {
  capnp::MallocMessageBuilder builder;
  auto ping = builder.initRoot<schema::ops::Ping>();
  ping.setPayload(
    kj::arrayPtr(reinterpret_cast<const kj::byte*>(payload.data()), payload.size()));
  return typed_message::of<schema::ops::Ping>(builder);
}

} // namespace

ping_origin::ping_origin(std::string payload) : payload_(std::move(payload)) {
}

ops::step ping_origin::on_start(ops::origin_context& ctx) {
  for (size_t i = 0; i < ctx.targets().size(); ++i)
    ctx.send(i, make_ping(payload_));
  ctx.set_state("waiting for " + std::to_string(ctx.targets().size()) + " answers");
  return ops::step::wait();
}

ops::step ping_origin::on_message(ops::origin_context& ctx, size_t from,
                                  const typed_message& m) {
  if (!m.holds<schema::ops::Ping>())
    return ops::step::fail(
      make_error(errc::provider_failed, "ping: target " + ctx.targets()[from]
                                          + " answered with another message type"));
  typed_reader<schema::ops::Ping> reader{m};
  auto back = reader.root().getPayload();
  if (back.size() != payload_.size()
      || !std::equal(back.begin(), back.end(), payload_.begin(),
                     [](kj::byte a, char b) { return a == static_cast<kj::byte>(b); }))
    return ops::step::fail(
      make_error(errc::provider_failed, "ping: target " + ctx.targets()[from]
                                          + " sent back a different payload"));
  if (++answered_ < ctx.targets().size())
    return ops::step::wait();
  return ops::step::done(caf::make_message(payload_));
}

ops::step ping_target::on_start(ops::target_context& ctx, const typed_message& m) {
  if (!m.holds<schema::ops::Ping>())
    return ops::step::fail(
      make_error(errc::refused, "ping: the first message is not a Ping"));
  ctx.reply(m); // unchanged
  return ops::step::done();
}

} // namespace troupe::actors
