// actorsh's `kvs` command: the instance's key-value store (actors/kvs/), like
// `flux kvs`. Reads pass the highest version this session has seen, so a session
// never reads an older state than one it saw, whichever node it is connected to.
#include "tools/actorsh/shell.hpp"

#include <chrono>
#include <iostream>

#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/kvs/kvs.hpp"
#include "base/error.hpp"
#include "runtime/node.hpp"

namespace troupe::shell {

namespace {

const char* kvs_usage =
  "usage: kvs get KEY | put KEY VALUE... [--json-value] | unlink KEY | ls [DIR] | dump "
  "[DIR] | "
  "watch KEY [-n CHANGES] [--for MS] | ns create NAME [OWNER] | ns remove NAME | stats; "
  "any of them with [--ns NAMESPACE] [--as NAME]\n";

/// A value for the terminal: JSON as it is, bytes as text when printable, else hex.
std::string shown(const std::string& value, bool json) {
  if (json)
    return value;
  for (unsigned char c : value)
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      static const char* digits = "0123456789abcdef";
      std::string hex = "0x";
      for (unsigned char b : value) {
        hex += digits[b >> 4];
        hex += digits[b & 15];
      }
      return hex;
    }
  return value;
}

nlohmann::json entry_json(const kvs::entry& e) {
  nlohmann::json j{{"ns", e.ns}, {"key", e.key}, {"version", e.version}};
  if (e.json)
    j["value"] = nlohmann::json::parse(e.value, nullptr, false);
  else
    j["value"] = e.value;
  return j;
}

} // namespace

