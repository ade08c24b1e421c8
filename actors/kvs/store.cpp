// The KVS root's SQLite store (store.hpp).

#include "actors/kvs/detail/store.hpp"

#include <sqlite3.h>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>

#include "base/error.hpp"

namespace troupe::kvs {

namespace {

constexpr int64_t store_format = 1;

/// Statement slots (prepared once, kept for the store's life).
enum slot : int {
  delete_key,
  delete_range,
  upsert_key,
  insert_namespace,
  delete_namespace_keys,
  delete_namespace,
  set_version,
  slot_count,
};

/// Binds text without a copy; the caller keeps it alive until the step. (Not named
/// `bind`: argument-dependent lookup would pick std::bind for a non-const string.)
void bind_text(sqlite3_stmt* s, int i, const std::string& text) {
  sqlite3_bind_text(s, i, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
}

std::string column_text(sqlite3_stmt* s, int i) {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(s, i));
  return p == nullptr ? std::string{}
                      : std::string{p, static_cast<size_t>(sqlite3_column_bytes(s, i))};
}

} // namespace

const char* to_string(sync_mode mode) {
  switch (mode) {
    case sync_mode::full:
      return "full";
    case sync_mode::normal:
      return "normal";
    case sync_mode::off:
      return "off";
  }
  return "?";
}

caf::expected<std::unique_ptr<store>> store::open(const std::string& path,
                                                  sync_mode mode) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(
    path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
    nullptr);
  if (rc != SQLITE_OK) {
    std::string why = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return make_error(errc::io, "the KVS store " + path + ": cannot open it: " + why);
  }
  std::unique_ptr<store> s{new store(path, db)};
  s->statements_.assign(slot_count, nullptr);
  std::string pragmas = "PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=WAL; "
                        "PRAGMA synchronous=";
  pragmas += mode == sync_mode::full     ? "FULL;"
             : mode == sync_mode::normal ? "NORMAL;"
                                         : "OFF;";
  if (auto err = s->exec(pragmas.c_str()))
    return err;
  // The first write takes the exclusive lock: a second process fails here.
  auto err = s->exec(
    "BEGIN IMMEDIATE;"
    "CREATE TABLE IF NOT EXISTS troupe_kvs_meta(name TEXT PRIMARY KEY, value INTEGER NOT "
    "NULL);"
    "CREATE TABLE IF NOT EXISTS troupe_kvs_namespaces(name TEXT PRIMARY KEY, owner TEXT "
    "NOT "
    "NULL);"
    "CREATE TABLE IF NOT EXISTS troupe_kvs_keys(ns TEXT NOT NULL, key TEXT NOT NULL, "
    "value "
    "BLOB NOT NULL, json INTEGER NOT NULL, version INTEGER NOT NULL, PRIMARY KEY(ns, "
    "key)) "
    "WITHOUT ROWID;"
    "INSERT OR IGNORE INTO troupe_kvs_meta VALUES('format', 1), ('version', 0);"
    "INSERT OR IGNORE INTO troupe_kvs_namespaces VALUES('primary', '');"
    "COMMIT;");
  if (err) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return err;
  }
  sqlite3_stmt* q = nullptr;
  sqlite3_prepare_v2(db, "SELECT value FROM troupe_kvs_meta WHERE name = 'format'", -1,
                     &q, nullptr);
  int64_t format = 0;
  if (q != nullptr && sqlite3_step(q) == SQLITE_ROW)
    format = sqlite3_column_int64(q, 0);
  sqlite3_finalize(q);
  if (format == 0)
    return s->failed("reading its format");
  if (format != store_format)
    return make_error(errc::io, "the KVS store " + path + " has format "
                                  + std::to_string(format) + "; this Troupe reads format "
                                  + std::to_string(store_format));
  return s;
}

store::~store() {
  for (auto* stmt : statements_)
    sqlite3_finalize(stmt);
  sqlite3_close(db_);
}

caf::error store::failed(const std::string& step) const {
  auto code = sqlite3_errcode(db_);
  std::string why = sqlite3_errmsg(db_);
  if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
    why += " (another process holds the store: one root per store)";
  return make_error(errc::io, "the KVS store " + path_ + ": " + step + ": " + why);
}

caf::error store::exec(const char* sql) {
  char* msg = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &msg) == SQLITE_OK)
    return caf::none;
  sqlite3_free(msg);
  return failed("setting it up");
}

caf::expected<sqlite3_stmt*> store::prepared(int which, const char* sql) {
  auto& stmt = statements_[static_cast<size_t>(which)];
  if (stmt == nullptr && sqlite3_prepare_v2(db_, sql, -1, &stmt, nullptr) != SQLITE_OK)
    return failed("preparing a statement");
  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt);
  return stmt;
}

caf::error store::run(sqlite3_stmt* stmt, const std::string& step) {
  int rc = sqlite3_step(stmt);
  sqlite3_reset(stmt);
  if (rc == SQLITE_DONE || rc == SQLITE_ROW)
    return caf::none;
  return failed(step);
}

