#include "base/log.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
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

} // namespace

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
