#define BOOST_TEST_MODULE kvs

// The KVS (actors/kvs/) across real `actorhost --size` instances (overlay fanout 2):
// commits from every rank at once end in one history that every replica holds;
// read-your-writes at the committer's rank and monotonic reads across ranks; a watch
// fires once per change; namespaces take commits from their owner only; an oversized
// transaction is refused while other commits go on; a rank that lost a commit
// broadcast catches up from the root; a kill -9 of the root in the middle of commits
// and a restart from its store lose no acknowledged commit.

#include <algorithm>
#include <atomic>
#include <csignal>
#include <map>
#include <memory>
#include <mutex>
#include <set>

#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include "actors/builtin.hpp"
#include "actors/kvs/kvs.hpp"
#include "runtime/config.hpp"
#include "runtime/node.hpp"
#include "runtime/provider_registry.hpp"
#include "test/actors/instance_fixture.hpp"

using namespace troupe;
using namespace troupe::test;
using namespace std::chrono_literals;

namespace {

/// The KVS provider of the instances here: a store at `store`, and limits a test can
/// reach quickly.
std::string kvs_provider(const std::string& store) {
  return R"({"type": "kvs", "name": "kvs", "provider_id": 1,
             "dependencies": {"group": "group", "overlay": "overlay"},
             "config": {"store": ")"
         + store + R"(", "sync": "full", "max_txn_bytes": 65536, "timeout_ms": 5000,
                        "gap_wait_ms": 100}})";
}

/// What a committer actor was told: by key, the version its commit made.
struct commit_log {
  std::mutex mutex;
  std::map<std::string, uint64_t> acked; // key -> version
  std::vector<std::string> failures;
  std::atomic<size_t> done{0};
  std::atomic<bool> stop{false};

  size_t acked_count() {
    std::lock_guard<std::mutex> guard{mutex};
    return acked.size();
  }
};

/// Keeps `window` commits in flight, round robin over `targets` (rank `ranks[i]`'s
/// KVS), commit n putting key "<prefix>.r<rank>.n<n>" = n, until `total` are issued or
/// the log says stop; records every answer.
void run_committer(caf::event_based_actor* self, std::vector<caf::actor> targets,
                   std::vector<size_t> ranks, std::string prefix, size_t total,
                   size_t window, std::shared_ptr<commit_log> log) {
  auto issued = std::make_shared<size_t>(0);
  auto in_flight = std::make_shared<size_t>(0);
  // The step holds itself only through the answers it waits for (a weak self
  // reference), so that it is freed with the last one.
  auto next = std::make_shared<std::function<void()>>();
  std::weak_ptr<std::function<void()>> weak_next = next;
  *next = [=] {
    auto again = weak_next.lock();
    while (*in_flight < window && *issued < total && !log->stop) {
      auto n = (*issued)++;
      auto i = n % targets.size();
      auto key = prefix + ".r" + std::to_string(ranks[i]) + ".n" + std::to_string(n);
      kvs::transaction txn;
      txn.put(key, std::to_string(n)).put(prefix + ".last", key);
      ++*in_flight;
      self->request(targets[i], 30s, kvs::commit_atom::value, txn)
        .then(
          [=](const kvs::commit_receipt& r) {
            {
              std::lock_guard<std::mutex> guard{log->mutex};
              log->acked[key] = r.version;
            }
            --*in_flight;
            ++log->done;
            (*again)();
          },
          [=](const caf::error& err) {
            {
              std::lock_guard<std::mutex> guard{log->mutex};
              log->failures.push_back(key + ": " + describe(err));
            }
            --*in_flight;
            ++log->done;
            (*again)();
          });
    }
    if (*in_flight == 0)
      self->quit();
  };
  (*next)();
}

struct kvs_fixture : instance_fixture {
  temp_dir store_dir;
  std::string store = store_dir.path() + "/kvs.sqlite";
  std::vector<caf::actor> kvs; // by rank

  void start_kvs(unsigned size) {
    start(size, 2, kvs_provider(store));
    kvs = every_rank_s("kvs");
  }

