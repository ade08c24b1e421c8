#include "base/log.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <unistd.h>

namespace troupe::log {

namespace {

int initial_threshold() {
  // TROUPE_LOG=debug (or 0-4) raises the level in any process, tests included.
  level lvl = level::warning;
  if (const char* env = std::getenv("TROUPE_LOG"))
    parse_level(env, lvl);
  return static_cast<int>(lvl);
}

std::atomic<int> threshold{initial_threshold()};

const char* level_name(level lvl) {
  switch (lvl) {
    case level::error:
      return "ERROR";
    case level::warning:
      return "WARN";
    case level::info:
      return "INFO";
    case level::debug:
      return "DEBUG";
    case level::trace:
      return "TRACE";
  }
  return "?";
}

struct sink_table {
  std::mutex mtx;
  uint64_t next_id = 1;
  std::map<uint64_t, std::pair<int, sink_fn>> sinks;
};

sink_table& sinks() {
  static auto* table = new sink_table; // never destroyed: logging during exit is safe
  return *table;
}

thread_local bool in_sink = false;

} // namespace

namespace detail {
std::atomic<int> sink_threshold{-1};
} // namespace detail

uint64_t add_sink(level up_to, sink_fn fn) {
  auto& t = sinks();
  std::lock_guard<std::mutex> guard{t.mtx};
  auto id = t.next_id++;
  t.sinks.emplace(id, std::make_pair(static_cast<int>(up_to), std::move(fn)));
  int highest = -1;
  for (const auto& [key, entry] : t.sinks)
    highest = std::max(highest, entry.first);
  detail::sink_threshold.store(highest);
  return id;
}

void remove_sink(uint64_t id) {
  auto& t = sinks();
  std::lock_guard<std::mutex> guard{t.mtx};
  t.sinks.erase(id);
  int highest = -1;
  for (const auto& [key, entry] : t.sinks)
    highest = std::max(highest, entry.first);
  detail::sink_threshold.store(highest);
}

void set_level(level lvl) {
  threshold.store(static_cast<int>(lvl), std::memory_order_relaxed);
}

level current_level() {
  return static_cast<level>(threshold.load(std::memory_order_relaxed));
}

bool parse_level(std::string_view text, level& out) {
  static constexpr std::string_view names[] = {"error", "warning", "info", "debug",
                                               "trace"};
  for (int i = 0; i < 5; ++i) {
    if (text == names[i] || (text.size() == 1 && text[0] == '0' + i)) {
      out = static_cast<level>(i);
      return true;
    }
  }
  if (text == "warn") {
    out = level::warning;
    return true;
  }
  return false;
}

void write(level lvl, std::string_view component, std::string_view text) {
  if (static_cast<int>(lvl) <= detail::sink_threshold.load(std::memory_order_relaxed)
      && !in_sink) {
    in_sink = true;
    auto& t = sinks();
    std::lock_guard<std::mutex> guard{t.mtx};
    for (const auto& [id, entry] : t.sinks)
      if (static_cast<int>(lvl) <= entry.first)
        entry.second(lvl, component, text);
    in_sink = false;
  }
  if (static_cast<int>(lvl) > static_cast<int>(current_level()))
    return;
  std::string line = "troupe[" + std::to_string(::getpid()) + "] ";
  line += level_name(lvl);
  line += ' ';
  line += component;
  line += ": ";
  line += text;
  line += '\n';
  // One write(2) per line keeps lines from concurrent threads whole.
  auto rc = ::write(STDERR_FILENO, line.data(), line.size());
  (void)rc;
}

} // namespace troupe::log
