#pragma once

#include <string>
#include <string_view>

namespace troupe {

/// Writes `content` to `path` so that readers see either the old file or the whole
/// new one: write a temporary file beside it, fsync, rename over. Returns an empty
/// string on success, otherwise a message naming the path and the failing call.
std::string write_file_atomically(const std::string& path, std::string_view content);

/// Reads a whole file. Returns false and fills `error` (path and reason) on failure.
bool read_file(const std::string& path, std::string& content, std::string& error);

} // namespace troupe
