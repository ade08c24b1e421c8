// Child instances as the ranks of one `mpirun` job (placement "mpi"): the parent starts
// `mpirun -np N actorhost -c CONFIG`; each rank takes its place from its MPI rank
// (path PARENT/RANK) and finds its parent by address, as a process child does, then
// says hello. The supervisor supervises the job as one child, a local actor that
// stands for all its ranks: a rank that dies ends the job (mpirun ends the others),
// and the job is restarted whole.
#include "actors/offload/detail/instance_support.hpp"

#include <atomic>
#include <csignal>
#include <cstdlib>

#include <unistd.h>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>
#include <nlohmann/json.hpp>

#include "base/process_keeper.hpp"
#include "base/error.hpp"
#include "base/files.hpp"
#include "base/log.hpp"

namespace troupe::offload::detail {

namespace {

using ready_atom = caf::atom_constant<caf::atom("mpiready")>;

// How long mpirun gets to pass a SIGTERM on to its ranks before it is killed.
constexpr auto mpirun_grace = std::chrono::milliseconds{3000};

struct mpi_job_state {
  std::string prefix;   // the parent's path: ranks are PREFIX/RANK
  std::string token;    // this job's: hellos of an earlier job's ranks carry another
  unsigned ranks = 0;
  std::map<std::string, caf::actor> joined; // by path
  std::vector<caf::response_promise> waiting;
  bool stopping = false;
  caf::error stop_reason;
  static inline const char* name = "troupe.offload.mpi_job";
};

using mpi_job_actor = caf::stateful_actor<mpi_job_state>;

// Ends the job: those waiting for its ranks are told, then it quits.
void end_job(mpi_job_actor* self, const caf::error& reason) {
  for (auto& p : std::exchange(self->state.waiting, {}))
    p.deliver(reason ? reason : make_error(errc::unreachable, "the MPI job ended"));
  self->quit(reason);
}

caf::behavior mpi_job(mpi_job_actor* self, std::string prefix, std::string token,
                      unsigned ranks, std::function<void()> on_end) {
  self->state.prefix = std::move(prefix);
  self->state.token = std::move(token);
  self->state.ranks = ranks;
  self->attach_functor([on_end](const caf::error&) { on_end(); });
  self->set_down_handler([self](caf::down_msg& down) {
    auto& st = self->state;
    for (auto it = st.joined.begin(); it != st.joined.end(); ++it)
      if (it->second.address() == down.source) {
        st.joined.erase(it);
        break;
      }
    if (st.stopping) {
      if (st.joined.empty())
        end_job(self, st.stop_reason);
      return;
    }
    // One rank gone ends the job: its supervisor starts it again, whole.
    end_job(self, down.reason ? down.reason
                              : make_error(errc::unreachable, "a rank of the MPI job under "
                                                                + st.prefix + " ended"));
  });
  self->set_exit_handler([self](caf::exit_msg& msg) {
    auto& st = self->state;
    if (st.stopping)
      return;
    st.stopping = true;
    st.stop_reason = msg.reason;
    if (st.joined.empty()) {
      end_job(self, msg.reason);
      return;
    }
    for (auto& [path, rank] : st.joined)
      self->send_exit(rank, msg.reason);
  });
  return {
    [self](hello_atom, const std::string& path, const std::string& token,
           const caf::actor& rank) {
      auto& st = self->state;
      if (token != st.token || st.joined.count(path) != 0 || st.stopping)
        return; // an earlier job's rank, or a second hello
      st.joined[path] = rank;
      self->monitor(rank);
      if (st.joined.size() == st.ranks)
        for (auto& p : std::exchange(st.waiting, {}))
          p.deliver(true);
    },
    [self](fail_rank_atom, const caf::error& why) {
      // The parent took one of the ranks for dead (silent): the job ends, whole.
      end_job(self, why);
    },
    [self](ready_atom) -> caf::result<bool> {
      auto& st = self->state;
      if (st.joined.size() == st.ranks)
        return true;
      auto p = self->make_response_promise<bool>();
      st.waiting.push_back(p);
      return p;
    },
  };
}

caf::expected<caf::actor> start_mpi_job(caf::actor_system& sys,
                                        const std::shared_ptr<environment>& env,
                                        const caf::actor& parent, const instance_spec& tmpl,
                                        unsigned ranks,
                                        const std::vector<std::string>& mpirun_args,
                                        std::atomic<int>& job_pid) {
  auto& opts = options_of(*env);
  if (int old = job_pid.load(); old > 0 && env_processes(*env).running(old))
    env_processes(*env).terminate(old, mpirun_grace); // an earlier job that lingers
  auto mpirun = find_in_path("mpirun"); // the keeper execs a path: it does not search
  if (!mpirun)
    return make_error(errc::unreachable, "instances under " + tmpl.path
                                           + ": placement \"mpi\" needs mpirun on the PATH");
  static std::atomic<uint64_t> jobs_started{0};
  auto token = std::to_string(::getpid()) + "." + std::to_string(++jobs_started);
  auto stem = opts.run_dir + "/" + instance_file_stem(tmpl.path) + "-mpi";
  nlohmann::json cfg = child_node_config(*env, tmpl);
  cfg["providers"][0]["config"]["rank_from_env"] = true;
  cfg["providers"][0]["config"]["job"] = token;
  auto pid_slot = std::make_shared<std::atomic<int>>(0);
  auto envp = env;
  auto job = sys.spawn(mpi_job, tmpl.path, token, ranks, [envp, pid_slot] {
    if (int pid = pid_slot->load(); pid > 0)
      env_processes(*envp).terminate(pid, mpirun_grace); // mpirun stops its ranks
  });
  caf::anon_send(parent, expect_job_atom::value, job);
  // The ranks' config goes on their command line: on another host, a file written
  // here would not be there.
  std::vector<std::string> argv{*mpirun, "--oversubscribe", "--bind-to", "none"};
  argv.insert(argv.end(), mpirun_args.begin(), mpirun_args.end());
  for (auto arg : {std::string{"-np"}, std::to_string(ranks), opts.actorhost_path,
                   std::string{"--config-text"}, cfg.dump()})
    argv.push_back(std::move(arg));
  child_spec program;
  program.argv = std::move(argv);
  program.env = {{"TROUPE_PARENT_URI", opts.node_address},
                 {"OMPI_ALLOW_RUN_AS_ROOT", "1"},
                 {"OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"}};
  program.out = child_output::append_to(stem + ".log");
  program.err = child_output::same_as_stdout();
  auto launched = env_processes(*env).launch(std::move(program));
  if (!launched) {
    caf::anon_send_exit(job, caf::exit_reason::kill);
    return make_error(errc::unreachable, "instances under " + tmpl.path
                                           + ": cannot start mpirun: "
                                           + context_text(launched.error()));
  }
  auto pid = launched->pid;
  pid_slot->store(pid);
  job_pid.store(pid);
  // Every rank says hello, or the start fails: at once when mpirun exits early.
  caf::scoped_actor self{sys};
  caf::expected<caf::actor> result = make_error(errc::timeout, "no answer");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{40};
  bool done = false;
  while (!done) {
    self->request(job, std::chrono::milliseconds{200}, ready_atom::value)
      .receive([&](bool) { result = job, done = true; },
               [&](caf::error& err) {
                 if (err == caf::sec::request_timeout
                     && std::chrono::steady_clock::now() < deadline
                     && env_processes(*env).running(pid))
                   return; // ask again
                 auto why = !env_processes(*env).running(pid)
                              ? std::string{"mpirun exited"}
                              : "not every one of the " + std::to_string(ranks)
                                  + " ranks said hello within 40 s (" + describe(err) + ")";
                 result = make_error(errc::unreachable, "instances under " + tmpl.path
                                                          + ": " + why + "; see " + stem
                                                          + ".log");
                 done = true;
               });
  }
  if (!result) {
    caf::anon_send_exit(job, caf::exit_reason::user_shutdown);
    env_processes(*env).terminate(pid, mpirun_grace);
  }
  return result;
}

} // namespace

supervision::child_spec mpi_job_spec(const caf::actor& parent, instance_spec tmpl,
                                     const level& lvl, const std::shared_ptr<environment>& env) {
  unsigned ranks = lvl.num_children;
  supervision::child_spec spec;
  spec.name = tmpl.path + "/0-" + std::to_string(ranks - 1) + " (mpi)";
  spec.blocking_start = true;
  spec.start_timeout = std::chrono::seconds{60};
  spec.shutdown = std::chrono::seconds{10};
  auto job_pid = std::make_shared<std::atomic<int>>(0);
  spec.start = [parent, tmpl, ranks, args = lvl.mpirun_args, env,
                job_pid](caf::actor_system& sys) {
    return start_mpi_job(sys, env, parent, tmpl, ranks, args, *job_pid);
  };
  spec.on_kill = [env, job_pid] {
    if (int pid = job_pid->load(); pid > 0)
      env_processes(*env).terminate(pid, mpirun_grace);
  };
  return spec;
}

} // namespace troupe::offload::detail
