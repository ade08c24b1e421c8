#pragma once
// `actorhost --size N`: a local instance in one command (like `flux start
// --test-size=N`). Forks N actorhost processes on loopback that form one centralized
// group (rank 0 starts it, the others join it), writes the group's view file, prints
// how to attach actorsh, and on SIGINT/SIGTERM stops every node that still runs.
// The nodes are started by a process_keeper (base/): they die with the launcher (the
// parent-death signal), so even a launcher killed with SIGKILL leaves no orphan behind.

#include <string>

namespace troupe::launcher {

struct instance_options {
  std::string config_path; ///< the node config every node starts from
  unsigned size = 1;       ///< how many nodes
  std::string
    dir; ///< where configs, address files and the view file go ("" = a new temp dir)
  std::string verbosity; ///< passed on to the nodes
};

/// Runs the instance until SIGINT/SIGTERM. Returns the process exit code (0 after a
/// clean stop, 2 for a bad config, 1 when the nodes cannot be started).
int run_instance(const instance_options& options);

/// A node config whose group provider bootstraps with "mpi" (an `mpirun` job is an
/// instance too), with the instance services added as `--size` adds them; any other
/// config (or one that is not valid JSON) unchanged.
std::string with_services_under_mpi(const std::string& config_text);

} // namespace troupe::launcher
