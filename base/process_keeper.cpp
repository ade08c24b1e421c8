#include "base/process_keeper.hpp"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/detail/child_exec.hpp"
#include "base/error.hpp"

namespace troupe {

namespace {

using clock_type = std::chrono::steady_clock;

// Every keeper of this process, for kill_all_children.
std::mutex keepers_mutex;
std::set<process_keeper*>& keepers() {
  static std::set<process_keeper*> all;
  return all;
}

constexpr size_t remembered_ends = 1024;

child_exit exit_of_status(int status) {
  child_exit how;
  if (WIFSIGNALED(status))
    how.signal = WTERMSIG(status);
  else
    how.code = WEXITSTATUS(status);
  return how;
}

/// Closes the descriptors it holds when it goes (the parent's copies after fork).
struct fd_set_guard {
  std::vector<int> fds;
  ~fd_set_guard() { close_all(); }
  void close_all() {
    for (int fd : fds)
      if (fd >= 0)
        ::close(fd);
    fds.clear();
  }
  int keep(int fd) {
    fds.push_back(fd);
    return fd;
  }
};

} // namespace

std::string child_exit::describe() const {
  if (unknown)
    return "ended (reaped elsewhere: no status)";
  if (signal != 0)
    return std::string{"was killed by "} + ::strsignal(signal);
  return "exited with code " + std::to_string(code);
}

process_keeper::process_keeper() : thread_([this] { loop(); }) {
  std::lock_guard<std::mutex> guard{keepers_mutex};
  keepers().insert(this);
}

process_keeper& process_keeper::shared() {
  static process_keeper keeper;
  return keeper;
}

void process_keeper::kill_all_children() {
  std::lock_guard<std::mutex> guard{keepers_mutex};
  for (auto* keeper : keepers()) {
    std::lock_guard<std::mutex> children_guard{keeper->mutex_};
    for (int pid : keeper->children_)
      ::kill(pid, SIGKILL);
  }
}

process_keeper::~process_keeper() {
  {
    std::lock_guard<std::mutex> guard{mutex_};
    stopping_ = true;
  }
  changed_.notify_all();
  thread_.join();
  std::lock_guard<std::mutex> guard{keepers_mutex};
  keepers().erase(this); // only now: its children may still run during its grace
}

caf::expected<started_child> process_keeper::launch(child_spec spec) {
  if (spec.argv.empty())
    return make_error(errc::refused, "no program to start (empty argv)");
  request req;
  req.spec = std::move(spec);
  std::unique_lock<std::mutex> guard{mutex_};
  if (stopping_)
    return make_error(errc::refused, "the keeper of child processes is stopping");
  requests_.push_back(&req);
  changed_.notify_all();
  changed_.wait(guard, [&] { return req.done; });
  if (req.error)
    return std::move(req.error);
  return req.child;
}

void process_keeper::signal(int pid, int signo) {
  std::lock_guard<std::mutex> guard{mutex_};
  if (children_.count(pid) != 0)
    ::kill(pid, signo);
}

void process_keeper::terminate(int pid, std::chrono::milliseconds grace) {
  std::lock_guard<std::mutex> guard{mutex_};
  if (children_.count(pid) == 0)
    return;
  ::kill(pid, SIGTERM);
  ::kill(pid, SIGCONT);
  kill_at_.emplace_back(pid, clock_type::now() + grace);
}

bool process_keeper::running(int pid) {
  std::lock_guard<std::mutex> guard{mutex_};
  return children_.count(pid) != 0 && !reap_one(pid);
}

std::optional<child_exit> process_keeper::wait_exit(int pid,
                                                    std::chrono::milliseconds timeout) {
  auto deadline = clock_type::now() + timeout;
  std::unique_lock<std::mutex> guard{mutex_};
  for (;;) {
    if (children_.count(pid) != 0)
      reap_one(pid);
    if (auto it = ended_.find(pid); it != ended_.end())
      return it->second;
    if (children_.count(pid) == 0 || clock_type::now() >= deadline)
      return std::nullopt;
    // Polled, not signalled: SIGCHLD belongs to the program, not to a library. A
    // millisecond is far below what the callers wait for.
    guard.unlock();
    std::this_thread::sleep_for(std::chrono::milliseconds{1});
    guard.lock();
  }
}

std::vector<int> process_keeper::stop_all(std::chrono::milliseconds grace) {
  std::unique_lock<std::mutex> guard{mutex_};
  for (int pid : children_) {
    ::kill(pid, SIGTERM);
    ::kill(pid, SIGCONT);
  }
  auto deadline = clock_type::now() + grace;
  for (;;) {
    reap_all();
    if (children_.empty() || clock_type::now() >= deadline)
      break;
    guard.unlock();
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
    guard.lock();
  }
  std::vector<int> killed{children_.begin(), children_.end()};
  for (int pid : killed)
    ::kill(pid, SIGKILL);
  for (int pid : killed) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    children_.erase(pid);
    remember(pid, exit_of_status(status));
  }
  return killed;
}

