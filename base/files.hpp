#pragma once

#include <string>
#include <string_view>

namespace troupe {

/// Writes `content` to `path` so that readers see either the old file or the whole
/// new one: write a temporary file beside it, fsync, rename over. Returns an empty
/// string on success, otherwise a message naming the path and the failing call.
std::string write_file_atomically(const std::string& path, std::string_view content);

/// The program `name` as found on $PATH (a regular, executable file), or "" when it is
/// not there. (An empty $PATH entry is the current directory, as for the shell.)
std::string find_in_path(const std::string& name);

/// Makes a new directory `$TMPDIR/PREFIX.XXXXXX` (or under /tmp); its path, or "".
std::string make_temp_dir(const std::string& prefix);

/// Reads a whole file. Returns false and fills `error` (path and reason) on failure.
bool read_file(const std::string& path, std::string& content, std::string& error);

} // namespace troupe
