#include "tools/bench/host.hpp"

#include <csignal>
#include <fcntl.h>
#include <stdexcept>
#include <thread>
#include <unistd.h>

#include "base/error.hpp"
#include "base/files.hpp"
#include "base/process_keeper.hpp"

namespace troupe::bench {

using namespace std::chrono_literals;

host::host(const std::string& actorhost, const std::string& dir, const std::string& name,
           const std::string& config_json)
  : address_file_(dir + "/" + name + ".address"), log_file_(dir + "/" + name + ".log") {
  auto config_file = dir + "/" + name + ".json";
  if (auto err = write_file_atomically(config_file, config_json))
    throw std::runtime_error(describe(err));
  child_spec actorhost_run;
  actorhost_run.argv = {actorhost, "-c", config_file, "-v", "info", "--address-file",
                        address_file_};
  actorhost_run.out = child_output::discard();
  actorhost_run.err = child_output::replace(log_file_);
  actorhost_run.death_signal = SIGKILL;
  started_ = clock_type::now();
  auto started = process_keeper::shared().launch(std::move(actorhost_run));
  if (!started)
    throw std::runtime_error(context_text(started.error()));
  pid_ = started->pid;
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
  if (pid_ > 0 && process_keeper::shared().wait_exit(pid_, std::chrono::milliseconds{0}))
    pid_ = -1;
  return pid_ <= 0;
}

void host::signal(int signo) {
  if (pid_ > 0)
    process_keeper::shared().signal(pid_, signo);
}

void host::stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0)
    return;
  auto& keeper = process_keeper::shared();
  keeper.terminate(pid_, grace); // SIGTERM (and SIGCONT), SIGKILL after the grace
  keeper.wait_exit(pid_, grace + std::chrono::seconds{5});
  pid_ = -1;
}

void stop_all(std::vector<std::unique_ptr<host>>& hosts) {
  for (auto& h : hosts)
    h->signal(SIGTERM);
  for (auto& h : hosts)
    h->stop();
  hosts.clear();
}

} // namespace troupe::bench
