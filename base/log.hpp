#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <sstream>
#include <string>
#include <string_view>

namespace troupe::log {

/// Severity of a log line; a line is printed when its level is at most the
/// process-wide threshold (`set_level`).
enum class level : int { error = 0, warning = 1, info = 2, debug = 3, trace = 4 };

/// Sets the process-wide threshold. The default is `warning`, or what the environment
/// variable TROUPE_LOG says (a level name or digit).
void set_level(level lvl);
level current_level();

/// Parses "error", "warning", "info", "debug", "trace" or a digit 0-4.
bool parse_level(std::string_view text, level& out);

/// Writes one line "troupe[<pid>] <LEVEL> <component>: <text>" to stderr in a single
/// write (so lines from several threads never interleave) when `lvl` passes the
/// threshold, and hands it to the sinks that want it.
void write(level lvl, std::string_view component, std::string_view text);

/// A receiver of log lines besides stderr (the log service forwards them to its
/// instance's root). Called on the thread that logs, never recursively (a line logged
/// while a sink runs on the same thread goes to stderr only); it must not block.
using sink_fn = std::function<void(level lvl, std::string_view component,
                                   std::string_view text)>;

/// Adds a sink that gets lines up to `up_to` (also when stderr's threshold is lower).
/// Returns its id for remove_sink.
uint64_t add_sink(level up_to, sink_fn fn);
void remove_sink(uint64_t id);

namespace detail {
/// The highest level any sink wants, or -1 (kept apart so enabled() stays cheap).
extern std::atomic<int> sink_threshold;
} // namespace detail

inline bool enabled(level lvl) {
  return static_cast<int>(lvl) <= static_cast<int>(current_level())
         || static_cast<int>(lvl) <= detail::sink_threshold.load(std::memory_order_relaxed);
}

} // namespace troupe::log

#define TROUPE_LOG_IMPL(lvl, component, stream_expr)                                     \
  do {                                                                                   \
    if (::troupe::log::enabled(lvl)) {                                                   \
      std::ostringstream troupe_log_os_;                                                 \
      troupe_log_os_ << stream_expr;                                                     \
      ::troupe::log::write(lvl, component, troupe_log_os_.str());                        \
    }                                                                                    \
  } while (false)

#define TROUPE_LOG_ERROR(component, x)                                                   \
  TROUPE_LOG_IMPL(::troupe::log::level::error, component, x)
#define TROUPE_LOG_WARNING(component, x)                                                 \
  TROUPE_LOG_IMPL(::troupe::log::level::warning, component, x)
#define TROUPE_LOG_INFO(component, x)                                                    \
  TROUPE_LOG_IMPL(::troupe::log::level::info, component, x)
#define TROUPE_LOG_DEBUG(component, x)                                                   \
  TROUPE_LOG_IMPL(::troupe::log::level::debug, component, x)
