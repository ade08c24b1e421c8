#define BOOST_TEST_MODULE kvs_store

// The KVS's rules and its store (actors/kvs/replica.hpp, store.hpp), without actors:
// keys and directories, what a commit reports as changed, transaction checks,
// namespaces and owners, and the SQLite store on real files (a round trip through a
// reopen, a file that is not a database, a store another process holds).

#include <fstream>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>

#include "actors/kvs/detail/replica.hpp"
#include "actors/kvs/detail/store.hpp"
#include "base/error.hpp"
#include "test/support/process.hpp"

using namespace troupe;
using namespace troupe::kvs;

namespace {

commit_record record(uint64_t version, transaction txn) {
  return {version, std::move(txn)};
}

std::string text_of(const caf::error& err) {
  return describe(err);
}

template <class T>
std::string text_of(const caf::expected<T>& x) {
  return x ? std::string{"ok"} : describe(x.error());
}

} // namespace

BOOST_AUTO_TEST_CASE(keys_are_checked) {
  for (const char* good : {"a", "a.b.c", "job-17.state", "x/y:z@1"})
    BOOST_TEST(!check_key(good), good);
  for (const char* bad : {"", ".a", "a.", "a..b", "a b", "a\tb"})
    BOOST_TEST(static_cast<bool>(check_key(bad)), bad);
  BOOST_TEST(text_of(check_key("a..b")).find("key 'a..b': an empty component")
             != std::string::npos);
  BOOST_TEST(static_cast<bool>(check_key(std::string(1025, 'k'))));
}

BOOST_AUTO_TEST_CASE(transactions_are_checked_before_they_get_a_version) {
  transaction empty;
  BOOST_TEST(text_of(check_transaction(empty, 100)).find("an empty transaction")
             != std::string::npos);
  transaction big;
  big.put("k", std::string(200, 'v'));
  auto err = check_transaction(big, 100);
  BOOST_TEST(has_code(err, errc::refused));
  BOOST_TEST(
    text_of(err).find("a transaction of 208 bytes is over the KVS's max_txn_bytes (100)")
      != std::string::npos,
    text_of(err));
  transaction bad_json;
  bad_json.put_json("k", "{\"a\": ");
  BOOST_TEST(
    text_of(check_transaction(bad_json, 100)).find("key 'k': the value is not valid JSON")
    != std::string::npos);
  transaction good_json;
  good_json.put_json("k", "{\"a\": [1, 2]}");
  BOOST_TEST(!check_transaction(good_json, 100));
  transaction mixed;
  mixed.ns = "jobs";
  mixed.ops.push_back({op::create_namespace, "", "alice", false});
  mixed.put("k", "v");
  BOOST_TEST(text_of(check_transaction(mixed, 100)).find("alone in its transaction")
             != std::string::npos);
  transaction drop_primary;
  drop_primary.ops.push_back({op::remove_namespace, "", "", false});
  BOOST_TEST(has_code(check_transaction(drop_primary, 100), errc::refused));
}

