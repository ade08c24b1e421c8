#include "runtime/node_service.hpp"

#include <map>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>

#include "transport/middleman.hpp"

namespace troupe {

namespace {

std::map<std::string, uint64_t> flatten(const transport::transport_stats& s) {
  std::map<std::string, uint64_t> out{{"messages_in", s.messages_in},
                                      {"messages_out", s.messages_out},
                                      {"bytes_in", s.bytes_in},
                                      {"bytes_out", s.bytes_out},
                                      {"peers", s.peers}};
  for (const auto& [reason, count] : s.drops)
    out["drop:" + reason] = count;
  return out;
}

caf::behavior node_service(caf::event_based_actor* self) {
  auto& mm = transport::middleman::of(self->system());
  return {
    [&mm](stats_atom) { return flatten(mm.stats()); },
  };
}

} // namespace

caf::actor spawn_node_service(caf::actor_system& system) {
  return system.spawn(node_service);
}

} // namespace troupe
