// The README's supervision example ("Supervising actors"): a worker that crashes is
// restarted by its supervisor; one that crashes too often makes the supervisor give
// up. The build compiles it and a test runs it.
#include <iostream>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include <troupe/actors/supervisor/supervisor.hpp>
#include <troupe/base/error.hpp>

using namespace std::chrono_literals;

// 1. A worker: doubles numbers; 0 crashes it.
caf::behavior doubler(caf::event_based_actor* self) {
  return {
    [self](int x) {
      if (x == 0)
        self->quit(troupe::make_error(troupe::errc::refused, "told to crash"));
      return 2 * x;
    },
  };
}

namespace sv = troupe::supervision;

int main() {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  // 2. Its supervisor: restart it when it crashes, at most twice in 5 s, waiting 10 ms
  //    before the first restart and twice as long before each next one.
  sv::supervisor_options opts;
  opts.name = "doublers";
  opts.how = sv::strategy::one_for_one;
  opts.intensity = {2, 5s};
  opts.backoff.initial = 10ms;
  opts.observer = self; // told of every start, exit, restart and the giving up
  sv::child_spec worker;
  worker.name = "doubler";
  worker.start = [](caf::actor_system& s) -> caf::expected<caf::actor> {
    return s.spawn(doubler);
  };
  auto sup = sv::spawn_supervisor(sys, opts, {worker});

  // 3. Crash every incarnation the supervisor starts: the third crash is one too many.
  for (bool gave_up = false; !gave_up;) {
    self->receive([&](sv::supervision_event& ev) {
      std::cout << sv::to_string(ev.what()) << " " << ev.child;
      if (!ev.reason.empty())
        std::cout << ": " << ev.reason;
      std::cout << "\n";
      gave_up = ev.what() == sv::event_kind::gave_up;
      if (ev.what() != sv::event_kind::started)
        return;
      self->request(sup, 1s, sv::child_atom::value, ev.child)
        .receive([&](caf::actor& incarnation) { self->send(incarnation, 0); },
                 [](caf::error&) {});
    });
  }
}
