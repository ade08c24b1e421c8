#include "actors/offload/shell_runner.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <memory>
#include <utility>

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/detail/child_exec.hpp"
#include "base/error.hpp"

namespace troupe::offload {

namespace {

using clock_type = std::chrono::steady_clock;

/// Closes the descriptor it holds.
class unique_fd {
public:
  explicit unique_fd(int fd = -1) : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~unique_fd() { reset(); }
  void reset(int fd = -1) {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = fd;
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

private:
  int fd_;
};

/// A pipe whose ends are close-on-exec (so a command another thread starts at the
/// same moment does not inherit them) and above 0..2 (see detail::fd_above_stdio).
bool make_pipe(unique_fd& read_end, unique_fd& write_end) {
  int fds[2];
  if (!detail::open_pipe_above_stdio(fds))
    return false;
  read_end.reset(fds[0]);
  write_end.reset(fds[1]);
  return true;
}

std::string describe(const detail::exec_failure& f, const std::vector<unsigned>& cpus) {
  std::string what;
  switch (f.stage) {
    case detail::exec_stage::affinity:
      what = "cannot bind to CPUs";
      for (size_t i = 0; i < cpus.size(); ++i)
        what += (i == 0 ? " " : ",") + std::to_string(cpus[i]);
      break;
    case detail::exec_stage::stdio:
      what = "cannot set up stdin/stdout/stderr";
      break;
    default:
      what = "cannot run /bin/sh";
  }
  return what + ": " + std::strerror(f.error);
}

/// Whether the child has ended, without reaping it: the zombie keeps its pid (and so
/// its process group id) from being reused until waitpid. `lost`: someone else in this
/// process reaped it (or SIGCHLD is ignored), so its pid may name another process now.
bool has_ended(pid_t pid, bool& lost) {
  siginfo_t info;
  info.si_pid = 0;
  if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0)
    return info.si_pid == pid;
  lost = errno == ECHILD;
  return errno != EINTR;
}

/// A descriptor that becomes readable when `pid` ends (Linux 5.3+), or -1.
unique_fd open_pidfd(pid_t pid) {
#if defined(SYS_pidfd_open)
  return unique_fd{static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))};
#else
  (void)pid;
  return unique_fd{};
#endif
}

} // namespace

