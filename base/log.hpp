#pragma once

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
/// write, so lines from several threads never interleave.
void write(level lvl, std::string_view component, std::string_view text);

inline bool enabled(level lvl) {
  return static_cast<int>(lvl) <= static_cast<int>(current_level());
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
