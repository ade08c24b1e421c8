#pragma once
// The actorhost config the transport suites start their peers with: loopback, two
// threads, the test module loaded (its providers: test/modules/test_module.cpp), and
// the keepalive the tests' death-notice bounds are derived from.

#include <cstdint>
#include <string>

#include "test/support/process.hpp"
#include "test/support/timing.hpp"

namespace troupe::test {

inline std::string module_host_config(const std::string& providers, uint16_t port = 0) {
  return R"({"transport": {"address": "127.0.0.1", "port": )" + std::to_string(port)
         + ", " + keepalive_setting() + R"(}, "threads": 2, "libraries": [")"
         + test_library("troupe_test_module.so") + R"("], "providers": [)" + providers
         + "]}";
}

inline const std::string echo_provider =
  R"({"type": "echo", "name": "echo", "provider_id": 1})";
inline const std::string blackhole_provider =
  R"({"type": "blackhole", "name": "hole", "provider_id": 9})";

} // namespace troupe::test