caf::expected<store_contents> store::load() {
  store_contents out;
  auto query = [&](const char* sql, auto row) -> caf::error {
    sqlite3_stmt* q = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &q, nullptr) != SQLITE_OK)
      return failed("reading it");
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW)
      row(q);
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? caf::none : failed("reading it");
  };
  if (auto err = query("SELECT value FROM troupe_kvs_meta WHERE name = 'version'",
                       [&](sqlite3_stmt* q) {
                         out.version = static_cast<uint64_t>(sqlite3_column_int64(q, 0));
                       }))
    return err;
  if (auto err =
        query("SELECT name, owner FROM troupe_kvs_namespaces", [&](sqlite3_stmt* q) {
          out.namespaces.push_back({column_text(q, 0), column_text(q, 1)});
        }))
    return err;
  if (auto err = query(
        "SELECT ns, key, value, json, version FROM troupe_kvs_keys ORDER BY "
        "ns, key",
        [&](sqlite3_stmt* q) {
          out.entries.push_back({column_text(q, 0), column_text(q, 1), column_text(q, 2),
                                 sqlite3_column_int(q, 3) != 0,
                                 static_cast<uint64_t>(sqlite3_column_int64(q, 4))});
        }))
    return err;
  return out;
}

caf::error store::apply(const commit_record& record) {
  const auto& txn = record.txn;
  auto remove_key = [&](const std::string& key) -> caf::error {
    auto s =
      prepared(delete_key, "DELETE FROM troupe_kvs_keys WHERE ns = ?1 AND key = ?2");
    if (!s)
      return s.error();
    bind_text(*s, 1, txn.ns);
    bind_text(*s, 2, key);
    return run(*s, "removing a key");
  };
  auto remove_under = [&](const std::string& key) -> caf::error {
    auto s =
      prepared(delete_range, "DELETE FROM troupe_kvs_keys WHERE ns = ?1 AND key > ?2 "
                             "AND key < ?3");
    if (!s)
      return s.error();
    auto from = key + ".";
    auto to = key + "/";
    bind_text(*s, 1, txn.ns);
    bind_text(*s, 2, from);
    bind_text(*s, 3, to);
    return run(*s, "removing a directory");
  };
  for (const auto& o : txn.ops) {
    caf::error err;
    switch (o.kind) {
      case op::put: {
        for (auto dot = o.key.find('.'); dot != std::string::npos && !err;
             dot = o.key.find('.', dot + 1))
          err = remove_key(o.key.substr(0, dot));
        if (!err)
          err = remove_under(o.key);
        if (err)
          return err;
        auto s =
          prepared(upsert_key, "INSERT OR REPLACE INTO troupe_kvs_keys VALUES(?1, ?2, "
                               "?3, ?4, ?5)");
        if (!s)
          return s.error();
        bind_text(*s, 1, txn.ns);
        bind_text(*s, 2, o.key);
        sqlite3_bind_blob(*s, 3, o.value.data(), static_cast<int>(o.value.size()),
                          SQLITE_STATIC);
        sqlite3_bind_int(*s, 4, o.json ? 1 : 0);
        sqlite3_bind_int64(*s, 5, static_cast<sqlite3_int64>(record.version));
        err = run(*s, "writing a key");
        break;
      }
      case op::unlink:
        err = remove_key(o.key);
        if (!err)
          err = remove_under(o.key);
        break;
      case op::create_namespace: {
        auto s =
          prepared(insert_namespace, "INSERT INTO troupe_kvs_namespaces VALUES(?1, ?2)");
        if (!s)
          return s.error();
        bind_text(*s, 1, txn.ns);
        bind_text(*s, 2, o.value);
        err = run(*s, "creating a namespace");
        break;
      }
      case op::remove_namespace: {
        auto s =
          prepared(delete_namespace_keys, "DELETE FROM troupe_kvs_keys WHERE ns = ?1");
        if (!s)
          return s.error();
        bind_text(*s, 1, txn.ns);
        if ((err = run(*s, "removing a namespace's keys")))
          return err;
        s =
          prepared(delete_namespace, "DELETE FROM troupe_kvs_namespaces WHERE name = ?1");
        if (!s)
          return s.error();
        bind_text(*s, 1, txn.ns);
        err = run(*s, "removing a namespace");
        break;
      }
      default:
        break; // refused before it got a version
    }
    if (err)
      return err;
  }
  return caf::none;
}

caf::error store::write(const std::vector<commit_record>& records) {
  if (records.empty())
    return caf::none;
  if (sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK)
    return failed("starting a write");
  auto abandon = [this](caf::error err) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    return err;
  };
  for (const auto& r : records)
    if (auto err = apply(r))
      return abandon(std::move(err));
  auto s = prepared(set_version, "UPDATE troupe_kvs_meta SET value = ?1 WHERE name = "
                                 "'version'");
  if (!s)
    return abandon(s.error());
  sqlite3_bind_int64(*s, 1, static_cast<sqlite3_int64>(records.back().version));
  if (auto err = run(*s, "writing the version"))
    return abandon(std::move(err));
  if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK)
    return abandon(failed("committing a write"));
  return caf::none;
}

caf::actor spawn_store_writer(caf::actor_system& system, std::unique_ptr<store> s,
                              const caf::actor& owner) {
  std::shared_ptr<store> owned{std::move(s)};
  return system.spawn<caf::detached>(
    [owned, owner](caf::event_based_actor* self) -> caf::behavior {
      self->monitor(owner);
      self->set_down_handler([self](const caf::down_msg& dm) { self->quit(dm.reason); });
      return {
        [owned](write_atom, const commit_batch& batch) -> caf::result<uint64_t> {
          if (auto err = owned->write(batch.records))
            return make_error(errc::refused, describe(err));
          return batch.records.empty() ? uint64_t{0} : batch.records.back().version;
        },
      };
    });
}

} // namespace troupe::kvs
