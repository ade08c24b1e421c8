#pragma once
// A spinning thread's pause: tells the core a spin-wait is going on (cheaper for the
// sibling hyperthread, no memory-order speculation penalty when the wait ends).

#include <thread>

namespace troupe::transport::detail {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

} // namespace troupe::transport::detail
