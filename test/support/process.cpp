#include "test/support/process.hpp"

#include "base/error.hpp"
#include "base/process_keeper.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <poll.h>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <sys/wait.h>
#include <unistd.h>

namespace troupe::test {

using clock_type = std::chrono::steady_clock;

child_process::child_process(std::vector<std::string> argv,
                             std::vector<std::string> extra_env) {
  child_spec spec;
  spec.argv = std::move(argv);
  for (auto& e : extra_env) {
    auto eq = e.find('=');
    spec.env.emplace_back(e.substr(0, eq), eq == std::string::npos ? "" : e.substr(eq + 1));
  }
  spec.out = child_output::pipe();
  spec.err = child_output::pipe();
  spec.death_signal = SIGKILL; // the kernel kills it if the test process dies first
  auto started = process_keeper::shared().launch(std::move(spec));
  if (!started)
    throw std::runtime_error(context_text(started.error()));
  pid_ = started->pid;
  out_fd_ = started->out_fd;
  err_fd_ = started->err_fd;
}

child_process::~child_process() {
  if (!status_) {
    signal(SIGKILL);
    wait_exit(std::chrono::seconds(10));
  }
  if (out_fd_ >= 0)
    ::close(out_fd_);
  if (err_fd_ >= 0)
    ::close(err_fd_);
}

void child_process::pump(std::chrono::milliseconds timeout) {
  pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
  if (::poll(fds, 2, static_cast<int>(timeout.count())) <= 0)
    return;
  char buf[4096];
  auto drain = [&](pollfd& p, int& fd, std::string& into) {
    if (fd < 0 || (p.revents & (POLLIN | POLLHUP)) == 0)
      return;
    auto n = ::read(fd, buf, sizeof(buf));
    if (n > 0) {
      into.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      ::close(fd);
      fd = -1;
    }
  };
  drain(fds[0], out_fd_, out_);
  drain(fds[1], err_fd_, err_);
  fds[0].fd = out_fd_;
  fds[1].fd = err_fd_;
}

std::optional<std::string>
child_process::wait_for_line(const std::string& needle,
                             std::chrono::milliseconds timeout) {
  auto deadline = clock_type::now() + timeout;
  for (;;) {
    size_t start = 0;
    for (;;) {
      auto end = out_.find('\n', start);
      if (end == std::string::npos)
        break;
      auto text = out_.substr(start, end - start);
      if (text.find(needle) != std::string::npos)
        return text;
      start = end + 1;
    }
    auto now = clock_type::now();
    if (now >= deadline || (out_fd_ < 0 && err_fd_ < 0))
      return std::nullopt;
    pump(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now));
  }
}

bool child_process::wait_for_text_on_stderr(const std::string& needle,
                                            std::chrono::milliseconds timeout) {
  auto deadline = clock_type::now() + timeout;
  for (;;) {
    if (err_.find(needle) != std::string::npos)
      return true;
    auto now = clock_type::now();
    if (now >= deadline || (out_fd_ < 0 && err_fd_ < 0))
      return false;
    pump(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now));
  }
}

void child_process::signal(int signo) {
  if (!status_)
    process_keeper::shared().signal(pid_, signo);
}

std::optional<int> child_process::wait_exit(std::chrono::milliseconds timeout) {
  auto deadline = clock_type::now() + timeout;
  auto& keeper = process_keeper::shared();
  while (!status_) {
    if (auto how = keeper.wait_exit(pid_, std::chrono::milliseconds{0})) {
      status_ = how->status();
      break;
    }
    auto now = clock_type::now();
    if (now >= deadline)
      return std::nullopt;
    // Keep the pipes drained so a chatty child never blocks on a full pipe.
    auto slice = std::min(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now),
                          std::chrono::milliseconds(20));
    if (out_fd_ >= 0 || err_fd_ >= 0)
      pump(slice);
    else if (auto how = keeper.wait_exit(pid_, slice))
      status_ = how->status();
  }
  // Collect what is left in the pipes.
  while (out_fd_ >= 0 || err_fd_ >= 0)
    pump(std::chrono::milliseconds(100));
  return status_;
}

bool process_gone(int pid) {
  std::ifstream stat{"/proc/" + std::to_string(pid) + "/stat"};
  std::string line;
  if (!std::getline(stat, line))
    return true;
  // The state follows the command name, which is in parentheses and may hold spaces.
  auto paren = line.rfind(')');
  return paren == std::string::npos || line.compare(paren + 2, 1, "Z") == 0;
}

bool process_stopped(int pid) {
  std::error_code ec;
  std::filesystem::directory_iterator tasks{"/proc/" + std::to_string(pid) + "/task", ec};
  if (ec)
    return false;
  for (const auto& task : tasks) {
    std::ifstream stat{task.path() / "stat"};
    std::string line;
    if (!std::getline(stat, line))
      continue; // the thread is gone
    auto paren = line.rfind(')');
    if (paren == std::string::npos || line.size() < paren + 3
        || (line[paren + 2] != 'T' && line[paren + 2] != 't'))
      return false;
  }
  return true;
}

