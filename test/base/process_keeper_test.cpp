#define BOOST_TEST_MODULE base_process_keeper
#include <boost/test/unit_test.hpp>

// The one piece that starts and stops child processes (actorhost --size, offload's
// child instances and mpirun jobs, the benchmarks, the tests' own processes), on
// /bin/sh children: how they ended, why they could not start, where their output
// went, and that they end on every way out.

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <thread>

#include <poll.h>
#include <unistd.h>

#include "base/error.hpp"
#include "base/files.hpp"
#include "base/process_keeper.hpp"
#include "test/support/process.hpp"

using namespace std::chrono_literals;
using troupe::child_output;
using troupe::child_spec;
using troupe::process_keeper;
using troupe::started_child;
using troupe::test::eventually;
using troupe::test::process_gone;
using troupe::test::process_stopped;

namespace {

child_spec shell(const std::string& script) {
  child_spec spec;
  spec.argv = {"/bin/sh", "-c", script};
  spec.death_signal = SIGKILL;
  return spec;
}

/// Everything on `fd` until its end (or 10 s); closes it.
std::string read_all(int fd) {
  std::string text;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0)
      continue;
    char buf[512];
    auto n = ::read(fd, buf, sizeof(buf));
    if (n <= 0)
      break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return text;
}

std::string why(const caf::expected<started_child>& started) {
  return started ? std::string{"started"} : troupe::context_text(started.error());
}

} // namespace

BOOST_AUTO_TEST_CASE(says_how_a_child_ended) {
  process_keeper keeper;
  auto exits = keeper.launch(shell("exit 3"));
  auto killed = keeper.launch(shell("kill -9 $$"));
  BOOST_REQUIRE_MESSAGE(exits && killed, why(exits) << " / " << why(killed));
  auto exited = keeper.wait_exit(exits->pid, 10s);
  auto was_killed = keeper.wait_exit(killed->pid, 10s);
  BOOST_REQUIRE(exited && was_killed);
  BOOST_TEST(exited->code == 3);
  BOOST_TEST(exited->signal == 0);
  BOOST_TEST(exited->describe() == "exited with code 3");
  BOOST_TEST(was_killed->signal == SIGKILL);
  BOOST_TEST(was_killed->status() == 128 + SIGKILL);
  BOOST_TEST(!keeper.running(exits->pid));
  // Asked again, the end is remembered.
  auto again = keeper.wait_exit(exits->pid, 0ms);
  BOOST_TEST((again && again->code == 3));
}

BOOST_AUTO_TEST_CASE(a_program_that_cannot_run_is_an_error_naming_it_and_why) {
  process_keeper keeper;
  child_spec spec;
  spec.argv = {"/nonexistent/troupe-program", "--flag"};
  auto started = keeper.launch(spec);
  BOOST_REQUIRE(!started);
  auto text = troupe::context_text(started.error());
  BOOST_TEST(text.find("/nonexistent/troupe-program") != std::string::npos, text);
  BOOST_TEST(text.find("No such file or directory") != std::string::npos, text);
  BOOST_TEST(started.error().code() == static_cast<uint8_t>(troupe::errc::io));

  spec = shell("true");
  spec.out = child_output::append_to("/nonexistent-dir/out.log");
  started = keeper.launch(spec);
  BOOST_REQUIRE(!started);
  text = troupe::context_text(started.error());
  BOOST_TEST(text.find("/nonexistent-dir/out.log") != std::string::npos, text);

  spec = shell("true");
  spec.env = {{"A=B", "x"}};
  started = keeper.launch(spec);
  BOOST_REQUIRE(!started);
  text = troupe::context_text(started.error());
  BOOST_TEST(text.find("invalid environment variable name") != std::string::npos, text);
}

BOOST_AUTO_TEST_CASE(output_goes_where_asked_and_the_environment_is_set_over_ours) {
  ::setenv("TROUPE_KEEPER_TEST", "the parent's", 1);
  process_keeper keeper;
  auto spec = shell("echo \"$TROUPE_KEEPER_TEST\"; echo to-stderr >&2; cat; echo end");
  spec.env = {{"TROUPE_KEEPER_TEST", "the child's"}};
  spec.out = child_output::pipe();
  spec.err = child_output::pipe();
  auto started = keeper.launch(spec);
  BOOST_REQUIRE_MESSAGE(started, why(started));
  // stdin is /dev/null: cat ends at once.
  BOOST_TEST(read_all(started->out_fd) == "the child's\nend\n");
  BOOST_TEST(read_all(started->err_fd) == "to-stderr\n");
  auto how = keeper.wait_exit(started->pid, 10s);
  BOOST_TEST((how && how->code == 0));

  // One log for both streams, appended to.
  troupe::test::temp_dir dir;
  auto log = dir.write("child.log", "before\n");
  spec = shell("echo out; echo err >&2");
  spec.out = child_output::append_to(log);
  spec.err = child_output::same_as_stdout();
  started = keeper.launch(spec);
  BOOST_REQUIRE_MESSAGE(started, why(started));
  BOOST_REQUIRE(keeper.wait_exit(started->pid, 10s));
  BOOST_TEST(started->out_fd == -1);
  BOOST_TEST(*troupe::read_file(log) == "before\nout\nerr\n");
}