BOOST_AUTO_TEST_CASE(a_key_is_a_value_or_a_directory_never_both) {
  replica r;
  transaction t1;
  t1.put("a.b.c", "1").put("a.b.d", "2").put("a.e", "3").put("a.b-x", "4");
  auto c1 = r.apply(record(1, t1));
  BOOST_TEST(c1.set.size() == 4u);
  BOOST_TEST(c1.removed.empty());
  auto top = r.list(primary_namespace, "a");
  BOOST_REQUIRE(top);
  BOOST_TEST((top->names == std::vector<std::string>{"b-x", "b.", "e"}));
  BOOST_TEST(top->version == 1u);
  auto dir = r.lookup(primary_namespace, "a.b");
  BOOST_TEST(has_code(dir.error(), errc::invalid_argument));
  BOOST_TEST(text_of(dir).find("'a.b' is a directory") != std::string::npos);
  BOOST_TEST(has_code(r.list(primary_namespace, "a.e").error(), errc::invalid_argument));
  BOOST_TEST(has_code(r.lookup(primary_namespace, "a.zz").error(), errc::not_found));

  // A value where a directory was: the directory goes.
  transaction t2;
  t2.put("a.b", "flat");
  auto c2 = r.apply(record(2, t2));
  BOOST_TEST((c2.removed == std::vector<std::string>{"a.b.c", "a.b.d"}));
  BOOST_TEST(c2.set.size() == 1u);
  BOOST_TEST(r.lookup(primary_namespace, "a.b")->value == "flat");
  BOOST_TEST(r.lookup(primary_namespace, "a.b")->version == 2u);
  // A directory where a value was: the value goes.
  transaction t3;
  t3.put("a.e.f", "deep");
  auto c3 = r.apply(record(3, t3));
  BOOST_TEST((c3.removed == std::vector<std::string>{"a.e"}));
  BOOST_TEST(r.lookup(primary_namespace, "a.e.f")->value == "deep");
  // Unlink takes a whole directory; a key set and removed in one commit is reported
  // once, as it ends.
  transaction t4;
  t4.put("a.e.g", "x").unlink("a.e");
  auto c4 = r.apply(record(4, t4));
  BOOST_TEST(c4.set.empty());
  BOOST_TEST((c4.removed == std::vector<std::string>{"a.e.f"}));
  transaction t5;
  t5.put("k", "1").put("k", "2");
  auto c5 = r.apply(record(5, t5));
  BOOST_REQUIRE_EQUAL(c5.set.size(), 1u);
  BOOST_TEST(c5.set.front().value == "2");
  auto all = r.dump_under(primary_namespace, "");
  BOOST_REQUIRE(all);
  BOOST_TEST(all->entries.size() == 3u); // a.b, a.b-x, k
  BOOST_TEST(all->version == 5u);
  BOOST_TEST(r.key_count() == 3u);
}

BOOST_AUTO_TEST_CASE(a_namespace_takes_commits_from_its_owner_only) {
  replica r;
  namespace_table names = r.namespaces();
  transaction create;
  create.ns = "jobs";
  create.ops.push_back({op::create_namespace, "", "alice", false});
  BOOST_REQUIRE(!check_and_note_namespace(create, names));
  BOOST_TEST(has_code(check_and_note_namespace(create, names), errc::refused));
  r.apply(record(1, create));
  transaction by_bob;
  by_bob.ns = "jobs";
  by_bob.as = "bob";
  by_bob.put("j1", "queued");
  auto refused = check_and_note_namespace(by_bob, names);
  BOOST_TEST(has_code(refused, errc::refused));
  BOOST_TEST(
    text_of(refused).find("namespace 'jobs' is owned by 'alice'; this transaction "
                          "commits as 'bob'")
      != std::string::npos,
    text_of(refused));
  by_bob.as = "alice";
  BOOST_TEST(!check_and_note_namespace(by_bob, names));
  r.apply(record(2, by_bob));
  BOOST_TEST(r.lookup("jobs", "j1")->value == "queued");
  BOOST_TEST(has_code(r.lookup(primary_namespace, "j1").error(), errc::not_found));
  transaction elsewhere;
  elsewhere.ns = "nowhere";
  elsewhere.put("k", "v");
  BOOST_TEST(has_code(check_and_note_namespace(elsewhere, names), errc::not_found));
  transaction remove;
  remove.ns = "jobs";
  remove.as = "alice";
  remove.ops.push_back({op::remove_namespace, "", "", false});
  BOOST_TEST(!check_and_note_namespace(remove, names));
  auto gone = r.apply(record(3, remove));
  BOOST_TEST((gone.removed == std::vector<std::string>{"j1"}));
  BOOST_TEST(has_code(r.lookup("jobs", "j1").error(), errc::not_found));
  BOOST_TEST(r.namespaces().count("jobs") == 0u);
}

