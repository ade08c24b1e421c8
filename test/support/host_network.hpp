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

#include <cstdlib>
#include <stdexcept>
#include <unistd.h>

namespace troupe::test {

/// A second host on this machine: a network namespace joined to this one by a veth
/// pair, this side `host_ip`, the other `guest_ip` (a /24 of 10.231.0.0/16 chosen from
/// the pid). Its processes see only its own interfaces: a node there can reach this
/// host and be reached only through the pair, as across a real network. (Namespaces
/// share the machine's shared memory, which real hosts do not: tests across them use
/// UCX_TLS=tcp.) Needs root and iproute2's `ip`; the constructor throws with the
/// failing command otherwise. The destructor kills whatever still runs in it and
/// removes it.
class network_namespace {
public:
  network_namespace() {
    auto id = std::to_string(::getpid());
    name_ = "troupe-" + id;
    auto net = "10.231." + std::to_string(::getpid() % 250);
    host_ip_ = net + ".1";
    guest_ip_ = net + ".2";
    auto here = "trv" + id + "a", there = "trv" + id + "b";
    run("ip netns del " + name_ + " 2>/dev/null; ip link del " + here + " 2>/dev/null; true");
    run("ip netns add " + name_);
    created_ = true;
    run("ip link add " + here + " type veth peer name " + there);
    run("ip link set " + there + " netns " + name_);
    run("ip addr add " + host_ip_ + "/24 dev " + here);
    run("ip link set " + here + " up");
    run(exec_prefix() + "ip addr add " + guest_ip_ + "/24 dev " + there);
    run(exec_prefix() + "ip link set " + there + " up");
    run(exec_prefix() + "ip link set lo up");
  }
  ~network_namespace() {
    if (!created_)
      return;
    std::system(("ip netns pids " + name_ + " 2>/dev/null | xargs -r kill -9").c_str());
    std::system(("ip netns del " + name_ + " 2>/dev/null").c_str());
  }
  network_namespace(const network_namespace&) = delete;
  network_namespace& operator=(const network_namespace&) = delete;

  const std::string& name() const { return name_; }
  const std::string& host_ip() const { return host_ip_; }
  const std::string& guest_ip() const { return guest_ip_; }
  /// Prefix of a shell command that runs inside the namespace.
  std::string exec_prefix() const { return "ip netns exec " + name_ + " "; }

private:
  static void run(const std::string& command) {
    if (std::system(command.c_str()) != 0)
      throw std::runtime_error("cannot make a network namespace: `" + command
                               + "` failed (needs root and iproute2)");
  }
  std::string name_, host_ip_, guest_ip_;
  bool created_ = false;
};

} // namespace troupe::test
