#define BOOST_TEST_MODULE group_mpi
#include <boost/test/unit_test.hpp>

// The `mpi` bootstrap: `mpirun -np N actorhost -c group.json` forms an N-member group
// from one MPI_Allgather, ranks in MPI rank order. Runs Open MPI's real mpirun, as
// root too (the two OMPI_ALLOW_RUN_AS_ROOT variables the README documents).

#include <csignal>
#include <fstream>
#include <map>
#include <regex>

#include "actors/barrier/barrier.hpp"
#include "actors/group/client.hpp"
#include "actors/group/view.hpp"
#include "actors/overlay/overlay.hpp"
#include "test/actors/group_client_fixture.hpp"
#include "test/support/process.hpp"

using namespace troupe;
using namespace troupe::test;
using namespace std::chrono_literals;

namespace {

const std::vector<std::string> mpi_env = {"OMPI_ALLOW_RUN_AS_ROOT=1",
                                          "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"};

std::string mpi_group_config(const std::string& type, const std::string& file) {
  return R"({"transport": {"port": 0}, "threads": 1, "providers": [{"type": "group",
             "name": "g", "provider_id": 42, "config": {"bootstrap": "mpi",
             "file": ")"
         + file + R"(", "group": {"type": ")" + type + R"("}}}]})";
}

/// The same group with two of the instance services named in the config (actorhost
/// adds the others, as it adds all of them to a group-only config).
std::string mpi_services_config(const std::string& file) {
  return R"({"transport": {"port": 0}, "threads": 1, "providers": [{"type": "group",
             "name": "g", "provider_id": 42, "config": {"bootstrap": "mpi",
             "file": ")"
         + file + R"(", "group": {"type": "centralized"}}},
           {"type": "overlay", "name": "overlay", "provider_id": 1,
            "dependencies": {"group": "g"}, "config": {"fanout": 2}},
           {"type": "barrier", "name": "barrier", "provider_id": 1,
            "dependencies": {"group": "g"}}]})";
}

/// An MPI job of `ranks` actorhost processes; stopped (SIGTERM to mpirun) on scope exit.
struct mpi_job {
  std::unique_ptr<child_process> mpirun;
  std::vector<int> pids; // of the actorhost ranks, from their ready lines

  std::map<std::string, int> pid_of; // address -> pid

  mpi_job(int ranks, const std::string& config_path, bool recovery = false) {
    std::vector<std::string> argv{TROUPE_MPIEXEC, "-np", std::to_string(ranks),
                                  "--oversubscribe"};
    if (recovery)
      argv.push_back("--enable-recovery");
    argv.insert(argv.end(), {bin_path("actorhost"), "-c", config_path});
    mpirun = std::make_unique<child_process>(argv, mpi_env);
  }

  /// Waits until every rank has printed its ready line; false if the job ended or
  /// the deadline passed.
  bool wait_ready(size_t ranks, std::chrono::milliseconds deadline) {
    static const std::regex ready{R"(actorhost ready: (\S+) .* pid=(\d+))"};
    auto ok = eventually(deadline, [&] {
      mpirun->wait_for_line("\n", 1ms); // pumps the pipes
      pids.clear();
      const auto& out = mpirun->out();
      for (auto it = std::sregex_iterator(out.begin(), out.end(), ready);
           it != std::sregex_iterator(); ++it) {
        pids.push_back(std::stoi((*it)[2]));
        pid_of[(*it)[1]] = pids.back();
      }
      return pids.size() == ranks || mpirun->wait_exit(0ms).has_value();
    });
    return ok && pids.size() == ranks;
  }

  ~mpi_job() {
    mpirun->signal(SIGTERM);
    mpirun->wait_exit(10s);
  }
};

/// Waits until the view file at `file` lists `members` members.
bool view_file_has(const std::string& file, size_t members) {
  return eventually(20s, [&] {
    try {
      return group::read_view_file(file).members.size() == members;
    } catch (const std::exception&) {
      return false; // not written yet
    }
  });
}

