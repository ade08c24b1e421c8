#include "runtime/node_service.hpp"

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <unistd.h>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/node_id.hpp>
#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "base/version.hpp"
#include "runtime/node.hpp"
#include "runtime/ops.hpp"
#include "runtime/provider_registry.hpp"
#include "runtime/topology.hpp"
#include "transport/middleman.hpp"

namespace troupe {

namespace {

using nlohmann::json;

std::map<std::string, uint64_t> flatten(const transport::transport_stats& s) {
  std::map<std::string, uint64_t> out{{"messages_in", s.messages_in},
                                      {"messages_out", s.messages_out},
                                      {"bytes_in", s.bytes_in},
                                      {"bytes_out", s.bytes_out},
                                      {"peers", s.peers},
                                      {"remote_keys", s.remote_keys},
                                      {"typed_out", s.typed_out},
                                      {"typed_in", s.typed_in},
                                      {"caf_out", s.caf_out},
                                      {"caf_in", s.caf_in},
                                      {"op_out", s.op_out},
                                      {"op_in", s.op_in},
                                      {"sends_direct", s.sends_direct},
                                      {"sends_queued", s.sends_queued},
                                      {"sends_deferred", s.sends_deferred},
                                      {"frames_batched", s.frames_batched},
                                      {"batches_sent", s.batches_sent},
                                      {"requests_awaiting", s.requests_awaiting},
                                      {"worker_sleeps", s.worker_sleeps},
                                      {"worker_armed_sleeps", s.worker_armed_sleeps},
                                      {"worker_wakeups", s.worker_wakeups},
                                      {"waiter_handoffs", s.waiter_handoffs},
                                      {"standby_polls", s.standby_polls}};
  for (const auto& [reason, count] : s.drops)
    out["drop:" + reason] = count;
  for (const auto& [name, count] : s.transports)
    out["transport:" + name] = count;
  return out;
}

json module_json(const module_info& m) {
  return {{"path", m.path},
          {"at_start", m.at_start},
          {"provider_types", m.provider_types},
          {"job_types", m.job_types},
          {"op_types", m.op_types},
          {"message_types", m.message_types}};
}

struct node_service_state {
  node* owner = nullptr;
  bool removing = false; // a forced module removal waits for its providers to end
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  static inline const char* name = "troupe.node";

  json info(caf::actor_system& sys) const {
    auto uptime =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started);
    return {{"node_id", caf::to_string(sys.node())},
            {"address", owner->address()},
            {"pid", ::getpid()},
            {"uptime_s", uptime.count()},
            {"version", version()},
            {"scheduler_threads", owner->scheduler_threads()},
            {"metrics", owner->metrics_url()}};
  }

  json providers() const {
    json list = json::array();
    for (const auto& p : owner->providers().list())
      list.push_back(
        {{"type", p.type}, {"provider_id", p.provider_id}, {"name", p.name}});
    return list;
  }

  json topology() const {
    const auto& t = owner->machine();
    return {
      {"packages", t.packages()}, {"numa_nodes", t.numa_nodes()},
      {"cores", t.cores()},       {"hardware_threads", t.pus()},
      {"summary", t.summary()},   {"bound_cores", owner->placement().bound_cores()}};
  }

  json ops() const {
    auto& rt = owner->ops();
    json inflight = json::array();
    for (const auto& op : rt.inflight())
      inflight.push_back({{"name", op.name},
                          {"mailbox", op.mailbox},
                          {"side", op.side},
                          {"state", op.state},
                          {"age_ms", op.age.count()}});
    json registered = json::array();
    for (const auto* e : rt.registry().all())
      registered.push_back({{"name", e->name}, {"op_id", e->id}});
    json kept = json::object();
    if (auto k = rt.kept())
      kept = {{"bytes", k->used()}, {"limit", k->limit()}};
    return {{"inflight", inflight},
            {"counters", rt.counters()},
            {"registered", registered},
            {"kept", kept}};
  }

