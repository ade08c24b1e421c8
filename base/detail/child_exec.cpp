#include "base/detail/child_exec.hpp"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/error.hpp"

extern char** environ;

namespace troupe::detail {

caf::expected<std::vector<std::string>>
environment_with(const std::vector<std::pair<std::string, std::string>>& overrides) {
  std::vector<std::string> strings;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string entry{*e};
    auto name = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (auto& kv : overrides)
      replaced = replaced || kv.first == name;
    if (!replaced)
      strings.push_back(std::move(entry));
  }
  for (auto& [name, value] : overrides) {
    if (name.empty() || name.find('=') != std::string::npos)
      return make_error(errc::invalid_config,
                        "invalid environment variable name \"" + name + "\"");
    strings.push_back(name + "=" + value);
  }
  return strings;
}

std::vector<char*> exec_array(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (auto& s : strings)
    pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

int fd_above_stdio(int fd) {
  if (fd < 0 || fd > 2)
    return fd;
  int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  int saved = errno;
  ::close(fd);
  errno = saved;
  return moved;
}

bool open_pipe_above_stdio(int ends[2]) {
  if (::pipe2(ends, O_CLOEXEC) != 0)
    return false;
  ends[0] = fd_above_stdio(ends[0]);
  ends[1] = fd_above_stdio(ends[1]);
  if (ends[0] >= 0 && ends[1] >= 0)
    return true;
  int saved = errno;
  for (int i = 0; i < 2; ++i)
    if (ends[i] >= 0)
      ::close(ends[i]);
  errno = saved;
  return false;
}

namespace {

[[noreturn]] void fail(const exec_plan& p, exec_stage stage) {
  exec_failure f{stage, errno};
  auto n = ::write(p.report_fd, &f, sizeof(f));
  (void)n;
  ::_exit(127);
}

} // namespace

void exec_child(const exec_plan& p) {
  ::prctl(PR_SET_PDEATHSIG, p.death_signal);
  if (::getppid() != p.parent)
    ::_exit(127); // the parent died before the line above took effect
  if (p.own_process_group)
    ::setpgid(0, 0);
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof(dfl));
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig)
    if (sig != SIGKILL && sig != SIGSTOP)
      ::sigaction(sig, &dfl, nullptr);
  sigset_t none;
  ::sigemptyset(&none);
  ::pthread_sigmask(SIG_SETMASK, &none, nullptr);
  if (p.cpus != nullptr && ::sched_setaffinity(0, p.cpus_size, p.cpus) != 0)
    fail(p, exec_stage::affinity);
  // Every source is above 0..2 (fd_above_stdio): no dup2 overwrites a later one's.
  if ((p.in_fd >= 0 && ::dup2(p.in_fd, STDIN_FILENO) < 0)
      || (p.out_fd >= 0 && ::dup2(p.out_fd, STDOUT_FILENO) < 0)
      || (p.err_fd >= 0 && ::dup2(p.err_fd, STDERR_FILENO) < 0))
    fail(p, exec_stage::stdio);
#if defined(SYS_close_range)
  // Nothing else of the parent's crosses exec (UCX's sockets and shared memory, other
  // children's pipes): every descriptor above stderr closes at exec, the report pipe
  // among them. Kernels before 5.11 refuse; then what is not close-on-exec leaks.
  ::syscall(SYS_close_range, 3U, ~0U, 4U /* CLOSE_RANGE_CLOEXEC */);
#endif
  ::execve(p.program, p.argv, p.envp);
  fail(p, exec_stage::exec);
}

std::optional<exec_failure> await_exec(int report_read) {
  exec_failure failure{};
  ssize_t got;
  while ((got = ::read(report_read, &failure, sizeof(failure))) < 0 && errno == EINTR) {
  }
  ::close(report_read);
  if (got == static_cast<ssize_t>(sizeof(failure)))
    return failure;
  return std::nullopt;
}

} // namespace troupe::detail