/// The MPI rank of process `pid`, as Open MPI told it (OMPI_COMM_WORLD_RANK in its
/// environment); -1 if it has none.
int mpi_rank_of(int pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/environ", std::ios::binary};
  const std::string key = "OMPI_COMM_WORLD_RANK=";
  std::string entry;
  while (std::getline(in, entry, '\0'))
    if (entry.rfind(key, 0) == 0)
      return std::stoi(entry.substr(key.size()));
  return -1;
}

} // namespace

/// The group client fixture, and a reduction through the overlay of the node at an
/// address.
struct mpi_fixture : group_client_fixture {
  /// Whether a sum of the ranks asked at `address` comes to 0 + 1 + ... + (ranks - 1),
  /// every rank contributing (waiting until the overlays have the whole view).
  bool ranks_sum_up(const std::string& address, uint32_t ranks) {
    auto overlay_at = client.remote_provider(address, "overlay", 1, 20s);
    if (!overlay_at)
      return false;
    overlay::reduction sum;
    sum.op = "sum";
    sum.contribution = "rank";
    return eventually(10s, [&] {
      auto r = ask<overlay::reduction_result>(*overlay_at, overlay::reduce_atom::value, sum);
      return r && r->contributors == ranks
             && r->result.i == int64_t{ranks} * (ranks - 1) / 2;
    });
  }
};

BOOST_FIXTURE_TEST_SUITE(mpi_bootstrap, mpi_fixture)

BOOST_AUTO_TEST_CASE(mpirun_np4_forms_one_centralized_group_led_by_rank_0) {
  temp_dir dir;
  auto file = dir.path() + "/g.json";
  auto config = dir.write("group.json", mpi_group_config("centralized", file));
  std::vector<int> pids;
  {
    mpi_job job{4, config};
    BOOST_REQUIRE_MESSAGE(job.wait_ready(4, 60s), "mpirun output:\n"
                                                    << job.mpirun->out() << "\n"
                                                    << job.mpirun->err());
    pids = job.pids;
    // Rank 0 leads and writes the view file; every rank ends with the same view.
    std::vector<caf::actor> members;
    BOOST_REQUIRE(view_file_has(file, 4));
    auto view = group::read_view_file(file);
    BOOST_CHECK_EQUAL(view.leader, view.members[0].member_id);
    BOOST_CHECK_EQUAL(view.version.epoch, 1u);
    for (size_t i = 0; i < view.members.size(); ++i) {
      BOOST_CHECK_EQUAL(view.members[i].member_id, i + 1);
      BOOST_CHECK_EQUAL(view.members[i].provider_id, 42);
      // Group rank = MPI rank: the process at rank i of the view is MPI rank i.
      BOOST_REQUIRE(job.pid_of.count(view.members[i].address) == 1);
      BOOST_CHECK_EQUAL(mpi_rank_of(job.pid_of.at(view.members[i].address)),
                        static_cast<int>(i));
      members.push_back(group_at(view.members[i].address));
    }
    BOOST_CHECK(eventually(20s, [&] {
      for (const auto& m : members) {
        auto v = try_view_of(m);
        if (!v || v->digest() != view.digest())
          return false;
      }
      return true;
    }));
    // A client opened from the view file sees the same group.
    auto handle = group::group_client::open_file(client, file);
    BOOST_REQUIRE_MESSAGE(handle, error_of(handle));
    BOOST_CHECK_EQUAL(handle->view().digest(), view.digest());
    // The job is an instance: actorhost added the services to the group-only config
    // (an overlay of fanout 8: a reduction over the 4 ranks, asked at the last).
    BOOST_CHECK(ranks_sum_up(view.members[3].address, 4));
  }
  // mpirun stopped: so did every rank.
  BOOST_CHECK(
    eventually(15s, [&] { return std::all_of(pids.begin(), pids.end(), process_gone); }));
}