  kvs::commit_receipt commit_at(size_t rank, const kvs::transaction& txn) {
    auto r = ask<kvs::commit_receipt>(kvs.at(rank), kvs::commit_atom::value, txn);
    BOOST_REQUIRE_MESSAGE(r, "commit at rank " << rank << ": " << error_of(r));
    return *r;
  }

  caf::expected<kvs::entry> lookup_at(size_t rank, const std::string& key,
                                      uint64_t min_version = 0,
                                      const std::string& ns = kvs::primary_namespace) {
    return ask<kvs::entry>(kvs.at(rank), kvs::lookup_atom::value, ns, key, min_version);
  }

  kvs::dump dump_at(size_t rank, uint64_t min_version) {
    auto d = ask<kvs::dump>(kvs.at(rank), kvs::dump_atom::value, kvs::primary_namespace,
                            std::string{}, min_version);
    BOOST_REQUIRE_MESSAGE(d, "dump at rank " << rank << ": " << error_of(d));
    return *d;
  }

  /// Commits from every rank until ~150 are acknowledged, kills rank 0's process -9,
  /// goes on until commits fail, and waits until every commit in flight ended: the
  /// acknowledged ones, key -> version.
  std::map<std::string, uint64_t> kill_root_mid_stream(const std::string& prefix) {
    std::vector<size_t> ranks;
    for (size_t r = 0; r < kvs.size(); ++r)
      ranks.push_back(r);
    auto log = commit_from(ranks, prefix, 100000, 12);
    BOOST_REQUIRE(eventually(60s, [&] { return log->acked_count() >= 150; }));
    // The root's process, found by its address.
    int root_pid = -1;
    for (size_t i = 0; i < instance->addresses.size(); ++i)
      if (instance->addresses[i] == rank_addresses[0])
        root_pid = instance->pids[i];
    BOOST_REQUIRE(root_pid > 0);
    ::kill(root_pid, SIGKILL);
    // Commits go on until some fail: the root died with commits on their way to it.
    BOOST_REQUIRE(eventually(60s, [&] {
      std::lock_guard<std::mutex> guard{log->mutex};
      return !log->failures.empty();
    }));
    log->stop = true;
    // Every commit in flight ends, acknowledged or failed, within its timeouts.
    BOOST_REQUIRE(eventually(60s, [&] {
      std::lock_guard<std::mutex> guard{log->mutex};
      return log->acked.size() + log->failures.size() == log->done;
    }));
    std::lock_guard<std::mutex> guard{log->mutex};
    BOOST_TEST_MESSAGE(log->acked.size() << " commits acknowledged (highest version "
                                         << highest_version(log->acked) << "), "
                                         << log->failures.size() << " failed");
    return log->acked;
  }

  static uint64_t highest_version(const std::map<std::string, uint64_t>& acked) {
    uint64_t highest = 0;
    for (const auto& kv : acked)
      highest = std::max(highest, kv.second);
    return highest;
  }

  /// Every key of `acked` holds its commit's value at each of `ranks`.
  void check_all_there(const std::map<std::string, uint64_t>& acked,
                       std::vector<size_t> ranks) {
    auto highest = highest_version(acked);
    for (size_t rank : ranks) {
      auto d = dump_at(rank, highest);
      std::map<std::string, std::string> values;
      for (const auto& e : d.entries)
        values[e.key] = e.value;
      size_t missing = 0;
      for (const auto& [key, version] : acked) {
        auto i = values.find(key);
        if (i == values.end() || i->second != key.substr(key.find(".n") + 2))
          ++missing;
      }
      BOOST_TEST(missing == 0u, "rank " << rank << ": " << missing << " of "
                                        << acked.size() << " acknowledged commits lost");
      BOOST_TEST(d.version >= highest);
    }
  }

  /// Runs a committer in the client; returns once it ended (or after `limit`).
  std::shared_ptr<commit_log> commit_from(std::vector<size_t> ranks,
                                          const std::string& prefix, size_t total,
                                          size_t window) {
    auto log = std::make_shared<commit_log>();
    std::vector<caf::actor> targets;
    for (auto r : ranks)
      targets.push_back(kvs.at(r));
    client.system().spawn(run_committer, targets, ranks, prefix, total, window, log);
    return log;
  }
};

