#pragma once
// The shape of an offload tree and the jobs to run on it, read from a hierarchy file.
// The file is Flux's hierarchy file unchanged (`num_levels`, `levels[]` with
// `num_children` and `cores_per_child`), plus optional Troupe keys: a `placement` per
// level, `max_leaves`, and a `jobs` section (which a separate jobs file may hold on its
// own). Every problem is a troupe::config_error naming the file, the key path, what was
// expected and what was found:
//   "hierarchy.json: levels[1].num_children: expected an integer from 1 to 4096, found
//   -3"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "actors/offload/job.hpp"

namespace troupe {
class json_reader;
} // namespace troupe

namespace troupe::offload {

/// Where the instances of a level run.
enum class placement {
  process,    ///< one process per child (the default just below the root)
  in_process, ///< children share their parent's process (the default deeper down)
  mpi         ///< children are the ranks of an MPI job
};

const char* to_string(placement where);

/// One level below the root: every instance of the level above has `num_children`
/// children, each owning `cores_per_child` cores.
struct level {
  unsigned num_children = 1;
  unsigned cores_per_child = 1;
  placement where = placement::process;
  /// placement mpi: what mpirun gets before `-np N` (e.g. `--hostfile hosts`), so the
  /// ranks can run on other hosts.
  std::vector<std::string> mpirun_args;
};

/// One kind of job in a mix; `weight` is its share of the jobs relative to the others.
struct job_mix_entry {
  job_kind kind = job_kind::noop;
  uint64_t duration_us = 0; ///< sleep
  std::string command;      ///< shell: the command line; custom: the job type's name
  std::string argument;     ///< custom: the job type's input
  bool idempotent = true;
  unsigned weight = 1;
};

/// How many jobs to submit and in what mix. A parsed spec always has a non-empty mix
/// (one noop entry unless the file says otherwise).
struct job_spec {
  uint64_t count = 0;
  std::vector<job_mix_entry> mix;
};

/// A parsed hierarchy file.
struct hierarchy_config {
  /// Depth of the tree counting the root (Flux's meaning): 1 is a lone root.
  unsigned num_levels = 1;
  /// The num_levels - 1 levels below the root, top first.
  std::vector<level> levels;
  job_spec jobs;
  /// Parsing refuses a tree with more leaves than this.
  unsigned max_leaves = 4096;
  /// Modules (shared libraries) every instance's node loads: job types for "custom"
  /// jobs. Made absolute; each must exist.
  std::vector<std::string> libraries;
  /// Number of leaf instances: the product of every level's num_children (1 for a
  /// lone root).
  uint64_t leaves() const;
  std::string source; ///< file name, or what the caller named the text
};

/// Parses hierarchy file text (`//` comments allowed); `source` starts every error
/// message. Throws troupe::config_error.
hierarchy_config parse_hierarchy(const std::string& text, const std::string& source);

/// Parses one level object found at `path` (keys num_children, cores_per_child,
/// placement, mpirun_args); `default_where` stands when it has no placement. Throws
/// troupe::config_error.
level read_level(const json_reader& reader, const std::string& path,
                 const nlohmann::json& value, placement default_where, unsigned max_children);

/// Reads and parses a hierarchy file. Throws troupe::config_error, also when the file
/// cannot be read (the message names the path and the system's reason).
hierarchy_config load_hierarchy(const std::string& path);

/// Parses a jobs object (`count`, `mix`) found at `path` ("jobs" inside a hierarchy
/// file, "" for a jobs file of its own). Shell commands are checked with
/// check_shell_command. Throws troupe::config_error.
job_spec parse_job_spec(const nlohmann::json& value, const json_reader& reader,
                        const std::string& path);

/// Reads a jobs file: the same object as a hierarchy file's `jobs` key, at the top
/// level. Throws troupe::config_error.
job_spec load_job_spec(const std::string& path);

/// `spec.count` jobs with ids first_id, first_id + 1, ...; the kinds are interleaved
/// by weight with a smooth weighted round robin (weights noop 3, sleep 1 give
/// n n s n n n s n ...: every window of 4 holds 3 noops and 1 sleep, never a block).
/// An empty mix means noop jobs. Throws std::invalid_argument when every weight is 0.
std::vector<job> make_jobs(const job_spec& spec, uint64_t first_id = 1);

/// Why `command` cannot run, or nothing if its first word (after any `NAME=value`
/// assignments and redirections) is a shell builtin or keyword, or an executable: found
/// via PATH, or the path itself when the word contains a '/'. A first word the shell
/// would expand (`$CMD`, a glob, `~`) is not judged. Checks this process's PATH and
/// working directory, which may differ from where the command finally runs.
std::optional<std::string> check_shell_command(const std::string& command);

} // namespace troupe::offload
