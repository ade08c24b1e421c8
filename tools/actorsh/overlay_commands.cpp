// actorsh `overlay`: the instance's tree overlay (actors/overlay/) as every rank sees
// its own place in it, gathered up the tree (like `flux overlay status`).
#include "tools/actorsh/shell.hpp"

#include <functional>
#include <iostream>
#include <set>

#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/overlay/overlay.hpp"
#include "base/error.hpp"
#include "runtime/node.hpp"

namespace troupe::shell {

bool session::overlay_status(const std::vector<std::string>& args, std::ostream& out,
                             std::ostream& err) {
  if (args.size() != 1) {
    err << "usage: overlay\n";
    return false;
  }
  auto overlay = client_.remote_provider(address_, "overlay", 1, opts_.timeout);
  if (!overlay) {
    err << "overlay at " << address_ << ": "
        << (has_code(overlay.error(), errc::not_found)
              ? std::string{"the node runs no overlay (provider type \"overlay\", id 1)"}
              : describe(overlay.error()))
        << "\n";
    return false;
  }
  overlay::reduction spec;
  spec.op = "concat";
  spec.contribution = "status";
  // Ranks that do not answer in half the shell's time are reported lost.
  spec.timeout_ms = static_cast<uint32_t>(std::max<int64_t>(1, opts_.timeout.count() / 2));
  caf::scoped_actor self{client_.system()};
  bool ok = false;
  self->request(*overlay, opts_.timeout, overlay::reduce_atom::value, spec)
    .receive(
      [&](overlay::reduction_result& r) {
        ok = true;
        std::map<uint32_t, nlohmann::json> ranks;
        for (const auto& [rank, text] : r.result.by_rank)
          ranks[rank] = nlohmann::json::parse(text, nullptr, false);
        if (opts_.json) {
          auto up = nlohmann::json::array();
          for (auto& [rank, j] : ranks)
            up.push_back(j);
          out << nlohmann::json{{"size", r.size}, {"up", up}, {"lost", r.missing}}.dump()
              << "\n";
          return;
        }
        uint32_t fanout = ranks.empty() ? 0 : ranks.begin()->second.value("fanout", 0u);
        out << "overlay: " << r.size << " ranks, fanout " << fanout << ", "
            << ranks.size() << " up, " << r.missing.size() << " lost\n";
        std::set<uint32_t> lost(r.missing.begin(), r.missing.end());
        // Depth-first from the root, children in rank order.
        std::function<void(uint32_t, int)> show = [&](uint32_t rank, int depth) {
          out << std::string(2 * depth, ' ') << rank << " ";
          if (auto i = ranks.find(rank); i != ranks.end())
            out << i->second.value("address", "") << " up (view "
                << i->second.value("view", "") << ")\n";
          else
            out << (lost.count(rank) ? "lost" : "unknown") << "\n";
          if (fanout > 0)
            for (auto child : overlay::children_of(rank, r.size, fanout))
              show(child, depth + 1);
        };
        if (r.size > 0)
          show(0, 0);
        for (const auto& [rank, text] : r.errors)
          out << "rank " << rank << ": " << text << "\n";
      },
      [&](caf::error& e) { err << "overlay: " << describe(e) << "\n"; });
  return ok;
}

} // namespace troupe::shell
