#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

namespace troupe::transport::detail {

/// An allocator that leaves new elements uninitialized: a receive buffer is about to
/// be overwritten by the network, so zeroing 64 MiB first would be wasted work.
template <class T>
struct default_init_allocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = default_init_allocator<U>;
  };
  using std::allocator<T>::allocator;
  template <class U>
  void construct(U* ptr) noexcept {
    ::new (static_cast<void*>(ptr)) U;
  }
  template <class U, class... Args>
  void construct(U* ptr, Args&&... args) {
    ::new (static_cast<void*>(ptr)) U(std::forward<Args>(args)...);
  }
};

using word_vector = std::vector<uint64_t, default_init_allocator<uint64_t>>;

/// Owned bytes on an 8-byte boundary, so Cap'n Proto can read them in place. The
/// allocation is rounded up to whole words; `size()` is the byte count in use.
class word_buffer {
public:
  word_buffer() = default;

  explicit word_buffer(size_t bytes) : words_((bytes + 7) / 8), size_(bytes) {
    if (bytes % 8 != 0)
      words_.back() = 0; // no uninitialized padding bytes on the wire
  }

  word_buffer(word_vector words, size_t bytes) : words_(std::move(words)), size_(bytes) {}

  static word_buffer copy_of(const void* data, size_t bytes) {
    word_buffer result{bytes};
    if (bytes != 0)
      std::memcpy(result.data(), data, bytes);
    return result;
  }

  uint8_t* data() { return reinterpret_cast<uint8_t*>(words_.data()); }
  const uint8_t* data() const { return reinterpret_cast<const uint8_t*>(words_.data()); }
  const uint64_t* words() const { return words_.data(); }
  size_t size() const { return size_; }
  size_t word_count() const { return words_.size(); }
  bool empty() const { return size_ == 0; }

  /// Hands the storage over (for zero-copy delivery); leaves this buffer empty.
  word_vector release() {
    size_ = 0;
    return std::move(words_);
  }

private:
  word_vector words_;
  size_t size_ = 0;
};

} // namespace troupe::transport::detail
