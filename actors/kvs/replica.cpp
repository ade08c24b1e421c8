// The KVS's rules and in-memory copy (replica.hpp).

#include "actors/kvs/detail/replica.hpp"

#include <nlohmann/json.hpp>

#include "base/error.hpp"

namespace troupe::kvs {

namespace {

constexpr size_t max_key_bytes = 1024;
constexpr size_t max_namespace_bytes = 128;

/// The first key after every key below `prefix` ('/' follows '.').
std::string past_subtree(const std::string& prefix) {
  return prefix + "/";
}

caf::error check_namespace_name(const std::string& ns) {
  if (ns.empty() || ns.size() > max_namespace_bytes)
    return make_error(errc::invalid_argument,
                      "a namespace name needs 1 to " + std::to_string(max_namespace_bytes)
                        + " bytes, not " + std::to_string(ns.size()));
  for (unsigned char c : ns)
    if (c <= 0x20 || c == 0x7f || c == '.')
      return make_error(errc::invalid_argument,
                        "namespace '" + ns + "': no spaces, control characters or '.'");
  return caf::none;
}

caf::error owner_check(const transaction& txn, const std::string& owner) {
  if (owner.empty() || owner == txn.as)
    return caf::none;
  return make_error(errc::refused, "namespace '" + txn.ns + "' is owned by '" + owner
                                     + "'; this transaction commits as '" + txn.as + "'");
}

} // namespace

bool at_or_under(std::string_view key, std::string_view prefix) {
  if (prefix.empty())
    return true;
  if (key.size() < prefix.size() || key.compare(0, prefix.size(), prefix) != 0)
    return false;
  return key.size() == prefix.size() || key[prefix.size()] == '.';
}

caf::error check_key(std::string_view key, std::string_view what) {
  auto bad = [&](const std::string& why) {
    return make_error(errc::invalid_argument,
                      std::string{what} + " '" + std::string{key} + "': " + why);
  };
  if (key.empty())
    return make_error(errc::invalid_argument, std::string{what} + ": empty");
  if (key.size() > max_key_bytes)
    return bad("longer than " + std::to_string(max_key_bytes) + " bytes");
  if (key.front() == '.' || key.back() == '.' || key.find("..") != std::string_view::npos)
    return bad("an empty component (components are joined by single dots)");
  for (unsigned char c : key)
    if (c <= 0x20 || c == 0x7f)
      return bad("spaces and control characters are not allowed");
  return caf::none;
}

uint64_t transaction_bytes(const transaction& txn) {
  uint64_t n = txn.ns.size() + txn.as.size();
  for (const auto& o : txn.ops)
    n += o.key.size() + o.value.size();
  return n;
}

caf::error check_transaction(const transaction& txn, uint64_t max_bytes) {
  if (auto err = check_namespace_name(txn.ns))
    return err;
  if (txn.ops.empty())
    return make_error(errc::invalid_argument, "an empty transaction");
  auto bytes = transaction_bytes(txn);
  if (bytes > max_bytes)
    return make_error(errc::refused, "a transaction of " + std::to_string(bytes)
                                       + " bytes is over the KVS's max_txn_bytes ("
                                       + std::to_string(max_bytes) + ")");
  for (const auto& o : txn.ops) {
    switch (o.kind) {
      case op::put:
        if (auto err = check_key(o.key))
          return err;
        if (o.json && !nlohmann::json::accept(o.value))
          return make_error(errc::invalid_argument,
                            "key '" + o.key + "': the value is not valid JSON");
        break;
      case op::unlink:
        if (auto err = check_key(o.key))
          return err;
        break;
      case op::create_namespace:
      case op::remove_namespace:
        if (txn.ops.size() != 1)
          return make_error(errc::invalid_argument,
                            "a namespace step must be alone in its transaction");
        if (o.kind == op::remove_namespace && txn.ns == primary_namespace)
          return make_error(errc::refused,
                            "namespace '" + primary_namespace + "' cannot be removed");
        break;
      default:
        return make_error(errc::invalid_argument,
                          "unknown transaction step " + std::to_string(o.kind));
    }
  }
  return caf::none;
}

caf::error check_and_note_namespace(const transaction& txn, namespace_table& namespaces) {
  auto i = namespaces.find(txn.ns);
  const auto& first = txn.ops.front();
  if (first.kind == op::create_namespace) {
    if (i != namespaces.end())
      return make_error(errc::refused, "namespace '" + txn.ns + "' exists already");
    namespaces.emplace(txn.ns, first.value);
    return caf::none;
  }
  if (i == namespaces.end())
    return make_error(errc::not_found, "no namespace '" + txn.ns + "'");
  if (auto err = owner_check(txn, i->second))
    return err;
  if (first.kind == op::remove_namespace)
    namespaces.erase(i);
  return caf::none;
}

uint64_t replica::key_count() const {
  uint64_t n = 0;
  for (const auto& [ns, keys] : data_)
    n += keys.size();
  return n;
}

const replica::keys_type* replica::keys_of(const std::string& ns) const {
  auto i = data_.find(ns);
  if (i != data_.end())
    return &i->second;
  static const keys_type none;
  return namespaces_.count(ns) > 0 ? &none : nullptr;
}

void replica::remove_under(keys_type& keys, const std::string& key,
                           const std::function<void(const std::string&)>& removing) {
  auto first = keys.lower_bound(key + ".");
  auto last = keys.lower_bound(past_subtree(key));
  for (auto i = first; i != last; ++i)
    removing(i->first);
  keys.erase(first, last);
}

applied_change replica::apply(const commit_record& record) {
  applied_change out;
  const auto& txn = record.txn;
  version_ = record.version;
  const auto& first = txn.ops.front();
  if (first.kind == op::create_namespace) {
    namespaces_[txn.ns] = first.value;
    data_[txn.ns];
    return out;
  }
  if (first.kind == op::remove_namespace) {
    for (const auto& kv : data_[txn.ns])
      out.removed.push_back(kv.first);
    data_.erase(txn.ns);
    namespaces_.erase(txn.ns);
    return out;
  }
  // What the commit does in the end, against what was there before it: a key set
  // twice is set once, with its last value; a key made and removed again is nothing.
  auto& keys = data_[txn.ns];
  std::map<std::string, bool> existed; // every key touched: was it there before?
  auto removing = [&](const std::string& key) { existed.emplace(key, true); };
  for (const auto& o : txn.ops) {
    if (o.kind == op::put) {
      // A value at a parent gives way to the directory this key needs.
      for (auto dot = o.key.find('.'); dot != std::string::npos;
           dot = o.key.find('.', dot + 1))
        if (auto p = keys.find(o.key.substr(0, dot)); p != keys.end()) {
          removing(p->first);
          keys.erase(p);
        }
      remove_under(keys, o.key, removing);
      existed.emplace(o.key, keys.count(o.key) > 0);
      keys[o.key] = stored{o.value, o.json, record.version};
    } else if (o.kind == op::unlink) {
      if (auto k = keys.find(o.key); k != keys.end()) {
        removing(k->first);
        keys.erase(k);
      }
      remove_under(keys, o.key, removing);
    }
  }
  for (const auto& [key, before] : existed) {
    auto now = keys.find(key);
    if (now != keys.end() && now->second.version == record.version)
      out.set.push_back(
        {txn.ns, key, now->second.value, now->second.json, record.version});
    else if (now == keys.end() && before)
      out.removed.push_back(key);
  }
  return out;
}

void replica::replace(uint64_t version, const std::vector<namespace_info>& namespaces,
                      const std::vector<entry>& entries) {
  version_ = version;
  namespaces_.clear();
  data_.clear();
  for (const auto& n : namespaces)
    namespaces_[n.name] = n.owner;
  namespaces_.emplace(primary_namespace, "");
  for (const auto& e : entries)
    data_[e.ns][e.key] = stored{e.value, e.json, e.version};
}

void replica::whole(std::vector<namespace_info>& namespaces,
                    std::vector<entry>& entries) const {
  for (const auto& [name, owner] : namespaces_)
    namespaces.push_back({name, owner});
  for (const auto& [ns, keys] : data_)
    for (const auto& [key, s] : keys)
      entries.push_back({ns, key, s.value, s.json, s.version});
}

caf::expected<entry> replica::lookup(const std::string& ns,
                                     const std::string& key) const {
  const auto* keys = keys_of(ns);
  if (keys == nullptr)
    return make_error(errc::not_found, "no namespace '" + ns + "'");
  if (auto i = keys->find(key); i != keys->end())
    return entry{ns, key, i->second.value, i->second.json, i->second.version};
  auto below = keys->lower_bound(key + ".");
  if (below != keys->end() && at_or_under(below->first, key))
    return make_error(errc::invalid_argument, "'" + key + "' is a directory");
  return make_error(errc::not_found, "no key '" + key + "' in namespace '" + ns
                                       + "' (version " + std::to_string(version_) + ")");
}

caf::expected<listing> replica::list(const std::string& ns,
                                     const std::string& dir) const {
  const auto* keys = keys_of(ns);
  if (keys == nullptr)
    return make_error(errc::not_found, "no namespace '" + ns + "'");
  if (keys->count(dir) > 0)
    return make_error(errc::invalid_argument,
                      "'" + dir + "' is a value, not a directory");
  listing out{ns, dir, version_, {}};
  auto prefix = dir.empty() ? std::string{} : dir + ".";
  auto i = keys->lower_bound(prefix);
  while (i != keys->end() && i->first.compare(0, prefix.size(), prefix) == 0) {
    auto rest = std::string_view{i->first}.substr(prefix.size());
    auto dot = rest.find('.');
    if (dot == std::string_view::npos) {
      out.names.emplace_back(rest);
      ++i;
    } else {
      auto name = std::string{rest.substr(0, dot)};
      out.names.push_back(name + ".");
      i = keys->lower_bound(past_subtree(prefix + name)); // past that directory
    }
  }
  if (out.names.empty() && !dir.empty())
    return make_error(errc::not_found, "no directory '" + dir + "' in namespace '" + ns
                                         + "' (version " + std::to_string(version_)
                                         + ")");
  return out;
}

caf::expected<dump> replica::dump_under(const std::string& ns,
                                        const std::string& dir) const {
  const auto* keys = keys_of(ns);
  if (keys == nullptr)
    return make_error(errc::not_found, "no namespace '" + ns + "'");
  dump out{ns, version_, {}};
  for (const auto& [key, s] : under(ns, dir))
    out.entries.push_back({ns, key, s.value, s.json, s.version});
  if (out.entries.empty() && !dir.empty())
    return make_error(errc::not_found, "nothing at or under '" + dir + "' in namespace '"
                                         + ns + "' (version " + std::to_string(version_)
                                         + ")");
  return out;
}

replica::keys_type replica::under(const std::string& ns, const std::string& key) const {
  keys_type out;
  const auto* keys = keys_of(ns);
  if (keys == nullptr)
    return out;
  if (key.empty())
    return *keys;
  if (auto i = keys->find(key); i != keys->end())
    out.insert(*i);
  out.insert(keys->lower_bound(key + "."), keys->lower_bound(past_subtree(key)));
  return out;
}

} // namespace troupe::kvs
