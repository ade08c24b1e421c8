#pragma once
// The KVS's data (kvs.hpp): what every rank holds in memory, the rules a transaction
// must follow, and the records the root sends its replicas. Pure: no actors, no I/O.

#include <cstdint>
#include <functional>
#include <map>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/meta/type_name.hpp>

#include "actors/kvs/kvs.hpp"

namespace troupe::kvs {

/// A committed transaction and the version it made.
struct commit_record {
  uint64_t version = 0;
  transaction txn;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, commit_record& x) {
    return f(caf::meta::type_name("troupe::kvs::commit_record"), x.version, x.txn);
  }
};

/// Commits in version order (what the root writes and broadcasts together).
struct commit_batch {
  std::vector<commit_record> records;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, commit_batch& x) {
    return f(caf::meta::type_name("troupe::kvs::commit_batch"), x.records);
  }
};

/// A namespace and its owner ("" = anyone may commit).
struct namespace_info {
  std::string name;
  std::string owner;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, namespace_info& x) {
    return f(caf::meta::type_name("troupe::kvs::namespace_info"), x.name, x.owner);
  }
};

/// The root's answer to a replica catching up: the commits after the replica's
/// version, or (when the root no longer has them, or the replica followed another
/// root) the whole store.
struct sync_reply {
  std::string root;     ///< the root's identity (address and a nonce)
  uint64_t version = 0; ///< the root's version
  bool whole = false;   ///< `namespaces` and `entries` are the whole store
  std::vector<commit_record> records;
  std::vector<namespace_info> namespaces;
  std::vector<entry> entries;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, sync_reply& x) {
    return f(caf::meta::type_name("troupe::kvs::sync_reply"), x.root, x.version, x.whole,
             x.records, x.namespaces, x.entries);
  }
};

/// Why `key` is not a valid key, or none. `what` names it in the text.
caf::error check_key(std::string_view key, std::string_view what = "key");

/// The checks that need no store: keys, JSON values, namespace steps standing alone,
/// and the size (keys and values) against `max_bytes`.
caf::error check_transaction(const transaction& txn, uint64_t max_bytes);

/// The bytes a transaction counts against max_txn_bytes.
uint64_t transaction_bytes(const transaction& txn);

/// The namespaces and their owners, by name.
using namespace_table = std::map<std::string, std::string>;

/// The checks against the namespaces as they will be when `txn` is applied (its
/// namespace exists, `txn.as` owns it if it is owned); on success, applies `txn`'s
/// namespace step to `namespaces`.
caf::error check_and_note_namespace(const transaction& txn, namespace_table& namespaces);

/// The keys a commit set and removed in its namespace.
struct applied_change {
  std::vector<entry> set;
  std::vector<std::string> removed;
};

/// One rank's copy of the store.
class replica {
public:
  struct stored {
    std::string value;
    bool json = false;
    uint64_t version = 0;
  };
  using keys_type = std::map<std::string, stored>;

  replica() { namespaces_[primary_namespace] = ""; }

  uint64_t version() const { return version_; }
  const namespace_table& namespaces() const { return namespaces_; }
  uint64_t key_count() const;

  /// Applies a record the root made (checked there): the version becomes its.
  applied_change apply(const commit_record& record);

  /// Replaces everything with the root's whole store at `version`.
  void replace(uint64_t version, const std::vector<namespace_info>& namespaces,
               const std::vector<entry>& entries);

  /// The value at `key`, or an error: not_found (no namespace, no key), or
  /// invalid_argument (a directory).
  caf::expected<entry> lookup(const std::string& ns, const std::string& key) const;
  /// The names directly under `dir` ("" = the top).
  caf::expected<listing> list(const std::string& ns, const std::string& dir) const;
  /// Every key at or under `dir` ("" = all).
  caf::expected<dump> dump_under(const std::string& ns, const std::string& dir) const;
  /// The keys at or under `key` with their values (for watches across a replace).
  keys_type under(const std::string& ns, const std::string& key) const;

  /// Everything, for a replica that takes the whole store.
  void whole(std::vector<namespace_info>& namespaces, std::vector<entry>& entries) const;

private:
  const keys_type* keys_of(const std::string& ns) const;
  static void remove_under(keys_type& keys, const std::string& key,
                           const std::function<void(const std::string&)>& removing);

  uint64_t version_ = 0;
  namespace_table namespaces_;
  std::map<std::string, keys_type> data_; // namespace -> keys
};

namespace detail {

/// A rank's replica as the KVS actor and the local readers (kvs.hpp) share it: the
/// actor takes the lock exclusively to change it, readers share it.
struct shared_replica {
  mutable std::shared_mutex mutex;
  replica data;
};

} // namespace detail

/// Whether `key` is `prefix` or below it (prefix "" holds every key).
bool at_or_under(std::string_view key, std::string_view prefix);

} // namespace troupe::kvs
