#include "runtime/node.hpp"

#include <atomic>
#include <mutex>
#include <chrono>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/exit_reason.hpp>
#include <caf/io/middleman.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/settings.hpp>
#include <caf/thread_hook.hpp>

#include "base/error.hpp"
#include "base/log.hpp"
#include "runtime/job_types.hpp"
#include "runtime/module.hpp"
#include "runtime/locator.hpp"
#include "runtime/node_service.hpp"
#include "runtime/ops.hpp"
#include "runtime/provider_registry.hpp"
#include "runtime/topology.hpp"
#include "transport/address.hpp"
#include "transport/middleman.hpp"
#include "transport/transport_config.hpp"
#include "transport/rdma.hpp"
#include "transport/scheduler.hpp"
#include "transport/typed_message.hpp"

namespace troupe {

namespace {

constexpr auto provider_stop_grace = std::chrono::seconds(5);

/// Binds each thread CAF starts to the next core of `cores`, round robin. CAF 0.17
/// reports every thread it starts (scheduler workers, its timer, the io middleman's
/// threads) without saying which is which, so all of them are placed.
class placement_hook : public caf::thread_hook {
public:
  placement_hook(std::shared_ptr<const topology> topo,
                 std::shared_ptr<thread_placement> placement, std::vector<unsigned> cores)
    : topo_(std::move(topo)), placement_(std::move(placement)), cores_(std::move(cores)) {
  }

  void init(caf::actor_system&) override {}

  void thread_started() override {
    auto i = next_.fetch_add(1, std::memory_order_relaxed);
    auto core = cores_[i % cores_.size()];
    auto err = topo_->bind_current_thread(core);
    if (err.empty())
      placement_->record(core);
    else
      TROUPE_LOG_WARNING("runtime", "thread placement: " << err);
  }

  void thread_terminates() override {}

private:
  std::shared_ptr<const topology> topo_;
  std::shared_ptr<thread_placement> placement_;
  std::vector<unsigned> cores_;
  std::atomic<size_t> next_{0};
};

} // namespace

// Declaration order is teardown order in reverse: the actor system goes first (it
// waits for every actor), then the registries, and the modules whose code those
// actors ran are unloaded last.
struct node::impl {
  node_config cfg;
  std::shared_ptr<topology> topo;
  std::shared_ptr<thread_placement> placement = std::make_shared<thread_placement>();
  module_set modules;
  std::unique_ptr<metrics_server> metrics; // stopped first: it reads the rest
  std::shared_ptr<provider_registry> providers = provider_registry::make();
  std::unique_ptr<transport::transport_system_config> system_cfg =
    std::make_unique<transport::transport_system_config>();
  std::unique_ptr<caf::actor_system> system;
  std::vector<caf::actor> started; // providers in start order
  caf::actor service;              // the node service, stopped after the providers
  caf::actor locator;              // finds remote actors for actors, without blocking
  ops::op_runtime ops;             // op registry, dispatcher and ops in flight
  job_type_registry job_types;     // C++ job types registered by modules
  unsigned threads = 0;
  mutable std::mutex shutdown_mtx;
  std::function<void()> shutdown_handler; // guarded by shutdown_mtx

