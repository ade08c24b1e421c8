#define BOOST_TEST_MODULE runtime_provider_registry
#include <boost/test/unit_test.hpp>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/builtin.hpp"
#include "actors/echo/echo.hpp"
#include "base/error.hpp"
#include "runtime/provider_registry.hpp"

using namespace troupe;

namespace {

provider_config spec(std::string type, std::string name, uint16_t id,
                     std::map<std::string, std::string> deps = {}) {
  provider_config p;
  p.type = std::move(type);
  p.name = std::move(name);
  p.provider_id = id;
  p.config = std::make_shared<const nlohmann::json>(nlohmann::json::object());
  p.dependencies = std::move(deps);
  p.origin = "test.json: providers[0]";
  return p;
}

struct fixture {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  std::shared_ptr<provider_registry> reg = provider_registry::make();
  fixture() { actors::register_builtin_providers(*reg); }
};

} // namespace

BOOST_FIXTURE_TEST_SUITE(provider_registry_suite, fixture)

BOOST_AUTO_TEST_CASE(builtin_types_are_registered_and_types_are_unique) {
  BOOST_TEST(reg->has_type("echo"));
  auto err =
    reg->add_type("echo", [](const provider_context&) -> caf::expected<caf::actor> {
      return caf::actor{};
    });
  BOOST_TEST(has_code(err, errc::duplicate_provider));
  BOOST_TEST(describe(err).find("\"echo\" is already registered") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(spawned_providers_are_found_by_type_id_and_by_name) {
  auto a = reg->spawn(sys, spec("echo", "first", 1));
  auto b = reg->spawn(sys, spec("echo", "second", 2));
  BOOST_REQUIRE(a && b);
  BOOST_TEST((reg->find("echo", 1)->handle == *a));
  BOOST_TEST((reg->find("echo", 2)->handle == *b));
  BOOST_TEST(reg->find("second")->provider_id == 2);
  BOOST_TEST(!reg->find("echo", 3));
  BOOST_TEST(!reg->find("third"));
  BOOST_TEST(reg->list().size() == 2u);
  // The handle found is the live provider: it answers.
  caf::scoped_actor self{sys};
  self->request(reg->find("first")->handle, std::chrono::seconds(5), std::string{"ping"})
    .receive([](const std::string& s) { BOOST_TEST(s == "ping"); },
             [](const caf::error& e) { BOOST_FAIL(describe(e)); });
}

BOOST_AUTO_TEST_CASE(duplicate_type_and_id_or_name_is_refused_and_nothing_leaks) {
  BOOST_REQUIRE(reg->spawn(sys, spec("echo", "first", 1)));
  auto same_id = reg->spawn(sys, spec("echo", "other", 1));
  BOOST_TEST(has_code(same_id.error(), errc::duplicate_provider));
  BOOST_TEST(describe(same_id.error()).find("provider_id 1 already runs")
               != std::string::npos,
             describe(same_id.error()));
  auto same_name = reg->spawn(sys, spec("echo", "first", 5));
  BOOST_TEST(has_code(same_name.error(), errc::duplicate_provider));
  BOOST_TEST(reg->list().size() == 1u);
}

BOOST_AUTO_TEST_CASE(unknown_type_lists_the_known_ones) {
  auto r = reg->spawn(sys, spec("nosuch", "x", 1));
  BOOST_TEST(has_code(r.error(), errc::unknown_provider_type));
  auto text = describe(r.error());
  BOOST_TEST(text.find("test.json: providers[0].type: unknown provider type \"nosuch\"")
               != std::string::npos,
             text);
  BOOST_TEST(text.find("known: barrier, echo, events, group") != std::string::npos, text);
}

BOOST_AUTO_TEST_CASE(dependencies_are_resolved_to_running_providers) {
  caf::actor seen;
  reg->add_type("needs", [&](const provider_context& ctx) -> caf::expected<caf::actor> {
    seen = ctx.dependencies.at("up");
    return ctx.system.spawn(
      [](caf::event_based_actor*) -> caf::behavior { return {[](int x) { return x; }}; });
  });
  auto missing = reg->spawn(sys, spec("needs", "n", 1, {{"up", "base"}}));
  BOOST_TEST(has_code(missing.error(), errc::not_found));
  auto base = reg->spawn(sys, spec("echo", "base", 1));
  BOOST_REQUIRE(base);
  BOOST_REQUIRE(reg->spawn(sys, spec("needs", "n", 1, {{"up", "base"}})));
  BOOST_TEST((seen == *base));
}

BOOST_AUTO_TEST_CASE(a_provider_that_exits_leaves_the_registry) {
  auto a = reg->spawn(sys, spec("echo", "short-lived", 1));
  BOOST_REQUIRE(a);
  caf::scoped_actor self{sys};
  self->monitor(*a);
  self->send_exit(*a, caf::exit_reason::user_shutdown);
  self->receive([](const caf::down_msg&) {});
  BOOST_TEST(!reg->find("short-lived"));
  BOOST_TEST(!reg->find("echo", 1));
  // The slot is free again.
  BOOST_TEST(static_cast<bool>(reg->spawn(sys, spec("echo", "short-lived", 1))));
}

BOOST_AUTO_TEST_CASE(echo_rejects_config_keys_by_path) {
  auto p = spec("echo", "e", 1);
  p.config = std::make_shared<const nlohmann::json>(nlohmann::json{{"volume", 11}});
  auto r = reg->spawn(sys, p);
  BOOST_TEST(has_code(r.error(), errc::invalid_config));
  BOOST_TEST(
    describe(r.error()).find("test.json: providers[0].config.volume: unknown key")
      != std::string::npos,
    describe(r.error()));
  BOOST_TEST(reg->list().empty());
}

BOOST_AUTO_TEST_CASE(echo_counts_what_it_echoed) {
  auto a = reg->spawn(sys, spec("echo", "e", 1));
  BOOST_REQUIRE(a);
  caf::scoped_actor self{sys};
  for (int i = 0; i < 3; ++i)
    self->request(*a, std::chrono::seconds(5), i, std::string{"x"})
      .receive([&](int j, const std::string&) { BOOST_TEST(i == j); },
               [](const caf::error& e) { BOOST_FAIL(describe(e)); });
  self->request(*a, std::chrono::seconds(5), actors::echo_count_atom::value)
    .receive([](uint64_t n) { BOOST_TEST(n == 3u); },
             [](const caf::error& e) { BOOST_FAIL(describe(e)); });
}

BOOST_AUTO_TEST_SUITE_END()
