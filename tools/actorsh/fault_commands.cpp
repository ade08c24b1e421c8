// actorsh `fault`: fault injection on the connected node (or another TARGET), for
// seeing what breaks. The node service does the work (runtime/node_service.hpp).
#include "tools/actorsh/shell.hpp"

#include <iostream>
#include <string>

#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "runtime/node.hpp"
#include "runtime/node_service.hpp"

namespace troupe::shell {

bool session::fault(const std::vector<std::string>& args, std::ostream& out,
                    std::ostream& err) {
  // fault drop-in TYPE [COUNT] [--on TARGET]
  std::vector<std::string> words;
  std::string target;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--on" && i + 1 < args.size())
      target = args[++i];
    else
      words.push_back(args[i]);
  }
  uint64_t count = 1;
  bool usage_ok = (words.size() == 2 || words.size() == 3) && words[0] == "drop-in";
  if (usage_ok && words.size() == 3) {
    try {
      size_t used = 0;
      count = std::stoull(words[2], &used);
      usage_ok = used == words[2].size();
    } catch (const std::exception&) {
      usage_ok = false;
    }
  }
  if (!usage_ok) {
    err << "usage: fault drop-in TYPE [COUNT] [--on TARGET]  (COUNT 0 cancels)\n";
    return false;
  }
  auto service = resolve(target, err);
  if (!service)
    return false;
  auto name = target.empty() ? address_ : target;
  caf::scoped_actor self{client_.system()};
  bool ok = false;
  self->request(*service, opts_.timeout, fault_atom::value, words[0], words[1], count)
    .receive(
      [&](const std::string&) {
        ok = true;
        if (opts_.json)
          out << nlohmann::json{{"fault", words[0]}, {"type", words[1]},
                                {"count", count}, {"node", name}}
                   .dump()
              << "\n";
        else
          out << name << " drops the next " << count << " incoming " << words[1]
              << (count == 1 ? " message\n" : " messages\n");
      },
      [&](const caf::error& e) { err << "fault " << name << ": " << describe(e) << "\n"; });
  return ok;
}

} // namespace troupe::shell