BOOST_AUTO_TEST_CASE(the_store_gives_back_what_was_written_after_a_reopen) {
  test::temp_dir dir;
  auto path = dir.path() + "/kvs.sqlite";
  replica expected;
  {
    auto s = store::open(path, sync_mode::full);
    BOOST_REQUIRE_MESSAGE(s, text_of(s));
    std::vector<commit_record> batch;
    transaction t1;
    t1.put("a.b.c", "1").put("a.e", "3").put_json("j", "[1,2]");
    t1.put("empty", "");
    t1.put("bytes", std::string("\0\x01\xff", 3));
    batch.push_back(record(1, t1));
    transaction t2;
    t2.put("a.b", "flat").put("a.e.f", "deep");
    batch.push_back(record(2, t2));
    transaction t3;
    t3.ns = "jobs";
    t3.ops.push_back({op::create_namespace, "", "alice", false});
    batch.push_back(record(3, t3));
    transaction t4;
    t4.ns = "jobs";
    t4.as = "alice";
    t4.put("x", "y").put("z", "w");
    batch.push_back(record(4, t4));
    BOOST_REQUIRE(!(*s)->write(batch));
    transaction t5;
    t5.ns = "jobs";
    t5.as = "alice";
    t5.unlink("z");
    BOOST_REQUIRE(!(*s)->write({record(5, t5)}));
    for (const auto& r : batch)
      expected.apply(r);
    expected.apply(record(5, t5));
  }
  auto s = store::open(path, sync_mode::normal);
  BOOST_REQUIRE_MESSAGE(s, text_of(s));
  auto loaded = (*s)->load();
  BOOST_REQUIRE_MESSAGE(loaded, text_of(loaded));
  BOOST_TEST(loaded->version == 5u);
  std::vector<namespace_info> names;
  std::vector<entry> entries;
  expected.whole(names, entries);
  BOOST_REQUIRE_EQUAL(loaded->entries.size(), entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    BOOST_TEST(loaded->entries[i].ns == entries[i].ns);
    BOOST_TEST(loaded->entries[i].key == entries[i].key);
    BOOST_TEST(loaded->entries[i].value == entries[i].value);
    BOOST_TEST(loaded->entries[i].json == entries[i].json);
    BOOST_TEST(loaded->entries[i].version == entries[i].version);
  }
  BOOST_REQUIRE_EQUAL(loaded->namespaces.size(), 2u);
  replica back;
  back.replace(loaded->version, loaded->namespaces, loaded->entries);
  BOOST_TEST(back.lookup("primary", "bytes")->value == std::string("\0\x01\xff", 3));
  BOOST_TEST(back.lookup("primary", "empty")->value.empty());
  BOOST_TEST(back.lookup("primary", "j")->json);
  BOOST_TEST(back.namespaces().at("jobs") == "alice");
}

BOOST_AUTO_TEST_CASE(a_file_that_is_not_a_store_is_refused_naming_it) {
  test::temp_dir dir;
  auto path = dir.write("kvs.sqlite", std::string(8192, 'x'));
  auto s = store::open(path, sync_mode::full);
  BOOST_REQUIRE(!s);
  BOOST_TEST(has_code(s.error(), errc::io));
  BOOST_TEST(text_of(s).find("the KVS store " + path) != std::string::npos, text_of(s));
  BOOST_TEST(text_of(s).find("not a database") != std::string::npos, text_of(s));
  auto missing_dir = store::open(dir.path() + "/no/such/dir/kvs.sqlite", sync_mode::full);
  BOOST_REQUIRE(!missing_dir);
  BOOST_TEST(text_of(missing_dir).find("cannot open it") != std::string::npos,
             text_of(missing_dir));
}

BOOST_AUTO_TEST_CASE(a_store_another_process_holds_is_refused) {
  test::temp_dir dir;
  auto path = dir.path() + "/kvs.sqlite";
  auto held = store::open(path, sync_mode::full);
  BOOST_REQUIRE(held);
  // Another process (SQLite's locks are per process, as two roots would be).
  int pipe_fds[2];
  BOOST_REQUIRE(::pipe(pipe_fds) == 0);
  pid_t pid = ::fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    auto second = store::open(path, sync_mode::full);
    std::string text = second ? std::string{"opened"} : describe(second.error());
    auto n = ::write(pipe_fds[1], text.data(), text.size());
    ::_exit(n > 0 ? 0 : 1);
  }
  ::close(pipe_fds[1]);
  std::string text;
  char buf[512];
  ssize_t n;
  while ((n = ::read(pipe_fds[0], buf, sizeof buf)) > 0)
    text.append(buf, static_cast<size_t>(n));
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  BOOST_TEST(text.find("another process holds the store") != std::string::npos, text);
}
