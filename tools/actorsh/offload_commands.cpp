// actorsh `tree` and `offload`: the offload instance (actors/offload/) on the
// connected node, its place in the tree and its queue.
#include "tools/actorsh/shell.hpp"

#include <iomanip>
#include <iostream>

#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/offload/offload.hpp"
#include "base/error.hpp"
#include "runtime/node.hpp"

namespace troupe::shell {

namespace {

using nlohmann::json;

json status_json(const offload::instance_status& s) {
  return {{"path", s.path},         {"address", s.address}, {"children", s.children},
          {"queued", s.queued},     {"leased", s.leased},   {"running", s.running},
          {"done", s.done},         {"requeued", s.requeued}, {"reruns", s.reruns},
          {"lost", s.lost},         {"child_restarts", s.child_restarts}};
}

std::string counters(const offload::instance_status& s) {
  std::ostringstream os;
  os << "queued " << s.queued << ", leased " << s.leased << ", running " << s.running
     << ", done " << s.done;
  if (s.requeued || s.lost)
    os << ", requeued " << s.requeued << " (re-run " << s.reruns << "), lost " << s.lost;
  return os.str();
}

// Asks the connected node's offload instance `Atom` and hands its answer to `print`;
// false (with the reason in `err`) if there is none or it does not answer.
template <class Answer, class Atom, class Print>
bool ask_instance(node& client, const caf::expected<caf::actor>& inst,
                  std::chrono::milliseconds timeout, const char* command, std::ostream& err,
                  Print print) {
  if (!inst)
    return false;
  caf::scoped_actor self{client.system()};
  bool ok = false;
  self->request(*inst, timeout, Atom::value)
    .receive(
      [&](Answer& answer) {
        ok = true;
        print(answer);
      },
      [&](caf::error& e) { err << command << ": " << describe(e) << "\n"; });
  return ok;
}

} // namespace

caf::expected<caf::actor> session::offload_instance(std::ostream& err) {
  auto inst = client_.remote_provider(address_, "offload", offload::offload_provider_id,
                                      opts_.timeout);
  if (!inst && has_code(inst.error(), errc::not_found))
    err << address_ << " runs no offload instance\n";
  else if (!inst)
    err << "offload instance at " << address_ << ": " << describe(inst.error()) << "\n";
  return inst;
}

bool session::offload_tree(const std::vector<std::string>& args, std::ostream& out,
                           std::ostream& err) {
  if (args.size() != 1) {
    err << "usage: tree\n";
    return false;
  }
  return ask_instance<offload::instance_tree, offload::tree_atom>(
    client_, offload_instance(err), opts_.timeout, "tree", err,
      [&](offload::instance_tree& t) {
        if (opts_.json) {
          auto kids = json::array();
          for (auto& c : t.children) {
            json kid = {{"path", c.path}, {"state", c.state}, {"restarts", c.restarts}};
            if (c.answered)
              kid["status"] = status_json(c.status);
            kids.push_back(kid);
          }
          out << json{{"instance", status_json(t.self)},
                      {"parent", t.parent},
                      {"parent_address", t.parent_address},
                      {"children", kids}}
                   .dump()
              << "\n";
          return;
        }
        out << "instance " << t.self.path << " at " << t.self.address << ": "
            << counters(t.self) << "\n";
        if (t.parent.empty())
          out << "parent: none (the root)\n";
        else
          out << "parent: " << t.parent << " at " << t.parent_address << "\n";
        out << "children: " << t.children.size() << "\n";
        for (auto& c : t.children) {
          out << "  " << std::left << std::setw(12) << c.path << std::setw(10) << c.state
              << "restarts " << c.restarts;
          if (c.answered)
            out << "  " << (c.status.address == t.self.address ? "" : c.status.address + "  ")
                << counters(c.status);
          else if (c.state == "running")
            out << "  (no answer)";
          out << "\n";
        }
      });
}

bool session::offload_queue(const std::vector<std::string>& args, std::ostream& out,
                            std::ostream& err) {
  if (args.size() != 1) {
    err << "usage: offload\n";
    return false;
  }
  return ask_instance<offload::instance_status, offload::status_atom>(
    client_, offload_instance(err), opts_.timeout, "offload", err,
      [&](offload::instance_status& s) {
        if (opts_.json) {
          out << status_json(s).dump() << "\n";
          return;
        }
        out << "instance " << s.path << " at " << s.address << "\n"
            << "queued    " << s.queued << "\n"
            << "leased    " << s.leased << "  (to " << s.children << " children)\n"
            << "running   " << s.running << "\n"
            << "done      " << s.done << "\n"
            << "requeued  " << s.requeued << "  (of which re-run " << s.reruns << ", lost "
            << s.lost << ")\n"
            << "restarts  " << s.child_restarts << "  (of child instances)\n";
      });
}

} // namespace troupe::shell
