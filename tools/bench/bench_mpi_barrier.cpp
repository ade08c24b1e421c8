// troupe-bench mpi-barrier: Troupe's barrier (actors/barrier/) against MPI_Barrier
// over the same ranks, in one `mpirun` job. Every rank is an MPI process and a Troupe
// node in this process (group bootstrap "mpi", the overlay and the barrier); rounds
// alternate one MPI_Barrier and one Troupe barrier, so their ratio holds on a noisy
// machine. Rank 0 prints the figures.
//
//   mpirun -np 8 --oversubscribe troupe-bench mpi-barrier [--json] [--quick]

#include <algorithm>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <thread>

// The C bindings only (Open MPI's mpi.h pulls in its C++ bindings otherwise).
#define OMPI_SKIP_MPICXX 1
#include <mpi.h>

#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/barrier/barrier.hpp"
#include "actors/builtin.hpp"
#include "actors/group/group.hpp"
#include "base/error.hpp"
#include "runtime/config.hpp"
#include "runtime/node.hpp"
#include "runtime/provider_registry.hpp"
#include "tools/bench/bench.hpp"
#include "transport/blocking_wait.hpp"

namespace troupe::bench {

namespace {

using namespace std::chrono_literals;

constexpr const char* node_config_text = R"({
  "threads": 1,
  "transport": {"port": 0},
  "providers": [
    {"type": "group", "name": "group", "provider_id": 1,
     "config": {"bootstrap": "mpi", "group": {"type": "centralized"}}},
    {"type": "overlay", "name": "overlay", "provider_id": 1,
     "dependencies": {"group": "group"}},
    {"type": "barrier", "name": "barrier", "provider_id": 1,
     "dependencies": {"group": "group"}}]})";

/// p50 of every rank's samples, the largest (the slowest rank's view), on rank 0.
double slowest_p50(double mine) {
  double out = 0;
  MPI_Reduce(&mine, &out, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  return out;
}

} // namespace

