#pragma once
// actorsh's command interpreter: one object per session, holding the node it is
// connected to. Commands write results to `out` and errors to `err` and return
// whether they succeeded. The interactive loop and `-c` both go through run().

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>

#include "actors/group/view.hpp"
#include <nlohmann/json.hpp>

namespace troupe {
class node;
} // namespace troupe

namespace troupe::shell {

struct options {
  std::chrono::milliseconds timeout{5000};
  bool json = false;
};

enum class outcome { ok, failed, quit };

/// Reads `-n COUNT` and `--for MS` from args[first...] (the options of the commands
/// that print as things happen: watch, event sub). False, with `usage` or the bad
/// number in `err`, on anything else.
bool read_count_and_time(const std::vector<std::string>& args, size_t first, long& count,
                         long& for_ms, const std::string& usage, std::ostream& err);

/// How long a command that prints as things happen (watch, event sub, kvs watch)
/// goes on: until Ctrl-C (`interrupted` set), `count` things (-1: no limit) or
/// `for_ms` milliseconds (-1: no limit).
class follow_limits {
public:
  using clock_type = std::chrono::steady_clock;
  follow_limits(long count, long for_ms, std::atomic<bool>& interrupted)
    : count_(count),
      deadline_(for_ms >= 0 ? clock_type::now() + std::chrono::milliseconds{for_ms}
                            : clock_type::time_point::max()),
      interrupted_(interrupted) {
    interrupted_ = false;
  }
  bool more() const {
    return !interrupted_ && (count_ < 0 || seen_ < count_) && clock_type::now() < deadline_;
  }
  void saw() { ++seen_; }

private:
  long count_;
  long seen_ = 0;
  clock_type::time_point deadline_;
  std::atomic<bool>& interrupted_;
};

class session {
public:
  session(node& client, options opts);

  /// Runs one command line ("info", "ping -n 10", ...). Blank lines are ok.
  outcome run(const std::string& line, std::ostream& out, std::ostream& err);

  /// Connects to the node at `target` (an address), or to the first member of the view
  /// file `target` that answers; false (with the reason in `err`) on failure.
  bool connect(const std::string& target, std::ostream& err);

  /// Ranks, addresses and "all" of the last group view seen (for completion).
  std::vector<std::string> member_targets() const;

  /// Set from a SIGINT handler: stops a running `watch`.
  static inline std::atomic<bool> interrupted_{false};

  /// Where the session is connected, or "" (for the prompt).
  const std::string& address() const { return address_; }

  /// Command names, for completion and help.
  std::vector<std::string> command_names() const;

  /// The words that may follow `command` as its first argument (its subcommands), or
  /// none when it has none.
  static std::vector<std::string> subcommands_of(const std::string& command);

private:
  struct command {
    std::string name;
    std::string usage;
    std::string help;
    std::function<bool(const std::vector<std::string>&, std::ostream&, std::ostream&)>
      run;
    bool needs_connection = true;
  };

  /// Asks the node service (get_atom, what); the JSON answer, or nothing (and why, in
  /// `err`).
  std::optional<nlohmann::json> fetch(const std::string& what, std::ostream& err);
  bool query(const std::string& what, std::ostream& out, std::ostream& err);
  bool view(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
  bool ping(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
  bool metadata(const std::vector<std::string>& args, std::ostream& out,
                std::ostream& err);
  bool watch(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
  /// The connected node's group provider (`wanted`, the last one used, or its first).
  caf::expected<caf::actor> group_provider(std::ostream& err,
                                           std::optional<uint16_t> wanted);
  /// Asks the group provider for its view and keeps it (ranks resolve against it).
  std::optional<group::group_view> fetch_view(std::ostream& err,
                                              std::optional<uint16_t> wanted);
  bool shutdown(const std::vector<std::string>& args, std::ostream& out,
                std::ostream& err);
  // fault_commands.cpp: fault injection.
  bool fault(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
  bool overlay_status(const std::vector<std::string>& args, std::ostream& out,
                      std::ostream& err);
  bool event(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
  bool dmesg(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
  bool log_line(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
  bool barrier(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
  // module_commands.cpp: modules in running nodes.
  bool module(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
  // kvs_commands.cpp: the instance's KVS.
  bool kvs(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
  /// The connected node's instance service `type` (provider id 1); a one-line error
  /// naming `command` and the node if it has none.
  caf::expected<caf::actor> service_provider(const char* type, const char* command,
                                             std::ostream& err);
  // offload_commands.cpp: the connected node's offload instance.
  caf::expected<caf::actor> offload_instance(std::ostream& err);
  bool offload_tree(const std::vector<std::string>& args, std::ostream& out,
                    std::ostream& err);
  bool offload_queue(const std::vector<std::string>& args, std::ostream& out,
                     std::ostream& err);
  bool help(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
  const command* find(const std::string& name) const;
  caf::expected<caf::actor> resolve(const std::string& target, std::ostream& err);

  node& client_;
  options opts_;
  std::string address_;
  caf::actor service_;
  std::optional<uint16_t> group_provider_id_;
  std::optional<group::group_view> view_;
  std::vector<command> commands_;
  uint64_t kvs_seen_ = 0; // the highest KVS version this session saw (monotonic reads)
};

} // namespace troupe::shell
