#pragma once
// Files: atomic writes, whole reads, $PATH lookups and temporary directories. Errors
// are caf::error values of Troupe's category (troupe.io), naming the path, the
// failing step and the system's reason.

#include <optional>
#include <string>
#include <string_view>

#include <caf/error.hpp>
#include <caf/expected.hpp>

namespace troupe {

/// Writes `content` to `path` so that readers see either the old file or the whole
/// new one: write a temporary file beside it, fsync, rename over.
caf::error write_file_atomically(const std::string& path, std::string_view content);

/// The program `name` as found on $PATH (a regular, executable file), or nothing when
/// it is not there. (An empty $PATH entry is the current directory, as for the shell.)
std::optional<std::string> find_in_path(const std::string& name);

/// Makes a new directory `$TMPDIR/PREFIX.XXXXXX` (or under /tmp); its path.
caf::expected<std::string> make_temp_dir(const std::string& prefix);

/// Reads a whole file.
caf::expected<std::string> read_file(const std::string& path);

} // namespace troupe
