#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

namespace troupe {

/// Levenshtein distance, for "did you mean ...?" suggestions.
size_t edit_distance(std::string_view a, std::string_view b);

/// The candidate closest to `word` within `max_distance` edits; empty if none.
std::string_view nearest(std::string_view word,
                         const std::vector<std::string_view>& candidates,
                         size_t max_distance = 2);

} // namespace troupe
