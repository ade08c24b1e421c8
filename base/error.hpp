#pragma once

#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/make_message.hpp>

namespace troupe {

/// Troupe's error codes, carried in `caf::error` under the category `troupe`. The
/// error's context holds one string that says what failed, in words a user can act on.
enum class errc : uint8_t {
  /// A config file or value is malformed (file, key path and expectation in the text).
  invalid_config = 1,
  /// No provider type with this name is registered on the node.
  unknown_provider_type,
  /// A provider with the same (type, provider id) or the same name already exists.
  duplicate_provider,
  /// No provider or actor is registered under the requested key.
  not_found,
  /// A provider's factory failed while spawning it.
  provider_failed,
  /// A shared library could not be loaded or does not export the module entry point.
  module_load_failed,
  /// A peer or node could not be reached.
  unreachable,
  /// A deadline passed before the reply arrived.
  timeout,
  /// The receiver understood the request and will not do it (e.g. a static group
  /// refusing a join); the text says why.
  refused,
  /// A supervisor reached its restart intensity and stopped (actors/supervisor/); the
  /// text names the supervisor, the child and the child's last exit reason.
  gave_up,
  /// A file or directory could not be read or written; the text names the path, the
  /// failing step and the system's reason.
  io,
  /// A request's arguments do not fit what it asks for (e.g. a reduction that sums
  /// texts); the text says which argument and what was expected.
  invalid_argument,
};

const char* to_string(errc code);

constexpr caf::atom_value error_category_atom = caf::atom("troupe");

/// Makes a `caf::error` of Troupe's category whose context is `what`.
caf::error make_error(errc code, std::string what);

/// CAF finds this by ADL when a bare `errc` is converted to `caf::error`.
caf::error make_error(errc code);

/// True when `err` is Troupe's error `code`.
inline bool has_code(const caf::error& err, errc code) {
  return err.category() == error_category_atom
         && err.code() == static_cast<uint8_t>(code);
}

/// Renders any `caf::error` for a human: "troupe.timeout: no reply from ...".
std::string describe(const caf::error& err);

/// Only the context text of an error (what `describe` prints after the code), for
/// wrapping one error into another without repeating its code.
std::string context_text(const caf::error& err);

} // namespace troupe
