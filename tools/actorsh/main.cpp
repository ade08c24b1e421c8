// actorsh: inspect and drive a running Troupe system.
//
//   actorsh [-a ADDRESS | -f VIEWFILE] [-c "cmd; cmd"] [--json] [--timeout MS]
//
// Interactive with line editing, history (~/.actorsh_history) and completion of
// command names and of member ranks/addresses when stdin is a terminal; reads commands
// from stdin otherwise; runs the commands of -c and exits non-zero if any failed.

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <readline/history.h>
#include <nlohmann/json.hpp>
#include <readline/readline.h>

#include "actors/builtin.hpp"
#include "base/error.hpp"
#include "base/log.hpp"
#include "base/version.hpp"
#include "runtime/config.hpp"
#include "runtime/node.hpp"
#include "tools/actorsh/shell.hpp"
#include "transport/address.hpp"

namespace {

troupe::shell::session* current_session = nullptr; // for completion
bool completing_command = true;
std::vector<std::string> subcommands; // of the command word, when completing the next

char* command_generator(const char* text, int state) {
  static size_t index;
  static std::vector<std::string> names;
  if (state == 0) {
    index = 0;
    names = current_session == nullptr ? std::vector<std::string>{}
            : completing_command       ? current_session->command_names()
            : !subcommands.empty()     ? subcommands
                                       : current_session->member_targets();
  }
  std::string prefix{text};
  while (index < names.size()) {
    const auto& name = names[index++];
    if (name.rfind(prefix, 0) == 0)
      return ::strdup(name.c_str());
  }
  return nullptr;
}

char** complete(const char* text, int start, int) {
  rl_attempted_completion_over = 1; // no file name completion
  // The command word completes to commands; later words to member ranks/addresses.
  std::istringstream before{std::string{rl_line_buffer, static_cast<size_t>(start)}};
  std::vector<std::string> words{std::istream_iterator<std::string>{before},
                                 std::istream_iterator<std::string>{}};
  completing_command = words.empty();
  // The word after a command with subcommands (kvs, event, metadata) completes to them.
  subcommands = words.size() == 1 ? troupe::shell::session::subcommands_of(words.front())
                                  : std::vector<std::string>{};
  return rl_completion_matches(text, command_generator);
}

std::string history_path() {
  const char* home = std::getenv("HOME");
  return std::string{home != nullptr ? home : "."} + "/.actorsh_history";
}

void on_interrupt(int) {
  troupe::shell::session::interrupted_ = true;
}

int interactive(troupe::shell::session& session) {
  current_session = &session;
  rl_attempted_completion_function = complete;
  // Ctrl-C stops a running `watch`; at the prompt readline clears the line.
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  ::sigaction(SIGINT, &sa, nullptr);
  auto history = history_path();
  ::read_history(history.c_str());
  for (;;) {
    auto prompt =
      "actorsh" + (session.address().empty() ? "" : "(" + session.address() + ")") + "> ";
    char* raw = ::readline(prompt.c_str());
    if (raw == nullptr) { // Ctrl-D
      std::cout << "\n";
      break;
    }
    std::string line{raw};
    ::free(raw);
    if (!line.empty())
      ::add_history(line.c_str());
    auto result = session.run(line, std::cout, std::cerr);
    if (result == troupe::shell::outcome::quit)
      break;
  }
  ::write_history(history.c_str());
  return 0;
}

/// Runs commands separated by `delimiter`; 1 if any failed.
int run_lines(troupe::shell::session& session, std::istream& in, char delimiter = '\n') {
  int rc = 0;
  std::string line;
  while (std::getline(in, line, delimiter)) {
    auto result = session.run(line, std::cout, std::cerr);
    if (result == troupe::shell::outcome::quit)
      break;
    if (result == troupe::shell::outcome::failed)
      rc = 1;
  }
  return rc;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{
    "actorsh: inspect and drive a running Troupe system.\n"
    "Commands (see 'help' inside): connect, info, providers, actors, stats,\n"
    "topology, config, ops, view, metadata, watch, ping, shutdown, fault, tree,\n"
    "offload, help, quit.",
    "actorsh"};
  std::string address;
  std::string view_file;
  std::string commands;
  bool json = false;
  int timeout_ms = 5000;
  app.add_option("-a,--address", address,
                 "node to connect to, e.g. ucx://127.0.0.1:7100");
  app
    .add_option("-f,--view-file", view_file,
                "a group's view file: connect to its first member that answers")
    ->excludes("-a");
  app.add_option(
    "-c,--commands", commands,
    "run these commands (separated by ';') and exit; non-zero if any failed");
  app.add_flag("--json", json, "print every result as one JSON document per line");
  app.add_option("--timeout", timeout_ms, "how long to wait for a node, in milliseconds")
    ->check(CLI::Range(1, 3600000))
    ->capture_default_str();
  app.set_version_flag("--version", std::string{"actorsh (Troupe) "} + troupe::version());
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  // The shell's own node: any free port, one scheduler thread, quiet. It listens where
  // the node it connects to can reach it back: on loopback for a node on this host, on
  // this host's address towards another host (a node on loopback only reaches this
  // host's nodes).
  std::string listen = "127.0.0.1";
  if (auto target = troupe::transport::parse_node_address(address))
    if (auto local = troupe::transport::local_address_towards(target->host))
      listen = *local;
  troupe::node client{troupe::parse_node_config(
    nlohmann::json{{"threads", 1}, {"transport", {{"address", listen}}}}.dump(), "actorsh")};
  troupe::actors::register_builtin_types(client.system_config());
  if (auto err = client.start()) {
    std::cerr << "actorsh: cannot start its node: " << troupe::describe(err) << "\n";
    return 1;
  }
  int rc = 0;
  {
    troupe::shell::session session{client, {std::chrono::milliseconds(timeout_ms), json}};
    if (!view_file.empty())
      address = view_file;
    if (!address.empty() && !session.connect(address, std::cerr)) {
      rc = 1;
    } else if (!commands.empty()) {
      std::istringstream in{commands};
      rc = run_lines(session, in, ';');
    } else if (::isatty(STDIN_FILENO)) {
      rc = interactive(session);
    } else {
      rc = run_lines(session, std::cin);
    }
  }
  client.stop();
  return rc;
}