BOOST_AUTO_TEST_CASE(mpirun_np2_forms_one_static_group) {
  temp_dir dir;
  auto file = dir.path() + "/g.json";
  auto config = dir.write("group.json", mpi_group_config("static", file));
  mpi_job job{2, config};
  BOOST_REQUIRE_MESSAGE(job.wait_ready(2, 60s), "mpirun output:\n"
                                                  << job.mpirun->out() << "\n"
                                                  << job.mpirun->err());
  BOOST_REQUIRE(view_file_has(file, 2));
  auto view = group::read_view_file(file);
  BOOST_CHECK_EQUAL(view.leader, 0u);
  for (const auto& m : view.members)
    BOOST_CHECK_EQUAL(view_of(m.address).digest(), view.digest());
}

BOOST_AUTO_TEST_CASE(the_instance_services_run_over_an_mpirun_job) {
  temp_dir dir;
  auto file = dir.path() + "/g.json";
  auto config = dir.write("group.json", mpi_services_config(file));
  mpi_job job{4, config};
  BOOST_REQUIRE_MESSAGE(job.wait_ready(4, 60s), "mpirun output:\n"
                                                  << job.mpirun->out() << "\n"
                                                  << job.mpirun->err());
  BOOST_REQUIRE(view_file_has(file, 4));
  auto view = group::read_view_file(file);
  // A reduction of the MPI ranks' tree ranks: 0 + 1 + 2 + 3, asked at the last rank.
  BOOST_CHECK(ranks_sum_up(view.members[3].address, 4));
  // A barrier of the 4 ranks, one entry at each.
  caf::scoped_actor self{client.system()};
  std::vector<caf::response_handle<caf::blocking_actor, caf::message, true>> entries;
  for (const auto& m : view.members) {
    auto b = client.remote_provider(m.address, "barrier", 1, 20s);
    BOOST_REQUIRE(b);
    entries.push_back(self->request(*b, 20s, barrier::enter_atom::value,
                                    std::string{"mpi"}, uint32_t{4}));
  }
  for (auto& e : entries)
    e.receive([](const barrier::barrier_done& d) { BOOST_CHECK_EQUAL(d.count, 4u); },
              [](caf::error& err) { BOOST_FAIL("barrier: " << describe(err)); });
}

BOOST_AUTO_TEST_CASE(with_enable_recovery_a_killed_rank_is_removed_and_the_rest_go_on) {
  temp_dir dir;
  auto file = dir.path() + "/g.json";
  auto config = dir.write("group.json", mpi_group_config("centralized", file));
  mpi_job job{3, config, true};
  BOOST_REQUIRE(job.wait_ready(3, 60s));
  BOOST_REQUIRE(view_file_has(file, 3));
  auto view = group::read_view_file(file);
  auto victim = view.members[2].address; // not the leader (rank 0)
  ::kill(job.pid_of.at(victim), SIGKILL);
  auto leader = group_at(view.members[0].address);
  BOOST_CHECK(eventually(10s, [&] {
    auto v = try_view_of(leader);
    return v && v->members.size() == 2 && !v->rank_of(victim, 42);
  }));
  BOOST_CHECK(job.mpirun->wait_exit(0ms) == std::nullopt); // the job goes on
}

BOOST_AUTO_TEST_CASE(a_killed_mpirun_takes_its_ranks_down) {
  temp_dir dir;
  auto config =
    dir.write("group.json", mpi_group_config("centralized", dir.path() + "/g.json"));
  mpi_job job{2, config};
  BOOST_REQUIRE(job.wait_ready(2, 60s));
  job.mpirun->signal(SIGKILL);
  BOOST_CHECK(eventually(
    15s, [&] { return std::all_of(job.pids.begin(), job.pids.end(), process_gone); }));
}

BOOST_AUTO_TEST_SUITE_END()
