#pragma once
// troupe-bench: shared pieces of the benchmark program (results, statistics, child
// processes). Each peer (Troupe, raw UCX, CAF's io middleman) has a server half that
// runs in its own process and a client half that measures from this one.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/fwd.hpp>
#include <nlohmann/json_fwd.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

namespace troupe {
class memory_region;
} // namespace troupe

namespace troupe::bench {

using clock_type = std::chrono::steady_clock;

/// Microseconds since `start`.
inline double micros_since(clock_type::time_point start) {
  return std::chrono::duration<double, std::micro>(clock_type::now() - start).count();
}

struct latency {
  double p50_us = 0;
  double p99_us = 0;
};

/// Percentiles of round-trip samples (in microseconds).
latency summarize(std::vector<double> samples);

/// Round trips of `send` (which must block until its answer and say whether it
/// came), in microseconds, after a tenth as many for warm-up. Throws if one fails.
latency time_round_trips(int iterations, const std::function<bool()>& send);

/// What one peer measured over one UCX transport selection.
struct result_set {
  std::string system; ///< "troupe", "troupe-v1", "ucx", "caf-io", "caf-local"
  std::string tls;    ///< the UCX_TLS it ran with ("n/a" for CAF's io middleman)
  std::map<size_t, latency> round_trip;    ///< by payload size in bytes
  double one_way_msgs_per_s = 0;           ///< 64 B messages, sender never waits
  std::map<int, double> requests_per_s;    ///< by requests in flight
  std::optional<double> rdma_get_gb_per_s; ///< 1 MiB gets
  /// 8 B round trips whose requests carry a finite timeout (the others carry none):
  /// CAF's clock thread then takes part in every request.
  std::optional<latency> round_trip_8B_with_timeout;
  /// CPU used by the client's node while connected and idle, in % of one core.
  std::optional<double> idle_cpu_percent;
  std::string error; ///< set if the peer could not be measured
};

/// The workload, the same for every peer.
struct workload {
  std::vector<size_t> rtt_sizes{8, 64, 64 * 1024};
  int rtt_iterations = 2000;
  int warmup = 3000;
  int one_way_messages = 200000;
  std::vector<int> in_flight{1, 8, 64};
  int in_flight_requests = 20000;
  size_t rdma_bytes = 1 << 20;
  int rdma_iterations = 512;
  int rdma_window = 4;
  bool busy_poll = false;
  /// Troupe's scheduler (node config "scheduler"): "progress", or CAF's "sharing"
  /// with the transport on a thread of its own (Troupe's first design).
  std::string scheduler = "progress";
  /// Node config transport.batch_sends (troupe-unbatched: false).
  bool batch_sends = true;
  /// Raw UCX endpoints with UCP_ERR_HANDLING_MODE_PEER, as Troupe's (ucx-peer).
  bool ucx_peer_errors = false;
  double idle_seconds = 5;
};

/// `v` with `digits` digits after the point, for tables.
std::string fixed(double v, int digits);

/// Runs `measure` and prints its document as JSON or through `print_table`; any
/// exception is reported as "troupe-bench NAME: what" with exit code 1. Exit code.
int report(const std::string& name, bool as_json, const std::function<nlohmann::json()>& measure,
           const std::function<void(const nlohmann::json&, std::ostream&)>& print_table);

/// A server half in a child process (this same program, `serve <kind>`, started by the
/// process's keeper), killed when the object goes (and by the kernel if we die: no
/// orphans).
class server_process {
public:
  server_process(const std::string& kind, const std::string& tls,
                 std::vector<std::string> options);
  ~server_process();
  server_process(const server_process&) = delete;
  server_process& operator=(const server_process&) = delete;

  /// What the server printed as its address ("ucx://..." or "host:port").
  const std::string& address() const { return address_; }
  bool ok() const { return !address_.empty(); }
  const std::string& error() const { return error_; }

private:
  int pid_ = -1;
  std::string address_;
  std::string error_;
};

/// The server-side actor of the Troupe and CAF peers:
///   string -> the same string (round trips); (put_atom, string) -> counted, no reply;
///   get_atom -> how many were counted; (add_atom, bytes) -> a region's descriptor.
struct bench_state {
  uint64_t received = 0;
  std::shared_ptr<memory_region> region;
};
caf::behavior bench_actor(caf::stateful_actor<bench_state>* self);

/// Round trips, one-way throughput and requests in flight against any actor running
/// bench_actor, local or remote (Troupe's middleman or CAF's).
void measure_actor(caf::actor_system& sys, const caf::actor& target, const workload& w,
                   result_set& r);

// Client halves: measure against a running server.
result_set measure_troupe(const std::string& address, const workload& w);
/// Against a bench actor in the measuring node itself: the floor of any actor design.
result_set measure_local(const workload& w);
result_set measure_ucx(const std::string& address, const workload& w);
result_set measure_caf(const std::string& address, const workload& w);

// Server halves: print "address <...>" on stdout, then serve until killed.
int serve_troupe(bool busy_poll, const std::string& scheduler, bool batch_sends);
int serve_ucx(bool peer_errors);
int serve_caf();

/// `troupe-bench ops`: the op framework against plain requests and raw UCX, with
/// `actorhost` processes; prints JSON or a table. Exit code.
int run_ops(bool as_json, bool quick, const std::string& actorhost);

/// `troupe-bench groups`: formation, refresh and failure detection of a centralized
/// group of `actorhost` processes; prints JSON or a table. Exit code.
int run_groups(bool as_json, bool quick, const std::string& actorhost);

/// `troupe-bench services`: the instance services over an `actorhost --size 8`
/// instance (bench_services.cpp).
int run_services(bool as_json, bool quick, const std::string& actorhost,
                 bool under_mpirun = false);

/// `troupe-bench mpi-barrier`, run as each rank of an mpirun job (bench_mpi_barrier.cpp).
int run_mpi_barrier(bool as_json, bool quick);

/// `troupe-bench offload`: no-op and sleep jobs through offload trees of 1 to 3
/// levels (in-process and actorhost instances), and a run with a mid-level instance
/// killed; prints JSON or a table. Exit code.
int run_offload(bool as_json, bool quick, const std::string& actorhost);

} // namespace troupe::bench
