#include "tools/bench/host.hpp"

#include <csignal>
#include <fcntl.h>
#include <stdexcept>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "base/error.hpp"
#include "base/files.hpp"

namespace troupe::bench {

using namespace std::chrono_literals;

host::host(const std::string& actorhost, const std::string& dir, const std::string& name,
           const std::string& config_json)
  : address_file_(dir + "/" + name + ".address"), log_file_(dir + "/" + name + ".log") {
  auto config_file = dir + "/" + name + ".json";
  if (auto err = write_file_atomically(config_file, config_json))
    throw std::runtime_error(describe(err));
  auto parent = ::getpid();
  started_ = clock_type::now();
  pid_ = ::fork();
  if (pid_ < 0)
    throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent)
      ::_exit(127);
    int null_fd = ::open("/dev/null", O_WRONLY);
    int log_fd = ::open(log_file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(null_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    exec_program(
      {actorhost, "-c", config_file, "-v", "info", "--address-file", address_file_});
  }
}

const std::string& host::wait_address(std::chrono::milliseconds timeout) {
  auto deadline = clock_type::now() + timeout;
  while (address_.empty()) {
    auto text = read_file(address_file_);
    if (text && !text->empty() && text->back() == '\n') {
      address_ = text->substr(0, text->size() - 1);
      ready_ = clock_type::now();
      break;
    }
    if (exited() || clock_type::now() > deadline)
      throw std::runtime_error("actorhost " + log_file_ + " did not come up: " + log());
    std::this_thread::sleep_for(2ms);
  }
  return address_;
}

double host::start_ms() const {
  return millis_between(started_, ready_);
}

std::string host::log() const {
  auto text = read_file(log_file_);
  return text ? std::move(*text) : std::string{};
}

bool host::exited() {
  if (pid_ <= 0)
    return true;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return true;
  }
  return false;
}

void host::signal(int signo) {
  if (pid_ > 0)
    ::kill(pid_, signo);
}

void host::stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0)
    return;
  ::kill(pid_, SIGCONT); // a stopped process cannot act on SIGTERM
  ::kill(pid_, SIGTERM);
  auto deadline = clock_type::now() + grace;
  while (!exited() && clock_type::now() < deadline)
    std::this_thread::sleep_for(5ms);
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
}

void stop_all(std::vector<std::unique_ptr<host>>& hosts) {
  for (auto& h : hosts)
    h->signal(SIGTERM);
  for (auto& h : hosts)
    h->stop();
  hosts.clear();
}

} // namespace troupe::bench
