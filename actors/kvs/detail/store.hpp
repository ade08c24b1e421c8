#pragma once
// The KVS root's durable store (kvs.hpp): one SQLite database in WAL mode. SQLite
// because it is what flux-core's content store uses, is in every Debian, survives a
// kill -9 at any point of a write (its journal), checks its own file, and gives
// atomic multi-key transactions and ordered range deletes that a directory tree
// needs; LMDB would give faster reads, but reads here are served from memory anyway.
//
// The database is held exclusively (a second process opening it is refused), so two
// roots can never interleave their versions in one store.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include "actors/kvs/detail/replica.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace troupe::kvs {

/// When a commit counts as durable (SQLite's `synchronous` in WAL mode).
enum class sync_mode {
  full,   ///< fsync at every store write: survives a power loss
  normal, ///< written to the file, fsync at checkpoints: survives the process dying
  off,    ///< left to the OS: for benchmarks and scratch instances
};

/// "full", "normal", "off".
const char* to_string(sync_mode mode);

/// Everything the store holds.
struct store_contents {
  uint64_t version = 0;
  std::vector<namespace_info> namespaces;
  std::vector<entry> entries;
};

class store {
public:
  /// Opens (creating if absent) the database at `path`. Errors (troupe.io) name the
  /// path and what failed: not a database, held by another process, a newer format.
  static caf::expected<std::unique_ptr<store>> open(const std::string& path,
                                                    sync_mode mode);
  ~store();
  store(const store&) = delete;
  store& operator=(const store&) = delete;

  caf::expected<store_contents> load();

  /// Writes `records` (in version order) in one SQLite transaction: all or none.
  caf::error write(const std::vector<commit_record>& records);

  const std::string& path() const { return path_; }

private:
  store(std::string path, sqlite3* db) : path_(std::move(path)), db_(db) {}
  caf::error exec(const char* sql);
  caf::error failed(const std::string& step) const;
  caf::expected<sqlite3_stmt*> prepared(int slot, const char* sql);
  caf::error run(sqlite3_stmt* stmt, const std::string& step);
  caf::error apply(const commit_record& record);

  std::string path_;
  sqlite3* db_;
  std::vector<sqlite3_stmt*> statements_;
};

/// A detached actor that owns `s` and writes batches to it, so that a commit's fsync
/// blocks neither the scheduler's threads nor the KVS's reads. It ends (closing the
/// store) when `owner` ends.
///   (write_atom, commit_batch) -> uint64_t (the batch's last version), or
///   troupe.refused naming the store and SQLite's reason.
using write_atom = caf::atom_constant<caf::atom("kvwrite")>;
caf::actor spawn_store_writer(caf::actor_system& system, std::unique_ptr<store> s,
                              const caf::actor& owner);

} // namespace troupe::kvs
