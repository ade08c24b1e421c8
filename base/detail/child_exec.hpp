#pragma once
// The forked child's half of starting a program, shared by process_keeper and the
// offload shell runner: what runs between fork and exec in a multithreaded process
// (async-signal-safe calls only: another thread may have held any lock at the fork),
// and how the parent learns why a child did not reach exec.

#include <csignal>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <caf/expected.hpp>

#include <sched.h>
#include <sys/types.h>

namespace troupe::detail {

/// Moves `fd` above 0..2, close-on-exec, so that a child's dup2 onto stdin, stdout or
/// stderr never meets its own source (a process started with 0..2 closed gets them
/// from open and pipe). Closes the original; -1 (errno set) if it cannot. -1 stays -1.
int fd_above_stdio(int fd);

/// A close-on-exec pipe with both ends above 0..2; false (errno set) if it cannot.
bool open_pipe_above_stdio(int ends[2]);

/// This process's environment ("NAME=value") with `overrides` set over its own
/// variables of those names; troupe.invalid_config naming a name that is empty or
/// holds '='.
caf::expected<std::vector<std::string>>
environment_with(const std::vector<std::pair<std::string, std::string>>& overrides);

/// The null-terminated array execve takes, pointing into `strings` (which must stay).
std::vector<char*> exec_array(std::vector<std::string>& strings);

/// Everything the child needs, prepared before fork.
struct exec_plan {
  pid_t parent = 0; // getpid() before fork
  int death_signal = SIGKILL;
  bool own_process_group = false;
  const cpu_set_t* cpus = nullptr; // to bind to, or nullptr
  size_t cpus_size = 0;
  int in_fd = -1; // -1: keep the parent's
  int out_fd = -1;
  int err_fd = -1;
  int report_fd = -1; // the write end of a close-on-exec pipe
  const char* program = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
};

enum class exec_stage : int { affinity = 1, stdio, exec };

/// What a child that could not reach exec reports.
struct exec_failure {
  exec_stage stage;
  int error; // errno
};

/// In the child, right after fork: the parent-death signal, default signal actions and
/// an empty mask (ignored and blocked signals survive exec; a program expects the
/// defaults), the process group, CPUs, stdio, no other descriptor across exec, exec.
/// On failure the child writes an exec_failure to `report_fd` and exits 127.
[[noreturn]] void exec_child(const exec_plan& plan);

/// In the parent, after fork and after closing its copy of the report pipe's write
/// end: waits until the child reached exec (nothing) or says why it did not. Closes
/// `report_read`.
std::optional<exec_failure> await_exec(int report_read);

} // namespace troupe::detail