std::string changes_text(const kvs::change& c) {
  std::string text = "v" + std::to_string(c.version) + " set";
  for (const auto& e : c.set)
    text += " " + e.key + "=" + e.value;
  text += " removed";
  for (const auto& k : c.removed)
    text += " " + k;
  return text;
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(kvs_suite, kvs_fixture)

BOOST_AUTO_TEST_CASE(commits_from_every_rank_end_in_one_history_every_replica_holds) {
  start_kvs(7);
  constexpr size_t total = 140;
  auto log = commit_from({0, 1, 2, 3, 4, 5, 6}, "h", total, 28);
  BOOST_REQUIRE(eventually(60s, [&] { return log->done == total; }));
  BOOST_REQUIRE_MESSAGE(log->failures.empty(),
                        (log->failures.empty() ? std::string{} : log->failures.front()));
  // One version per commit, none twice, none missing.
  std::set<uint64_t> versions;
  std::map<size_t, std::vector<std::pair<size_t, uint64_t>>> by_rank; // rank -> (n, v)
  for (const auto& [key, v] : log->acked) {
    versions.insert(v);
    auto r = std::stoul(key.substr(key.find(".r") + 2));
    auto n = std::stoul(key.substr(key.find(".n") + 2));
    by_rank[r].push_back({n, v});
  }
  BOOST_REQUIRE_EQUAL(versions.size(), total);
  BOOST_TEST(*versions.begin() == 1u);
  BOOST_TEST(*versions.rbegin() == total);
  // A rank's commits reach the root in the order they were made.
  for (auto& [rank, commits] : by_rank) {
    std::sort(commits.begin(), commits.end());
    for (size_t i = 1; i < commits.size(); ++i)
      BOOST_TEST(commits[i].second > commits[i - 1].second, "rank " << rank);
  }
  // Every replica holds the same history: the same keys, values and versions.
  auto at_root = dump_at(0, total);
  BOOST_TEST(at_root.entries.size() == total + 1); // the keys and h.last
  for (size_t rank = 1; rank < 7; ++rank) {
    auto d = dump_at(rank, total);
    BOOST_TEST(d.version == total);
    BOOST_REQUIRE_EQUAL(d.entries.size(), at_root.entries.size());
    for (size_t i = 0; i < d.entries.size(); ++i) {
      BOOST_TEST(d.entries[i].key == at_root.entries[i].key);
      BOOST_TEST(d.entries[i].value == at_root.entries[i].value);
      BOOST_TEST(d.entries[i].version == at_root.entries[i].version);
    }
  }
  // h.last names the commit that made the last version.
  auto last = lookup_at(5, "h.last", total);
  BOOST_REQUIRE(last);
  BOOST_TEST(last->version == total);
  BOOST_TEST(log->acked.at(last->value) == total);
}

BOOST_AUTO_TEST_CASE(a_committer_reads_its_writes_and_readers_never_go_back) {
  start_kvs(7);
  // Read-your-writes at the committer's rank, with no version passed.
  for (int i = 0; i < 10; ++i) {
    kvs::transaction txn;
    txn.put("ryw", std::to_string(i));
    auto receipt = commit_at(4, txn);
    auto got = lookup_at(4, "ryw");
    BOOST_REQUIRE_MESSAGE(got, error_of(got));
    BOOST_TEST(got->value == std::to_string(i));
    BOOST_TEST(got->version == receipt.version);
  }
  // Monotonic reads: commits go on while a reader hops over the ranks passing the
  // highest version it saw; no answer is older.
  auto log = commit_from({1, 3, 5}, "m", 150, 6);
  uint64_t seen = 0;
  uint64_t answers = 0;
  for (size_t hop = 0; log->done < 150 || hop < 14; ++hop) {
    auto rank = hop % 7;
    auto d = ask<kvs::listing>(kvs.at(rank), kvs::list_atom::value,
                               kvs::primary_namespace, std::string{}, seen);
    BOOST_REQUIRE_MESSAGE(d, "rank " << rank << ": " << error_of(d));
    BOOST_TEST(d->version >= seen,
               "rank " << rank << " answered at " << d->version << " after " << seen);
    seen = d->version;
    ++answers;
    if (hop > 100000)
      break;
  }
  BOOST_TEST_MESSAGE(answers << " reads, last at version " << seen);
  BOOST_REQUIRE(log->failures.empty());
}

BOOST_AUTO_TEST_CASE(a_watch_fires_once_per_change) {
  start_kvs(7);
  caf::scoped_actor dir_watcher{client.system()};
  caf::scoped_actor key_watcher{client.system()};
  auto watch = [&](caf::scoped_actor& who, size_t rank, const std::string& key) {
    auto v = ask<uint64_t>(kvs.at(rank), kvs::watch_atom::value, kvs::primary_namespace,
                           key, caf::actor{who});
    BOOST_REQUIRE_MESSAGE(v, error_of(v));
  };
  watch(dir_watcher, 5, "w");
  watch(key_watcher, 6, "w.b");
  kvs::transaction both;
  both.put("w.a", "1").put("w.b", "2");
  auto v1 = commit_at(3, both).version;
  kvs::transaction elsewhere;
  elsewhere.put("x", "1");
  commit_at(3, elsewhere);
  kvs::transaction drop_a;
  drop_a.unlink("w.a");
  auto v3 = commit_at(3, drop_a).version;
  kvs::transaction drop_all;
  drop_all.unlink("w");
  auto v4 = commit_at(1, drop_all).version;
  auto next_change = [&](caf::scoped_actor& who) {
    kvs::change got;
    bool received = false;
    who->receive(
      [&](kvs::change& c) {
        got = std::move(c);
        received = true;
      },
      caf::after(10s) >> [] {});
    BOOST_REQUIRE_MESSAGE(received, "no change within 10 s");
    return got;
  };
  auto c1 = next_change(dir_watcher);
  BOOST_TEST(c1.version == v1, changes_text(c1));
  BOOST_TEST(c1.set.size() == 2u, changes_text(c1));
  BOOST_TEST(c1.removed.empty());
  auto c2 = next_change(dir_watcher); // not x: the next one is the unlink of w.a
  BOOST_TEST(c2.version == v3, changes_text(c2));
  BOOST_TEST((c2.removed == std::vector<std::string>{"w.a"}), changes_text(c2));
  auto c3 = next_change(dir_watcher);
  BOOST_TEST(c3.version == v4, changes_text(c3));
  BOOST_TEST((c3.removed == std::vector<std::string>{"w.b"}), changes_text(c3));
  // The key's watch: its set, then its removal; nothing for w.a.
  auto k1 = next_change(key_watcher);
  BOOST_TEST(k1.version == v1, changes_text(k1));
  BOOST_REQUIRE_EQUAL(k1.set.size(), 1u);
  BOOST_TEST(k1.set.front().key == "w.b");
  BOOST_TEST(k1.set.front().value == "2");
  auto k2 = next_change(key_watcher);
  BOOST_TEST(k2.version == v4, changes_text(k2));
  BOOST_TEST((k2.removed == std::vector<std::string>{"w.b"}));
}

BOOST_AUTO_TEST_CASE(namespaces_take_commits_from_their_owner_only) {
  start_kvs(4);
  kvs::transaction create;
  create.ns = "jobs";
  create.ops.push_back({kvs::op::create_namespace, "", "alice", false});
  commit_at(1, create);
  kvs::transaction by_bob;
  by_bob.ns = "jobs";
  by_bob.as = "bob";
  by_bob.put("j1", "queued");
  auto refused = ask<kvs::commit_receipt>(kvs.at(2), kvs::commit_atom::value, by_bob);
  BOOST_REQUIRE(!refused);
  BOOST_TEST(has_code(refused.error(), errc::refused));
  BOOST_TEST(error_of(refused).find("namespace 'jobs' is owned by 'alice'")
               != std::string::npos,
             error_of(refused));
  by_bob.as = "alice";
  auto ok = commit_at(2, by_bob);
  auto got = lookup_at(3, "j1", ok.version, "jobs");
  BOOST_REQUIRE_MESSAGE(got, error_of(got));
  BOOST_TEST(got->value == "queued");
  BOOST_TEST(!lookup_at(3, "j1", ok.version)); // not in primary
  auto none = lookup_at(3, "k", 0, "nowhere");
  BOOST_TEST(error_of(none).find("no namespace 'nowhere'") != std::string::npos,
             error_of(none));
}

BOOST_AUTO_TEST_CASE(an_oversized_transaction_is_refused_while_other_commits_go_on) {
  start_kvs(4);
  auto log = commit_from({1, 2, 3}, "o", 60, 6);
  kvs::transaction big;
  big.put("big", std::string(100 * 1024, 'b'));
  for (size_t rank : {0, 3}) {
    auto r = ask<kvs::commit_receipt>(kvs.at(rank), kvs::commit_atom::value, big);
    BOOST_REQUIRE(!r);
    BOOST_TEST(has_code(r.error(), errc::refused));
    BOOST_TEST(error_of(r).find("over the KVS's max_txn_bytes (65536)")
                 != std::string::npos,
               error_of(r));
  }
  BOOST_REQUIRE(eventually(30s, [&] { return log->done == 60; }));
  BOOST_TEST(log->failures.empty());
  BOOST_TEST(log->acked.size() == 60u);
  BOOST_TEST(!lookup_at(0, "big"));
  // A bad key and bad JSON are refused the same way, naming what is wrong.
  kvs::transaction bad;
  bad.put("a..b", "x");
  auto r = ask<kvs::commit_receipt>(kvs.at(2), kvs::commit_atom::value, bad);
  BOOST_TEST(error_of(r).find("key 'a..b': an empty component") != std::string::npos,
             error_of(r));
}

BOOST_AUTO_TEST_CASE(a_rank_that_lost_a_commit_catches_up_from_the_root) {
  start_kvs(7);
  kvs::transaction warm;
  warm.put("gap.warm", "1");
  auto v0 = commit_at(2, warm).version;
  BOOST_REQUIRE(lookup_at(6, "gap.warm", v0)); // rank 6 follows the root
  // Rank 6's node loses the next overlay broadcast: the next commit's.
  drop_next_overlay_messages(6, 1);
  kvs::transaction lost;
  lost.put("gap.lost", "2");
  auto v1 = commit_at(2, lost).version;
  kvs::transaction after;
  after.put("gap.after", "3");
  auto v2 = commit_at(2, after).version;
  // Rank 6 sees the gap before v2, asks the root, and has both.
  auto got = lookup_at(6, "gap.lost", v2);
  BOOST_REQUIRE_MESSAGE(got, error_of(got));
  BOOST_TEST(got->version == v1);
  BOOST_TEST(lookup_at(6, "gap.after", v2)->value == "3");
  auto stats = ask<kvs::kvs_stats>(kvs.at(6), caf::get_atom::value);
  BOOST_REQUIRE(stats);
  BOOST_TEST(stats->syncs >= 2u); // its start, and the gap
  BOOST_TEST(stats->version >= v2);
  // The last commit lost, and no commit after it: a watcher at rank 6 is told anyway
  // (the root tells every rank its version when some missed a broadcast) ...
  caf::scoped_actor watcher{client.system()};
  auto watching = ask<uint64_t>(kvs.at(6), kvs::watch_atom::value, kvs::primary_namespace,
                                std::string{"gap.tip"}, caf::actor{watcher});
  BOOST_REQUIRE(watching);
  drop_next_overlay_messages(6, 1);
  kvs::transaction tip;
  tip.put("gap.tip", "4");
  auto v3 = commit_at(2, tip).version;
  bool told = false;
  watcher->receive([&](const kvs::change& c) { told = c.version == v3; },
                   caf::after(10s) >> [] {});
  BOOST_TEST(told);
  // ... and a read that waits for a version that was lost on the way asks for it.
  drop_next_overlay_messages(6, 2);
  kvs::transaction last;
  last.put("gap.last", "5");
  auto v4 = commit_at(2, last).version;
  auto read = lookup_at(6, "gap.last", v4);
  BOOST_REQUIRE_MESSAGE(read, error_of(read));
  BOOST_TEST(read->value == "5");
}

BOOST_AUTO_TEST_CASE(a_kill_9_of_the_root_mid_commit_loses_no_acknowledged_commit) {
  start_kvs(3);
  auto acked = kill_root_mid_stream("k");
  auto highest = highest_version(acked);
  // A new instance on the same store has every acknowledged commit.
  instance.reset();
  start_kvs(3);
  check_all_there(acked, {0, 2});
  // And it goes on from there.
  kvs::transaction more;
  more.put("k.after", "restart");
  BOOST_TEST(commit_at(1, more).version > highest);
}

// Soak (ctest label "soak", run explicitly): ten rounds over one store, each an
// instance of 8 whose root is killed -9 in the middle of commits from every rank; every
// round starts from the store and finds every commit acknowledged in all rounds before.
BOOST_AUTO_TEST_CASE(kill_restart_rounds_lose_no_acknowledged_commit,
                     *boost::unit_test::disabled()) {
  std::map<std::string, uint64_t> acked;
  for (int round = 0; round < 10; ++round) {
    start_kvs(8);
    check_all_there(acked, {0, 7});
    auto more = kill_root_mid_stream("s" + std::to_string(round));
    acked.insert(more.begin(), more.end());
    instance.reset();
  }
  start_kvs(8);
  check_all_there(acked, {0, 3, 7});
}

BOOST_AUTO_TEST_CASE(a_local_reader_reads_the_replica_of_its_own_process_only) {
  // A one-node instance in this process: a group of itself, its overlay and its KVS.
  node local{parse_node_config(R"({"threads": 1, "transport": {"port": 0}, "providers": [
      {"type": "group", "name": "group", "provider_id": 1, "config": {"bootstrap": "self"}},
      {"type": "overlay", "name": "overlay", "provider_id": 1,
       "dependencies": {"group": "group"}},
      {"type": "kvs", "name": "kvs", "provider_id": 1,
       "dependencies": {"group": "group", "overlay": "overlay"}}]})",
                               "local.json")};
  BOOST_REQUIRE(!actors::register_builtins(local));
  BOOST_REQUIRE(!local.start());
  auto provider = local.providers().find("kvs");
  BOOST_REQUIRE(provider);
  auto reader = kvs::local_reader::of(provider->handle);
  BOOST_REQUIRE_MESSAGE(reader, error_of(reader));
  {
    caf::scoped_actor self{local.system()};
    kvs::transaction txn;
    txn.put("local.k", "v1");
    uint64_t version = 0;
    self->request(provider->handle, 10s, kvs::commit_atom::value, txn)
      .receive([&](const kvs::commit_receipt& r) { version = r.version; },
               [](caf::error& err) { BOOST_FAIL(describe(err)); });
    // Answered once applied here: the reader sees it at once.
    auto got = reader->lookup(kvs::primary_namespace, "local.k");
    BOOST_REQUIRE_MESSAGE(got, error_of(got));
    BOOST_TEST(got->value == "v1");
    BOOST_TEST(got->version == version);
    BOOST_TEST(reader->version() == version);
    BOOST_TEST(has_code(reader->lookup(kvs::primary_namespace, "local").error(),
                        errc::invalid_argument)); // a directory
    BOOST_TEST(has_code(reader->lookup(kvs::primary_namespace, "a..b").error(),
                        errc::invalid_argument));
  }
  // A provider in another process (a proxy here) has no local reader.
  start_kvs(2);
  auto remote = kvs::local_reader::of(kvs.at(1));
  BOOST_REQUIRE(!remote);
  BOOST_TEST(has_code(remote.error(), errc::not_found));
  BOOST_TEST(error_of(remote).find("a provider on another node is read with requests")
               != std::string::npos,
             error_of(remote));
  local.stop();
  // A reader kept after its provider ended reads the last state.
  BOOST_TEST(reader->lookup(kvs::primary_namespace, "local.k")->value == "v1");
}

BOOST_AUTO_TEST_SUITE_END()
