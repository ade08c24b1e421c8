#include "apps/actorhost/launcher.hpp"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>
#include <unistd.h>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "base/files.hpp"
#include "base/process_keeper.hpp"
#include "runtime/config.hpp"

namespace troupe::launcher {

namespace {

using nlohmann::json;
using clock_type = std::chrono::steady_clock;

struct child {
  pid_t pid = -1;
  std::string config;
  std::string address_file;
  std::string address;
  bool running = false;
};

/// Adds the instance services (actors/overlay/, events/, barrier/, logs/, heartbeat/,
/// kvs/) on the group provider `group_name` to a node config, except those the config
/// has already (an overlay with its own fanout, say). The KVS root keeps its store at
/// `kvs_store` ("": in memory only).
void add_instance_services(json& cfg, const std::string& group_name,
                           const std::string& kvs_store) {
  auto find_type = [&](const std::string& type) -> const json* {
    for (const auto& p : cfg["providers"])
      if (p.value("type", "") == type)
        return &p;
    return nullptr;
  };
  // Each service named after its type, id 1, on the group, the overlay (the config's
  // own if it has one) or both, as it needs.
  auto overlay_name = [&] {
    auto o = find_type("overlay");
    return o != nullptr ? o->value("name", "overlay") : std::string{"overlay"};
  }();
  struct service {
    const char* type;
    bool on_group;
    bool on_overlay;
  };
  for (auto [type, on_group, on_overlay] :
       {service{"overlay", true, false}, service{"barrier", true, false},
        service{"logs", true, true}, service{"heartbeat", true, true},
        service{"events", false, true}, service{"kvs", true, true}}) {
    if (find_type(type) != nullptr)
      continue;
    json deps = json::object();
    if (on_group)
      deps["group"] = group_name;
    if (on_overlay)
      deps["overlay"] = overlay_name;
    json config = json::object();
    if (std::string{type} == "kvs" && !kvs_store.empty())
      config["store"] = kvs_store;
    cfg["providers"].push_back({{"type", type},
                                {"name", type},
                                {"provider_id", 1},
                                {"dependencies", deps},
                                {"config", config}});
  }
}

/// The node config of node `rank`: the user's config with an ephemeral port and the
/// group provider set to form (rank 0) or join (the others) a centralized group.
json node_config_for(json cfg, unsigned rank, const std::string& view_file,
                     const std::string& leader_address, const std::string& kvs_store) {
  if (!cfg.contains("transport"))
    cfg["transport"] = json::object();
  cfg["transport"]["port"] = 0;
  if (!cfg.contains("providers"))
    cfg["providers"] = json::array();
  json* group = nullptr;
  for (auto& p : cfg["providers"])
    if (p.value("type", "") == "group") {
      group = &p;
      break;
    }
  if (group == nullptr) {
    cfg["providers"].push_back({{"type", "group"},
                                {"name", "group"},
                                {"provider_id", 1},
                                {"config", json::object()}});
    group = &cfg["providers"].back();
  }
  auto& gc = (*group)["config"];
  if (!gc.is_object())
    gc = json::object();
  json backend = {{"type", "centralized"}};
  if (gc.contains("group") && gc["group"].value("type", "") == "centralized"
      && gc["group"].contains("config"))
    backend["config"] = gc["group"]["config"];
  gc["group"] = backend;
  gc["file"] = view_file;
  gc.erase("view");
  if (rank == 0) {
    gc["bootstrap"] = "self";
    gc.erase("join_address");
  } else {
    gc["bootstrap"] = "join";
    gc["join_address"] = leader_address;
  }
  // (Last: adding to the providers moves them, and `group` with them.)
  auto group_name = group->value("name", "group");
  add_instance_services(cfg, group_name, kvs_store);
  return cfg;
}

/// Starts node `c` as this program again (/proc/self/exe: the same actorhost).
caf::expected<started_child> start_node(process_keeper& keeper, const child& c,
                                        const std::string& verbosity) {
  child_spec node;
  node.program = "/proc/self/exe";
  node.argv = {"actorhost", "-c", c.config, "--address-file", c.address_file};
  if (!verbosity.empty()) {
    node.argv.push_back("-v");
    node.argv.push_back(verbosity);
  }
  return keeper.launch(std::move(node)); // dies with the launcher: SIGTERM
}

/// Notes (and says) which nodes have ended. Returns how many still run.
size_t reap(process_keeper& keeper, std::vector<child>& nodes) {
  size_t alive = 0;
  for (size_t i = 0; i < nodes.size(); ++i) {
    auto& n = nodes[i];
    if (!n.running)
      continue;
    if (auto how = keeper.wait_exit(n.pid, std::chrono::milliseconds{0})) {
      n.running = false;
      std::cerr << "actorhost: node " << i << " (pid " << n.pid << ") " << how->describe()
                << "\n";
    } else {
      ++alive;
    }
  }
  return alive;
}

/// SIGTERM to every node still running, SIGKILL to those still there after `grace`.
void stop_all(process_keeper& keeper, std::vector<child>& nodes,
              std::chrono::seconds grace) {
  for (int pid : keeper.stop_all(grace))
    std::cerr << "actorhost: node pid " << pid << " did not stop; killed it\n";
  for (auto& n : nodes)
    n.running = false;
}

/// Waits until node `c` wrote its address file; false if it ended or took too long.
bool wait_ready(process_keeper& keeper, std::vector<child>& nodes, child& c,
                std::chrono::seconds limit) {
  auto deadline = clock_type::now() + limit;
  while (clock_type::now() < deadline) {
    std::ifstream in{c.address_file};
    if (in && std::getline(in, c.address) && !c.address.empty())
      return true;
    reap(keeper, nodes);
    if (!c.running)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  }
  return false;
}

} // namespace

int run_instance(const instance_options& options) {
  // The config must be good before anything starts (errors name file and key).
  auto text = read_file(options.config_path);
  if (!text) {
    std::cerr << "actorhost: " << context_text(text.error()) << "\n";
    return 2;
  }
  try {
    parse_node_config(*text, options.config_path);
  } catch (const config_error& e) {
    std::cerr << "actorhost: bad config: " << e.what() << "\n";
    return 2;
  }
  // Parsed as the node config parser does (it allows // comments).
  auto cfg = json::parse(*text, nullptr, true, /*ignore_comments=*/true);
  namespace fs = std::filesystem;
  bool own_dir = options.dir.empty();
  std::string dir = options.dir;
  if (own_dir) {
    std::string pattern = (fs::temp_directory_path() / "troupe-instance-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::cerr << "actorhost: cannot make a directory for the instance: "
                << std::strerror(errno) << "\n";
      return 1;
    }
    dir = pattern;
  } else {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) {
      std::cerr << "actorhost: --instance-dir " << dir << ": " << ec.message() << "\n";
      return 2;
    }
  }
  dir = fs::absolute(dir).string();
  auto view_file = dir + "/group.json";

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGCHLD); // a node ended: look at once
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  process_keeper keeper;
  std::vector<child> nodes(options.size);
  auto launch = [&](unsigned rank, const std::string& leader_address) {
    auto& c = nodes[rank];
    c.config = dir + "/node" + std::to_string(rank) + ".json";
    c.address_file = dir + "/node" + std::to_string(rank) + ".address";
    ::unlink(c.address_file.c_str());
    auto err = write_file_atomically(
      c.config, node_config_for(cfg, rank, view_file, leader_address, dir + "/kvs.sqlite").dump(2) + "\n");
    if (err) {
      std::cerr << "actorhost: " << context_text(err) << "\n";
      return false;
    }
    auto started = start_node(keeper, c, options.verbosity);
    if (!started) {
      std::cerr << "actorhost: " << context_text(started.error()) << "\n";
      return false;
    }
    c.pid = started->pid;
    c.running = true;
    return true;
  };
  auto give_up = [&](const std::string& why) {
    std::cerr << "actorhost: the instance did not start: " << why << "\n";
    stop_all(keeper, nodes, std::chrono::seconds{10});
    if (own_dir)
      fs::remove_all(dir);
    return 1;
  };
  constexpr std::chrono::seconds start_limit{60};
  if (!launch(0, {}) || !wait_ready(keeper, nodes, nodes[0], start_limit))
    return give_up("node 0 did not come up");
  // The others join at the same moment: the leader takes concurrent joins.
  for (unsigned rank = 1; rank < options.size; ++rank)
    if (!launch(rank, nodes[0].address))
      return give_up("cannot start node " + std::to_string(rank));
  for (unsigned rank = 1; rank < options.size; ++rank)
    if (!wait_ready(keeper, nodes, nodes[rank], start_limit))
      return give_up("node " + std::to_string(rank) + " did not come up");
  std::cout << "actorhost instance ready: size=" << options.size << " view=" << view_file
            << " dir=" << dir << "\n";
  for (unsigned rank = 0; rank < options.size; ++rank)
    std::cout << "  node " << rank << ": " << nodes[rank].address << " pid "
              << nodes[rank].pid << "\n";
  std::cout << "attach with: actorsh -f " << view_file << "\n"
            << "stop with Ctrl-C (or SIGTERM to pid " << ::getpid() << ")" << std::endl;

  int exit_code = 0;
  // The keeper reaps the nodes, so a SIGCHLD may come before their end can be read:
  // the wait also ends every 200 ms to look again.
  const timespec look_again{0, 200'000'000};
  for (;;) {
    int signal_number = sigtimedwait(&signals, nullptr, &look_again);
    if (signal_number < 0 || signal_number == SIGCHLD) {
      if (reap(keeper, nodes) == 0) {
        std::cerr << "actorhost: every node has ended\n";
        exit_code = 1;
        break;
      }
      continue;
    }
    std::cerr << "actorhost: " << strsignal(signal_number) << ", stopping "
              << options.size << " nodes\n";
    break;
  }
  stop_all(keeper, nodes, std::chrono::seconds{10});
  if (own_dir)
    fs::remove_all(dir);
  std::cerr << "actorhost: instance stopped\n";
  return exit_code;
}

std::string with_services_under_mpi(const std::string& config_text) {
  auto doc = json::parse(config_text, nullptr, /*allow_exceptions=*/false,
                         /*ignore_comments=*/true);
  if (!doc.is_object() || !doc.contains("providers") || !doc["providers"].is_array())
    return config_text; // the node's own parse says what is wrong
  for (const auto& p : doc["providers"]) {
    if (!p.is_object() || p.value("type", "") != "group" || !p.contains("config")
        || !p["config"].is_object())
      continue;
    const auto& bootstrap = p["config"].value("bootstrap", json{});
    bool mpi = bootstrap == "mpi"
               || (bootstrap.is_array()
                   && std::find(bootstrap.begin(), bootstrap.end(), "mpi") != bootstrap.end());
    if (mpi && p.contains("name") && p["name"].is_string()) {
      // No store: an mpirun job has no directory of its own to keep one in.
      add_instance_services(doc, p["name"].get<std::string>(), "");
      return doc.dump();
    }
  }
  return config_text;
}

} // namespace troupe::launcher
