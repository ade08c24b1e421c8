#include "actors/offload/run.hpp"

#include <caf/actor_system.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/system_messages.hpp>

#include "base/error.hpp"
#include "runtime/node.hpp"
#include "transport/middleman.hpp"

namespace troupe::offload {

run_outcome run_tree(node& root_node, std::vector<job> jobs, const tree_options& options) {
  using namespace std::chrono_literals;
  run_outcome out;
  instance_spec root_spec;
  root_spec.path = "0";
  root_spec.silence_ms = options.silence_ms;
  root_spec.below = options.levels;
  root_spec.cores =
    options.levels.empty() ? 1u
                           : options.levels[0].num_children * options.levels[0].cores_per_child;
  environment_options eo;
  eo.locator = root_node.locator();
  eo.node_address = root_node.address();
  eo.actorhost_path = options.actorhost_path;
  eo.run_dir = options.run_dir;
  eo.libraries = root_node.config().libraries;
  eo.job_types = &root_node.job_types();
  auto env = make_environment(std::move(eo));
  uint64_t total = jobs.size();
  out.results.reserve(total);
  auto started = std::chrono::steady_clock::now();
  out.start_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  caf::scoped_actor self{root_node.system()};
  auto root = spawn_instance(root_node.system(), root_spec, {}, self, env);
  transport::middleman::of(root_node.system())
    .publish(transport::provider_key("offload", offload_provider_id), root);
  self->monitor(root);
  // Submitted in slices: one message of a million jobs would be one large allocation.
  constexpr size_t slice = 10000;
  for (size_t i = 0; i < jobs.size(); i += slice) {
    std::vector<job> part(jobs.begin() + static_cast<long>(i),
                          jobs.begin() + static_cast<long>(std::min(jobs.size(), i + slice)));
    self->send(root, submit_atom::value, std::move(part));
  }
  self->send(root, close_atom::value);
  jobs.clear();
  auto deadline = started + options.timeout;
  auto last_progress = started;
  std::vector<bool> seen(total + 1, false);
  bool root_down = false;
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  };
  while (out.results.size() < total && out.failure.empty()) {
    self->receive(
      [&](done_atom, std::vector<job_result>& batch) {
        for (auto& r : batch) {
          if (r.id == 0 || r.id > total)
            continue;
          if (seen[r.id]) {
            ++out.duplicates;
            continue;
          }
          seen[r.id] = true;
          out.results.push_back(std::move(r));
        }
      },
      [&](caf::down_msg& down) {
        root_down = true;
        out.failure = "the root instance stopped: " + describe(down.reason);
      },
      caf::after(std::chrono::milliseconds{50}) >> [] {});
    auto now = std::chrono::steady_clock::now();
    if (options.during)
      options.during(out.results.size());
    if (options.progress && now - last_progress >= options.progress_every) {
      last_progress = now;
      options.progress(out.results.size(), total, seconds());
    }
    if (now > deadline)
      out.failure = "timed out after " + std::to_string(options.timeout.count()) + " s with "
                    + std::to_string(total - out.results.size()) + " jobs not completed";
  }
  out.elapsed_s = seconds();
  if (options.progress)
    options.progress(out.results.size(), total, out.elapsed_s);
  if (!root_down) {
    self->request(root, 5s, status_atom::value)
      .receive([&](instance_status& s) { out.root = s; }, [](caf::error&) {});
    // Stops the tree: each supervisor stops its children in reverse order first.
    self->send_exit(root, caf::exit_reason::user_shutdown);
    self->receive([](caf::down_msg&) {}, caf::after(15s) >> [] {});
  }
  transport::middleman::of(root_node.system())
    .unpublish(transport::provider_key("offload", offload_provider_id));
  return out;
}

} // namespace troupe::offload
