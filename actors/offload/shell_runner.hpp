#pragma once
// Runs one shell job: `/bin/sh -c command` in a process group of its own, stdout and
// stderr captured together (bounded), stdin from /dev/null, optionally bound to CPUs
// and time-limited. Blocking: call it from a thread that may block (a leaf's worker
// thread), never from an actor handler. Safe to call from several threads at once.

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace troupe::offload {

/// How a command ended.
struct shell_outcome {
  /// The exit code, or 128 + n when signal n ended it (the shell's convention); 127
  /// when it could not be started, 137 when it timed out.
  int exit_status = 0;
  /// stdout and stderr in the order written, at most max_output_bytes of it (the
  /// first bytes).
  std::string output;
  bool truncated = false; ///< the command wrote more than `output` holds
  /// Empty when the command ran to its end. Otherwise why not: it could not be started
  /// (fork, pipe, CPU binding or exec failed; exit_status 127), it timed out ("timed
  /// out after N ms"; exit_status 137), or its status was lost (someone else in this
  /// process reaped it, or SIGCHLD is ignored).
  std::string error;
};

struct run_options {
  size_t max_output_bytes = 4096;
  /// If non-empty, the command is bound to these CPUs (sched_setaffinity before exec;
  /// what it starts inherits the binding).
  std::vector<unsigned> cpus;
  /// Added to the command's environment, replacing variables of the same name.
  std::vector<std::pair<std::string, std::string>> env;
  /// 0 = none. Else the command's process group is killed (SIGKILL) when it passes.
  std::chrono::milliseconds timeout{0};
  /// Called with the shell's pid (also its process group's id) once it runs, so the
  /// caller can kill the group if it must stop first (a leaf that stops).
  std::function<void(int)> on_start;
};

/// Runs `command` and waits for it. When the shell ends, whatever is left in its
/// process group (background jobs) is killed too, so a finished job leaves nothing
/// running and nothing holding its output open. The shell itself gets SIGKILL if the
/// calling thread dies first (PR_SET_PDEATHSIG); commands it started in the
/// background do not, unless they stay in its process group and the group is killed.
shell_outcome run_shell(const std::string& command, const run_options& options);

} // namespace troupe::offload
