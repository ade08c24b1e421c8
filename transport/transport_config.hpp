#pragma once
// The transport's settings, typed (the runtime fills them from the node config's
// "transport" object), and the actor system config that carries them to the
// middleman when CAF builds it as a module.
//
//   transport::transport_system_config cfg;
//   cfg.transport.port = 7100;
//   cfg.load<transport::middleman>();   // its init() reads cfg.transport
//
// The UCX settings Troupe needs (peer error handling on shared memory, the keepalive,
// ...) go into the process environment when the middleman initializes, each only if
// the user has not set that UCX_* variable (theirs wins). UCX 1.13 reads its
// transports' settings from the environment alone.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include <caf/actor_system_config.hpp>

namespace troupe::transport {

struct transport_config {
  /// The address to listen on (an interface's address; "127.0.0.1" on loopback).
  std::string host = "127.0.0.1";
  /// 0: any free port.
  uint16_t port = 0;
  /// Never sleep: one thread always polls (latency, at the cost of a core).
  bool busy_poll = false;
  /// How long to keep polling after activity before sleeping.
  std::chrono::microseconds spin{50};
  /// An actor's messages to other nodes during one turn on a progress worker wait for
  /// the turn's end and leave together, several small ones to one peer in one UCX
  /// message (throughput under load; off: each leaves at once, on its own).
  bool batch_sends = true;
  /// UCX's keepalive interval: how soon a silent dead peer is noticed.
  std::chrono::milliseconds keepalive{500};
  /// Largest payload sent or accepted, in bytes.
  size_t max_message_bytes = size_t{1} << 30;
};

/// The UCX settings (names without the UCX_ prefix) a node with `cfg` needs; the
/// middleman sets each in the environment unless the user did.
std::map<std::string, std::string> ucx_settings_for(const transport_config& cfg);

/// An actor system config with a transport_config: the middleman module reads it at
/// init (a plain caf::actor_system_config gives it the defaults).
class transport_system_config : public caf::actor_system_config {
public:
  transport_config transport;
};

} // namespace troupe::transport
