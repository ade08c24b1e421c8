#pragma once
// The KVS actor's state and its two halves (kvs.hpp): the replica every rank runs
// (kvs.cpp) and the root's commit path (root.cpp).

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/group/peer_providers.hpp"
#include "actors/group/view.hpp"
#include "actors/kvs/kvs.hpp"
#include "actors/kvs/detail/replica.hpp"
#include "actors/kvs/detail/store.hpp"

namespace troupe::kvs {

using std::chrono::milliseconds;

// Between ranks.
using root_commit_atom = caf::atom_constant<caf::atom("kvroot")>;
using apply_atom = caf::atom_constant<caf::atom("kvapply")>;
using sync_atom = caf::atom_constant<caf::atom("kvsync")>;
// To itself.
using flush_atom = caf::atom_constant<caf::atom("kvflush")>;
using gap_check_atom = caf::atom_constant<caf::atom("kvgapchk")>;
using resync_atom = caf::atom_constant<caf::atom("kvresync")>;
using read_expire_atom = caf::atom_constant<caf::atom("kvrexpire")>;
using behind_check_atom = caf::atom_constant<caf::atom("kvbehind")>;
using tip_atom = caf::atom_constant<caf::atom("kvtip")>;

struct kvs_settings {
  std::string store_path; ///< "" = the root keeps everything in memory only
  sync_mode sync = sync_mode::full;
  uint64_t max_txn_bytes = 1 << 20;
  milliseconds timeout{10000};   ///< a commit's way to the root; a read's wait
  milliseconds gap_wait{200};    ///< a missing commit is asked for after this
  size_t log_records = 4096;     ///< recent commits the root keeps for catch-ups
  uint64_t log_bytes = 64 << 20; ///< ... and at most this many bytes of them
};

/// What waits for the replica to reach a version (a read with min_version, a commit's
/// answer at the committer's rank): called with none then, or with the timeout.
struct version_wait {
  uint64_t id = 0;
  std::function<void(caf::error)> run;
};

struct watch {
  caf::actor who;
  std::string ns;
  std::string key; ///< "" = the whole namespace
};

/// The root's answer to one committed transaction: its record, or why not.
using record_callback = std::function<void(caf::expected<commit_record>)>;

struct pending_commit {
  transaction txn;
  record_callback done;
};

struct kvs_state {
  static inline const char* name = "troupe.kvs";
  kvs_settings settings;
  caf::actor group;
  caf::actor overlay;
  caf::actor locator;
  std::string provider_name;
  std::string address;
  group::group_view view;
  uint32_t rank = UINT32_MAX;
  group::peer_providers roots{"kvs", 1};

  // Every rank: the replica (shared with this process's local readers: changed only
  // under its lock), and the root whose commits it holds.
  std::shared_ptr<detail::shared_replica> shared =
    std::make_shared<detail::shared_replica>();
  replica& data() { return shared->data; }
  const replica& data() const { return shared->data; }
  bool synced = false;    // holds some root's state (from the start at the root)
  std::string following;  // that root's identity
  std::string ahead_root; // whose commits `ahead` holds
  std::map<uint64_t, commit_record> ahead; // commits past a gap
  bool syncing = false;
  bool gap_check_pending = false;
  std::multimap<uint64_t, version_wait> waits; // by the version waited for
  uint64_t next_wait_id = 0;
  std::vector<watch> watches;

  // The root.
  bool is_root = false;
  std::string root_id;    // address#nonce: a replica that followed another resyncs
  caf::error store_error; // the store could not be opened: commits are refused
  caf::actor writer;      // null: in memory only
  std::vector<pending_commit> pending;
  bool writing = false;
  bool flush_scheduled = false;
  uint64_t root_term = 0;        // +1 each time this rank becomes root: late writes of an
                                 // earlier term are not applied
  std::deque<commit_record> log; // the last commits (log_records, log_bytes)
  uint64_t log_size = 0;         // bytes in `log`

  kvs_stats stats;
};

using kvs_actor = caf::stateful_actor<kvs_state>;

// -- the replica (kvs.cpp) ------------------------------------------------------------

/// Hands `records` (from root `root`) to the replica: applied now if next in order,
/// held until the gap before them is filled otherwise.
void receive_records(kvs_actor* self, const std::string& root,
                     std::vector<commit_record> records);
/// Applies one record and tells the watchers.
void apply_record(kvs_actor* self, const commit_record& record);
/// Runs what waited for the versions the replica has reached.
void run_ready_waits(kvs_actor* self);

// -- the root (root.cpp) --------------------------------------------------------------

/// This rank became rank 0: open the store (if configured) and take its contents.
void become_root(kvs_actor* self);
/// This rank is no longer rank 0: refuse what waits, stop the writer.
void stop_being_root(kvs_actor* self);
/// A transaction (checked already) for the root: committed with the next batch.
void root_accept(kvs_actor* self, transaction txn, record_callback done);
/// The root's answer to a replica at `from_version` following `root`.
caf::expected<sync_reply> root_sync(kvs_actor* self, const std::string& root,
                                    uint64_t from_version);
/// Writes what is pending as one batch (unless a write is under way).
void root_flush(kvs_actor* self);

} // namespace troupe::kvs
