#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "runtime/metrics.hpp"

namespace troupe {

/// A config error. `what()` names the file, the JSON path of the key, what was
/// expected and what was found: "node.json: providers[1].provider_id: expected an
/// integer from 0 to 65534, found 70000".
class config_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// The `transport` section.
struct transport_config {
  std::string protocol = "ucx";
  std::string address = "127.0.0.1";
  uint16_t port = 0; ///< 0 = any free port
  /// Never let the transport sleep: one thread always polls it (lower latency, one
  /// core).
  bool busy_poll = false;
  /// UCX keepalive interval: how soon a silent dead peer is noticed.
  unsigned keepalive_ms = 500;
  /// Largest message (payload bytes) this node sends or accepts; bigger ones are
  /// refused with an error (sending) or dropped and counted (receiving).
  uint64_t max_message_bytes = uint64_t{1} << 30;
  /// Without busy_poll: how long a polling thread keeps polling after activity
  /// before it sleeps. A sleeping thread costs a wakeup per message (tens of
  /// microseconds on a small VM); polling costs a core while it lasts.
  unsigned spin_us = 50;
  /// With the progress scheduler: an actor's messages to other nodes wait for the end
  /// of its turn and leave together, several to one UCX message (throughput under
  /// load). Off: each leaves at once, on its own.
  bool batch_sends = true;
};

/// The `ops` section: defaults of the op framework (runtime/ops.hpp).
struct ops_config {
  /// Deadline of an op launched without one: when it passes, the op fails with
  /// troupe.timeout and every side of it ends.
  unsigned deadline_ms = 10000;
  /// Bytes the built-in ops may keep on this node (scatter's windows, DHT values);
  /// a put or scatter beyond it is refused with an error naming the limit.
  uint64_t store_max_bytes = uint64_t{1} << 30;
};

/// How CAF's scheduler threads are placed on cores.
enum class pinning_mode {
  none,  ///< the OS places threads
  cores, ///< thread i is bound to core i mod N over all cores
  list,  ///< thread i is bound to pin_cores[i mod N]
};

/// CAF 0.17 scheduler policies.
/// CAF's scheduler policy. `progress` (Troupe's own): idle workers progress the
/// transport, so messages are sent and received without a thread hand-off. `sharing`
/// and `stealing` are CAF's, with the transport on a progress thread of its own.
enum class scheduler_policy { progress, sharing, stealing };

/// One entry of `providers`.
struct provider_config {
  std::string type;
  std::string name;
  uint16_t provider_id = 0;
  /// The provider's own `config` object (empty object if absent); never null.
  std::shared_ptr<const nlohmann::json> config;
  /// `dependencies`: dependency slot name -> name of another provider on this node.
  std::map<std::string, std::string> dependencies;
  /// Where this entry came from, for error messages: "node.json: providers[2]".
  std::string origin;
};

/// A node's whole config, parsed once at start (DESIGN.md, "Runtime").
struct node_config {
  std::string source; ///< file name, or "<string>" for configs parsed from text
  transport_config transport;
  ops_config ops;
  /// Number of CAF scheduler threads; 0 means one per core of the topology.
  unsigned threads = 0;
  scheduler_policy policy = scheduler_policy::progress;
  pinning_mode pinning = pinning_mode::none;
  std::vector<unsigned> pin_cores; ///< core indexes, for pinning_mode::list
  std::vector<std::string> libraries;
  std::vector<provider_config> providers;
  metrics_config metrics; ///< "metrics": serve /metrics over HTTP (runtime/metrics.hpp)
  /// The document as read, for introspection.
  std::shared_ptr<const nlohmann::json> document;
};

/// Highest provider id a config may use; 65535 is reserved (Mochi's convention).
constexpr uint16_t max_provider_id = 65534;

/// Reads and validates a config file. Throws `config_error`.
node_config load_node_config(const std::string& path);

/// Parses and validates config text; `source` names it in error messages.
/// Throws `config_error`.
node_config parse_node_config(std::string_view text, const std::string& source);

/// The providers in an order where each comes after everything it depends on.
/// Throws `config_error` for a dependency on an unknown provider or a cycle.
std::vector<const provider_config*> providers_in_start_order(const node_config& cfg);

/// Serializes the parsed config back to JSON text (defaults filled in).
std::string to_json_text(const node_config& cfg, int indent = 2);

} // namespace troupe
