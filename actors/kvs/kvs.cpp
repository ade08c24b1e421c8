// The KVS actor (kvs.hpp): every rank's replica, its reads and watches, and the way
// of a commit to the root (root.cpp) and back.

#include "actors/kvs/kvs.hpp"

#include <algorithm>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <utility>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>

#include "actors/group/follow.hpp"
#include "actors/kvs/detail/kvs_actor.hpp"
#include "actors/overlay/overlay.hpp"
#include "actors/service_config.hpp"
#include "base/error.hpp"
#include "base/log.hpp"
#include "runtime/json_reader.hpp"
#include "runtime/provider_registry.hpp"

namespace troupe::kvs {

// -- the replica --------------------------------------------------------------------

namespace {

/// This process's KVS actors, for local_reader::of.
std::mutex local_replicas_mutex;
std::map<const caf::actor_control_block*, std::weak_ptr<const detail::shared_replica>>
  local_replicas;

void tell_watchers(kvs_actor* self, const std::string& ns, const applied_change& c,
                   uint64_t version) {
  for (const auto& w : self->state.watches) {
    if (w.ns != ns)
      continue;
    change out{ns, w.key, version, {}, {}};
    for (const auto& e : c.set)
      if (at_or_under(e.key, w.key))
        out.set.push_back(e);
    for (const auto& k : c.removed)
      if (at_or_under(k, w.key))
        out.removed.push_back(k);
    if (!out.set.empty() || !out.removed.empty())
      self->send(w.who, std::move(out));
  }
}

/// Replaces the replica with the root's whole store, telling each watch what differs.
void take_whole(kvs_actor* self, const sync_reply& reply) {
  auto& st = self->state;
  std::vector<replica::keys_type> before;
  for (const auto& w : st.watches)
    before.push_back(st.data().under(w.ns, w.key));
  std::unique_lock<std::shared_mutex> guard{st.shared->mutex};
  st.data().replace(reply.version, reply.namespaces, reply.entries);
  guard.unlock();
  for (size_t i = 0; i < st.watches.size(); ++i) {
    const auto& w = st.watches[i];
    auto after = st.data().under(w.ns, w.key);
    change c{w.ns, w.key, reply.version, {}, {}};
    for (const auto& [key, s] : after) {
      auto b = before[i].find(key);
      if (b == before[i].end() || b->second.version != s.version)
        c.set.push_back({w.ns, key, s.value, s.json, s.version});
    }
    for (const auto& kv : before[i])
      if (after.count(kv.first) == 0)
        c.removed.push_back(kv.first);
    if (!c.set.empty() || !c.removed.empty())
      self->send(w.who, std::move(c)); // this watch's own difference, once
  }
  ++st.stats.snapshots;
}

/// Applies the commits held in `ahead` that are next in order; asks the root after
/// gap_wait for what is missing before the rest.
void flush_ahead(kvs_actor* self) {
  auto& st = self->state;
  if (!st.synced || st.ahead_root != st.following) {
    run_ready_waits(self);
    return;
  }
  while (!st.ahead.empty()) {
    auto first = st.ahead.begin();
    if (first->first <= st.data().version()) {
      st.ahead.erase(first); // had it
    } else if (first->first == st.data().version() + 1) {
      apply_record(self, first->second);
      st.ahead.erase(first);
    } else {
      if (!st.gap_check_pending) {
        st.gap_check_pending = true;
        self->delayed_send(self, st.settings.gap_wait, gap_check_atom::value,
                           st.data().version());
      }
      break;
    }
  }
  run_ready_waits(self);
}

void start_sync(kvs_actor* self);

void schedule_resync(kvs_actor* self) {
  self->delayed_send(self, milliseconds{250}, resync_atom::value);
}

void on_sync(kvs_actor* self, sync_reply& reply) {
  auto& st = self->state;
  if (st.is_root)
    return;
  if (reply.whole) {
    take_whole(self, reply);
  } else {
    if (reply.root != st.following) {
      // Records from a root this replica does not follow (cannot happen: the root
      // answers with its whole store then); ask again.
      schedule_resync(self);
      return;
    }
    for (const auto& r : reply.records)
      if (r.version == st.data().version() + 1)
        apply_record(self, r);
  }
  st.following = reply.root;
  st.synced = true;
  flush_ahead(self);
}

/// Calls `then` with the root's KVS actor.
template <class F>
void with_root(kvs_actor* self, F then) {
  auto& st = self->state;
  if (st.view.members.empty())
    return then(caf::expected<caf::actor>{
      make_error(errc::refused, "the KVS at " + st.address + " is not in a view yet")});
  st.roots.with(self, st.locator, st.view.members.front(), st.settings.timeout,
                std::move(then));
}

void start_sync(kvs_actor* self) {
  auto& st = self->state;
  if (st.syncing || st.is_root || st.rank == UINT32_MAX)
    return;
  st.syncing = true;
  ++st.stats.syncs;
  with_root(self, [self](caf::expected<caf::actor> root) {
    auto& st = self->state;
    if (!root) {
      st.syncing = false;
      TROUPE_LOG_DEBUG("kvs", "no KVS root to catch up from: " << describe(root.error()));
      schedule_resync(self);
      return;
    }
    auto following = st.synced ? st.following : std::string{};
    self
      ->request(*root, st.settings.timeout, sync_atom::value, following,
                st.data().version())
      .then(
        [self](sync_reply& reply) {
          self->state.syncing = false;
          on_sync(self, reply);
        },
        [self](const caf::error& err) {
          auto& st = self->state;
          st.syncing = false;
          if (!st.view.members.empty())
            st.roots.forget(st.view.members.front()); // looked up again next time
          TROUPE_LOG_DEBUG("kvs", "catching up from the root failed: " << describe(err));
          schedule_resync(self);
        });
  });
}

/// Whether the replica can answer a read that needs `min_version`.
bool ready_for(const kvs_state& st, uint64_t min_version) {
  return st.synced && st.data().version() >= min_version;
}

/// Runs `then` once the replica reached `min_version`, or with troupe.timeout.
void when_ready(kvs_actor* self, uint64_t min_version,
                std::function<void(caf::error)> then) {
  auto& st = self->state;
  if (ready_for(st, min_version))
    return then(caf::none);
  auto id = ++st.next_wait_id;
  st.waits.emplace(min_version, version_wait{id, std::move(then)});
  self->delayed_send(self, st.settings.timeout, read_expire_atom::value, id);
  if (!st.synced)
    start_sync(self);
  else // the commits up to it may have been lost on the way: ask if they do not come
    self->delayed_send(self, st.settings.gap_wait, behind_check_atom::value);
}

/// A read: answered now when the replica is there, else once it is.
template <class T, class Read>
caf::result<T> read_at(kvs_actor* self, uint64_t min_version, Read read) {
  if (ready_for(self->state, min_version))
    return read();
  auto rp = self->make_response_promise<T>();
  when_ready(self, min_version, [rp, read](caf::error err) mutable {
    if (err) {
      rp.deliver(std::move(err));
      return;
    }
    auto answer = read();
    if (answer)
      rp.deliver(std::move(*answer));
    else
      rp.deliver(std::move(answer.error()));
  });
  return rp;
}

void adopt(kvs_actor* self, group::group_view v) {
  auto& st = self->state;
  auto root_of = [](const group::group_view& view) {
    return view.members.empty() ? std::string{}
                                : view.members.front().address + "#"
                                    + std::to_string(view.members.front().incarnation);
  };
  auto root_before = root_of(st.view);
  if (!group::adopt_view(st.view, st.rank, std::move(v), st.address))
    return; // an older view, answered late
  if (!root_before.empty() && root_of(st.view) != root_before && st.rank != 0)
    st.synced = false; // another root: take its state before answering again
  if (st.rank == 0 && !st.is_root)
    become_root(self);
  else if (st.rank != 0 && st.is_root)
    stop_being_root(self);
  if (!st.is_root && st.rank != UINT32_MAX && !st.synced)
    start_sync(self);
}

/// Sends a checked transaction on its way: to the root, or into the root's batch here.
void forward_commit(kvs_actor* self, transaction txn,
                    caf::typed_response_promise<commit_receipt> rp) {
  auto& st = self->state;
  auto ns = txn.ns;
  auto ops = static_cast<uint32_t>(txn.ops.size());
  auto answer = [rp, ns, ops](const commit_record& r) mutable {
    rp.deliver(commit_receipt{r.version, ns, ops});
  };
  if (st.is_root) {
    root_accept(self, std::move(txn),
                [rp, answer](caf::expected<commit_record> r) mutable {
                  if (r)
                    answer(*r);
                  else
                    rp.deliver(std::move(r.error()));
                });
    return;
  }
  with_root(self, [self, rp, answer,
                   txn = std::move(txn)](caf::expected<caf::actor> root) mutable {
    auto& st = self->state;
    if (!root) {
      rp.deliver(std::move(root.error()));
      return;
    }
    auto root_member = st.view.members.front();
    auto root_address = root_member.address;
    self->request(*root, st.settings.timeout, root_commit_atom::value, std::move(txn))
      .then(
        [self, rp, answer](sync_reply& made) mutable {
          // The record to this replica at once (read-your-writes here), and the answer
          // once the replica holds it.
          auto version = made.records.back().version;
          receive_records(self, made.root, std::move(made.records));
          when_ready(self, version, [rp, answer, version](caf::error err) mutable {
            if (err)
              rp.deliver(make_error(errc::timeout,
                                    "committed as version " + std::to_string(version)
                                      + ", but this rank's replica did not reach it: "
                                      + describe(err)));
            else
              answer(commit_record{version, {}});
          });
        },
        [self, rp, root_address, root_member](caf::error& err) mutable {
          if (err == caf::sec::request_timeout) {
            err = make_error(errc::timeout, "the KVS root (rank 0, " + root_address
                                              + ") did not answer in time; the commit "
                                                "may have been made (read its keys)");
          } else if (err.category() != error_category_atom) {
            self->state.roots.forget(root_member); // looked up again next time
            err = make_error(errc::unreachable, "the KVS root (rank 0, " + root_address
                                                  + ") is gone: " + describe(err));
          }
          rp.deliver(std::move(err));
        });
  });
}

caf::result<commit_receipt> commit(kvs_actor* self, transaction& txn) {
  auto& st = self->state;
  if (auto err = check_transaction(txn, st.settings.max_txn_bytes)) {
    ++st.stats.refused;
    return err;
  }
  auto rp = self->make_response_promise<commit_receipt>();
  if (ready_for(st, 0)) {
    forward_commit(self, std::move(txn), rp);
    return rp;
  }
  // Not in a view (or not caught up) yet, as at a node's start: wait for it, as reads do.
  when_ready(self, 0, [self, rp, txn = std::move(txn)](caf::error err) mutable {
    if (err)
      rp.deliver(std::move(err));
    else
      forward_commit(self, std::move(txn), rp);
  });
  return rp;
}

} // namespace

void apply_record(kvs_actor* self, const commit_record& record) {
  auto& st = self->state;
  std::unique_lock<std::shared_mutex> guard{st.shared->mutex};
  auto changed = st.data().apply(record);
  guard.unlock();
  ++st.stats.applied;
  tell_watchers(self, record.txn.ns, changed, record.version);
}

void receive_records(kvs_actor* self, const std::string& root,
                     std::vector<commit_record> records) {
  auto& st = self->state;
  if (st.is_root)
    return;
  if (root != st.ahead_root) {
    st.ahead.clear();
    st.ahead_root = root;
  }
  for (auto& r : records)
    if (r.version > st.data().version() || root != st.following)
      st.ahead.emplace(r.version, std::move(r));
  if (!st.synced || root != st.following) {
    start_sync(self); // a new root (or none yet): take its state first
    return;
  }
  flush_ahead(self);
}

void run_ready_waits(kvs_actor* self) {
  auto& st = self->state;
  if (!st.synced)
    return;
  while (!st.waits.empty() && st.waits.begin()->first <= st.data().version()) {
    auto w = std::move(st.waits.begin()->second);
    st.waits.erase(st.waits.begin());
    w.run(caf::none);
  }
}

// -- the behavior -----------------------------------------------------------------------

namespace {

caf::behavior kvs_behavior(kvs_actor* self) {
  auto updates = group::view_updates(
    self, self->state.group, [self](group::group_view v) { adopt(self, std::move(v)); });
  return updates.or_else(caf::message_handler{
    [self](commit_atom, transaction& txn) { return commit(self, txn); },
    [self](lookup_atom, const std::string& ns, const std::string& key,
           uint64_t min_version) -> caf::result<entry> {
      if (auto err = check_key(key))
        return err;
      return read_at<entry>(self, min_version, [self, ns, key] {
        return self->state.data().lookup(ns, key);
      });
    },
    [self](list_atom, const std::string& ns, const std::string& dir,
           uint64_t min_version) -> caf::result<listing> {
      if (!dir.empty())
        if (auto err = check_key(dir, "directory"))
          return err;
      return read_at<listing>(
        self, min_version, [self, ns, dir] { return self->state.data().list(ns, dir); });
    },
    [self](dump_atom, const std::string& ns, const std::string& dir,
           uint64_t min_version) -> caf::result<dump> {
      if (!dir.empty())
        if (auto err = check_key(dir, "directory"))
          return err;
      return read_at<dump>(self, min_version, [self, ns, dir] {
        return self->state.data().dump_under(ns, dir);
      });
    },
    [self](watch_atom, std::string& ns, std::string& key,
           const caf::actor& who) -> caf::result<uint64_t> {
      if (!key.empty())
        if (auto err = check_key(key))
          return err;
      if (!who)
        return make_error(errc::invalid_argument, "a watch needs an actor to tell");
      auto& st = self->state;
      self->monitor(who);
      st.watches.push_back({who, std::move(ns), std::move(key)});
      st.stats.watches = st.watches.size();
      return st.data().version();
    },
    [self](unwatch_atom, const caf::actor& who) {
      auto& ws = self->state.watches;
      ws.erase(std::remove_if(ws.begin(), ws.end(),
                              [&](const watch& w) { return w.who == who; }),
               ws.end());
      self->state.stats.watches = ws.size();
      return caf::unit;
    },
    [self](caf::get_atom) {
      auto& st = self->state;
      st.stats.version = st.data().version();
      st.stats.keys = st.data().key_count();
      st.stats.namespaces = st.data().namespaces().size();
      return st.stats;
    },
    // Between ranks.
    [self](root_commit_atom, transaction& txn) -> caf::result<sync_reply> {
      // Checked again: the rank that sent it may run other limits (or be buggy).
      if (auto err = check_transaction(txn, self->state.settings.max_txn_bytes)) {
        ++self->state.stats.refused;
        return err;
      }
      auto rp = self->make_response_promise<sync_reply>();
      root_accept(self, std::move(txn),
                  [self, rp](caf::expected<commit_record> r) mutable {
                    if (!r) {
                      rp.deliver(std::move(r.error()));
                      return;
                    }
                    sync_reply made;
                    made.root = self->state.root_id;
                    made.version = r->version;
                    made.records.push_back(std::move(*r));
                    rp.deliver(std::move(made));
                  });
      return rp;
    },
    [self](apply_atom, const std::string& root, commit_batch& batch) {
      receive_records(self, root, std::move(batch.records));
    },
    [self](sync_atom, const std::string& root, uint64_t from_version) {
      return root_sync(self, root, from_version);
    },
    // To itself.
    [self](flush_atom) { root_flush(self); },
    [self](gap_check_atom, uint64_t at_version) {
      auto& st = self->state;
      st.gap_check_pending = false;
      if (st.ahead.empty())
        return;
      if (st.data().version() == at_version)
        start_sync(self); // what was missing did not come
      else
        flush_ahead(self); // some came: wait again for the rest
    },
    [self](behind_check_atom) {
      auto& st = self->state;
      if (!st.waits.empty() && st.waits.rbegin()->first > st.data().version())
        start_sync(self); // what is waited for did not come
    },
    // The root: tell every rank the version it is at (some missed a broadcast).
    [self](tip_atom) {
      auto& st = self->state;
      if (!st.is_root)
        return;
      self
        ->request(st.overlay, st.settings.timeout, overlay::broadcast_atom::value,
                  st.provider_name,
                  caf::make_message(tip_atom::value, st.root_id, st.data().version()))
        .then([](const overlay::reduction_result&) {}, [](const caf::error&) {});
    },
    [self](tip_atom, const std::string& root, uint64_t version) {
      auto& st = self->state;
      if (!st.is_root && (root != st.following || version > st.data().version()))
        start_sync(self);
    },
    [self](resync_atom) {
      auto& st = self->state;
      if (!st.synced || !st.ahead.empty())
        start_sync(self);
    },
    [self](read_expire_atom, uint64_t id) {
      auto& st = self->state;
      for (auto i = st.waits.begin(); i != st.waits.end(); ++i)
        if (i->second.id == id) {
          auto w = std::move(i->second);
          auto wanted = i->first;
          st.waits.erase(i);
          w.run(make_error(
            errc::timeout,
            "this rank's KVS replica is at version " + std::to_string(st.data().version())
              + (st.rank == UINT32_MAX ? " (this node is not in a view of its group)"
                 : st.synced           ? ""
                                       : " (not caught up with the root yet)")
              + " and did not reach version " + std::to_string(wanted) + " within "
              + std::to_string(st.settings.timeout.count()) + " ms"));
          return;
        }
    },
  });
}

caf::behavior kvs_actor_fn(kvs_actor* self, kvs_settings settings, caf::actor group,
                           caf::actor overlay, caf::actor locator,
                           std::string provider_name, uint16_t provider_id,
                           std::string address,
                           std::shared_ptr<detail::shared_replica> shared) {
  auto& st = self->state;
  st.settings = std::move(settings);
  st.group = group;
  st.overlay = std::move(overlay);
  st.locator = std::move(locator);
  st.provider_name = std::move(provider_name);
  st.roots = group::peer_providers{"kvs", provider_id};
  st.address = std::move(address);
  st.stats.store = st.settings.store_path;
  st.shared = std::move(shared);
  // (Run after the state is gone: it captures what it needs.)
  self->attach_functor([ctrl = self->ctrl()] {
    std::lock_guard<std::mutex> guard{local_replicas_mutex};
    local_replicas.erase(ctrl);
  });
  group::follow_group(self, group, "kvs",
                      [self](group::group_view v) { adopt(self, std::move(v)); });
  self->monitor(st.overlay);
  // One down handler for the group, the overlay and the watchers.
  self->set_down_handler([self](const caf::down_msg& dm) {
    auto& st = self->state;
    if (dm.source == st.group.address() || dm.source == st.overlay.address()) {
      self->quit(dm.reason); // (the store writer ends with this actor)
      return;
    }
    auto& ws = st.watches;
    ws.erase(std::remove_if(ws.begin(), ws.end(),
                            [&](const watch& w) { return w.who.address() == dm.source; }),
             ws.end());
    st.stats.watches = ws.size();
  });
  return kvs_behavior(self);
}

caf::expected<caf::actor> make_kvs(const provider_context& ctx) {
  kvs_settings settings;
  auto err = actors::read_service_config(
    ctx,
    {"store", "sync", "max_txn_bytes", "timeout_ms", "gap_wait_ms", "log_records",
     "log_bytes"},
    [&](json_reader& r, const nlohmann::json& cfg) {
      if (auto s = cfg.find("store"); s != cfg.end() && !s->is_null())
        settings.store_path = r.read_string("config.store", *s);
      if (auto s = cfg.find("sync"); s != cfg.end()) {
        auto mode = r.read_string("config.sync", *s);
        if (mode == "full")
          settings.sync = sync_mode::full;
        else if (mode == "normal")
          settings.sync = sync_mode::normal;
        else if (mode == "off")
          settings.sync = sync_mode::off;
        else
          r.expected("config.sync", "\"full\", \"normal\" or \"off\"", *s);
      }
      if (auto m = cfg.find("max_txn_bytes"); m != cfg.end())
        settings.max_txn_bytes = static_cast<uint64_t>(
          r.read_integer("config.max_txn_bytes", *m, 1, int64_t{1} << 30));
      if (auto t = cfg.find("timeout_ms"); t != cfg.end())
        settings.timeout =
          milliseconds{r.read_integer("config.timeout_ms", *t, 1, 3600 * 1000)};
      if (auto g = cfg.find("gap_wait_ms"); g != cfg.end())
        settings.gap_wait =
          milliseconds{r.read_integer("config.gap_wait_ms", *g, 1, 600 * 1000)};
      if (auto l = cfg.find("log_bytes"); l != cfg.end())
        settings.log_bytes = static_cast<uint64_t>(
          r.read_integer("config.log_bytes", *l, 0, int64_t{1} << 40));
      if (auto l = cfg.find("log_records"); l != cfg.end())
        settings.log_records =
          static_cast<size_t>(r.read_integer("config.log_records", *l, 0, 1 << 24));
    });
  if (err)
    return err;
  auto deps = actors::group_and_overlay_of(ctx);
  if (!deps)
    return deps.error();
  if (!ctx.locator || ctx.node_address.empty())
    return make_error(errc::invalid_config,
                      ctx.spec.origin + ": the KVS needs a node with a transport");
  // The replica is made here, so that local readers find it as soon as the handle is
  // out (the actor's own start runs later, on a worker).
  auto shared = std::make_shared<detail::shared_replica>();
  auto handle = ctx.system.spawn(kvs_actor_fn, std::move(settings), deps->group,
                                 deps->overlay, ctx.locator, ctx.spec.name,
                                 ctx.spec.provider_id, ctx.node_address, shared);
  std::lock_guard<std::mutex> guard{local_replicas_mutex};
  local_replicas[caf::actor_cast<caf::actor_control_block*>(handle)] = shared;
  return handle;
}

} // namespace

caf::expected<local_reader> local_reader::of(const caf::actor& kvs) {
  auto ctrl = caf::actor_cast<caf::actor_control_block*>(kvs);
  std::lock_guard<std::mutex> guard{local_replicas_mutex};
  auto i = local_replicas.find(ctrl);
  if (ctrl == nullptr || i == local_replicas.end())
    return make_error(errc::not_found,
                      "no KVS provider of this process has that handle "
                      "(a provider on another node is read with requests)");
  auto replica = i->second.lock();
  if (!replica)
    return make_error(errc::not_found, "that KVS provider has ended");
  return local_reader{std::move(replica)};
}

caf::expected<entry> local_reader::lookup(const std::string& ns,
                                          const std::string& key) const {
  if (auto err = check_key(key))
    return err;
  std::shared_lock<std::shared_mutex> guard{replica_->mutex};
  return replica_->data.lookup(ns, key);
}

uint64_t local_reader::version() const {
  std::shared_lock<std::shared_mutex> guard{replica_->mutex};
  return replica_->data.version();
}

void register_kvs_provider(provider_registry& registry) {
  registry.add_type("kvs", make_kvs);
}

void register_kvs_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<op>("troupe::kvs::op");
  cfg.add_message_type<transaction>("troupe::kvs::transaction");
  cfg.add_message_type<commit_receipt>("troupe::kvs::commit_receipt");
  cfg.add_message_type<entry>("troupe::kvs::entry");
  cfg.add_message_type<listing>("troupe::kvs::listing");
  cfg.add_message_type<dump>("troupe::kvs::dump");
  cfg.add_message_type<change>("troupe::kvs::change");
  cfg.add_message_type<kvs_stats>("troupe::kvs::kvs_stats");
  cfg.add_message_type<commit_record>("troupe::kvs::commit_record");
  cfg.add_message_type<commit_batch>("troupe::kvs::commit_batch");
  cfg.add_message_type<namespace_info>("troupe::kvs::namespace_info");
  cfg.add_message_type<sync_reply>("troupe::kvs::sync_reply");
}

} // namespace troupe::kvs
