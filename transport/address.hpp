#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <caf/expected.hpp>

namespace troupe::transport {

/// A node's transport address, written as a URI: `ucx://127.0.0.1:7100`,
/// `ucx://[::1]:7100` or `ucx://node7:7100`. Port 0 asks for any free port.
struct node_address {
  std::string protocol; ///< only "ucx" for now
  std::string host;     ///< a host name or numeric address, without brackets
  uint16_t port = 0;

  /// The URI form; IPv6 hosts are bracketed.
  std::string to_uri() const;

  friend bool operator==(const node_address& a, const node_address& b) {
    return a.protocol == b.protocol && a.host == b.host && a.port == b.port;
  }
};

/// Parses a URI. On failure troupe.invalid_config saying what was wrong ("missing
/// '://'", "port 99999 is out of range 0-65535", ...).
caf::expected<node_address> parse_node_address(std::string_view uri);

/// The address of this host's interface that packets to `host` (a name or a numeric
/// address) leave by: what a process should listen on so that `host` can reach it back
/// ("127.0.0.1" towards "127.0.0.1", the cluster-network address towards a peer on
/// another host). Found with the kernel's routing table (a UDP socket connected to
/// `host`, which sends nothing). On failure troupe.unreachable saying what failed
/// ("cannot resolve \"nodeX\": Name or service not known", ...).
caf::expected<std::string> local_address_towards(const std::string& host);

/// The protocols this build can speak.
bool is_supported_protocol(std::string_view protocol);

} // namespace troupe::transport