BOOST_AUTO_TEST_CASE(terminate_kills_a_child_that_ignores_sigterm_after_the_grace) {
  process_keeper keeper;
  auto spec = shell("trap '' TERM; echo ready; while :; do :; done");
  spec.out = child_output::pipe();
  auto started = keeper.launch(spec);
  BOOST_REQUIRE_MESSAGE(started, why(started));
  pollfd p{started->out_fd, POLLIN, 0};
  BOOST_REQUIRE(::poll(&p, 1, 10000) == 1); // the trap is set
  ::close(started->out_fd);
  auto asked = std::chrono::steady_clock::now();
  keeper.terminate(started->pid, 300ms);
  auto how = keeper.wait_exit(started->pid, 10s);
  BOOST_REQUIRE(how);
  BOOST_TEST(how->signal == SIGKILL);
  BOOST_TEST((std::chrono::steady_clock::now() - asked >= 300ms));
}

BOOST_AUTO_TEST_CASE(stop_all_ends_stopped_children_too) {
  process_keeper keeper;
  auto first = keeper.launch(shell("exec sleep 30"));
  auto second = keeper.launch(shell("exec sleep 30"));
  BOOST_REQUIRE(first && second);
  ::kill(second->pid, SIGSTOP);
  BOOST_REQUIRE(eventually(5s, [&] { return process_stopped(second->pid); }));
  auto killed = keeper.stop_all(5s);
  BOOST_TEST(killed.empty(), "SIGCONT lets a stopped child act on SIGTERM");
  BOOST_TEST(!keeper.running(first->pid));
  BOOST_TEST(!keeper.running(second->pid));
  auto how = keeper.wait_exit(second->pid, 0ms);
  BOOST_TEST((how && how->signal == SIGTERM));
}

BOOST_AUTO_TEST_CASE(a_child_outlives_the_thread_that_asked_for_it) {
  // PR_SET_PDEATHSIG fires when the forking *thread* ends: the keeper's own thread
  // forks, so a child asked for by a short-lived thread lives on.
  process_keeper keeper;
  int pid = -1;
  std::thread asker{[&] {
    auto started = keeper.launch(shell("exec sleep 30"));
    pid = started ? started->pid : -1;
  }};
  asker.join();
  BOOST_REQUIRE(pid > 0);
  BOOST_TEST(!eventually(300ms, [&] { return !keeper.running(pid); }),
             "the child died with the thread that asked for it");
  BOOST_TEST(keeper.running(pid));
}

BOOST_AUTO_TEST_CASE(the_keeper_s_end_and_kill_all_children_end_every_child) {
  int pid = -1;
  auto ended = std::chrono::steady_clock::now();
  {
    process_keeper keeper;
    // (An ignored SIGTERM does not cross dash's exec: the shell itself loops.)
    auto spec = shell("trap '' TERM; while :; do sleep 0.1; done");
    spec.out = child_output::discard();
    auto started = keeper.launch(spec);
    BOOST_REQUIRE(started);
    pid = started->pid;
    BOOST_REQUIRE(
      eventually(5s, [&] { return troupe::test::process_ignores(pid, SIGTERM); }));
    ended = std::chrono::steady_clock::now();
  } // SIGTERM is ignored: SIGKILL after the grace, and reaped
  BOOST_TEST(process_gone(pid));
  BOOST_TEST((std::chrono::steady_clock::now() - ended >= process_keeper::grace));

  process_keeper keeper;
  auto started = keeper.launch(shell("exec sleep 30"));
  BOOST_REQUIRE(started);
  process_keeper::kill_all_children();
  auto how = keeper.wait_exit(started->pid, 10s);
  BOOST_TEST((how && how->signal == SIGKILL));
  BOOST_TEST(!keeper.launch(child_spec{}), "an empty argv is refused");
}
