#pragma once
// This host's addresses, for tests of what a node listens on beside loopback.

#include <string>

#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>

namespace troupe::test {

/// The first IPv4 address of an interface that is up and not loopback ("192.0.2.2"),
/// or "" when this host has none.
inline std::string non_loopback_ipv4() {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0)
    return {};
  std::string found;
  for (auto* it = list; it != nullptr && found.empty(); it = it->ifa_next) {
    if (it->ifa_addr == nullptr || it->ifa_addr->sa_family != AF_INET
        || (it->ifa_flags & IFF_UP) == 0 || (it->ifa_flags & IFF_LOOPBACK) != 0)
      continue;
    char text[INET_ADDRSTRLEN] = {};
    auto* in = reinterpret_cast<sockaddr_in*>(it->ifa_addr);
    if (::inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text)) != nullptr)
      found = text;
  }
  ::freeifaddrs(list);
  return found;
}

} // namespace troupe::test
