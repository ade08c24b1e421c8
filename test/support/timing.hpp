#pragma once
// Timing bounds for failure detection tests, derived from the detection settings the
// tests configure, plus one documented margin. A bound written as a bare number says
// nothing about why it holds; these say what it is made of.

#include <chrono>
#include <string>

namespace troupe::test {

/// What a loaded 2-core machine may add to a detection time the config sets: the
/// scheduling delays of the nodes' and the test's threads while a build or another
/// suite runs beside them, and the test's own polling (10 ms steps).
constexpr std::chrono::milliseconds detection_margin{1500};

/// The transport keepalive the failure tests configure (transport.keepalive_ms, also
/// the default): the longest a dead peer that sends nothing goes unnoticed. A killed
/// process on loopback is noticed sooner, when the kernel closes its connections.
constexpr std::chrono::milliseconds keepalive{500};

/// `"keepalive_ms": N` for a node config's "transport" object.
inline std::string keepalive_setting() {
  return "\"keepalive_ms\": " + std::to_string(keepalive.count());
}

/// How long after a node's death its peers may still not know: the keepalive bound
/// plus the margin.
constexpr std::chrono::milliseconds death_notice_bound = keepalive + detection_margin;

/// Milliseconds of a duration, for messages.
template <class Duration>
long long ms_of(Duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

} // namespace troupe::test
