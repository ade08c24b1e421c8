#include "actors/group/client.hpp"

#include <mutex>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include "actors/group/group.hpp"
#include "base/error.hpp"
#include "runtime/locator.hpp"
#include "runtime/node.hpp"
#include "transport/blocking_wait.hpp"
#include "transport/middleman.hpp"

namespace troupe::group {

struct group_client::shared {
  node* owner = nullptr;
  std::chrono::milliseconds timeout{5000};
  mutable std::mutex mtx;
  group_view view;      // guarded by mtx
  caf::actor member;    // guarded by mtx: the member we talk to
  std::string address;  // guarded by mtx: its address
  caf::actor refresher; // guarded by mtx: the auto-refresh actor, if on
  // One caller for every request of this handle, made on first use: a fresh actor per
  // call would cost a proxy (and its monitor and down notice) on the member's node
  // each time, which doubled a refresh round trip. Calls take turns on it.
  std::mutex call_mtx;
  std::unique_ptr<caf::scoped_actor> caller; // guarded by call_mtx

  ~shared() {
    if (refresher)
      caf::anon_send_exit(refresher, caf::exit_reason::user_shutdown);
  }

  /// Takes `v` if it is newer than the cache.
  void offer(group_view v) {
    std::lock_guard<std::mutex> guard{mtx};
    if (view.version < v.version || view.members.empty())
      view = std::move(v);
  }
};

namespace {

/// Whether a failed call may be sent to another member.
enum class retry {
  when_silent, ///< reads: also when the member did not answer in time
  when_gone,   ///< changes: only when the member surely did not get it (a timed-out
               ///< change may have been applied; sending it again would apply it twice)
};

/// True for errors that say "that member cannot be reached", where another member
/// may do: anything else is the group's own answer.
bool is_unreachable(const caf::error& err, retry policy) {
  if (err.category() == error_category_atom)
    return has_code(err, errc::unreachable)
           || (policy == retry::when_silent && has_code(err, errc::timeout));
  return err == caf::sec::request_receiver_down || err == caf::sec::invalid_argument
         || (policy == retry::when_silent && err == caf::sec::request_timeout);
}

/// Sends a request to the current member, failing over to the others of the cached
/// view in rank order when it cannot be reached.
template <class T, class... Ts>
caf::expected<T> call(group_client::shared& st, retry policy, const Ts&... xs) {
  std::lock_guard<std::mutex> turn{st.call_mtx};
  if (!st.caller) // hidden: the node's shutdown does not wait for it
    st.caller = std::make_unique<caf::scoped_actor>(st.owner->system(), true);
  auto& self = *st.caller;
  auto ask = [&](const caf::actor& member) {
    caf::expected<T> result{caf::error{}};
    transport::blocking_waiter waiter{st.owner->transport()};
    transport::blocking_waiter::discard_mail(*self.ptr()); // earlier calls' late answers
    // The waiter bounds the wait: a CAF timeout would wake CAF's clock thread twice
    // per call (~18 us here, more than the call).
    auto answer = self->request(member, caf::infinite, xs...);
    waiter.receive_response(
      *self.ptr(), answer.id(), st.timeout, [&](T& value) { result = std::move(value); },
      [&](caf::error& err) { result = std::move(err); });
    return result;
  };
  caf::actor member;
  std::string address;
  {
    std::lock_guard<std::mutex> guard{st.mtx};
    member = st.member;
    address = st.address;
  }
  auto result = ask(member);
  if (result || !is_unreachable(result.error(), policy))
    return result;
  group_view view; // copied only now: the common case must not pay for the members
  {
    std::lock_guard<std::mutex> guard{st.mtx};
    view = st.view;
  }
  std::string tried = address + ": " + describe(result.error());
  for (const auto& m : view.members) {
    if (m.address == address)
      continue;
    auto other = st.owner->remote_provider(m.address, "group", m.provider_id, st.timeout);
    if (!other) {
      tried += "; " + m.address + ": " + describe(other.error());
      continue;
    }
    result = ask(*other);
    if (result || !is_unreachable(result.error(), policy)) {
      std::lock_guard<std::mutex> guard{st.mtx};
      st.member = *other;
      st.address = m.address;
      return result;
    }
    tried += "; " + m.address + ": " + describe(result.error());
  }
  return make_error(errc::unreachable, "no member of the group answered (" + tried + ")");
}

// -- auto-refresh -------------------------------------------------------------------

struct refresher_state {
  // Weak: the last copy of the handle going away stops the refresher.
  std::weak_ptr<group_client::shared> client;
  caf::actor member;
  static inline const char* name = "troupe.group.refresher";
};

using refresher_actor = caf::stateful_actor<refresher_state>;

void follow(refresher_actor* self, caf::actor member);

/// The client's state, or null (and the refresher quits) when it is gone.
std::shared_ptr<group_client::shared> client_of(refresher_actor* self) {
  auto client = self->state.client.lock();
  if (!client)
    self->quit();
  return client;
}

void offer(refresher_actor* self, group_view view) {
  if (auto client = client_of(self))
    client->offer(std::move(view));
}

void refresh_now(refresher_actor* self) {
  auto client = client_of(self);
  if (!client)
    return;
  auto version = [&] {
    std::lock_guard<std::mutex> guard{client->mtx};
    return client->view.version;
  }();
  self->request(self->state.member, client->timeout, refresh_atom::value, version)
    .then(
      [self](view_refresh& answer) {
        if (answer.changed)
          offer(self, std::move(answer.view));
      },
      [](const caf::error&) {
        // The member is gone or slow: its DOWN message starts the failover.
      });
}

/// Finds another member of the cached view to follow, in rank order.
void fail_over(refresher_actor* self, size_t index) {
  auto client = client_of(self);
  if (!client)
    return;
  group_view view;
  {
    std::lock_guard<std::mutex> guard{client->mtx};
    view = client->view;
  }
  if (index >= view.members.size())
    return; // nobody left: the cache stays as it is; a refresh() will tell
  const auto& m = view.members[index];
  self
    ->request(client->owner->locator(), client->timeout, locate_atom::value, m.address,
              std::string{"group"}, m.provider_id)
    .then([self](caf::actor& member) { follow(self, member); },
          [self, index](const caf::error&) { fail_over(self, index + 1); });
}

void follow(refresher_actor* self, caf::actor member) {
  auto client = client_of(self);
  if (!client)
    return;
  self->state.member = member;
  self->monitor(member);
  self->request(member, client->timeout, caf::subscribe_atom::value, caf::actor{self})
    .then([self](group_view& view) { offer(self, std::move(view)); },
          [](const caf::error&) {});
}

caf::behavior refresher(refresher_actor* self,
                        std::shared_ptr<group_client::shared> client, caf::actor first) {
  self->state.client = std::move(client);
  follow(self, std::move(first));
  self->set_down_handler([self](caf::down_msg& dm) {
    if (dm.source == self->state.member.address())
      fail_over(self, 0);
  });
  return {
    [self](member_joined_atom, const member&, const view_version&) { refresh_now(self); },
    [self](member_left_atom, const member&, const view_version&) { refresh_now(self); },
    [self](member_died_atom, const member&, const view_version&) { refresh_now(self); },
    [self](metadata_changed_atom, const std::string&, const std::string&, bool,
           const view_version&) { refresh_now(self); },
  };
}

} // namespace

group_client::group_client(std::shared_ptr<shared> state) : state_(std::move(state)) {
}

caf::expected<group_client> group_client::open(node& client_node,
                                               const std::string& address,
                                               uint16_t provider_id,
                                               std::chrono::milliseconds timeout) {
  auto member = client_node.remote_provider(address, "group", provider_id, timeout);
  if (!member)
    return member.error();
  auto st = std::make_shared<shared>();
  st->owner = &client_node;
  st->timeout = timeout;
  st->member = *member;
  st->address = address;
  auto view = call<group_view>(*st, retry::when_silent, caf::get_atom::value);
  if (!view)
    return view.error();
  st->view = std::move(*view);
  return group_client{std::move(st)};
}

caf::expected<group_client> group_client::open_file(node& client_node,
                                                    const std::string& path,
                                                    std::chrono::milliseconds timeout) {
  group_view saved;
  try {
    saved = read_view_file(path);
  } catch (const config_error& e) {
    return make_error(errc::invalid_config, e.what());
  }
  std::string tried;
  for (const auto& m : saved.members) {
    auto client = open(client_node, m.address, m.provider_id, timeout);
    if (client)
      return client;
    tried += (tried.empty() ? "" : "; ") + m.address + ": " + describe(client.error());
  }
  return make_error(errc::unreachable,
                    "no member of the group in " + path + " answered (" + tried + ")");
}

group_view group_client::view() const {
  std::lock_guard<std::mutex> guard{state_->mtx};
  return state_->view;
}

caf::expected<bool> group_client::refresh() {
  view_version known;
  {
    std::lock_guard<std::mutex> guard{state_->mtx};
    known = state_->view.version;
  }
  auto answer =
    call<view_refresh>(*state_, retry::when_silent, refresh_atom::value, known);
  if (!answer)
    return answer.error();
  if (answer->changed)
    state_->offer(std::move(answer->view));
  return answer->changed;
}

caf::error group_client::auto_refresh(bool on) {
  std::lock_guard<std::mutex> guard{state_->mtx};
  if (!on) {
    if (state_->refresher)
      caf::anon_send_exit(state_->refresher, caf::exit_reason::user_shutdown);
    state_->refresher = nullptr;
    return caf::none;
  }
  if (!state_->refresher)
    state_->refresher = state_->owner->system().spawn(refresher, state_, state_->member);
  return caf::none;
}

caf::expected<view_version> group_client::set_metadata(const std::string& key,
                                                       const std::string& value) {
  return call<view_version>(*state_, retry::when_gone, caf::put_atom::value, key, value);
}

caf::expected<view_version> group_client::remove_metadata(const std::string& key) {
  return call<view_version>(*state_, retry::when_gone, caf::delete_atom::value, key);
}

caf::expected<group_view> group_client::subscribe(const caf::actor& subscriber) {
  return call<group_view>(*state_, retry::when_silent, caf::subscribe_atom::value,
                          subscriber);
}

std::string group_client::member_address() const {
  std::lock_guard<std::mutex> guard{state_->mtx};
  return state_->address;
}

} // namespace troupe::group