  caf::result<std::string> answer(caf::actor_system& sys, const std::string& what) const {
    if (what == "info")
      return info(sys).dump();
    if (what == "providers")
      return providers().dump();
    if (what == "stats")
      return json(flatten(transport::middleman::of(sys).stats())).dump();
    if (what == "topology")
      return topology().dump();
    if (what == "config")
      return to_json_text(owner->config(), -1);
    if (what == "ops")
      return ops().dump();
    std::string known;
    for (auto topic : node_service_topics)
      known += (known.empty() ? "" : ", ") + std::string{topic};
    return make_error(errc::not_found, "the node service knows no \"" + what
                                         + "\" (known: " + known + ")");
  }
};

using node_service_actor = caf::stateful_actor<node_service_state>;

/// Unloads module `name`, stopping its running providers first when `force`.
caf::result<std::string> remove_module(node_service_actor* self, const std::string& name,
                                       bool force) {
  auto* owner = self->state.owner;
  if (self->state.removing)
    return make_error(errc::refused, "a module removal is under way on this node; "
                                     "try again when it is done");
  auto m = owner->removable_module(name);
  if (!m)
    return std::move(m.error());
  std::vector<provider_entry> running;
  for (const auto& p : owner->providers().list())
    if (std::find(m->provider_types.begin(), m->provider_types.end(), p.type)
        != m->provider_types.end())
      running.push_back(p);
  json stopped = json::array();
  for (const auto& p : running)
    stopped.push_back(p.name);
  if (!running.empty() && !force) {
    std::string names;
    for (const auto& p : running)
      names += (names.empty() ? "" : ", ") + p.name + " (type " + p.type + ")";
    return make_error(errc::refused, "module '" + m->path + "' has running providers: "
                                       + names + "; --force stops them first");
  }
  auto done = [owner, path = m->path, stopped]() -> caf::expected<std::string> {
    if (auto err = owner->unload_module(path))
      return err;
    return json{{"removed", path}, {"stopped", stopped}}.dump();
  };
  if (running.empty()) {
    auto out = done();
    if (!out)
      return std::move(out.error());
    return *out;
  }
  // Their code goes with the library: unload once every one of them has ended.
  auto rp = self->make_response_promise<std::string>();
  self->state.removing = true;
  auto left = std::make_shared<size_t>(running.size());
  for (const auto& p : running) {
    owner->providers().remove(p.name);
    self->monitor(p.handle);
    self->send_exit(p.handle, caf::exit_reason::user_shutdown);
  }
  auto answer = std::make_shared<caf::typed_response_promise<std::string>>(rp);
  self->set_down_handler([self, answer, left, done](const caf::down_msg&) {
    if (--*left > 0)
      return;
    self->set_down_handler(nullptr);
    self->state.removing = false;
    auto out = done();
    if (out)
      answer->deliver(*out);
    else
      answer->deliver(std::move(out.error()));
  });
  return rp;
}

caf::behavior node_service(node_service_actor* self, node* owner) {
  self->state.owner = owner;
  return {
    [self](stats_atom) {
      return flatten(transport::middleman::of(self->system()).stats());
    },
    [self](caf::get_atom, const std::string& what) {
      return self->state.answer(self->system(), what);
    },
    [](ping_atom, const std::string& payload) { return payload; },
    [self](shutdown_atom) -> caf::result<std::string> {
      if (!self->state.owner->has_shutdown_handler())
        return make_error(errc::not_found, "this node does not take remote shutdown "
                                           "requests (its owner set no handler)");
      // Answer first; shut down after the answer is on its way.
      self->send(self, shutdown_atom::value, caf::ok_atom::value);
      return std::string{"ok"};
    },
    [self](shutdown_atom, caf::ok_atom) { self->state.owner->request_shutdown(); },
    [self](fault_atom, const std::string& kind, const std::string& type_name,
           uint64_t count) -> caf::result<std::string> {
      if (kind != "drop-in")
        return make_error(errc::not_found,
                          "no fault kind \"" + kind + "\" (known: drop-in)");
      transport::middleman::of(self->system()).drop_incoming(type_name, count);
      return std::string{"ok"};
    },
    [self](module_atom, const std::string& what) -> caf::result<std::string> {
      if (what != "list")
        return make_error(errc::not_found, "no module request \"" + what
                                             + "\" (known: list, load PATH, remove NAME)");
      json out = json::array();
      for (const auto& m : self->state.owner->modules())
        out.push_back(module_json(m));
      return out.dump();
    },
    [self](module_atom, const std::string& what,
           const std::string& path) -> caf::result<std::string> {
      if (what != "load")
        return make_error(errc::not_found, "no module request \"" + what
                                             + "\" (known: list, load PATH, remove NAME)");
      auto m = self->state.owner->load_module(path);
      if (!m)
        return std::move(m.error());
      return module_json(*m).dump();
    },
    [self](module_atom, const std::string& what, const std::string& name,
           bool force) -> caf::result<std::string> {
      if (what != "remove")
        return make_error(errc::not_found, "no module request \"" + what
                                             + "\" (known: list, load PATH, remove NAME)");
      return remove_module(self, name, force);
    },
  };
}

} // namespace

caf::actor spawn_node_service(node& owner) {
  return owner.system().spawn(node_service, &owner);
}

} // namespace troupe
