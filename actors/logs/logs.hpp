#pragma once
// The `logs` provider: log aggregation across an instance (flux-core's `flux dmesg`).
//
// Every rank runs one beside its group and overlay:
//   {"type": "logs", "name": "logs", "provider_id": 1,
//    "dependencies": {"group": "group", "overlay": "overlay"},
//    "config": {"level": "info", "ring_size": 1024}}
// It takes the lines its process logs (base/log.hpp) up to `level`, whether stderr
// shows them or not, and sends them, a batch at a time, up the tree to the root
// (rank 0), which keeps the last `ring_size` in a ring, numbered in arrival order.
// Lines wait while the node is not in a view yet. (Lines are the process's: two nodes
// in one process both see them.)
//
// Protocol:
//   (log_atom, level, component, text)      -> caf::unit: logs a line on this node
//                                              (as TROUPE_LOG would; `flux logger`)
//   (dmesg_atom, after_seq, max_level)      -> std::vector<log_record>: the root's
//                                              lines numbered after `after_seq` up
//                                              to `max_level` (asked at any rank)
//   (caf::get_atom)                         -> logs_stats
// States: one. Owner: the node's provider registry.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/atom.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>

namespace troupe {
class provider_registry;
} // namespace troupe

namespace troupe::logs {

using log_atom = caf::atom_constant<caf::atom("lglog")>;
using dmesg_atom = caf::atom_constant<caf::atom("lgdmesg")>;

struct log_record {
  uint64_t seq = 0;      ///< at the root, from 1
  uint8_t level = 0;     ///< troupe::log::level
  uint32_t rank = 0;     ///< of the node that logged it (UINT32_MAX: not in a view)
  std::string address;   ///< of that node
  int64_t time_ms = 0;   ///< when it was logged (Unix time, milliseconds)
  std::string component;
  std::string text;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, log_record& x) {
    return f(caf::meta::type_name("troupe::logs::log_record"), x.seq, x.level, x.rank,
             x.address, x.time_ms, x.component, x.text);
  }
};

struct logs_stats {
  uint64_t captured = 0;  ///< lines this node took from its process
  uint64_t forwarded = 0; ///< lines it sent to the root
  uint64_t lost = 0;      ///< lines it could not send (the root unreachable)
  uint64_t kept = 0;      ///< at the root: lines in the ring
  uint64_t dropped = 0;   ///< at the root: lines the ring pushed out

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, logs_stats& x) {
    return f(caf::meta::type_name("troupe::logs::logs_stats"), x.captured, x.forwarded,
             x.lost, x.kept, x.dropped);
  }
};

/// "ERROR", "WARN", "INFO", "DEBUG", "TRACE" for a record's level.
const char* level_name(uint8_t level);

/// Registers provider type "logs".
void register_logs_provider(provider_registry& registry);

/// Registers the log records' message types (before the actor system starts).
void register_logs_types(caf::actor_system_config& cfg);

} // namespace troupe::logs