bool process_ignores(int pid, int signo) {
  std::ifstream status{"/proc/" + std::to_string(pid) + "/status"};
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("SigIgn:", 0) == 0)
      return ((std::stoull(line.substr(7), nullptr, 16) >> (signo - 1)) & 1U) != 0;
  return false;
}

reserved_port::reserved_port() {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int on = 1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd_ < 0 || ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0
      || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0
      || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    auto why = std::string{std::strerror(errno)};
    if (fd_ >= 0)
      ::close(fd_);
    throw std::runtime_error("cannot reserve a port: " + why);
  }
  number_ = ntohs(addr.sin_port);
}

reserved_port::~reserved_port() {
  ::close(fd_);
}

std::string reserved_port::address() const {
  return "ucx://127.0.0.1:" + std::to_string(number_);
}

bool eventually(std::chrono::milliseconds deadline,
                const std::function<bool()>& condition) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < end) {
    if (condition())
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  }
  return condition();
}

run_result run_to_end(std::vector<std::string> argv, std::chrono::milliseconds timeout) {
  child_process child{std::move(argv)};
  run_result result;
  auto code = child.wait_exit(timeout);
  result.exit_code = code ? *code : -1;
  result.out = child.out();
  result.err = child.err();
  return result;
}

std::string bin_path(const std::string& name) {
  return std::string{TROUPE_BIN_DIR} + "/" + name;
}

temp_dir::temp_dir() {
  auto pattern = (std::filesystem::temp_directory_path() / "troupe-test-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr)
    throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

temp_dir::~temp_dir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string temp_dir::write(const std::string& name, const std::string& content) const {
  auto full = path_ + "/" + name;
  std::ofstream out{full, std::ios::binary};
  out << content;
  return full;
}

} // namespace troupe::test

namespace troupe::test {

host_process::host_process(const std::string& config_json,
                           std::vector<std::string> extra_env)
  : host_process(no_wait_t{}, config_json, std::move(extra_env)) {
  wait_ready();
}

host_process::host_process(no_wait_t, const std::string& config_json,
                           std::vector<std::string> extra_env) {
  auto cfg = dir_.write("node.json", config_json);
  child_ = std::make_unique<child_process>(
    std::vector<std::string>{bin_path("actorhost"), "-c", cfg, "--address-file",
                             dir_.path() + "/address"},
    std::move(extra_env));
}

void host_process::wait_ready() {
  if (!address_.empty())
    return;
  auto addr_file = dir_.path() + "/address";
  auto line = child_->wait_for_line("actorhost ready:", std::chrono::seconds(30));
  if (!line)
    throw std::runtime_error("actorhost did not become ready; stderr: " + child_->err());
  std::ifstream in{addr_file};
  std::getline(in, address_);
  if (address_.empty())
    throw std::runtime_error("actorhost wrote no address file");
}

void host_process::kill_hard() {
  child_->signal(SIGKILL);
  child_->wait_exit(std::chrono::seconds(10));
}

void host_process::stop_answering() {
  child_->signal(SIGSTOP);
  if (!eventually(std::chrono::seconds(5),
                  [&] { return process_stopped(child_->pid()); }))
    throw std::runtime_error("actorhost " + address_ + " did not stop on SIGSTOP");
}

std::string test_library(const std::string& name) {
  return std::string{TROUPE_LIB_DIR} + "/" + name;
}

actorhost_instance::actorhost_instance(unsigned size, const std::string& config) {
  // (The default has a comment: the launcher reads configs as the node does.)
  auto cfg = dir.write("node.json", config);
  launcher = std::make_unique<child_process>(
    std::vector<std::string>{bin_path("actorhost"), "--size", std::to_string(size),
                             "--instance-dir", dir.path() + "/inst", "-c", cfg});
  if (!launcher->wait_for_line("attach with: actorsh -f", std::chrono::seconds{60}))
    throw std::runtime_error("the instance did not start: " + launcher->err());
  std::istringstream out{launcher->out()};
  std::string line;
  // "  node 0: ucx://127.0.0.1:41234 pid 5678"
  while (std::getline(out, line))
    if (auto at = line.find(" pid "), colon = line.find(": ");
        line.rfind("  node ", 0) == 0 && at != std::string::npos && colon < at) {
      pids.push_back(std::stoi(line.substr(at + 5)));
      addresses.push_back(line.substr(colon + 2, at - colon - 2));
    }
}

bool actorhost_instance::all_gone() const {
  return std::all_of(pids.begin(), pids.end(), process_gone);
}

} // namespace troupe::test
