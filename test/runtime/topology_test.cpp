#define BOOST_TEST_MODULE runtime_topology
#include <boost/test/unit_test.hpp>

#include <sched.h>
#include <thread>
#include <unistd.h>

#include "runtime/topology.hpp"

using troupe::topology;

BOOST_AUTO_TEST_CASE(discovery_finds_the_cores_the_os_reports) {
  auto topo = topology::discover();
  BOOST_TEST(topo->packages() >= 1u);
  BOOST_TEST(topo->numa_nodes() >= 1u);
  BOOST_TEST(topo->cores() >= 1u);
  BOOST_TEST(topo->pus() >= topo->cores());
  // hwloc and the OS agree on the number of hardware threads we may run on.
  auto online = static_cast<unsigned>(::sysconf(_SC_NPROCESSORS_ONLN));
  BOOST_TEST(topo->pus() == online);
  unsigned pus_in_cores = 0;
  for (const auto& c : topo->core_list())
    pus_in_cores += static_cast<unsigned>(c.pus.size());
  BOOST_TEST(pus_in_cores == topo->pus());
  BOOST_TEST(topo->summary().find("core") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(binding_a_thread_restricts_it_to_that_core) {
  auto topo = topology::discover();
  auto last = topo->cores() - 1;
  std::string err;
  cpu_set_t set;
  std::thread worker{[&] {
    err = topo->bind_current_thread(last);
    CPU_ZERO(&set);
    sched_getaffinity(0, sizeof(set), &set);
  }};
  worker.join();
  BOOST_REQUIRE_MESSAGE(err.empty(), err);
  const auto& pus = topo->core_list()[last].pus;
  BOOST_TEST(static_cast<size_t>(CPU_COUNT(&set)) == pus.size());
  for (auto pu : pus)
    BOOST_TEST(CPU_ISSET(pu, &set));
}

BOOST_AUTO_TEST_CASE(binding_to_a_missing_core_is_an_error) {
  auto topo = topology::discover();
  auto err = topo->bind_current_thread(topo->cores() + 5);
  BOOST_TEST(err.find("does not exist") != std::string::npos, err);
}
