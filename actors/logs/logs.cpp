// The logs actor (logs.hpp): takes its process's log lines, sends them to the root in
// batches; the root keeps them in a ring.

#include "actors/logs/logs.hpp"

#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <utility>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/group/follow.hpp"
#include "actors/overlay/overlay.hpp"
#include "actors/service_config.hpp"
#include "base/error.hpp"
#include "base/log.hpp"
#include "runtime/json_reader.hpp"
#include "runtime/provider_registry.hpp"

namespace troupe::logs {

namespace {

using std::chrono::milliseconds;

using flush_atom = caf::atom_constant<caf::atom("lgflush")>;
using append_atom = caf::atom_constant<caf::atom("lgappend")>;

constexpr milliseconds forward_timeout{5000};

struct logs_settings {
  log::level capture = log::level::info;
  size_t ring_size = 1024;
};

/// Lines the sink took, waiting for the actor (the sink runs on any thread).
struct captured_lines {
  /// Beyond this many lines waiting, lines are counted as lost, not kept (a process
  /// that logs faster than its lines can leave must not grow without bound).
  static constexpr size_t max_waiting = 10000;
  std::mutex mtx;
  std::vector<log_record> lines;
  uint64_t dropped = 0;
};

struct logs_state {
  static inline const char* name = "troupe.logs";
  logs_settings settings;
  caf::actor group;
  caf::actor overlay;
  std::string provider_name;
  std::string address;
  group::group_view view; // the latest the group gave
  uint32_t rank = UINT32_MAX;
  std::shared_ptr<captured_lines> captured;
  uint64_t sink_id = 0;
  // At the root:
  std::deque<log_record> ring;
  uint64_t next_seq = 1;
  logs_stats stats;

