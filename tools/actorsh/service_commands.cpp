// actorsh's instance services: `overlay` (the tree overlay, actors/overlay/, as every
// rank sees its own place in it, gathered up the tree, like `flux overlay status`) and
// `event pub|sub` (actors/events/, like `flux event pub|sub`).
#include "tools/actorsh/shell.hpp"

#include <chrono>
#include <functional>
#include <iostream>
#include <set>

#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/events/events.hpp"
#include "actors/overlay/overlay.hpp"
#include "base/error.hpp"
#include "runtime/node.hpp"

namespace troupe::shell {

bool session::overlay_status(const std::vector<std::string>& args, std::ostream& out,
                             std::ostream& err) {
  if (args.size() != 1) {
    err << "usage: overlay\n";
    return false;
  }
  auto overlay = client_.remote_provider(address_, "overlay", 1, opts_.timeout);
  if (!overlay) {
    err << "overlay at " << address_ << ": "
        << (has_code(overlay.error(), errc::not_found)
              ? std::string{"the node runs no overlay (provider type \"overlay\", id 1)"}
              : describe(overlay.error()))
        << "\n";
    return false;
  }
  overlay::reduction spec;
  spec.op = "concat";
  spec.contribution = "status";
  // Ranks that do not answer in half the shell's time are reported lost.
  spec.timeout_ms = static_cast<uint32_t>(std::max<int64_t>(1, opts_.timeout.count() / 2));
  caf::scoped_actor self{client_.system()};
  bool ok = false;
  self->request(*overlay, opts_.timeout, overlay::reduce_atom::value, spec)
    .receive(
      [&](overlay::reduction_result& r) {
        ok = true;
        std::map<uint32_t, nlohmann::json> ranks;
        for (const auto& [rank, text] : r.result.by_rank)
          ranks[rank] = nlohmann::json::parse(text, nullptr, false);
        if (opts_.json) {
          auto up = nlohmann::json::array();
          for (auto& [rank, j] : ranks)
            up.push_back(j);
          out << nlohmann::json{{"size", r.size}, {"up", up}, {"lost", r.missing}}.dump()
              << "\n";
          return;
        }
        uint32_t fanout = ranks.empty() ? 0 : ranks.begin()->second.value("fanout", 0u);
        out << "overlay: " << r.size << " ranks, fanout " << fanout << ", "
            << ranks.size() << " up, " << r.missing.size() << " lost\n";
        std::set<uint32_t> lost(r.missing.begin(), r.missing.end());
        // Depth-first from the root, children in rank order.
        std::function<void(uint32_t, int)> show = [&](uint32_t rank, int depth) {
          out << std::string(2 * depth, ' ') << rank << " ";
          if (auto i = ranks.find(rank); i != ranks.end())
            out << i->second.value("address", "") << " up (view "
                << i->second.value("view", "") << ")\n";
          else
            out << (lost.count(rank) ? "lost" : "unknown") << "\n";
          if (fanout > 0)
            for (auto child : overlay::children_of(rank, r.size, fanout))
              show(child, depth + 1);
        };
        if (r.size > 0)
          show(0, 0);
        for (const auto& [rank, text] : r.errors)
          out << "rank " << rank << ": " << text << "\n";
      },
      [&](caf::error& e) { err << "overlay: " << describe(e) << "\n"; });
  return ok;
}

bool session::event(const std::vector<std::string>& args, std::ostream& out,
                    std::ostream& err) {
  const char* usage = "usage: event pub TOPIC [PAYLOAD...] | event sub PREFIX [-n EVENTS] "
                      "[--for MS]\n";
  if (args.size() < 3 || (args[1] != "pub" && args[1] != "sub")) {
    err << usage;
    return false;
  }
  long count = -1;
  long for_ms = -1;
  std::string payload;
  if (args[1] == "pub") {
    for (size_t i = 3; i < args.size(); ++i)
      payload += (i > 3 ? " " : "") + args[i];
  } else if (!read_count_and_time(args, 3, count, for_ms, usage, err)) {
    return false;
  }
  auto events = client_.remote_provider(address_, "events", 1, opts_.timeout);
  if (!events) {
    err << "events at " << address_ << ": "
        << (has_code(events.error(), errc::not_found)
              ? std::string{"the node runs no events provider (type \"events\", id 1)"}
              : describe(events.error()))
        << "\n";
    return false;
  }
  caf::scoped_actor self{client_.system()};
  const auto& topic = args[2];
  if (args[1] == "pub") {
    bool ok = false;
    self->request(*events, opts_.timeout, events::publish_atom::value, topic, payload)
      .receive(
        [&](const events::publish_receipt& r) {
          ok = true;
          if (opts_.json)
            out << nlohmann::json{{"topic", topic},
                                  {"seq", r.seq},
                                  {"global", r.global},
                                  {"ranks", r.ranks}}
                     .dump()
                << "\n";
          else
            out << "published " << topic << ": seq " << r.seq << ", global " << r.global
                << ", " << r.ranks << " ranks got it\n";
        },
        [&](const caf::error& e) { err << "event pub: " << describe(e) << "\n"; });
    return ok;
  }
  bool subscribed = false;
  self->request(*events, opts_.timeout, caf::subscribe_atom::value, topic, caf::actor{self})
    .receive([&] { subscribed = true; },
             [&](const caf::error& e) { err << "event sub: " << describe(e) << "\n"; });
  if (!subscribed)
    return false;
  if (!opts_.json)
    out << "subscribed to \"" << topic << "\" (Ctrl-C stops)" << std::endl;
  using clock_type = std::chrono::steady_clock;
  auto deadline = for_ms >= 0 ? clock_type::now() + std::chrono::milliseconds{for_ms}
                              : clock_type::time_point::max();
  long seen = 0;
  interrupted_ = false;
  while (!interrupted_ && (count < 0 || seen < count) && clock_type::now() < deadline) {
    self->receive(
      [&](const events::event& ev) {
        ++seen;
        if (opts_.json)
          out << nlohmann::json{{"topic", ev.topic},   {"seq", ev.seq},
                                {"global", ev.global}, {"payload", ev.payload},
                                {"publisher", ev.publisher}}
                   .dump()
              << std::endl;
        else
          out << ev.global << "  " << ev.topic << "  seq " << ev.seq << "  " << ev.payload
              << std::endl;
      },
      caf::after(std::chrono::milliseconds{100}) >> [] {});
  }
  caf::anon_send(*events, caf::unsubscribe_atom::value, caf::actor{self});
  return true;
}

} // namespace troupe::shell
