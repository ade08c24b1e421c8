#include "tools/actorsh/shell.hpp"

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "actors/group/group.hpp"
#include "actors/group/view.hpp"
#include "runtime/config.hpp"
#include "base/text.hpp"
#include "runtime/node.hpp"
#include "runtime/node_service.hpp"
#include "transport/blocking_wait.hpp"
#include "transport/middleman.hpp"

namespace troupe::shell {

namespace {

using nlohmann::json;
using clock_type = std::chrono::steady_clock;

std::vector<std::string> split_words(const std::string& line) {
  std::istringstream in{line};
  std::vector<std::string> words;
  std::string w;
  while (in >> w)
    words.push_back(w);
  return words;
}

void print_pretty(const std::string& what, const json& doc, std::ostream& out) {
  if (what == "providers") {
    out << std::left << std::setw(16) << "type" << std::setw(13) << "provider_id"
        << "name\n";
    for (const auto& p : doc)
      out << std::left << std::setw(16) << p["type"].get<std::string>() << std::setw(13)
          << p["provider_id"].get<int>() << p["name"].get<std::string>() << "\n";
    return;
  }
  if (what == "config") {
    out << doc.dump(2) << "\n";
    return;
  }
  if (what == "ops") {
    std::string names;
    for (const auto& r : doc["registered"])
      names += (names.empty() ? "" : ", ") + r["name"].get<std::string>();
    out << "registered: " << (names.empty() ? "none" : names) << "\n";
    const auto& inflight = doc["inflight"];
    if (inflight.empty()) {
      out << "in flight: none\n";
    } else {
      out << std::left << std::setw(20) << "op" << std::setw(10) << "mailbox"
          << std::setw(8) << "side" << std::setw(10) << "age_ms"
          << "state\n";
      for (const auto& op : inflight)
        out << std::left << std::setw(20) << op["name"].get<std::string>()
            << std::setw(10) << op["mailbox"].get<uint64_t>() << std::setw(8)
            << op["side"].get<std::string>() << std::setw(10)
            << op["age_ms"].get<int64_t>() << op["state"].get<std::string>() << "\n";
    }
    std::string counters;
    for (const auto& [name, value] : doc["counters"].items())
      counters += (counters.empty() ? "" : "  ") + name + " " + value.dump();
    out << "counters: " << (counters.empty() ? "none" : counters) << "\n";
    if (auto kept = doc.find("kept"); kept != doc.end() && kept->contains("bytes"))
      out << "kept: " << (*kept)["bytes"].get<uint64_t>() << " of "
          << (*kept)["limit"].get<uint64_t>() << " bytes (ops.store_max_bytes)\n";
    return;
  }
  for (auto it = doc.begin(); it != doc.end(); ++it)
    out << std::left << std::setw(20) << it.key()
        << (it->is_string() ? it->get<std::string>() : it->dump()) << "\n";
}

} // namespace

session::session(node& client, options opts) : client_(client), opts_(opts) {
  auto simple = [this](std::string name, std::string help) {
    return command{name, name, std::move(help),
                   [this, name](const std::vector<std::string>&, std::ostream& out,
                                std::ostream& err) { return query(name, out, err); }};
  };
  commands_ = {
    {"connect", "connect ADDRESS|VIEWFILE",
     "connect to the node at ADDRESS (ucx://HOST:PORT), or to the first member of a "
     "group's view file that answers",
     [this](const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
       if (args.size() != 2) {
         err << "usage: connect ADDRESS|VIEWFILE\n";
         return false;
       }
       if (!connect(args[1], err))
         return false;
       if (!opts_.json)
         out << "connected to " << address_ << "\n";
       else
         out << json{{"connected", address_}}.dump() << "\n";
       return true;
     },
     false},
    simple("info", "node id, address, pid, uptime, version"),
    simple("providers", "the providers running on the node (type, provider id, name)"),
    {"actors", "actors",
     "the node's named actors: its providers (the same list as providers)",
     [this](const std::vector<std::string>&, std::ostream& out, std::ostream& err) {
       return query("providers", out, err);
     }},
    simple("stats",
           "transport counters: messages and bytes in/out, peers, drops by reason"),
    simple("topology", "packages, NUMA nodes, cores, hardware threads, bound cores"),
    simple("config", "the node's effective config (JSON)"),
    simple("ops", "op types registered on the node, the op sides in flight there "
                  "(op, mailbox, side, age, state) and op counters"),
    {"view", "view [PROVIDER_ID]",
     "the group view held by the node's group provider (the first one, or PROVIDER_ID): "
     "rank, address, provider id, member id, incarnation, metadata; version and digest",
     [this](const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
       return view(args, out, err);
     }},
    {"metadata", "metadata set KEY VALUE | rm KEY",
     "set or remove group metadata (through the group's leader; prints the new version)",
     [this](const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
       return metadata(args, out, err);
     }},
    {"watch", "watch [-n EVENTS] [--for MS]",
     "print membership events (joined, left, died, metadata) as they happen, until "
     "Ctrl-C, EVENTS events or MS milliseconds",
     [this](const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
       return watch(args, out, err);
     }},
    {"ping", "ping [TARGET] [-n COUNT] [-s BYTES]",
     "round trips to the node service of TARGET: an address, a member rank of the "
     "connected group, or all (default: the connected node); min/p50/p99/max in us",
     [this](const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
       return ping(args, out, err);
     },
     false},
    {"shutdown", "shutdown [TARGET]",
     "ask the node (an address or a member rank; default: the connected one) to shut "
     "down gracefully",
     [this](const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
       return shutdown(args, out, err);
     },
     false},
    {"fault", "fault drop-in TYPE [COUNT] [--on TARGET]",
     "fault injection: the node (TARGET, or the connected one) drops the next COUNT "
     "(1) messages from other nodes that hold a value of the registered type TYPE, "
     "e.g. troupe::group::view_change, as a lossy network would; COUNT 0 cancels",
     [this](const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
       return fault(args, out, err);
     },
     false},
    {"overlay", "overlay",
     "the instance's tree overlay: every rank's place (parent, children, view) as it "
     "reports it through the tree, and the ranks that did not answer (lost)",
     [this](const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
       return overlay_status(args, out, err);
     }},
    {"event", "event pub TOPIC [PAYLOAD...] | event sub PREFIX [-n EVENTS] [--for MS]",
     "instance events: publish one (it reaches every rank; prints its numbers), or "
     "print those whose topic starts with PREFIX as they come (global number, topic, "
     "seq within the topic, payload) until Ctrl-C, EVENTS events or MS milliseconds",
     [this](const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
       return event(args, out, err);
     }},
    {"dmesg", "dmesg [-f] [--level LEVEL]",
     "the instance's log: the lines every rank logged (up to its logs provider's level), "
     "kept at the root: time, level, rank, component, text; -f follows until Ctrl-C",
     [this](const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
       return dmesg(args, out, err);
     }},
    {"log", "log [--level LEVEL] TEXT...",
     "log a line on the connected node (level info unless given): it joins the "
     "instance's log (dmesg)",
     [this](const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
       return log_line(args, out, err);
     }},
    {"barrier", "barrier NAME COUNT [--timeout MS]",
     "enter the instance's barrier NAME at the connected node and wait until COUNT "
     "entries (from any ranks) have come; fails naming the rank when a member dies, or "
     "at the barrier's timeout",
     [this](const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
       return barrier(args, out, err);
     }},
    {"kvs",
     "kvs get KEY | put KEY VALUE... [--json-value] | unlink KEY | ls [DIR] | dump [DIR] | "
     "watch KEY [-n CHANGES] [--for MS] | ns create NAME [OWNER] | ns remove NAME | stats "
     "[--ns NAMESPACE] [--as NAME]",
     "the instance's key-value store: keys a.b.c, read at the connected node's replica "
     "(never older than what this session saw), committed at the root; watch prints "
     "each change to KEY or below it; ns makes a namespace only OWNER may commit to",
     [this](const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
       return kvs(args, out, err);
     }},
    {"module", "module list [--all] | module load PATH [--all] | module remove NAME [--force] [--all]",
     "modules in the running node, or in every member of its group (--all): list them "
     "(what each registered); load one (PATH as the node opens it; a failed load leaves "
     "the node as it was); remove one (NAME: its path or file name), refused while "
     "providers of its types run unless --force stops them first",
     [this](const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
       return module(args, out, err);
     }},
    {"tree", "tree",
     "the offload instance on the node (troupe-offload's tree): its path, parent, and "
     "children with their supervision state, restarts and queue counters",
     [this](const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
       return offload_tree(args, out, err);
     }},
    {"offload", "offload",
     "the offload instance's queue: queued, leased, running, done, re-queued, lost",
     [this](const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
       return offload_queue(args, out, err);
     }},
    {"help", "help [COMMAND]", "list the commands, or explain one",
     [this](const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
       return help(args, out, err);
     },
     false},
    {"quit", "quit", "leave actorsh (also: exit, Ctrl-D)",
     [](const std::vector<std::string>&, std::ostream&, std::ostream&) { return true; },
     false},
  };
}

std::vector<std::string> session::command_names() const {
  std::vector<std::string> names;
  for (const auto& c : commands_)
    names.push_back(c.name);
  names.push_back("exit"); // an alias of quit
  return names;
}

std::vector<std::string> session::subcommands_of(const std::string& command) {
  if (command == "kvs")
    return {"get", "put", "unlink", "ls", "dump", "watch", "ns", "stats"};
  if (command == "event")
    return {"pub", "sub"};
  if (command == "metadata")
    return {"set", "rm"};
  if (command == "module")
    return {"list", "load", "remove"};
  return {};
}

const session::command* session::find(const std::string& name) const {
  auto key = name == "exit" ? std::string{"quit"} : name;
  for (const auto& c : commands_)
    if (c.name == key)
      return &c;
  return nullptr;
}

bool session::connect(const std::string& target, std::ostream& err) {
  if (target.rfind("ucx://", 0) != 0) {
    // A view file: connect to its first member that answers.
    group::group_view saved;
    try {
      saved = group::read_view_file(target);
    } catch (const config_error& e) {
      err << "cannot connect to " << target << ": " << e.what() << "\n";
      return false;
    }
    std::string tried;
    for (const auto& m : saved.members) {
      std::ostringstream why;
      if (connect(m.address, why)) {
        group_provider_id_ = m.provider_id;
        view_ = saved;
        return true;
      }
      tried += why.str();
    }
    err << "cannot connect to any member in " << target << ":\n" << tried;
    return false;
  }
  auto service = client_.remote_node(target, opts_.timeout);
  if (!service) {
    err << "cannot connect to " << target << ": " << describe(service.error()) << "\n";
    return false;
  }
  service_ = *service;
  address_ = target;
  group_provider_id_.reset();
  view_.reset();
  return true;
}

caf::expected<caf::actor> session::group_provider(std::ostream& err,
                                                  std::optional<uint16_t> wanted) {
  if (!wanted)
    wanted = group_provider_id_;
  if (!wanted) {
    auto providers = fetch("providers", err);
    if (!providers)
      return make_error(errc::not_found, "no providers");
    for (const auto& p : *providers)
      if (p["type"] == "group") {
        wanted = p["provider_id"].get<uint16_t>();
        break;
      }
  }
  if (!wanted) {
    err << address_ << " runs no group provider\n";
    return make_error(errc::not_found, "no group provider");
  }
  auto g = client_.remote_provider(address_, "group", *wanted, opts_.timeout);
  if (!g && has_code(g.error(), errc::not_found))
    err << address_ << " runs no group provider with provider id " << *wanted << "\n";
  else if (!g)
    err << "group provider " << *wanted << " at " << address_ << ": "
        << describe(g.error()) << "\n";
  else
    group_provider_id_ = wanted;
  return g;
}

std::optional<group::group_view> session::fetch_view(std::ostream& err,
                                                     std::optional<uint16_t> wanted) {
  auto g = group_provider(err, wanted);
  if (!g)
    return std::nullopt;
  caf::scoped_actor self{client_.system()};
  std::optional<group::group_view> result;
  self->request(*g, opts_.timeout, caf::get_atom::value)
    .receive([&](const group::group_view& v) { result = v; },
             [&](const caf::error& e) { err << "view: " << describe(e) << "\n"; });
  if (result)
    view_ = result;
  return result;
}

std::vector<std::string> session::member_targets() const {
  std::vector<std::string> targets;
  if (!view_)
    return targets;
  targets.push_back("all");
  for (size_t r = 0; r < view_->members.size(); ++r) {
    targets.push_back(std::to_string(r));
    targets.push_back(view_->members[r].address);
  }
  return targets;
}

outcome session::run(const std::string& line, std::ostream& out, std::ostream& err) {
  auto words = split_words(line);
  if (words.empty() || words[0][0] == '#')
    return outcome::ok;
  auto cmd = find(words[0]);
  if (cmd == nullptr) {
    auto names = command_names();
    std::vector<std::string_view> views(names.begin(), names.end());
    auto guess = nearest(words[0], views);
    err << "unknown command '" << words[0] << "'";
    if (!guess.empty())
      err << "; did you mean '" << guess << "'?";
    err << " (help lists the commands)\n";
    return outcome::failed;
  }
  if (cmd->name == "quit")
    return outcome::quit;
  if (cmd->needs_connection && !service_) {
    err << cmd->name << ": not connected (use: connect ADDRESS, or actorsh -a ADDRESS)\n";
    return outcome::failed;
  }
  return cmd->run(words, out, err) ? outcome::ok : outcome::failed;
}

std::optional<nlohmann::json> session::fetch(const std::string& what, std::ostream& err) {
  caf::scoped_actor self{client_.system()};
  std::optional<json> result;
  self->request(service_, opts_.timeout, caf::get_atom::value, what)
    .receive(
      [&](const std::string& text) {
        auto doc = json::parse(text, nullptr, false);
        if (doc.is_discarded())
          err << what << ": the node answered something that is not JSON\n";
        else
          result = std::move(doc);
      },
      [&](const caf::error& e) {
        err << what << ": " << address_ << ": " << describe(e) << "\n";
      });
  return result;
}

bool session::query(const std::string& what, std::ostream& out, std::ostream& err) {
  auto doc = fetch(what, err);
  if (!doc)
    return false;
  if (opts_.json)
    out << doc->dump() << "\n";
  else
    print_pretty(what, *doc, out);
  return true;
}

bool session::view(const std::vector<std::string>& args, std::ostream& out,
                   std::ostream& err) {
  if (args.size() > 2) {
    err << "usage: view [PROVIDER_ID]\n";
    return false;
  }
  std::optional<uint16_t> wanted;
  if (args.size() == 2) {
    try {
      auto id = std::stoul(args[1]);
      if (id > 65535)
        throw std::out_of_range("provider id");
      wanted = static_cast<uint16_t>(id);
    } catch (const std::exception&) {
      err << "view: '" << args[1] << "' is not a provider id (0-65535)\n";
      return false;
    }
  }
  auto v = fetch_view(err, wanted);
  if (!v)
    return false;
  if (opts_.json) {
    out << json::parse(group::to_json(*v)).dump() << "\n";
    return true;
  }
  out << std::left << std::setw(6) << "rank" << std::setw(28) << "address"
      << std::setw(13) << "provider_id" << std::setw(11) << "member_id" << std::setw(22)
      << "incarnation"
      << "metadata\n";
  for (size_t r = 0; r < v->members.size(); ++r) {
    const auto& m = v->members[r];
    out << std::left << std::setw(6) << r << std::setw(28) << m.address << std::setw(13)
        << m.provider_id << std::setw(11)
        << (std::to_string(m.member_id) + (m.member_id == v->leader ? "*" : ""))
        << std::setw(22) << m.incarnation << json(m.metadata).dump() << "\n";
  }
  out << "version " << group::to_string(v->version) << "  digest " << v->digest()
      << "  metadata " << json(v->metadata).dump()
      << (v->leader != 0 ? "  (* leader)" : "") << "\n";
  return true;
}

bool session::metadata(const std::vector<std::string>& args, std::ostream& out,
                       std::ostream& err) {
  bool set = args.size() == 4 && args[1] == "set";
  bool rm = args.size() == 3 && args[1] == "rm";
  if (!set && !rm) {
    err << "usage: metadata set KEY VALUE | metadata rm KEY\n";
    return false;
  }
  auto g = group_provider(err, std::nullopt);
  if (!g)
    return false;
  caf::scoped_actor self{client_.system()};
  bool ok = false;
  auto done = [&](const group::view_version& v) {
    ok = true;
    if (opts_.json)
      out << json{{"key", args[2]}, {"removed", rm}, {"version", group::to_string(v)}}
               .dump()
          << "\n";
    else
      out << (set ? "set " : "removed ") << args[2] << ": version " << group::to_string(v)
          << "\n";
  };
  auto failed = [&](const caf::error& e) { err << "metadata: " << describe(e) << "\n"; };
  if (set)
    self->request(*g, opts_.timeout, caf::put_atom::value, args[2], args[3])
      .receive(done, failed);
  else
    self->request(*g, opts_.timeout, caf::delete_atom::value, args[2])
      .receive(done, failed);
  return ok;
}

bool read_count_and_time(const std::vector<std::string>& args, size_t first, long& count,
                         long& for_ms, const std::string& usage, std::ostream& err) {
  for (size_t i = first; i < args.size(); ++i) {
    long* into = args[i] == "-n" ? &count : args[i] == "--for" ? &for_ms : nullptr;
    if (into == nullptr || i + 1 >= args.size()) {
      err << usage;
      return false;
    }
    try {
      *into = std::stol(args[++i]);
    } catch (const std::exception&) {
      err << args[0] << ": '" << args[i] << "' is not a number\n";
      return false;
    }
  }
  return true;
}

bool session::watch(const std::vector<std::string>& args, std::ostream& out,
                    std::ostream& err) {
  long count = -1;
  long for_ms = -1;
  if (!read_count_and_time(args, 1, count, for_ms, "usage: watch [-n EVENTS] [--for MS]\n",
                           err))
    return false;
  auto g = group_provider(err, std::nullopt);
  if (!g)
    return false;
  caf::scoped_actor self{client_.system()};
  bool subscribed = false;
  self->request(*g, opts_.timeout, caf::subscribe_atom::value, caf::actor{self})
    .receive(
      [&](const group::group_view& v) {
        subscribed = true;
        if (!opts_.json)
          out << "watching " << v.members.size() << " members at version "
              << group::to_string(v.version) << " (Ctrl-C stops)" << std::endl;
      },
      [&](const caf::error& e) { err << "watch: " << describe(e) << "\n"; });
  if (!subscribed)
    return false;
  auto print = [&](const char* kind, const std::string& what,
                   const group::view_version& v) {
    if (opts_.json)
      out << json{{"event", kind}, {"subject", what}, {"version", group::to_string(v)}}
               .dump()
          << std::endl;
    else
      out << group::to_string(v) << "  " << kind << "  " << what << std::endl;
  };
  follow_limits limits{count, for_ms, interrupted_};
  while (limits.more()) {
    self->receive(
      [&](group::member_joined_atom, const group::member& m,
          const group::view_version& v) {
        print("joined", m.address, v);
        limits.saw();
      },
      [&](group::member_left_atom, const group::member& m, const group::view_version& v) {
        print("left", m.address, v);
        limits.saw();
      },
      [&](group::member_died_atom, const group::member& m, const group::view_version& v) {
        print("died", m.address, v);
        limits.saw();
      },
      [&](group::metadata_changed_atom, const std::string& key, const std::string& value,
          bool removed, const group::view_version& v) {
        print(removed ? "metadata-removed" : "metadata-set",
              removed ? key : key + "=" + value, v);
        limits.saw();
      },
      caf::after(std::chrono::milliseconds{100}) >> [] {});
  }
  caf::anon_send(*g, caf::unsubscribe_atom::value, caf::actor{self});
  return true;
}

caf::expected<caf::actor> session::resolve(const std::string& target, std::ostream& err) {
  if (target.empty()) {
    if (!service_) {
      err << "not connected (give an ADDRESS, or connect first)\n";
      return make_error(errc::not_found, "not connected");
    }
    return service_;
  }
  auto address = target;
  if (std::all_of(target.begin(), target.end(), ::isdigit)) {
    // A rank of the connected node's group.
    if (!view_ && !fetch_view(err, std::nullopt))
      return make_error(errc::not_found, "no group view");
    // Digits only, so stoul fails only by overflow: such a rank is out of range too.
    auto rank = target.size() > 9 ? view_->members.size() : std::stoul(target);
    if (rank >= view_->members.size()) {
      err << "no rank " << target << ": the group has " << view_->members.size()
          << " members (ranks 0-" << view_->members.size() - 1 << ")\n";
      return make_error(errc::not_found, "no such rank");
    }
    address = view_->members[rank].address;
  }
  auto service = client_.remote_node(address, opts_.timeout);
  if (!service)
    err << "cannot reach " << address << ": " << describe(service.error()) << "\n";
  return service;
}

bool session::ping(const std::vector<std::string>& args, std::ostream& out,
                   std::ostream& err) {
  std::string target;
  int count = 10;
  size_t bytes = 8;
  for (size_t i = 1; i < args.size(); ++i) {
    auto number = [&](auto& into) {
      if (i + 1 >= args.size()) {
        err << "ping: " << args[i] << " needs a number\n";
        return false;
      }
      try {
        into =
          static_cast<std::remove_reference_t<decltype(into)>>(std::stoul(args[++i]));
      } catch (const std::exception&) {
        err << "ping: " << args[i - 1] << ": '" << args[i] << "' is not a number\n";
        return false;
      }
      return true;
    };
    if (args[i] == "-n") {
      if (!number(count))
        return false;
      if (count < 1) {
        err << "ping: -n needs at least 1 round trip\n";
        return false;
      }
    } else if (args[i] == "-s") {
      if (!number(bytes))
        return false;
    } else if (target.empty()) {
      target = args[i];
    } else {
      err << "usage: ping [TARGET] [-n COUNT] [-s BYTES]\n";
      return false;
    }
  }
  if (target == "all") {
    auto v = fetch_view(err, std::nullopt);
    if (!v)
      return false;
    bool all_ok = true;
    for (size_t r = 0; r < v->members.size(); ++r) {
      std::vector<std::string> one{"ping", v->members[r].address,
                                   "-n",   std::to_string(count),
                                   "-s",   std::to_string(bytes)};
      all_ok = ping(one, out, err) && all_ok;
    }
    if (!opts_.json)
      out << "pinged " << v->members.size() << " members\n";
    return all_ok;
  }
  auto service = resolve(target, err);
  if (!service)
    return false;
  auto name = target.empty() ? address_ : target;
  caf::scoped_actor self{client_.system()};
  std::vector<double> samples;
  std::string payload(bytes, 'x');
  for (int i = 0; i < count; ++i) {
    auto start = clock_type::now();
    bool ok = false;
    transport::blocking_waiter waiter{client_.transport()};
    // Bounded by the waiter, not by a CAF request timeout (whose clock thread would
    // add ~18 us to every round trip shown).
    auto answer = self->request(*service, caf::infinite, ping_atom::value, payload);
    waiter.receive_response(
      *self.ptr(), answer.id(), opts_.timeout, [&](const std::string&) { ok = true; },
      [&](const caf::error& e) { err << "ping " << name << ": " << describe(e) << "\n"; });
    if (!ok)
      return false;
    samples.push_back(
      std::chrono::duration<double, std::micro>(clock_type::now() - start).count());
  }
  std::sort(samples.begin(), samples.end());
  auto at = [&](double q) {
    return samples[static_cast<size_t>(q * (samples.size() - 1))];
  };
  if (opts_.json) {
    out << json{{"target", name},          {"count", count},
                {"bytes", bytes},          {"min_us", samples.front()},
                {"p50_us", at(0.5)},       {"p99_us", at(0.99)},
                {"max_us", samples.back()}}
             .dump()
        << "\n";
  } else {
    out << std::fixed << std::setprecision(1) << "ping " << name << ": " << count
        << " round trips of " << bytes << " bytes: min " << samples.front() << " p50 "
        << at(0.5) << " p99 " << at(0.99) << " max " << samples.back() << " us\n";
  }
  return true;
}

bool session::shutdown(const std::vector<std::string>& args, std::ostream& out,
                       std::ostream& err) {
  if (args.size() > 2) {
    err << "usage: shutdown [TARGET]\n";
    return false;
  }
  auto target = args.size() == 2 ? args[1] : std::string{};
  auto service = resolve(target, err);
  if (!service)
    return false;
  auto name = target.empty() ? address_ : target;
  caf::scoped_actor self{client_.system()};
  bool ok = false;
  self->request(*service, opts_.timeout, shutdown_atom::value)
    .receive(
      [&](const std::string&) {
        ok = true;
        if (opts_.json)
          out << json{{"shutdown", name}}.dump() << "\n";
        else
          out << name << " is shutting down\n";
      },
      [&](const caf::error& e) {
        err << "shutdown " << name << ": " << describe(e) << "\n";
      });
  if (ok && target.empty()) {
    service_ = nullptr;
    address_.clear();
  }
  return ok;
}

bool session::help(const std::vector<std::string>& args, std::ostream& out,
                   std::ostream& err) {
  if (args.size() >= 2) {
    auto cmd = find(args[1]);
    if (cmd == nullptr) {
      err << "help: no command '" << args[1] << "'\n";
      return false;
    }
    out << cmd->usage << "\n  " << cmd->help << "\n";
    return true;
  }
  out << "commands:\n";
  for (const auto& c : commands_)
    out << "  " << std::left << std::setw(38) << c.usage << c.help << "\n";
  out << "Commands that take no ADDRESS act on the connected node. With --json every\n"
         "command prints one JSON document per line.\n";
  return true;
}

} // namespace troupe::shell
