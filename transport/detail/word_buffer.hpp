#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

namespace troupe::transport::detail {

/// Owned bytes on an 8-byte boundary, so Cap'n Proto can read them in place. The
/// allocation is rounded up to whole words; `size()` is the byte count in use.
class word_buffer {
public:
  word_buffer() = default;

  explicit word_buffer(size_t bytes)
    : words_(bytes == 0 ? nullptr : new uint64_t[(bytes + 7) / 8]), size_(bytes) {
    if (bytes % 8 != 0)
      words_[bytes / 8] = 0; // no uninitialized padding bytes on the wire
  }

  static word_buffer copy_of(const void* data, size_t bytes) {
    word_buffer result{bytes};
    if (bytes != 0)
      std::memcpy(result.data(), data, bytes);
    return result;
  }

  uint8_t* data() { return reinterpret_cast<uint8_t*>(words_.get()); }
  const uint8_t* data() const { return reinterpret_cast<const uint8_t*>(words_.get()); }
  const uint64_t* words() const { return words_.get(); }
  size_t size() const { return size_; }
  size_t word_count() const { return (size_ + 7) / 8; }
  bool empty() const { return size_ == 0; }

private:
  std::unique_ptr<uint64_t[]> words_;
  size_t size_ = 0;
};

} // namespace troupe::transport::detail
