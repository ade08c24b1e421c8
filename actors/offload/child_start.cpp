// Starting child instances: in this process, or as actorhost processes that run the
// "offload" provider; the provider type itself; the message types.
#include "actors/offload/detail/instance_support.hpp"

#include <csignal>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include <unistd.h>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "base/process_keeper.hpp"
#include "base/error.hpp"
#include "base/files.hpp"
#include "runtime/json_reader.hpp"
#include "runtime/locator.hpp"
#include "runtime/provider_registry.hpp"
#include "transport/address.hpp"

namespace troupe::offload {

class environment {
public:
  explicit environment(environment_options opts) : options(std::move(opts)) {}
  environment_options options;
  process_keeper processes; // last: its destructor stops the children still running
};

std::shared_ptr<environment> make_environment(environment_options options) {
  if (options.actorhost_path.empty()) {
    char self_path[4096];
    auto n = ::readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
    std::string dir = n > 0 ? std::string(self_path, static_cast<size_t>(n)) : std::string{};
    options.actorhost_path = dir.substr(0, dir.rfind('/') + 1) + "actorhost";
  }
  if (options.run_dir.empty())
    options.run_dir = "/tmp";
  // A rank that mpirun started on another host may not find its parent's run directory
  // there: it makes it (what it cannot make shows when a child's config is written).
  std::error_code ignored;
  std::filesystem::create_directories(options.run_dir, ignored);
  return std::make_shared<environment>(std::move(options));
}

namespace detail {

caf::actor locator_of(const environment& env) {
  return env.options.locator;
}

const std::string& address_of(const environment& env) {
  return env.options.node_address;
}

job_type_registry* job_types_of(const environment& env) {
  return env.options.job_types;
}

const environment_options& options_of(const environment& env) {
  return env.options;
}

process_keeper& env_processes(environment& env) {
  return env.processes;
}

std::string instance_file_stem(const std::string& path) {
  std::string stem = "instance-";
  for (char c : path)
    stem += c == '/' ? '-' : c;
  return stem;
}

namespace {

nlohmann::json levels_json(const std::vector<level>& levels) {
  auto out = nlohmann::json::array();
  for (auto& l : levels) {
    nlohmann::json entry = {{"num_children", l.num_children},
                            {"cores_per_child", l.cores_per_child},
                            {"placement", to_string(l.where)}};
    if (!l.mpirun_args.empty())
      entry["mpirun_args"] = l.mpirun_args;
    out.push_back(std::move(entry));
  }
  return out;
}

} // namespace

nlohmann::json child_node_config(const environment& env, const instance_spec& child) {
  const auto& o = env.options;
  // The child listens where its parent can reach it: on loopback beside a parent on
  // loopback, on its host's cluster address when mpirun put it on another host.
  auto parent = transport::parse_node_address(o.node_address);
  std::string listen = parent ? "towards:" + parent->host : std::string{"127.0.0.1"};
  return {{"transport", {{"address", listen}, {"port", 0}}},
          {"threads", 1},
          {"libraries", o.libraries},
          {"providers",
           {{{"type", "offload"},
             {"name", "offload"},
             {"provider_id", offload_provider_id},
             {"config",
              {{"parent", o.node_address},
               {"path", child.path},
               {"cores", child.cores},
               {"first_cpu", child.first_cpu},
               {"max_restarts", child.max_restarts},
               {"silence_ms", child.silence_ms},
               {"levels", levels_json(child.below)},
               {"run_dir", o.run_dir},
               {"actorhost", o.actorhost_path},
               {"libraries", o.libraries}}}}}}};
}

namespace {

// Launches an actorhost for `child`, waits for its address, finds its instance.
caf::expected<caf::actor> start_process(caf::actor_system& sys,
                                        const std::shared_ptr<environment>& env,
                                        const instance_spec& child,
                                        std::atomic<int>& last_pid) {
  if (env->options.node_address.empty())
    return make_error(errc::refused, "instance " + child.path
                                       + " needs a process, but its parent's node has "
                                         "no transport address");
  // A previous incarnation whose actor died but whose process lingers goes first.
  if (last_pid > 0 && env->processes.running(last_pid))
    env->processes.signal(last_pid, SIGKILL);
  auto stem = env->options.run_dir + "/" + instance_file_stem(child.path);
  auto cfg = child_node_config(*env, child);
  auto cfg_path = stem + ".json";
  auto addr_path = stem + ".address";
  if (auto err = write_file_atomically(cfg_path, cfg.dump(2) + "\n"))
    return make_error(errc::unreachable, "instance " + child.path + ": " + context_text(err));
  ::unlink(addr_path.c_str());
  child_spec program;
  program.argv = {env->options.actorhost_path, "-c", cfg_path, "--address-file", addr_path};
  program.env = {{"TROUPE_PARENT_URI", env->options.node_address}};
  program.out = child_output::append_to(stem + ".log");
  program.err = child_output::same_as_stdout();
  auto launched = env->processes.launch(std::move(program));
  if (!launched)
    return make_error(errc::unreachable, "instance " + child.path + ": cannot start "
                                           + env->options.actorhost_path + ": "
                                           + context_text(launched.error()));
  auto pid = launched->pid;
  last_pid = pid;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{20};
  std::string uri;
  // The address file is written atomically: once it is there, it is whole.
  for (;;) {
    if (auto text = read_file(addr_path); text && !text->empty()) {
      uri = std::move(*text);
      break;
    }
    if (!env->processes.running(pid))
      return make_error(errc::unreachable, "instance " + child.path
                                             + ": its actorhost exited before it was "
                                               "ready; see "
                                             + stem + ".log");
    if (std::chrono::steady_clock::now() > deadline) {
      env->processes.signal(pid, SIGKILL);
      return make_error(errc::timeout, "instance " + child.path
                                         + ": its actorhost was not ready within 20 s; see "
                                         + stem + ".log");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
  uri.erase(uri.find_last_not_of("\n") + 1);
  caf::scoped_actor self{sys};
  caf::expected<caf::actor> found = make_error(errc::timeout, "no answer from the locator");
  self
    ->request(env->options.locator, std::chrono::seconds{15}, locate_atom::value, uri,
              std::string{"offload"}, offload_provider_id)
    .receive([&](caf::actor& handle) { found = std::move(handle); },
             [&](caf::error& err) { found = std::move(err); });
  if (!found)
    env->processes.signal(pid, SIGKILL);
  return found;
}

} // namespace

supervision::child_spec child_instance_spec(const caf::actor& parent, instance_spec child,
                                            placement where,
                                            const std::shared_ptr<environment>& env) {
  supervision::child_spec spec;
  spec.name = child.path;
  spec.restart = supervision::restart_policy::permanent;
  if (where == placement::in_process) {
    spec.start = [parent, child, env](caf::actor_system& sys) -> caf::expected<caf::actor> {
      return spawn_instance(sys, child, parent, {}, env, false);
    };
    return spec;
  }
  spec.blocking_start = true;
  spec.start_timeout = std::chrono::seconds{40};
  spec.shutdown = std::chrono::seconds{5};
  auto last_pid = std::make_shared<std::atomic<int>>(0);
  spec.start = [child, env, last_pid](caf::actor_system& sys) {
    return start_process(sys, env, child, *last_pid);
  };
  // Killing the actor of an instance whose process answers nothing (stopped, hung)
  // does nothing: its process goes too.
  spec.on_kill = [env, last_pid] {
    if (int pid = last_pid->load(); pid > 0)
      env->processes.signal(pid, SIGKILL);
  };
  return spec;
}

} // namespace detail

namespace {

caf::expected<caf::actor> make_offload_provider(const provider_context& ctx) {
  try {
    const auto& cfg = *ctx.spec.config;
    json_reader r{ctx.spec.origin + ".config", "."};
    r.require_object("", cfg);
    r.reject_unknown_keys("", cfg,
                          {"parent", "path", "cores", "first_cpu", "max_restarts", "levels",
                           "run_dir", "actorhost", "libraries", "silence_ms", "rank_from_env",
                           "job"});
    instance_spec spec;
    if (auto it = cfg.find("parent"); it != cfg.end())
      spec.parent_uri = r.read_string("parent", *it);
    else if (auto* env_uri = std::getenv("TROUPE_PARENT_URI"))
      spec.parent_uri = env_uri;
    if (spec.parent_uri.empty())
      r.fail("parent", "missing: the parent instance's address (or $TROUPE_PARENT_URI)");
    if (auto it = cfg.find("path"); it != cfg.end())
      spec.path = r.read_string("path", *it);
    if (auto it = cfg.find("cores"); it != cfg.end())
      spec.cores = static_cast<unsigned>(r.read_integer("cores", *it, 1, 1 << 20));
    if (auto it = cfg.find("first_cpu"); it != cfg.end())
      spec.first_cpu = static_cast<unsigned>(r.read_integer("first_cpu", *it, 0, 1 << 20));
    // A rank of an MPI job (placement "mpi"): its place comes from its MPI rank.
    if (auto it = cfg.find("rank_from_env"); it != cfg.end() && it->is_boolean() && it->get<bool>()) {
      const char* rank = nullptr;
      for (auto var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"})
        if ((rank = std::getenv(var)) != nullptr)
          break;
      if (rank == nullptr)
        r.fail("rank_from_env", "no MPI rank in the environment (OMPI_COMM_WORLD_RANK, "
                                "PMIX_RANK, PMI_RANK): start it with mpirun");
      auto n = static_cast<unsigned>(std::strtoul(rank, nullptr, 10));
      spec.path += "/" + std::to_string(n);
      spec.first_cpu += n * spec.cores;
    }
    if (auto it = cfg.find("job"); it != cfg.end())
      spec.job_token = r.read_string("job", *it);
    if (auto it = cfg.find("silence_ms"); it != cfg.end()) {
      spec.silence_ms = static_cast<unsigned>(r.read_integer("silence_ms", *it, 0, 3600000));
      if (spec.silence_ms != 0 && spec.silence_ms < 100)
        r.fail("silence_ms", "expected 0 (off) or at least 100 ms, found "
                               + std::to_string(spec.silence_ms));
    }
    if (auto it = cfg.find("max_restarts"); it != cfg.end())
      spec.max_restarts = static_cast<unsigned>(r.read_integer("max_restarts", *it, 0, 1000));
    if (auto it = cfg.find("levels"); it != cfg.end()) {
      if (!it->is_array())
        r.expected("levels", "an array of levels", *it);
      for (size_t i = 0; i < it->size(); ++i)
        spec.below.push_back(read_level(r, json_reader::index("levels", i), (*it)[i],
                                        placement::in_process, 1 << 20));
    }
    std::string run_dir = "/tmp", actorhost;
    if (auto it = cfg.find("run_dir"); it != cfg.end())
      run_dir = r.read_string("run_dir", *it);
    if (auto it = cfg.find("actorhost"); it != cfg.end())
      actorhost = r.read_string("actorhost", *it);
    // What this instance's child processes load (this node loaded them already, from
    // its own "libraries").
    std::vector<std::string> libraries;
    if (auto it = cfg.find("libraries"); it != cfg.end()) {
      if (!it->is_array())
        r.expected("libraries", "an array of library paths", *it);
      for (size_t i = 0; i < it->size(); ++i)
        libraries.push_back(r.read_string(json_reader::index("libraries", i), (*it)[i]));
    }
    environment_options eo;
    eo.locator = ctx.locator;
    eo.node_address = ctx.node_address;
    eo.actorhost_path = actorhost;
    eo.run_dir = run_dir;
    eo.libraries = std::move(libraries);
    eo.job_types = ctx.job_types;
    auto env = make_environment(std::move(eo));
    return spawn_instance(ctx.system, std::move(spec), {}, {}, std::move(env), true);
  } catch (const config_error& e) {
    return make_error(errc::invalid_config, e.what());
  }
}

} // namespace

void register_offload_provider(provider_registry& registry) {
  registry.add_type("offload", make_offload_provider);
}

void register_offload_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<job>("troupe::offload::job");
  cfg.add_message_type<std::vector<job>>("std::vector<troupe::offload::job>");
  cfg.add_message_type<job_result>("troupe::offload::job_result");
  cfg.add_message_type<std::vector<job_result>>("std::vector<troupe::offload::job_result>");
  cfg.add_message_type<job_batch>("troupe::offload::job_batch");
  cfg.add_message_type<instance_status>("troupe::offload::instance_status");
  cfg.add_message_type<std::vector<uint64_t>>("std::vector<uint64_t>");
  cfg.add_message_type<child_entry>("troupe::offload::child_entry");
  cfg.add_message_type<std::vector<child_entry>>("std::vector<troupe::offload::child_entry>");
  cfg.add_message_type<instance_tree>("troupe::offload::instance_tree");
}

} // namespace troupe::offload
