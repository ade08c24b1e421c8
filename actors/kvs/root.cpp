// The KVS root's half (kvs_actor.hpp): checks transactions, gives them versions, makes
// a batch durable in the store, then applies, answers and broadcasts it.

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
      st.store_error = opened ? contents.error() : opened.error();
      TROUPE_LOG_ERROR("kvs", "the KVS root cannot use its store; commits are refused: "
                                << describe(st.store_error));
    } else {
      if (contents->version < st.data.version())
        TROUPE_LOG_WARNING("kvs", "the store " << st.settings.store_path << " is at version "
                                               << contents->version << ", this replica at "
                                               << st.data.version()
                                               << "; the store's contents count");
      st.data.replace(contents->version, contents->namespaces, contents->entries);
      st.writer = spawn_store_writer(self->system(), std::move(*opened));
      TROUPE_LOG_INFO("kvs", "KVS root at version " << contents->version << " from "
                                                    << st.settings.store_path << " ("
                                                    << contents->entries.size()
                                                    << " keys, sync " << to_string(st.settings.sync)
                                                    << ")");
    }
  }
  st.stats.store = st.settings.store_path;
  st.synced = true;
  st.following = st.root_id;
  st.ahead.clear();
  st.log.clear();
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
  st.synced = false; // follow the new root from its state
}

void root_accept(kvs_actor* self, transaction txn, record_callback done) {
  auto& st = self->state;
  if (!st.is_root)
    return done(make_error(errc::refused, st.address + " is not the KVS root (rank 0)"));
  if (st.store_error)
    return done(make_error(errc::refused, describe(st.store_error)));
  if (auto err = check_transaction(txn, st.settings.max_txn_bytes)) {
    ++st.stats.refused;
    return done(std::move(err));
  }
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
    if (st.log.size() > st.settings.log_records)
      st.log.pop_front();
    ++st.stats.commits;
    callbacks[i](records[i]);
  }
  ++st.stats.batches;
  run_ready_waits(self);
  self
    ->request(st.overlay, st.settings.timeout, overlay::broadcast_atom::value,
              st.provider_name,
              caf::make_message(apply_atom::value, st.root_id, commit_batch{std::move(records)}))
    .then([](const overlay::reduction_result& r) {
            if (!r.missing.empty())
              TROUPE_LOG_DEBUG("kvs", r.missing.size()
                                        << " ranks missed a commit broadcast; they catch up");
          },
          [](const caf::error& err) {
            TROUPE_LOG_WARNING("kvs", "a commit broadcast failed (replicas catch up): "
                                        << describe(err));
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
  auto namespaces = st.data.namespaces();
  auto version = st.data.version();
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
  // No timeout: a write that ended late must still be applied, or the store and the
  // replicas would disagree; a committer's own request times out meanwhile.
  auto batch = commit_batch{records};
  self->request(st.writer, caf::infinite, write_atom::value, std::move(batch))
    .then(
      [self, records, callbacks](uint64_t) mutable {
        self->state.writing = false;
        finish_batch(self, std::move(records), std::move(callbacks));
        root_flush(self);
      },
      [self, callbacks](const caf::error& err) {
        self->state.writing = false;
        TROUPE_LOG_ERROR("kvs", "a commit batch was not written: " << describe(err));
        self->state.stats.refused += callbacks.size();
        for (auto& done : callbacks)
          done(err);
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
  reply.version = st.data.version();
  auto have_log = !st.log.empty() && st.log.front().version <= from_version + 1;
  if (root == st.root_id && from_version <= st.data.version()
      && (from_version == st.data.version() || have_log)) {
    for (const auto& r : st.log)
      if (r.version > from_version)
        reply.records.push_back(r);
    return reply;
  }
  reply.whole = true;
  st.data.whole(reply.namespaces, reply.entries);
  return reply;
}

} // namespace troupe::kvs
