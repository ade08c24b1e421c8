// The KVS root's half (kvs_actor.hpp): checks transactions, gives them versions, makes
// a batch durable in the store, then applies, answers and broadcasts it.

#include <algorithm>
#include <random>
#include <utility>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>

#include "actors/kvs/detail/kvs_actor.hpp"
#include "actors/overlay/overlay.hpp"
#include "base/error.hpp"
#include "base/log.hpp"

namespace troupe::kvs {

void become_root(kvs_actor* self) {
  auto& st = self->state;
  st.is_root = true;
  ++st.root_term;
  st.writing = false;
  std::random_device rd;
  st.root_id = st.address + "#" + std::to_string(rd());
  st.stats.root = true;
  st.store_error = caf::none;
  if (!st.settings.store_path.empty()) {
    // Blocks this worker while the store is read: once, when the rank becomes root.
    auto opened = store::open(st.settings.store_path, st.settings.sync);
    caf::expected<store_contents> contents{caf::error{}};
    if (opened)
      contents = (*opened)->load();
    if (!opened || !contents) {
      st.store_error =
        make_error(errc::refused,
                   "the KVS root at " + st.address
                     + " refuses commits: its store could not be opened when it became "
                       "root: "
                     + describe(opened ? contents.error() : opened.error()));
      TROUPE_LOG_ERROR("kvs", describe(st.store_error));
    } else {
      if (contents->version < st.data().version())
        TROUPE_LOG_WARNING(
          "kvs", "the store " << st.settings.store_path << " is at version "
                              << contents->version << ", this replica at "
                              << st.data().version() << "; the store's contents count");
      // Versions never go back for a reader that saw this replica's: the next commit
      // comes after both.
      auto version = std::max(contents->version, st.data().version());
      std::unique_lock<std::shared_mutex> guard{st.shared->mutex};
      st.data().replace(version, contents->namespaces, contents->entries);
      guard.unlock();
      st.writer =
        spawn_store_writer(self->system(), std::move(*opened), caf::actor{self});
      TROUPE_LOG_INFO("kvs", "KVS root at version "
                               << contents->version << " from " << st.settings.store_path
                               << " (" << contents->entries.size() << " keys, sync "
                               << to_string(st.settings.sync) << ")");
    }
  }
  st.synced = true;
  st.following = st.root_id;
  st.ahead.clear();
  st.log.clear();
  st.log_size = 0;
  run_ready_waits(self);
}

void stop_being_root(kvs_actor* self) {
  auto& st = self->state;
  st.is_root = false;
  st.stats.root = false;
  auto pending = std::move(st.pending);
  st.pending.clear();
  for (auto& p : pending)
    p.done(make_error(errc::refused, st.address + " is no longer the KVS root (rank 0)"));
  if (st.writer)
    self->send_exit(st.writer, caf::exit_reason::user_shutdown);
  st.writer = nullptr;
  st.writing = false;
  st.synced = false; // follow the new root from its state
}

void root_accept(kvs_actor* self, transaction txn, record_callback done) {
  auto& st = self->state;
  if (!st.is_root)
    return done(make_error(errc::refused, st.address + " is not the KVS root (rank 0)"));
  if (st.store_error)
    return done(st.store_error);
  st.pending.push_back({std::move(txn), std::move(done)});
  // After what is already in the mailbox: the commits that came meanwhile share the
  // batch (and its fsync).
  if (!st.writing && !st.flush_scheduled) {
    st.flush_scheduled = true;
    self->send(self, flush_atom::value);
  }
}

namespace {

void finish_batch(kvs_actor* self, std::vector<commit_record> records,
                  std::vector<record_callback> callbacks) {
  auto& st = self->state;
  for (size_t i = 0; i < records.size(); ++i) {
    apply_record(self, records[i]);
    st.log.push_back(records[i]);
    st.log_size += transaction_bytes(records[i].txn);
    while (!st.log.empty()
           && (st.log.size() > st.settings.log_records
               || st.log_size > st.settings.log_bytes)) {
      st.log_size -= transaction_bytes(st.log.front().txn);
      st.log.pop_front();
    }
    ++st.stats.commits;
    callbacks[i](records[i]);
  }
  ++st.stats.batches;
  run_ready_waits(self);
  self
    ->request(
      st.overlay, st.settings.timeout, overlay::broadcast_atom::value, st.provider_name,
      caf::make_message(apply_atom::value, st.root_id, commit_batch{std::move(records)}))
    .then(
      [self](const overlay::reduction_result& r) {
        if (r.missing.empty())
          return;
        // Those ranks learn of this version later, when the root tells every rank
        // its version: a rank behind it then catches up (so a lost last commit is
        // not waited for until the next one).
        TROUPE_LOG_DEBUG("kvs", r.missing.size()
                                  << " ranks missed a commit broadcast; they catch up");
        self->delayed_send(self, self->state.settings.gap_wait, tip_atom::value);
      },
      [](const caf::error& err) {
        TROUPE_LOG_WARNING(
          "kvs", "a commit broadcast failed (replicas catch up): " << describe(err));
      });
}

} // namespace

void root_flush(kvs_actor* self) {
  auto& st = self->state;
  st.flush_scheduled = false;
  if (st.writing || st.pending.empty() || !st.is_root)
    return;
  auto pending = std::move(st.pending);
  st.pending.clear();
  // Each transaction is checked against the namespaces as the ones before it in the
  // batch leave them.
  auto namespaces = st.data().namespaces();
  auto version = st.data().version();
  std::vector<commit_record> records;
  std::vector<record_callback> callbacks;
  for (auto& p : pending) {
    if (auto err = check_and_note_namespace(p.txn, namespaces)) {
      ++st.stats.refused;
      p.done(std::move(err));
      continue;
    }
    records.push_back({++version, std::move(p.txn)});
    callbacks.push_back(std::move(p.done));
  }
  if (records.empty())
    return;
  if (!st.writer)
    return finish_batch(self, std::move(records), std::move(callbacks));
  st.writing = true;
  // The batch waits here for its write (the writer gets a copy of the records).
  struct in_flight {
    std::vector<commit_record> records;
    std::vector<record_callback> callbacks;
  };
  auto batch =
    std::make_shared<in_flight>(in_flight{std::move(records), std::move(callbacks)});
  auto term = st.root_term;
  // No timeout: a write that ended late must still be applied, or the store and the
  // replicas would disagree; a committer's own request times out meanwhile.
  self->request(st.writer, caf::infinite, write_atom::value, commit_batch{batch->records})
    .then(
      [self, batch, term](uint64_t) {
        if (term != self->state.root_term) {
          // Written by this rank as an earlier root: the store has it, the replicas
          // follow another root now.
          for (auto& done : batch->callbacks)
            done(make_error(errc::refused, "the KVS root changed while this commit was "
                                           "written; it may be in the store"));
          return;
        }
        self->state.writing = false;
        finish_batch(self, std::move(batch->records), std::move(batch->callbacks));
        root_flush(self);
      },
      [self, batch, term](const caf::error& err) {
        for (auto& done : batch->callbacks)
          done(err);
        if (term != self->state.root_term)
          return;
        self->state.writing = false;
        TROUPE_LOG_ERROR("kvs", "a commit batch was not written: " << describe(err));
        self->state.stats.refused += batch->callbacks.size();
        root_flush(self);
      });
}

caf::expected<sync_reply> root_sync(kvs_actor* self, const std::string& root,
                                    uint64_t from_version) {
  auto& st = self->state;
  if (!st.is_root)
    return make_error(errc::refused, st.address + " is not the KVS root (rank 0)");
  sync_reply reply;
  reply.root = st.root_id;
  reply.version = st.data().version();
  auto have_log = !st.log.empty() && st.log.front().version <= from_version + 1;
  if (root == st.root_id && from_version <= st.data().version()
      && (from_version == st.data().version() || have_log)) {
    for (const auto& r : st.log)
      if (r.version > from_version)
        reply.records.push_back(r);
    return reply;
  }
  reply.whole = true;
  st.data().whole(reply.namespaces, reply.entries);
  return reply;
}

} // namespace troupe::kvs
