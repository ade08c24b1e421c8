#pragma once
// The `kvs` provider: an instance's key-value store (flux-core's KVS): hierarchical
// keys, transactions committed atomically at the root, every rank holding a replica
// fed by the root's commits, watches, namespaces, and the root's store persisted in
// SQLite.
//
// Every rank runs one, with the same name and provider id, beside its group and
// overlay:
//   {"type": "kvs", "name": "kvs", "provider_id": 1,
//    "dependencies": {"group": "group", "overlay": "overlay"},
//    "config": {"store": "/path/kvs.sqlite", "sync": "full",
//               "max_txn_bytes": 1048576, "timeout_ms": 10000}}
// Rank 0 is the root: it checks each transaction, gives it the next version (one
// sequence over all namespaces), writes the batch of transactions that came meanwhile
// to its store in one SQLite transaction, and only once that is durable applies them,
// answers their committers and broadcasts them down the tree. Every other rank applies
// the root's commits in version order to its replica (asking the root for what it
// missed), so a read at any rank is a local lookup.
//
// Keys: components joined by '.', e.g. "a.b.c" (no empty component, no spaces or
// control characters, at most 1024 bytes). A key holds a value or is a directory of
// the keys below it, never both: a put replaces what was there (a directory below the
// key, or a value at a parent). Values are bytes, or JSON text (checked at the put).
//
// Consistency: a commit is answered once it is durable at the root and applied at the
// committer's rank (read-your-writes there). Every read answers at some version and a
// replica's version only grows (monotonic reads at one rank); a reader that moves
// between ranks passes the highest version it has seen as `min_version`, and the
// rank waits (up to timeout_ms) until its replica has reached it.
//
// Protocol (every rank answers):
//   (commit_atom, transaction)                     -> commit_receipt
//   (lookup_atom, ns, key, min_version)            -> entry
//   (list_atom, ns, dir, min_version)              -> listing ("" = the top)
//   (dump_atom, ns, dir, min_version)              -> dump (every key under dir)
//   (watch_atom, ns, key, caf::actor)              -> uint64_t (the version now); the
//       actor then gets one `change` per commit that sets or removes `key` or a key
//       below it
//   (unwatch_atom, caf::actor)                     -> caf::unit (all its watches)
//   (caf::get_atom)                                -> kvs_stats
// Errors: troupe.invalid_argument (a bad key, JSON or transaction, a value read as a
// directory or the reverse), troupe.not_found (no such key or namespace),
// troupe.refused (a transaction over max_txn_bytes; a namespace owned by another
// name; the root's store failed), troupe.unreachable (the root cannot be reached),
// troupe.timeout (min_version not reached, or no answer from the root, in time).
// States: one (root or replica, by rank). Owner: the node's provider registry.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <caf/atom.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>

namespace troupe {
class provider_registry;
} // namespace troupe

namespace troupe::kvs {

using commit_atom = caf::atom_constant<caf::atom("kvcommit")>;
using lookup_atom = caf::atom_constant<caf::atom("kvlookup")>;
using list_atom = caf::atom_constant<caf::atom("kvlist")>;
using dump_atom = caf::atom_constant<caf::atom("kvdump")>;
using watch_atom = caf::atom_constant<caf::atom("kvwatch")>;
using unwatch_atom = caf::atom_constant<caf::atom("kvunwatch")>;

/// The namespace every instance has; owned by nobody (anyone may commit to it).
inline const std::string primary_namespace = "primary";

/// One step of a transaction.
struct op {
  enum kind_type : uint8_t {
    put,              ///< `key` = `value` (JSON text when `json`)
    unlink,           ///< `key` and everything below it go
    create_namespace, ///< the transaction's namespace, owned by `value` ("": anyone)
    remove_namespace, ///< the transaction's namespace and every key in it
  };
  uint8_t kind = put;
  std::string key;
  std::string value;
  bool json = false;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, op& x) {
    return f(caf::meta::type_name("troupe::kvs::op"), x.kind, x.key, x.value, x.json);
  }
};

/// Steps applied together or not at all, in one namespace. A namespace step stands
/// alone in its transaction.
struct transaction {
  std::string ns = primary_namespace;
  /// Who commits: must be the namespace's owner when it has one. A declared name, not
  /// a proof (peers are not authenticated yet).
  std::string as;
  std::vector<op> ops;