shell_outcome run_shell(const std::string& command, const run_options& options) {
  shell_outcome result;
  auto not_started = [&](std::string why) {
    result.exit_status = 127;
    result.error = std::move(why);
    return result;
  };
  auto env_strings = detail::environment_with(options.env);
  if (!env_strings)
    return not_started(context_text(env_strings.error()));
  auto envp = detail::exec_array(*env_strings);
  std::string sh = "sh", dash_c = "-c", text = command;
  char* argv[] = {sh.data(), dash_c.data(), text.data(), nullptr};

  std::unique_ptr<cpu_set_t, void (*)(cpu_set_t*)> cpus{
    nullptr, [](cpu_set_t* s) { CPU_FREE(s); }};
  size_t cpus_size = 0;
  if (!options.cpus.empty()) {
    auto count = *std::max_element(options.cpus.begin(), options.cpus.end()) + 1;
    cpus.reset(CPU_ALLOC(count));
    if (!cpus)
      return not_started("cannot bind to CPUs: out of memory");
    cpus_size = CPU_ALLOC_SIZE(count);
    CPU_ZERO_S(cpus_size, cpus.get());
    for (auto c : options.cpus)
      CPU_SET_S(c, cpus_size, cpus.get());
  }

  unique_fd out_r, out_w, report_r, report_w;
  if (!make_pipe(out_r, out_w) || !make_pipe(report_r, report_w))
    return not_started(std::string{"cannot start /bin/sh: pipe: "}
                       + std::strerror(errno));
  unique_fd null_in{detail::fd_above_stdio(::open("/dev/null", O_RDONLY | O_CLOEXEC))};
  if (null_in.get() < 0)
    return not_started(std::string{"cannot start /bin/sh: /dev/null: "}
                       + std::strerror(errno));
  const auto started = clock_type::now();
  detail::exec_plan plan;
  plan.parent = ::getpid();
  plan.death_signal = SIGKILL;
  plan.own_process_group = true;
  plan.cpus = cpus.get();
  plan.cpus_size = cpus_size;
  plan.in_fd = null_in.get();
  plan.out_fd = out_w.get();
  plan.err_fd = out_w.get();
  plan.report_fd = report_w.get();
  plan.program = "/bin/sh";
  plan.argv = argv;
  plan.envp = envp.data();
  pid_t pid = ::fork();
  if (pid < 0)
    return not_started(std::string{"cannot start /bin/sh: fork: "}
                       + std::strerror(errno));
  if (pid == 0)
    detail::exec_child(plan);
  // Also done here, so that a timeout's kill(-pid) cannot come before the child's own.
  ::setpgid(pid, pid);
  if (options.on_start)
    options.on_start(pid);
  out_w.reset();
  report_w.reset();
  null_in.reset();
  auto reap = [pid](int& status) {
    while (::waitpid(pid, &status, 0) < 0)
      if (errno != EINTR)
        return false;
    return true;
  };

  // The report pipe closes at exec, or carries why the child did not get there.
  if (auto failure = detail::await_exec(report_r.release())) {
    int status;
    reap(status);
    return not_started(describe(*failure, options.cpus));
  }

  ::fcntl(out_r.get(), F_SETFL, ::fcntl(out_r.get(), F_GETFL) | O_NONBLOCK);
  std::array<char, 16384> buf;
  // Returns true at end of file. Reads on past the limit, so the command never blocks
  // on a full pipe.
  auto drain = [&] {
    for (;;) {
      auto n = ::read(out_r.get(), buf.data(), buf.size());
      if (n > 0) {
        auto keep = std::min(static_cast<size_t>(n),
                             options.max_output_bytes - result.output.size());
        result.output.append(buf.data(), keep);
        result.truncated = result.truncated || keep < static_cast<size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        return n == 0 || errno != EAGAIN;
      }
    }
  };

  auto pidfd = open_pidfd(pid);
  const auto deadline = started + options.timeout;
  bool eof = false;
  bool timed_out = false;
  // Without a pidfd the end of the shell is noticed by polling: soon after output
  // stops, then less and less often.
  int tick_ms = 1;
  bool lost = false;
  while (!has_ended(pid, lost)) {
    int wait_ms = -1;
    if (options.timeout.count() > 0) {
      auto left = deadline - clock_type::now();
      if (left <= clock_type::duration::zero()) {
        timed_out = true;
        break;
      }
      wait_ms =
        static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(left).count());
    }
    if (pidfd.get() < 0)
      wait_ms = wait_ms < 0 ? tick_ms : std::min(wait_ms, tick_ms);
    std::array<pollfd, 2> fds{};
    nfds_t nfds = 0;
    if (!eof)
      fds[nfds++] = pollfd{out_r.get(), POLLIN, 0};
    if (pidfd.get() >= 0)
      fds[nfds++] = pollfd{pidfd.get(), POLLIN, 0};
    ::poll(fds.data(), nfds, wait_ms);
    if (!eof && fds[0].revents != 0) {
      eof = drain();
      tick_ms = 1;
    } else {
      tick_ms = std::min(tick_ms * 2, 50);
    }
  }
  // Leftovers in the group (background jobs; the rest of a pipeline after a timeout)
  // end with the job: they must not outlive it nor keep the pipe open. The shell is not
  // reaped yet, so -pid still names its group and no other.
  if (!lost)
    ::kill(-pid, SIGKILL);
  if (!eof)
    drain(); // what the shell wrote before it ended; killed writers add nothing more
  int status = 0;
  bool reaped = !lost && reap(status);
  if (timed_out) {
    result.exit_status = 128 + SIGKILL;
    result.error = "timed out after " + std::to_string(options.timeout.count()) + " ms";
  } else if (!reaped) {
    result.exit_status = 127;
    result.error = "exit status lost: the shell was reaped elsewhere in this process "
                   "(is SIGCHLD ignored?)";
  } else if (WIFSIGNALED(status)) {
    result.exit_status = 128 + WTERMSIG(status);
  } else {
    result.exit_status = WEXITSTATUS(status);
  }
  return result;
}

} // namespace troupe::offload
