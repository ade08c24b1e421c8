#pragma once
// For the group test suites: a client node that talks to the group providers
// (provider id 42) of actorhost processes.

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>

#include <boost/test/unit_test.hpp>
#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include "actors/builtin.hpp"
#include "actors/group/group.hpp"
#include "actors/group/view.hpp"
#include "base/error.hpp"
#include "runtime/config.hpp"
#include "runtime/node.hpp"

namespace troupe::test {

/// The error text of a failed answer, "" for an answer.
template <class T>
std::string error_of(const caf::expected<T>& x) {
  return x ? std::string{} : describe(x.error());
}

struct group_client_fixture {
  node client{parse_node_config(R"({"threads": 2})", "client.json")};

  group_client_fixture() {
    actors::register_builtin_types(client.system_config());
    if (auto err = client.start())
      throw std::runtime_error(describe(err));
  }

  caf::actor group_at(const std::string& address) {
    auto g = client.remote_provider(address, "group", 42, std::chrono::seconds{20});
    if (!g)
      BOOST_FAIL("no group provider at " << address << ": " << describe(g.error()));
    return *g;
  }

  /// Sends a request; the answer or the error.
  template <class T, class... Ts>
  caf::expected<T> ask(const caf::actor& dest, Ts&&... xs) {
    caf::scoped_actor self{client.system()};
    caf::expected<T> result{caf::error{}};
    self->request(dest, std::chrono::seconds{10}, std::forward<Ts>(xs)...)
      .receive([&](T& value) { result = std::move(value); },
               [&](caf::error& e) { result = std::move(e); });
    return result;
  }

  std::optional<group::group_view> try_view_of(const caf::actor& member) {
    auto v = ask<group::group_view>(member, caf::get_atom::value);
    if (!v)
      return std::nullopt;
    return *v;
  }

  group::group_view view_of(const std::string& address) {
    auto v = ask<group::group_view>(group_at(address), caf::get_atom::value);
    if (!v)
      BOOST_FAIL("no view from " << address << ": " << describe(v.error()));
    return *v;
  }
};

} // namespace troupe::test