  transaction& put(std::string key, std::string value) {
    ops.push_back({op::put, std::move(key), std::move(value), false});
    return *this;
  }
  transaction& put_json(std::string key, std::string json_text) {
    ops.push_back({op::put, std::move(key), std::move(json_text), true});
    return *this;
  }
  transaction& unlink(std::string key) {
    ops.push_back({op::unlink, std::move(key), {}, false});
    return *this;
  }

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, transaction& x) {
    return f(caf::meta::type_name("troupe::kvs::transaction"), x.ns, x.as, x.ops);
  }
};

struct commit_receipt {
  uint64_t version = 0; ///< the version this transaction made
  std::string ns;
  uint32_t ops = 0;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, commit_receipt& x) {
    return f(caf::meta::type_name("troupe::kvs::commit_receipt"), x.version, x.ns, x.ops);
  }
};

/// A key's value, and the version of the commit that set it.
struct entry {
  std::string ns;
  std::string key;
  std::string value;
  bool json = false;
  uint64_t version = 0;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, entry& x) {
    return f(caf::meta::type_name("troupe::kvs::entry"), x.ns, x.key, x.value, x.json,
             x.version);
  }
};

/// A directory's names: keys as they are, directories with a trailing '.'.
struct listing {
  std::string ns;
  std::string dir;
  uint64_t version = 0; ///< the replica's version the answer is at
  std::vector<std::string> names;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, listing& x) {
    return f(caf::meta::type_name("troupe::kvs::listing"), x.ns, x.dir, x.version,
             x.names);
  }
};

/// Every key under a directory (or the one key), in key order.
struct dump {
  std::string ns;
  uint64_t version = 0; ///< the replica's version the answer is at
  std::vector<entry> entries;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, dump& x) {
    return f(caf::meta::type_name("troupe::kvs::dump"), x.ns, x.version, x.entries);
  }
};

/// What one commit did to a watched key or directory.
struct change {
  std::string ns;
  std::string watched; ///< the key the watch was made on
  uint64_t version = 0;
  std::vector<entry> set;           ///< keys at or under `watched` that got a value
  std::vector<std::string> removed; ///< keys at or under `watched` that went

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, change& x) {
    return f(caf::meta::type_name("troupe::kvs::change"), x.ns, x.watched, x.version,
             x.set, x.removed);
  }
};

struct kvs_stats {
  uint64_t version = 0; ///< this rank's replica
  uint64_t keys = 0;    ///< over all namespaces
  uint64_t namespaces = 0;
  bool root = false;
  uint64_t commits = 0;   ///< as the root: transactions committed
  uint64_t batches = 0;   ///< as the root: store writes (commits batched together)
  uint64_t refused = 0;   ///< transactions refused here
  uint64_t applied = 0;   ///< commits applied to this replica
  uint64_t syncs = 0;     ///< catch-ups asked of the root (a gap, a start)
  uint64_t snapshots = 0; ///< catch-ups that took the root's whole store
  uint64_t watches = 0;
  std::string store; ///< the root's store path ("" in memory only)

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, kvs_stats& x) {
    return f(caf::meta::type_name("troupe::kvs::kvs_stats"), x.version, x.keys,
             x.namespaces, x.root, x.commits, x.batches, x.refused, x.applied, x.syncs,
             x.snapshots, x.watches, x.store);
  }
};

namespace detail {
struct shared_replica;
} // namespace detail

/// Reads of a KVS replica without a message, for code in the same process as the
/// `kvs` provider (an actor of a module loaded on that node): a cached get costs a
/// lock and a copy, well under a microsecond, where a request to the provider costs a
/// local actor round trip. Reads see the replica as its actor last applied a commit
/// (the same monotonic order its requests answer in); safe from any thread. A reader
/// kept after the provider ended reads the last state it had.
class local_reader {
public:
  /// The reader of provider `kvs` if it runs in this process; troupe.not_found
  /// otherwise (a provider on another node: ask it with lookup_atom).
  static caf::expected<local_reader> of(const caf::actor& kvs);

  /// As (lookup_atom, ns, key, 0) would answer.
  caf::expected<entry> lookup(const std::string& ns, const std::string& key) const;
  /// The replica's version.
  uint64_t version() const;

private:
  explicit local_reader(std::shared_ptr<const detail::shared_replica> replica)
    : replica_(std::move(replica)) {}
  std::shared_ptr<const detail::shared_replica> replica_;
};

/// Registers provider type "kvs".
void register_kvs_provider(provider_registry& registry);

/// Registers the KVS message types (before the actor system starts).
void register_kvs_types(caf::actor_system_config& cfg);

} // namespace troupe::kvs