int run_mpi_barrier(bool as_json, bool quick) {
  if (std::getenv("OMPI_COMM_WORLD_SIZE") == nullptr && std::getenv("PMI_SIZE") == nullptr
      && std::getenv("PMIX_RANK") == nullptr) {
    std::cerr << "troupe-bench mpi-barrier: run it under mpirun, e.g.\n"
                 "  mpirun -np 8 --oversubscribe troupe-bench mpi-barrier\n";
    return 2;
  }
  // As the mpi bootstrap does: Open MPI's plain shared-memory/TCP path, not a second
  // UCX context beside Troupe's.
  setenv("OMPI_MCA_pml", "ob1", 0);
  setenv("OMPI_MCA_osc", "^ucx", 0);
  int provided = 0;
  // The group's bootstrap calls MPI on a scheduler thread, never while this one does.
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided)
      != MPI_SUCCESS) {
    std::cerr << "troupe-bench mpi-barrier: MPI_Init_thread failed\n";
    return 1;
  }
  int rank = 0;
  int size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int rc = 1;
  {
    node n{parse_node_config(node_config_text, "mpi-barrier.json")};
    if (auto err = actors::register_builtins(n)) {
      std::cerr << "troupe-bench: " << describe(err) << "\n";
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (auto err = n.start()) {
      std::cerr << "troupe-bench: rank " << rank << ": " << describe(err) << "\n";
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    auto barrier_provider = n.providers().find("barrier");
    { // the scoped actor ends before the node stops (the node waits for its actors)
      caf::scoped_actor self{n.system()};
      // Ready when this rank's barrier answers a barrier of every rank (its view is
      // complete and the root's barrier found).
      auto enter = [&]() -> bool {
        bool ok = false;
        self
          ->request(barrier_provider->handle, 30s, barrier::enter_atom::value,
                    std::string{"bench"}, static_cast<uint32_t>(size))
          .receive([&](const barrier::barrier_done&) { ok = true; }, [](caf::error&) {});
        return ok;
      };
      // The same through a blocking_waiter: this thread polls the transport while it
      // waits (runs the local barrier actor and its answer here) instead of sleeping.
      auto enter_polling = [&]() -> bool {
        bool ok = false;
        transport::blocking_waiter waiter{n.transport()};
        auto h = self->request(barrier_provider->handle, caf::infinite,
                               barrier::enter_atom::value, std::string{"bench"},
                               static_cast<uint32_t>(size));
        waiter.receive_response(
          *self.ptr(), h.id(), 30s, [&](const barrier::barrier_done&) { ok = true; },
          [](const caf::error&) {});
        return ok;
      };
      bool ready = false;
      auto until = clock_type::now() + 60s;
      while (!ready && clock_type::now() < until) {
        bool alone = false;
        self
          ->request(barrier_provider->handle, 1s, barrier::enter_atom::value,
                    std::string{"ready" + std::to_string(rank)}, uint32_t{1})
          .receive([&](const barrier::barrier_done&) { alone = true; },
                   [](caf::error&) {});
        ready = alone;
        if (!ready)
          std::this_thread::sleep_for(20ms); // the view is still forming
      }
      int all_ready = 0;
      int mine = ready ? 1 : 0;
      MPI_Allreduce(&mine, &all_ready, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
      if (!all_ready) {
        if (rank == 0)
          std::cerr << "troupe-bench mpi-barrier: a rank's barrier never got a view\n";
      } else {
        // Blocks of `per_block` barriers of one kind, then of the other, each block
        // started together (an untimed MPI_Barrier) and timed as a whole, as barrier
        // benchmarks (OSU's) do: one kind's exit skew does not land in the other's time.
        int blocks = quick ? 4 : 40;
        int per_block = 50;
        int rounds = blocks * per_block;
        std::vector<double> mpi_samples, troupe_samples, polling_samples;
        bool ok = true;
        for (int b = 0; ok && b < blocks + 1; ++b) {
          MPI_Barrier(MPI_COMM_WORLD);
          auto start = clock_type::now();
          for (int i = 0; i < per_block; ++i)
            MPI_Barrier(MPI_COMM_WORLD);
          auto mpi_us = micros_since(start) / per_block;
          MPI_Barrier(MPI_COMM_WORLD);
          start = clock_type::now();
          for (int i = 0; ok && i < per_block; ++i)
            ok = enter();
          auto troupe_us = micros_since(start) / per_block;
          MPI_Barrier(MPI_COMM_WORLD);
          start = clock_type::now();
          for (int i = 0; ok && i < per_block; ++i)
            ok = enter_polling();
          auto polling_us = micros_since(start) / per_block;
          if (b > 0) { // the first block warms up
            mpi_samples.push_back(mpi_us);
            troupe_samples.push_back(troupe_us);
            polling_samples.push_back(polling_us);
          }
        }
        int all_ok = 0;
        int ok_here = ok ? 1 : 0;
        MPI_Allreduce(&ok_here, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
        if (all_ok) {
          auto mpi = summarize(mpi_samples);
          auto troupe = summarize(troupe_samples);
          auto polling = summarize(polling_samples);
          auto polling_slowest = slowest_p50(polling.p50_us);
          auto mpi_slowest = slowest_p50(mpi.p50_us);
          auto troupe_slowest = slowest_p50(troupe.p50_us);
          if (rank == 0) {
            nlohmann::json doc{
              {"ranks", size},
              {"rounds", rounds},
              {"mpi_barrier_us", {{"p50", mpi.p50_us}, {"p99", mpi.p99_us}}},
              {"troupe_barrier_us", {{"p50", troupe.p50_us}, {"p99", troupe.p99_us}}},
              {"mpi_barrier_slowest_rank_p50_us", mpi_slowest},
              {"troupe_barrier_slowest_rank_p50_us", troupe_slowest},
              {"troupe_barrier_polling_us",
               {{"p50", polling.p50_us}, {"p99", polling.p99_us}}},
              {"troupe_barrier_polling_slowest_rank_p50_us", polling_slowest},
              {"ratio_p50", troupe.p50_us / std::max(mpi.p50_us, 1e-3)}};
            if (as_json) {
              std::cout << doc.dump() << std::endl;
            } else {
              std::cout << "barrier over " << size
                        << " ranks of one mpirun job, us per barrier, p50 / p99 of "
                           "blocks of 50 at rank 0 (slowest rank's p50), "
                        << rounds << " of each:\n"
                        << std::fixed << std::setprecision(1)
                        << "  MPI_Barrier           " << mpi.p50_us << " / " << mpi.p99_us
                        << "  (" << mpi_slowest << ")\n"
                        << "  Troupe barrier        " << troupe.p50_us << " / "
                        << troupe.p99_us << "  (" << troupe_slowest << ")\n"
                        << "  Troupe, caller polls  " << polling.p50_us << " / "
                        << polling.p99_us << "  (" << polling_slowest << ")\n"
                        << "  Troupe / MPI (p50)    " << std::setprecision(2)
                        << troupe.p50_us / std::max(mpi.p50_us, 1e-3) << "x  (aim: 2x)\n";
            }
          }
          rc = 0;
        } else if (rank == 0) {
          std::cerr << "troupe-bench mpi-barrier: a Troupe barrier failed\n";
        }
      }
    }
    // Every rank still answers the others' last barrier before any node stops.
    MPI_Barrier(MPI_COMM_WORLD);
    n.stop();
  }
  MPI_Finalize();
  return rc;
}

} // namespace troupe::bench
