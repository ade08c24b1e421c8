// actorsh's instance services: `overlay` (the tree overlay, actors/overlay/, as every
// rank sees its own place in it, gathered up the tree, like `flux overlay status`) and
// `event pub|sub` (actors/events/, like `flux event pub|sub`).
#include "tools/actorsh/shell.hpp"

#include <chrono>
#include <ctime>
#include <functional>
#include <iomanip>
#include <iostream>
#include <set>

#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/barrier/barrier.hpp"
#include "actors/events/events.hpp"
#include "actors/heartbeat/heartbeat.hpp"
#include "actors/logs/logs.hpp"
#include "actors/overlay/overlay.hpp"
#include "base/error.hpp"
#include "base/log.hpp"
#include "runtime/node.hpp"

namespace troupe::shell {

bool session::overlay_status(const std::vector<std::string>& args, std::ostream& out,
                             std::ostream& err) {
  if (args.size() != 1) {
    err << "usage: overlay\n";
    return false;
  }
  auto overlay = service_provider("overlay", "overlay", err);
  if (!overlay)
    return false;
  overlay::reduction spec;
  spec.op = "concat";
  spec.contribution = "status";
  // Ranks that do not answer in half the shell's time are reported lost.
  spec.timeout_ms = static_cast<uint32_t>(std::max<int64_t>(1, opts_.timeout.count() / 2));
  caf::scoped_actor self{client_.system()};
  // Each rank's heartbeat, if it runs one (heartbeat.hpp), gathered the same way.
  std::map<uint32_t, nlohmann::json> beats;
  auto beat_spec = spec;
  beat_spec.contribution = "query";
  beat_spec.provider = "heartbeat";
  beat_spec.content = caf::make_message(heartbeat::status_atom::value);
  beat_spec.answer = overlay::value::texts;
  self->request(*overlay, opts_.timeout, overlay::reduce_atom::value, beat_spec)
    .receive(
      [&](overlay::reduction_result& r) {
        for (const auto& [rank, text] : r.result.by_rank)
          beats[rank] = nlohmann::json::parse(text, nullptr, false);
      },
      [](const caf::error&) {});
  auto beat_text = [&](uint32_t rank) -> std::string {
    auto b = beats.find(rank);
    if (b == beats.end() || !b->second.is_object())
      return {};
    auto age = b->second.value("age_ms", int64_t{-1});
    std::string text = b->second.value("missed", false) ? ", MISSED HEARTBEATS" : "";
    if (age < 0)
      return text + ", no heartbeat yet";
    return text + ", beat " + std::to_string(b->second.value("seq", uint64_t{0})) + " "
           + std::to_string(age) + " ms ago";
  };
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
          for (auto& [rank, j] : ranks) {
            if (auto b = beats.find(rank); b != beats.end())
              j["heartbeat"] = b->second;
            up.push_back(j);
          }
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
                << i->second.value("view", "") << beat_text(rank) << ")\n";
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
  auto events = service_provider("events", "event", err);
  if (!events)
    return false;
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
  follow_limits limits{count, for_ms, interrupted_};
  while (limits.more()) {
    self->receive(
      [&](const events::event& ev) {
        limits.saw();
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

caf::expected<caf::actor> session::service_provider(const char* type, const char* command,
                                                    std::ostream& err) {
  auto found = client_.remote_provider(address_, type, 1, opts_.timeout);
  if (!found)
    err << command << ": "
        << (has_code(found.error(), errc::not_found)
              ? address_ + " runs no " + type + " provider (type \"" + type + "\", id 1)"
              : describe(found.error()))
        << "\n";
  return found;
}

bool session::dmesg(const std::vector<std::string>& args, std::ostream& out,
                    std::ostream& err) {
  bool follow = false;
  auto max_level = log::level::trace;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "-f") {
      follow = true;
    } else if (args[i] == "--level" && i + 1 < args.size()) {
      if (!log::parse_level(args[++i], max_level)) {
        err << "dmesg: unknown level '" << args[i]
            << "' (error, warning, info, debug, trace)\n";
        return false;
      }
    } else {
      err << "usage: dmesg [-f] [--level LEVEL]\n";
      return false;
    }
  }
  auto logs = service_provider("logs", "dmesg", err);
  if (!logs)
    return false;
  caf::scoped_actor self{client_.system()};
  uint64_t after = 0;
  interrupted_ = false;
  for (;;) {
    bool ok = false;
    self
      ->request(*logs, opts_.timeout, logs::dmesg_atom::value, after,
                static_cast<uint8_t>(max_level))
      .receive(
        [&](const std::vector<logs::log_record>& lines) {
          ok = true;
          for (const auto& r : lines) {
            after = std::max(after, r.seq);
            if (opts_.json) {
              out << nlohmann::json{{"seq", r.seq},         {"level", logs::level_name(r.level)},
                                    {"rank", r.rank},       {"address", r.address},
                                    {"time_ms", r.time_ms}, {"component", r.component},
                                    {"text", r.text}}
                       .dump()
                  << std::endl;
              continue;
            }
            auto t = std::chrono::system_clock::time_point{std::chrono::milliseconds{r.time_ms}};
            auto secs = std::chrono::system_clock::to_time_t(t);
            char stamp[32];
            std::strftime(stamp, sizeof stamp, "%H:%M:%S", std::gmtime(&secs));
            out << stamp << "." << std::setw(3) << std::setfill('0') << r.time_ms % 1000
                << std::setfill(' ') << " " << logs::level_name(r.level) << " rank "
                << r.rank << " " << r.component << ": " << r.text << std::endl;
          }
        },
        [&](const caf::error& e) { err << "dmesg: " << describe(e) << "\n"; });
    if (!ok)
      return false;
    if (!follow || interrupted_)
      return true;
    self->receive(caf::after(std::chrono::milliseconds{200}) >> [] {});
    if (interrupted_)
      return true;
  }
}

bool session::log_line(const std::vector<std::string>& args, std::ostream& out,
                       std::ostream& err) {
  auto lvl = log::level::info;
  size_t first = 1;
  if (args.size() > 2 && args[1] == "--level") {
    if (!log::parse_level(args[2], lvl)) {
      err << "log: unknown level '" << args[2] << "' (error, warning, info, debug, trace)\n";
      return false;
    }
    first = 3;
  }
  if (first >= args.size()) {
    err << "usage: log [--level LEVEL] TEXT...\n";
    return false;
  }
  std::string text;
  for (size_t i = first; i < args.size(); ++i)
    text += (i > first ? " " : "") + args[i];
  auto logs = service_provider("logs", "log", err);
  if (!logs)
    return false;
  caf::scoped_actor self{client_.system()};
  bool ok = false;
  self
    ->request(*logs, opts_.timeout, logs::log_atom::value, static_cast<uint8_t>(lvl),
              std::string{"actorsh"}, text)
    .receive([&] { ok = true; },
             [&](const caf::error& e) { err << "log: " << describe(e) << "\n"; });
  if (ok && opts_.json)
    out << nlohmann::json{{"logged", text}, {"node", address_}}.dump() << "\n";
  return ok;
}

bool session::barrier(const std::vector<std::string>& args, std::ostream& out,
                      std::ostream& err) {
  const char* usage = "usage: barrier NAME COUNT [--timeout MS]\n";
  uint32_t count = 0;
  uint32_t timeout_ms = 0;
  bool usage_ok = args.size() == 3 || (args.size() == 5 && args[3] == "--timeout");
  try {
    size_t used = 0;
    if (usage_ok) {
      auto n = std::stoul(args[2], &used);
      usage_ok = used == args[2].size() && n > 0 && n <= UINT32_MAX;
      count = static_cast<uint32_t>(n);
    }
    if (usage_ok && args.size() == 5) {
      auto ms = std::stoul(args[4], &used);
      usage_ok = used == args[4].size() && ms > 0 && ms <= 24ul * 3600 * 1000;
      timeout_ms = static_cast<uint32_t>(ms);
    }
  } catch (const std::exception&) {
    usage_ok = false;
  }
  if (!usage_ok) {
    err << usage;
    return false;
  }
  auto barriers = service_provider("barrier", "barrier", err);
  if (!barriers)
    return false;
  caf::scoped_actor self{client_.system()};
  bool ok = false;
  // The barrier's own timeout bounds the wait (its provider's, or --timeout), not the
  // shell's: entering waits for the others.
  self->request(*barriers, caf::infinite, barrier::enter_atom::value, args[1], count, timeout_ms)
    .receive(
      [&](const barrier::barrier_done& d) {
        ok = true;
        if (opts_.json)
          out << nlohmann::json{{"barrier", d.name}, {"count", d.count},
                                {"generation", d.generation}}
                   .dump()
              << "\n";
        else
          out << "barrier " << d.name << ": " << d.count << " entered (generation "
              << d.generation << ")\n";
      },
      [&](const caf::error& e) { err << "barrier: " << describe(e) << "\n"; });
  return ok;
}

} // namespace troupe::shell