void process_keeper::fork_one(request& req) {
  auto& spec = req.spec;
  auto fail = [&](std::string why) {
    req.error = make_error(errc::io, spec.argv[0] + ": " + why);
  };
  auto env_strings = detail::environment_with(spec.env);
  if (!env_strings)
    return fail(context_text(env_strings.error()));
  auto envp = detail::exec_array(*env_strings);
  auto args = detail::exec_array(spec.argv);
  std::string program = spec.program.empty() ? spec.argv[0] : spec.program;

  fd_set_guard parent_side; // the descriptors the parent closes after fork
  auto io_error = [&](const std::string& what) { fail(what + ": " + std::strerror(errno)); };
  // Every descriptor the child gets is above 0..2 (see fd_above_stdio).
  auto opened = [&](const char* path, int flags) {
    return parent_side.keep(detail::fd_above_stdio(::open(path, flags | O_CLOEXEC, 0644)));
  };
  int in_fd = opened("/dev/null", O_RDONLY);
  if (in_fd < 0)
    return io_error("/dev/null");
  // Opens where one stream goes: the child's end (-1: inherit); a pipe's read end
  // goes to `read_end`.
  auto open_output = [&](const child_output& o, int& child_end, int& read_end) {
    child_end = -1;
    switch (o.to) {
      case child_output::kind::inherit:
      case child_output::kind::same_as_stdout:
        return true;
      case child_output::kind::discard:
        child_end = opened("/dev/null", O_WRONLY);
        if (child_end < 0)
          io_error("/dev/null");
        return child_end >= 0;
      case child_output::kind::append_to_file:
      case child_output::kind::replace_file: {
        int mode = o.to == child_output::kind::append_to_file ? O_APPEND : O_TRUNC;
        child_end = opened(o.path.c_str(), O_WRONLY | O_CREAT | mode);
        if (child_end < 0)
          io_error(o.path);
        return child_end >= 0;
      }
      case child_output::kind::pipe: {
        int ends[2];
        if (!detail::open_pipe_above_stdio(ends)) {
          io_error("pipe");
          return false;
        }
        read_end = ends[0];
        child_end = parent_side.keep(ends[1]);
        return true;
      }
    }
    return false;
  };
  started_child child;
  int out_fd = -1;
  int err_fd = -1;
  auto close_read_ends = [&] {
    for (int fd : {child.out_fd, child.err_fd})
      if (fd >= 0)
        ::close(fd);
  };
  if (!open_output(spec.out, out_fd, child.out_fd))
    return;
  if (spec.err.to == child_output::kind::same_as_stdout) {
    err_fd = out_fd;
  } else if (!open_output(spec.err, err_fd, child.err_fd)) {
    close_read_ends();
    return;
  }
  int report[2];
  if (!detail::open_pipe_above_stdio(report)) {
    close_read_ends();
    return io_error("pipe");
  }
  parent_side.keep(report[1]);
  detail::exec_plan plan;
  plan.parent = ::getpid();
  plan.death_signal = spec.death_signal;
  plan.in_fd = in_fd;
  plan.out_fd = out_fd;
  plan.err_fd = err_fd;
  plan.report_fd = report[1];
  plan.program = program.c_str();
  plan.argv = args.data();
  plan.envp = envp.data();
  int pid = ::fork();
  if (pid == 0)
    detail::exec_child(plan);
  if (pid < 0) {
    io_error("fork");
    ::close(report[0]);
    close_read_ends();
    return;
  }
  children_.insert(pid);
  parent_side.close_all(); // the child's ends: now, or the report pipe never closes
  if (auto failure = detail::await_exec(report[0])) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    children_.erase(pid);
    close_read_ends();
    errno = failure->error;
    return io_error(failure->stage == detail::exec_stage::exec
                      ? "cannot run " + program
                      : std::string{"cannot set up stdin/stdout/stderr"});
  }
  req.child = child;
  req.child.pid = pid;
}

bool process_keeper::reap_one(int pid) {
  int status = 0;
  auto r = ::waitpid(pid, &status, WNOHANG);
  if (r == pid) {
    children_.erase(pid);
    remember(pid, exit_of_status(status));
    return true;
  }
  if (r < 0 && errno == ECHILD) {
    children_.erase(pid);
    child_exit how;
    how.unknown = true;
    remember(pid, how);
    return true;
  }
  return false;
}

void process_keeper::reap_all() {
  std::vector<int> pids{children_.begin(), children_.end()};
  for (int pid : pids)
    reap_one(pid);
}

void process_keeper::remember(int pid, child_exit how) {
  if (ended_.count(pid) == 0)
    ended_order_.push_back(pid);
  ended_[pid] = how;
  while (ended_order_.size() > remembered_ends) {
    ended_.erase(ended_order_.front());
    ended_order_.pop_front();
  }
}

void process_keeper::loop() {
  // No process-directed signal is ever delivered to this thread: they belong to the
  // program's own threads (actorhost sigwaits for its shutdown signals).
  sigset_t all;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, nullptr);
  std::unique_lock<std::mutex> guard{mutex_};
  while (!stopping_) {
    while (!requests_.empty()) {
      auto* req = requests_.front();
      requests_.pop_front();
      fork_one(*req);
      if (req->child.pid > 0 && ended_.erase(req->child.pid) != 0) {
        // A new child with the pid of one that ended: its old end is forgotten.
        for (auto it = ended_order_.begin(); it != ended_order_.end(); ++it)
          if (*it == req->child.pid) {
            ended_order_.erase(it);
            break;
          }
      }
      req->done = true;
      changed_.notify_all();
    }
    reap_all();
    auto now = clock_type::now();
    for (auto it = kill_at_.begin(); it != kill_at_.end();) {
      if (children_.count(it->first) == 0) {
        it = kill_at_.erase(it);
      } else if (now >= it->second) {
        ::kill(it->first, SIGKILL);
        it = kill_at_.erase(it);
      } else {
        ++it;
      }
    }
    // Children are reaped within 20 ms of their end even when nobody asks (no zombies
    // pile up); wait_exit and running reap at once.
    changed_.wait_for(guard, std::chrono::milliseconds{20},
                      [this] { return stopping_ || !requests_.empty(); });
  }
  for (auto* req : requests_) {
    req->error = make_error(errc::refused, "the keeper of child processes is stopping");
    req->done = true;
  }
  requests_.clear();
  changed_.notify_all();
  guard.unlock();
  // On this thread, while it still lives: its end sends the parent-death signal.
  stop_all(grace);
}

} // namespace troupe