bool session::kvs(const std::vector<std::string>& all_args, std::ostream& out,
                  std::ostream& err) {
  // Options anywhere after the subcommand; the rest are its words.
  std::string ns = kvs::primary_namespace;
  std::string as;
  bool json_value = false;
  std::vector<std::string> args;
  for (size_t i = 0; i < all_args.size(); ++i) {
    const auto& a = all_args[i];
    if ((a == "--ns" || a == "--as") && i + 1 < all_args.size()) {
      (a == "--ns" ? ns : as) = all_args[++i];
    } else if (a == "--json-value") {
      json_value = true;
    } else if (a == "--ns" || a == "--as") {
      err << "kvs: " << a << " needs a value\n" << kvs_usage;
      return false;
    } else {
      args.push_back(a);
    }
  }
  if (args.size() < 2) {
    err << kvs_usage;
    return false;
  }
  const auto& sub = args[1];
  auto store = service_provider("kvs", "kvs", err);
  if (!store)
    return false;
  caf::scoped_actor self{client_.system()};
  auto fail = [&](const caf::error& e) {
    err << "kvs " << sub << ": " << describe(e) << "\n";
  };
  auto saw = [&](uint64_t version) { kvs_seen_ = std::max(kvs_seen_, version); };
  auto commit = [&](kvs::transaction txn) {
    bool ok = false;
    self->request(*store, opts_.timeout, kvs::commit_atom::value, txn)
      .receive(
        [&](const kvs::commit_receipt& r) {
          ok = true;
          saw(r.version);
          if (opts_.json)
            out << nlohmann::json{{"version", r.version}, {"ns", r.ns}, {"ops", r.ops}}
                     .dump()
                << "\n";
          else
            out << "committed version " << r.version << "\n";
        },
        fail);
    return ok;
  };
  auto word = [&](size_t i) { return i < args.size() ? args[i] : std::string{}; };

  if (sub == "put" && args.size() >= 4) {
    std::string value;
    for (size_t i = 3; i < args.size(); ++i)
      value += (i > 3 ? " " : "") + args[i];
    kvs::transaction txn;
    txn.ns = ns;
    txn.as = as;
    if (json_value)
      txn.put_json(args[2], value);
    else
      txn.put(args[2], value);
    return commit(std::move(txn));
  }
  if (sub == "unlink" && args.size() == 3) {
    kvs::transaction txn;
    txn.ns = ns;
    txn.as = as;
    txn.unlink(args[2]);
    return commit(std::move(txn));
  }
  if (sub == "ns" && args.size() >= 4 && args.size() <= 5
      && (args[2] == "create" || (args[2] == "remove" && args.size() == 4))) {
    kvs::transaction txn;
    txn.ns = args[3];
    txn.as = as;
    txn.ops.push_back(
      {args[2] == "create" ? kvs::op::create_namespace : kvs::op::remove_namespace, "",
       word(4), false});
    return commit(std::move(txn));
  }
  if (sub == "get" && args.size() == 3) {
    bool ok = false;
    self->request(*store, opts_.timeout, kvs::lookup_atom::value, ns, args[2], kvs_seen_)
      .receive(
        [&](const kvs::entry& e) {
          ok = true;
          saw(e.version);
          if (opts_.json)
            out << entry_json(e).dump() << "\n";
          else
            out << shown(e.value, e.json) << "\n";
        },
        fail);
    return ok;
  }
  if (sub == "ls" && args.size() <= 3) {
    bool ok = false;
    self->request(*store, opts_.timeout, kvs::list_atom::value, ns, word(2), kvs_seen_)
      .receive(
        [&](const kvs::listing& l) {
          ok = true;
          saw(l.version);
          if (opts_.json) {
            out << nlohmann::json{{"ns", l.ns},
                                  {"dir", l.dir},
                                  {"version", l.version},
                                  {"names", l.names}}
                     .dump()
                << "\n";
            return;
          }
          for (const auto& n : l.names)
            out << n << "\n";
        },
        fail);
    return ok;
  }
  if (sub == "dump" && args.size() <= 3) {
    bool ok = false;
    self->request(*store, opts_.timeout, kvs::dump_atom::value, ns, word(2), kvs_seen_)
      .receive(
        [&](const kvs::dump& d) {
          ok = true;
          saw(d.version);
          if (opts_.json) {
            auto entries = nlohmann::json::array();
            for (const auto& e : d.entries)
              entries.push_back(entry_json(e));
            out << nlohmann::json{{"ns", d.ns},
                                  {"version", d.version},
                                  {"entries", entries}}
                     .dump()
                << "\n";
            return;
          }
          for (const auto& e : d.entries)
            out << e.key << " = " << shown(e.value, e.json) << "\n";
        },
        fail);
    return ok;
  }
  if (sub == "stats" && args.size() == 2) {
    bool ok = false;
    self->request(*store, opts_.timeout, caf::get_atom::value)
      .receive(
        [&](const kvs::kvs_stats& s) {
          ok = true;
          nlohmann::json j{{"version", s.version},       {"keys", s.keys},
                           {"namespaces", s.namespaces}, {"root", s.root},
                           {"commits", s.commits},       {"batches", s.batches},
                           {"refused", s.refused},       {"applied", s.applied},
                           {"syncs", s.syncs},           {"snapshots", s.snapshots},
                           {"watches", s.watches},       {"store", s.store}};
          if (opts_.json) {
            out << j.dump() << "\n";
            return;
          }
          out << "version " << s.version << ", " << s.keys << " keys in " << s.namespaces
              << " namespaces" << (s.root ? ", root" : "") << "\n";
          if (s.root)
            out << "store " << (s.store.empty() ? "(memory only)" : s.store) << ": "
                << s.commits << " commits in " << s.batches << " writes\n";
          out << "applied " << s.applied << ", catch-ups " << s.syncs << " ("
              << s.snapshots << " whole), refused " << s.refused << ", watches "
              << s.watches << "\n";
        },
        fail);
    return ok;
  }
  if (sub == "watch" && args.size() >= 3) {
    long count = -1;
    long for_ms = -1;
    if (!read_count_and_time(args, 3, count, for_ms, kvs_usage, err))
      return false;
    bool watching = false;
    self
      ->request(*store, opts_.timeout, kvs::watch_atom::value, ns, args[2],
                caf::actor{self})
      .receive(
        [&](uint64_t version) {
          watching = true;
          saw(version);
        },
        fail);
    if (!watching)
      return false;
    if (!opts_.json)
      out << "watching \"" << args[2] << "\" in " << ns << " (Ctrl-C stops)" << std::endl;
    follow_limits limits{count, for_ms, interrupted_};
    while (limits.more()) {
      self->receive(
        [&](const kvs::change& c) {
          limits.saw();
          saw(c.version);
          if (opts_.json) {
            auto set = nlohmann::json::array();
            for (const auto& e : c.set)
              set.push_back(entry_json(e));
            out << nlohmann::json{{"ns", c.ns},
                                  {"watched", c.watched},
                                  {"version", c.version},
                                  {"set", set},
                                  {"removed", c.removed}}
                     .dump()
                << std::endl;
            return;
          }
          for (const auto& e : c.set)
            out << "version " << c.version << "  " << e.key << " = "
                << shown(e.value, e.json) << std::endl;
          for (const auto& k : c.removed)
            out << "version " << c.version << "  " << k << " removed" << std::endl;
        },
        caf::after(std::chrono::milliseconds{100}) >> [] {});
    }
    caf::anon_send(*store, kvs::unwatch_atom::value, caf::actor{self});
    return true;
  }
  err << kvs_usage;
  return false;
}

} // namespace troupe::shell
