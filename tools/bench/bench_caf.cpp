// The CAF io middleman peer: the same actor and drivers as the Troupe peer, connected
// by CAF's own BASP-over-TCP middleman (publish / remote_actor on loopback).

#include "tools/bench/bench.hpp"

#include <csignal>
#include <iostream>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/io/middleman.hpp>

#include "base/error.hpp"

namespace troupe::bench {

namespace {

/// CAF configured as Troupe configures it (threads per core, work sharing), so the
/// comparison is between the middlemen and not between scheduler settings.
void configure(caf::actor_system_config& cfg) {
  cfg.load<caf::io::middleman>();
  cfg.set("scheduler.max-threads",
          static_cast<size_t>(std::thread::hardware_concurrency()));
  cfg.set("scheduler.policy", caf::atom("sharing"));
}

} // namespace

int serve_caf() {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  caf::actor_system_config cfg;
  configure(cfg);
  caf::actor_system sys{cfg};
  auto actor = sys.spawn(bench_actor);
  auto port = sys.middleman().publish(actor, 0, "127.0.0.1");
  if (!port) {
    std::cerr << describe(port.error()) << "\n";
    return 1;
  }
  std::cout << "address 127.0.0.1:" << *port << std::endl;
  int signo = 0;
  sigwait(&stop, &signo);
  caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
  return 0;
}

result_set measure_caf(const std::string& address, const workload& w) {
  result_set r;
  caf::actor_system_config cfg;
  configure(cfg);
  caf::actor_system sys{cfg};
  auto colon = address.rfind(':');
  auto target = sys.middleman().remote_actor(
    address.substr(0, colon),
    static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  if (!target) {
    r.error = describe(target.error());
    return r;
  }
  measure_actor(sys, *target, w, r);
  return r;
}

} // namespace troupe::bench