  caf::error configure_scheduler();
  caf::error spawn_providers();
  void stop_providers();
};

caf::error node::impl::configure_scheduler() {
  threads = cfg.threads != 0 ? cfg.threads : topo->cores();
  system_cfg->set("scheduler.max-threads", static_cast<size_t>(threads));
  if (cfg.policy == scheduler_policy::progress)
    transport::use_progress_scheduler(*system_cfg);
  else
    system_cfg->set("scheduler.policy", cfg.policy == scheduler_policy::sharing
                                          ? caf::atom("sharing")
                                          : caf::atom("stealing"));
  std::vector<unsigned> cores;
  switch (cfg.pinning) {
    case pinning_mode::none:
      return caf::none;
    case pinning_mode::cores:
      for (const auto& c : topo->core_list())
        cores.push_back(c.index);
      break;
    case pinning_mode::list:
      for (size_t i = 0; i < cfg.pin_cores.size(); ++i) {
        if (cfg.pin_cores[i] >= topo->cores())
          return make_error(errc::invalid_config,
                            cfg.source + ": pinning[" + std::to_string(i)
                              + "]: expected a core index below "
                              + std::to_string(topo->cores()) + " (" + topo->summary()
                              + "), found " + std::to_string(cfg.pin_cores[i]));
        cores.push_back(cfg.pin_cores[i]);
      }
      break;
  }
  system_cfg->add_thread_hook<placement_hook>(topo, placement, std::move(cores));
  return caf::none;
}

caf::error node::impl::spawn_providers() {
  // Throws config_error for unknown dependencies and cycles; parse_node_config has
  // checked that already for configs that came through it.
  std::vector<const provider_config*> order;
  try {
    order = providers_in_start_order(cfg);
  } catch (const config_error& e) {
    return make_error(errc::invalid_config, e.what());
  }
  for (auto spec : order) {
    auto handle = providers->spawn(*system, *spec,
                                   transport::middleman::of(*system).address(), locator,
                                   &job_types);
    if (!handle)
      return handle.error();
    started.push_back(*handle);
    auto& mm = transport::middleman::of(*system);
    mm.publish(spec->name, *handle);
    mm.publish(transport::provider_key(spec->type, spec->provider_id), *handle);
    TROUPE_LOG_INFO("runtime", "started provider " << spec->name << " (" << spec->type
                                                   << ":" << spec->provider_id << ")");
  }
  return caf::none;
}

void node::impl::stop_providers() {
  if (started.empty())
    return;
  caf::scoped_actor self{*system};
  for (auto it = started.rbegin(); it != started.rend(); ++it) {
    self->monitor(*it);
    self->send_exit(*it, caf::exit_reason::user_shutdown);
    bool done = false;
    while (!done) {
      self->receive(
        [&](const caf::down_msg& down) {
          if (down.source == it->address())
            done = true;
        },
        caf::after(provider_stop_grace) >>
          [&] {
            TROUPE_LOG_WARNING("runtime", "a provider did not stop within "
                                            << provider_stop_grace.count() << " s");
            done = true;
          });
    }
  }
  started.clear();
}

node::node(node_config cfg) : impl_(std::make_unique<impl>()) {
  impl_->cfg = std::move(cfg);
  impl_->topo = topology::discover();
  // CAF's io middleman only gives the node its node id; Troupe's own middleman in the
  // network_manager slot carries all traffic.
  impl_->system_cfg->load<caf::io::middleman>();
  impl_->system_cfg->load<transport::middleman>();
  // Types that cross nodes must be registered under the same name everywhere.
  impl_->system_cfg->add_message_type<typed_message>("troupe::typed_message");
  ops::register_op_types(*impl_->system_cfg);
  impl_->system_cfg->add_message_type<stats_map>("troupe::stats_map");
  impl_->system_cfg->add_message_type<region_descriptor>("troupe::region_descriptor");
  impl_->system_cfg->add_message_type<rdma_done>("troupe::rdma_done");
  const auto& t = impl_->cfg.transport;
  auto& transport = impl_->system_cfg->transport;
  transport.host = t.address;
  transport.port = t.port;
  transport.busy_poll = t.busy_poll;
  transport.keepalive = std::chrono::milliseconds{t.keepalive_ms};
  transport.max_message_bytes = static_cast<size_t>(t.max_message_bytes);
  transport.spin = std::chrono::microseconds{t.spin_us};
  transport.batch_sends = t.batch_sends;
}

node::~node() {
  stop();
}

const node_config& node::config() const {
  return impl_->cfg;
}

provider_registry& node::providers() {
  return *impl_->providers;
}

const topology& node::machine() const {
  return *impl_->topo;
}

const thread_placement& node::placement() const {
  return *impl_->placement;
}

caf::actor_system_config& node::system_config() {
  return *impl_->system_cfg;
}

std::string node::metrics_url() const {
  return impl_->metrics ? impl_->metrics->url() : std::string{};
}

std::vector<module_info> node::modules() const {
  return impl_->modules.list();
}

caf::expected<module_info> node::load_module(const std::string& path) {
  if (!impl_->system)
    return make_error(errc::refused, "load_module: the node is not running (list the "
                                     "library under `libraries` instead)");
  return impl_->modules.load_running(path, *impl_->system_cfg, *impl_->providers,
                                     impl_->ops.registry(), impl_->job_types);
}

caf::expected<module_info> node::removable_module(const std::string& name) const {
  const auto* m = impl_->modules.find(name);
  if (m == nullptr)
    return make_error(errc::not_found, "no module '" + name + "' is loaded on this node");
  if (auto err = impl_->modules.removable(*m))
    return err;
  return *m;
}

caf::error node::unload_module(const std::string& name) {
  return impl_->modules.unload(name, *impl_->providers, impl_->job_types);
}

caf::error node::start() {
  if (impl_->system)
    return make_error(errc::invalid_config, "node already started");
  for (size_t i = 0; i < impl_->cfg.libraries.size(); ++i) {
    auto err = impl_->modules.load(impl_->cfg.libraries[i], *impl_->system_cfg,
                                   *impl_->providers, impl_->ops.registry(),
                                   impl_->job_types);
    if (!err.empty())
      return make_error(errc::module_load_failed, impl_->cfg.source + ": libraries["
                                                    + std::to_string(i) + "]: " + err);
  }
  if (auto err = impl_->configure_scheduler())
    return err;
  impl_->system = std::make_unique<caf::actor_system>(*impl_->system_cfg);
  if (auto err = transport::middleman::of(*impl_->system).start_error()) {
    stop();
    return make_error(errc::unreachable,
                      impl_->cfg.source + ": transport: " + context_text(err));
  }
  impl_->service = spawn_node_service(*this);
  transport::middleman::of(*impl_->system).publish(node_service_key, impl_->service);
  impl_->locator = spawn_locator(*impl_->system, transport(), lookup_deadline);
  impl_->ops.start(*this);
  if (auto err = impl_->spawn_providers()) {
    stop();
    return err;
  }
  if (impl_->cfg.metrics.enabled) {
    auto server = metrics_server::start(impl_->cfg.metrics, [this] { return render_metrics(*this); });
    if (!server) {
      stop();
      return make_error(errc::unreachable,
                        impl_->cfg.source + ": " + context_text(server.error()));
    }
    impl_->metrics = std::move(*server);
  }
  return caf::none;
}

void node::stop() {
  if (!impl_->system)
    return;
  impl_->metrics.reset(); // its threads read the node: they end first
  impl_->stop_providers();
  impl_->ops.stop();
  if (impl_->service) {
    caf::anon_send_exit(impl_->service, caf::exit_reason::user_shutdown);
    impl_->service = nullptr;
  }
  if (impl_->locator) {
    caf::anon_send_exit(impl_->locator, caf::exit_reason::user_shutdown);
    impl_->locator = nullptr;
  }
  impl_->system.reset();
}

bool node::running() const {
  return impl_->system != nullptr;
}

caf::actor_system& node::system() {
  return *impl_->system;
}

std::string node::address() const {
  if (impl_->system)
    return transport::middleman::of(*impl_->system).address();
  const auto& t = impl_->cfg.transport;
  return transport::node_address{t.protocol, t.address, t.port}.to_uri();
}

job_type_registry& node::job_types() {
  return impl_->job_types;
}

ops::op_runtime& node::ops() {
  return impl_->ops;
}

caf::actor node::locator() const {
  return impl_->locator;
}

transport::middleman& node::transport() {
  return transport::middleman::of(*impl_->system);
}

caf::expected<caf::actor> node::remote_node(const std::string& uri,
                                            std::chrono::milliseconds timeout) {
  return transport().remote_actor(uri, node_service_key, timeout);
}

caf::expected<caf::actor> node::remote_provider(const std::string& uri,
                                                const std::string& type,
                                                uint16_t provider_id,
                                                std::chrono::milliseconds timeout) {
  return transport().remote_actor(uri, transport::provider_key(type, provider_id),
                                  timeout);
}

void node::on_shutdown_request(std::function<void()> handler) {
  std::lock_guard<std::mutex> guard{impl_->shutdown_mtx};
  impl_->shutdown_handler = std::move(handler);
}

bool node::request_shutdown() {
  std::function<void()> handler;
  {
    std::lock_guard<std::mutex> guard{impl_->shutdown_mtx};
    handler = impl_->shutdown_handler;
  }
  if (!handler)
    return false;
  handler();
  return true;
}

bool node::has_shutdown_handler() const {
  std::lock_guard<std::mutex> guard{impl_->shutdown_mtx};
  return static_cast<bool>(impl_->shutdown_handler);
}

unsigned node::scheduler_threads() const {
  return impl_->threads;
}

} // namespace troupe
