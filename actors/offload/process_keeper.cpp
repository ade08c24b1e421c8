#include "actors/offload/process_keeper.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/error.hpp"

namespace troupe::offload {

namespace {

// Every keeper of this process, for kill_all_children.
std::mutex keepers_mutex;
std::set<process_keeper*>& keepers() {
  static std::set<process_keeper*> all;
  return all;
}

} // namespace

process_keeper::process_keeper() : thread_([this] { loop(); }) {
  std::lock_guard<std::mutex> guard{keepers_mutex};
  keepers().insert(this);
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

caf::expected<int>
process_keeper::launch(const std::vector<std::string>& argv,
                       const std::vector<std::pair<std::string, std::string>>& env,
                       const std::string& log_path) {
  request req;
  req.argv = argv;
  req.env = env;
  req.log_path = log_path;
  std::unique_lock<std::mutex> guard{mutex_};
  if (stopping_)
    return make_error(errc::refused, "the node is stopping");
  requests_.push_back(&req);
  changed_.notify_all();
  changed_.wait(guard, [&] { return req.done; });
  if (req.pid < 0)
    return make_error(errc::io, req.error);
  return req.pid;
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
  kill_at_.emplace_back(pid, std::chrono::steady_clock::now() + grace);
}

bool process_keeper::running(int pid) {
  std::lock_guard<std::mutex> guard{mutex_};
  return children_.count(pid) != 0;
}

void process_keeper::fork_one(request& req) {
  // Everything the child needs is prepared before fork: after it, only
  // async-signal-safe calls.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e)
    env_strings.emplace_back(*e);
  for (auto& [key, value] : req.env)
    env_strings.push_back(key + "=" + value);
  std::vector<char*> envp;
  for (auto& s : env_strings)
    envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<char*> args;
  for (auto& a : req.argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int log_fd = ::open(req.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    req.error = req.log_path + ": " + std::strerror(errno);
    req.pid = -1;
    return;
  }
  auto parent = ::getpid();
  int pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent)
      ::_exit(1); // the parent died before the line above took effect
    // What the forking thread had blocked (actorhost blocks its shutdown signals to
    // sigwait for them) must not stay blocked in the child.
    sigset_t none;
    ::sigemptyset(&none);
    ::pthread_sigmask(SIG_SETMASK, &none, nullptr);
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0)
      ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    // Nothing else of ours crosses exec (UCX's sockets and shared memory, other
    // children's pipes); close_range is a no-op before Linux 5.9.
    ::syscall(SYS_close_range, 3u, ~0u, 0u);
    ::execve(args[0], args.data(), envp.data());
    ::_exit(127);
  }
  ::close(log_fd);
  if (pid < 0) {
    req.error = std::string{"fork: "} + std::strerror(errno);
    req.pid = -1;
    return;
  }
  req.pid = pid;
  children_.insert(pid);
}

void process_keeper::reap() {
  for (auto it = children_.begin(); it != children_.end();) {
    int status = 0;
    auto r = ::waitpid(*it, &status, WNOHANG);
    if (r == *it || (r < 0 && errno == ECHILD))
      it = children_.erase(it);
    else
      ++it;
  }
}

void process_keeper::loop() {
  std::unique_lock<std::mutex> guard{mutex_};
  while (!stopping_) {
    while (!requests_.empty()) {
      auto* req = requests_.front();
      requests_.pop_front();
      fork_one(*req);
      req->done = true;
      changed_.notify_all();
    }
    reap();
    auto now = std::chrono::steady_clock::now();
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
    changed_.wait_for(guard, std::chrono::milliseconds{20},
                      [this] { return stopping_ || !requests_.empty(); });
  }
  for (auto* req : requests_) {
    req->error = "the node is stopping";
    req->pid = -1;
    req->done = true;
  }
  requests_.clear();
  changed_.notify_all();
  for (int pid : children_)
    ::kill(pid, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (!children_.empty() && std::chrono::steady_clock::now() < deadline) {
    reap();
    guard.unlock();
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
    guard.lock();
  }
  for (int pid : children_)
    ::kill(pid, SIGKILL);
  for (int pid : children_)
    ::waitpid(pid, nullptr, 0);
  children_.clear();
}

} // namespace troupe::offload
