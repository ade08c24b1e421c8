#pragma once
// Test data that encodes its own offset: 8-byte word i (bytes 8i to 8i+7, little
// endian) holds i mixed with a seed. No two words of one buffer are equal and no word
// equals one of another seed, so a block that lands at a wrong offset (aligned or
// not), a stale buffer or another test's data is a mismatch, and the mismatch says
// which offset the misplaced bytes came from. Header only: the test module (a shared
// library loaded by actorhost) fills and reads regions with it too.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <sstream>
#include <string>

namespace troupe::test {

/// The mask a seed mixes into every word (splitmix64's finalizer: seeds 1 and 2 give
/// masks that differ in about half of their bits).
inline uint64_t pattern_mask(uint64_t seed) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// Byte `offset` of the pattern whose mask is `mask`.
inline uint8_t pattern_byte_of_mask(uint64_t offset, uint64_t mask) {
  return static_cast<uint8_t>(((offset / 8) ^ mask) >> (8 * (offset % 8)));
}

/// Byte `offset` of the pattern of `seed`.
inline uint8_t pattern_byte(uint64_t offset, uint64_t seed) {
  return pattern_byte_of_mask(offset, pattern_mask(seed));
}

/// Writes bytes `first` to `first + size` of the pattern of `seed` to `data`.
inline void fill_pattern(void* data, size_t size, uint64_t seed, uint64_t first = 0) {
  auto* bytes = static_cast<uint8_t*>(data);
  auto mask = pattern_mask(seed);
  for (size_t i = 0; i < size; ++i)
    bytes[i] = pattern_byte_of_mask(first + i, mask);
}

/// Bytes `first` to `first + size` of the pattern of `seed`.
inline std::string pattern_string(size_t size, uint64_t seed, uint64_t first = 0) {
  std::string s(size, '\0');
  fill_pattern(s.data(), size, seed, first);
  return s;
}

/// Nothing when `data` holds bytes `first` to `first + size` of the pattern of `seed`;
/// else where the first wrong byte is, what it holds and, when its whole word is in
/// `data` and belongs to the pattern of `seed` at another offset, which offset.
inline std::optional<std::string> pattern_mismatch(const void* data, size_t size,
                                                   uint64_t seed, uint64_t first = 0) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  auto mask = pattern_mask(seed);
  for (size_t i = 0; i < size; ++i) {
    auto expected = pattern_byte_of_mask(first + i, mask);
    if (bytes[i] == expected)
      continue;
    std::ostringstream why;
    why << "byte " << i << " of " << size << " (pattern offset " << first + i << ", seed "
        << seed << ") is " << int{bytes[i]} << ", expected " << int{expected};
    auto into_word = (first + i) % 8;
    if (i >= into_word && i - into_word + 8 <= size) {
      uint64_t word = 0;
      for (size_t k = 0; k < 8; ++k)
        word |= uint64_t{bytes[i - into_word + k]} << (8 * k);
      auto index = word ^ mask;
      if (index < (uint64_t{1} << 48))
        why << "; its word is the pattern's word at offset " << index * 8;
    }
    return why.str();
  }
  return std::nullopt;
}

} // namespace troupe::test