  ~logs_state() {
    if (sink_id != 0)
      log::remove_sink(sink_id);
  }
};

using logs_actor = caf::stateful_actor<logs_state>;

void append(logs_actor* self, std::vector<log_record>& lines) {
  auto& st = self->state;
  for (auto& line : lines) {
    line.seq = st.next_seq++;
    st.ring.push_back(std::move(line));
    if (st.ring.size() > st.settings.ring_size) {
      st.ring.pop_front();
      ++st.stats.dropped;
    }
  }
  st.stats.kept = st.ring.size();
}

/// Sends what the sink took to the root (or keeps it, at the root). Failures are
/// counted, never logged: a line about a lost line would be a line to lose.
void flush(logs_actor* self) {
  auto& st = self->state;
  // Until the node is in a view (its first lines: listening, joining) its lines wait:
  // they leave with its rank once it has one.
  if (st.rank == UINT32_MAX)
    return;
  std::vector<log_record> lines;
  {
    std::lock_guard<std::mutex> guard{st.captured->mtx};
    lines.swap(st.captured->lines);
    st.stats.lost += st.captured->dropped;
    st.captured->dropped = 0;
  }
  st.stats.captured += lines.size();
  if (lines.empty())
    return;
  for (auto& line : lines) {
    line.rank = st.rank;
    line.address = st.address;
  }
  if (st.rank == 0) {
    append(self, lines);
    return;
  }
  auto n = lines.size();
  self
    ->request(st.overlay, forward_timeout, overlay::route_atom::value, uint32_t{0},
              st.provider_name, caf::make_message(append_atom::value, std::move(lines)))
    .then([self, n] { self->state.stats.forwarded += n; },
          [self, n](caf::error&) { self->state.stats.lost += n; });
}

caf::behavior logs_behavior(logs_actor* self) {
  auto adopt = [self](const group::group_view& v) {
    group::adopt_view(self->state.view, self->state.rank, v, self->state.address);
    flush(self);
  };
  return group::view_updates(self, self->state.group, adopt).or_else(caf::message_handler{
    [self](log_atom, uint8_t level, const std::string& component,
           const std::string& text) -> caf::result<void> {
      if (level > static_cast<uint8_t>(log::level::trace))
        return make_error(errc::invalid_argument,
                          "log level " + std::to_string(level) + " (0 error ... 4 trace)");
      TROUPE_LOG_IMPL(static_cast<log::level>(level), component, text);
      return caf::unit;
    },
    [self](flush_atom) { flush(self); },
    [self](append_atom, std::vector<log_record>& lines) { append(self, lines); },
    [self](dmesg_atom, uint64_t after, uint8_t max_level)
      -> caf::result<std::vector<log_record>> {
      auto& st = self->state;
      if (st.rank == 0) {
        std::vector<log_record> out;
        for (const auto& line : st.ring)
          if (line.seq > after && line.level <= max_level)
            out.push_back(line);
        return out;
      }
      if (st.rank == UINT32_MAX)
        return make_error(errc::refused, "the logs provider at " + st.address
                                           + " is not in a view of its group yet");
      auto rp = self->make_response_promise<std::vector<log_record>>();
      self
        ->request(st.overlay, forward_timeout, overlay::route_atom::value, uint32_t{0},
                  st.provider_name, caf::make_message(dmesg_atom::value, after, max_level))
        .then([rp](std::vector<log_record>& lines) mutable { rp.deliver(lines); },
              [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [self](caf::get_atom) { return self->state.stats; },
  });
}

caf::behavior logs_actor_fn(logs_actor* self, logs_settings settings, caf::actor group,
                            caf::actor overlay, std::string provider_name,
                            std::string address) {
  auto& st = self->state;
  st.settings = settings;
  st.overlay = std::move(overlay);
  st.provider_name = std::move(provider_name);
  st.address = std::move(address);
  st.captured = std::make_shared<captured_lines>();
  st.group = group;
  group::follow_group(self, group, "logs", [self](const group::group_view& v) {
    group::adopt_view(self->state.view, self->state.rank, v, self->state.address);
    flush(self);
  });
  // The sink: a line is stored, and the actor told when the first of a batch comes.
  // (It holds the actor weakly: the sink table must not keep it alive.)
  auto me = caf::actor_cast<caf::weak_actor_ptr>(self);
  std::weak_ptr<captured_lines> weak = st.captured;
  st.sink_id = log::add_sink(settings.capture, [weak, me](log::level lvl,
                                                          std::string_view component,
                                                          std::string_view text) {
    auto lines = weak.lock();
    if (!lines)
      return;
    log_record r;
    r.level = static_cast<uint8_t>(lvl);
    r.time_ms = std::chrono::duration_cast<milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
    r.component = std::string{component};
    r.text = std::string{text};
    bool first = false;
    {
      std::lock_guard<std::mutex> guard{lines->mtx};
      if (lines->lines.size() >= captured_lines::max_waiting) {
        ++lines->dropped;
        return;
      }
      first = lines->lines.empty();
      lines->lines.push_back(std::move(r));
    }
    if (first)
      if (auto strong = caf::actor_cast<caf::strong_actor_ptr>(me))
        caf::anon_send(caf::actor_cast<caf::actor>(strong), flush_atom::value);
  });
  return logs_behavior(self);
}

caf::expected<caf::actor> make_logs(const provider_context& ctx) {
  logs_settings settings;
  auto err = actors::read_service_config(
    ctx, {"level", "ring_size"}, [&](json_reader& r, const nlohmann::json& cfg) {
      if (auto l = cfg.find("level"); l != cfg.end()) {
        auto text = r.read_string("config.level", *l);
        if (!log::parse_level(text, settings.capture))
          r.expected("config.level", "error, warning, info, debug or trace", *l);
      }
      if (auto n = cfg.find("ring_size"); n != cfg.end())
        settings.ring_size =
          static_cast<size_t>(r.read_integer("config.ring_size", *n, 1, 10000000));
    });
  if (err)
    return err;
  auto deps = actors::group_and_overlay_of(ctx);
  if (!deps)
    return deps.error();
  return ctx.system.spawn(logs_actor_fn, settings, deps->group, deps->overlay, ctx.spec.name,
                          ctx.node_address);
}

} // namespace

const char* level_name(uint8_t level) {
  static const char* names[] = {"ERROR", "WARN", "INFO", "DEBUG", "TRACE"};
  return level < 5 ? names[level] : "?";
}

void register_logs_provider(provider_registry& registry) {
  registry.add_type("logs", make_logs);
}

void register_logs_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<log_record>("troupe::logs::log_record");
  cfg.add_message_type<std::vector<log_record>>("std::vector<troupe::logs::log_record>");
  cfg.add_message_type<logs_stats>("troupe::logs::logs_stats");
}

} // namespace troupe::logs
