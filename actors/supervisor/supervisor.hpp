#pragma once
// Supervisors with OTP semantics (Erlang/OTP's `supervisor`, for CAF actors): a
// supervisor starts its children in order, monitors them (a child may live on another
// node: its node's death is its DOWN), restarts them by its strategy when they exit,
// and gives up when they fail too often, escalating to whoever supervises it.
//
// Strategies, when child C exits and is to be restarted:
//   one_for_one   restart C alone;
//   one_for_all   stop every other child (reverse start order), then start all in order;
//   rest_for_one  stop the children started after C (reverse order), then start C and
//                 them in order.
// Restart policies: permanent (always restarted), transient (restarted unless it exited
// normally), temporary (never restarted; removed when it exits).
// Intensity: more than `max_restarts` restarts within `period` make the supervisor
// give up: it stops its children in reverse order and exits with `troupe.gave_up`,
// whose text names the supervisor, the child, the count and the child's last exit
// reason. A supervisor supervised by another is an ordinary child there, so giving up
// escalates. Backoff: the n-th restart within the period waits
// min(initial * factor^(n-1), max).
// A failed start (the start function returns an error, or a blocking start outlasts
// `start_timeout`) counts as an exit of the child.
// An exit message to the supervisor (a link, `send_exit`) stops the children in reverse
// order, each given `shutdown` to exit before it is killed, then the supervisor exits
// with the same reason.
//
// Protocol:
//   (which_children_atom)        -> std::vector<child_info>
//   (child_atom, std::string)    -> caf::actor (the child's current incarnation), or
//                                   troupe.not_found when it has none running
//   (fail_child_atom, caf::actor_addr, caf::error)
//                                -> the child with that address has failed now (its
//        owner saw it go silent): it is killed (on_kill) and treated as exited with
//        the error; its DOWN, should it come later, is ignored
// The observer (optional) receives a supervision_event for every start, exit, restart
// and the giving up.
// Owner: whoever spawns it; links or monitors propagate its exit.

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>

namespace troupe::supervision {

using which_children_atom = caf::atom_constant<caf::atom("children")>;
using child_atom = caf::atom_constant<caf::atom("child")>;
using fail_child_atom = caf::atom_constant<caf::atom("failchild")>;

enum class strategy : uint8_t { one_for_one, one_for_all, rest_for_one };
enum class restart_policy : uint8_t { permanent, transient, temporary };

const char* to_string(strategy how);
const char* to_string(restart_policy policy);

/// How one child starts and is treated.
struct child_spec {
  std::string name;
  /// Starts the child and returns its handle (a local or a remote actor), or an error.
  std::function<caf::expected<caf::actor>(caf::actor_system&)> start;
  restart_policy restart = restart_policy::permanent;
  /// The start blocks (launches a process, waits for a remote node): it runs on a
  /// thread of its own, never on the supervisor's.
  bool blocking_start = false;
  /// A blocking start that takes longer has failed (its late result is stopped).
  std::chrono::milliseconds start_timeout{30000};
  /// How long the child may take to exit after its exit message before it is killed;
  /// a child that does not go after its kill either (its node answers nothing) counts
  /// as gone after as long again.
  std::chrono::milliseconds shutdown{5000};
  /// Called when the supervisor kills the child (after `shutdown`, or a start that came
  /// too late): to stop what the actor stands for, e.g. SIGKILL its process.
  std::function<void()> on_kill;
};

/// More than `max_restarts` restarts within `period`: give up.
struct restart_intensity {
  unsigned max_restarts = 3;
  std::chrono::milliseconds period{5000};
};

/// The wait before the n-th restart within the intensity period.
struct restart_backoff {
  std::chrono::milliseconds initial{0};
  std::chrono::milliseconds max{1000};
  double factor = 2.0;

  /// min(initial * factor^(n-1), max); n >= 1.
  std::chrono::milliseconds delay_for(unsigned n) const;
};

struct supervisor_options {
  std::string name = "supervisor";
  strategy how = strategy::one_for_one;
  restart_intensity intensity;
  restart_backoff backoff;
  /// Receives a supervision_event for everything the supervisor does (optional).
  caf::actor observer;
};

/// What a supervisor tells its observer.
enum class event_kind : uint8_t { started, start_failed, exited, restarting, gave_up };

const char* to_string(event_kind kind);

struct supervision_event {
  std::string supervisor;
  std::string child; ///< empty for gave_up when no single child is to blame
  uint8_t kind = 0;
  std::string reason; ///< exited / start_failed / gave_up: why, in words
  uint32_t restarts = 0; ///< restarts within the current intensity period
  int64_t delay_ms = 0;  ///< restarting: the backoff before the start

  event_kind what() const { return static_cast<event_kind>(kind); }

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, supervision_event& x) {
    return f(caf::meta::type_name("troupe::supervision::supervision_event"), x.supervisor,
             x.child, x.kind, x.reason, x.restarts, x.delay_ms);
  }
};

/// One child as `which_children` reports it.
struct child_info {
  std::string name;
  std::string state; ///< "starting", "running", "stopping", "waiting" (backoff)
  uint32_t restarts = 0; ///< how often this child was restarted in all
  caf::actor handle;     ///< empty unless running

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, child_info& x) {
    return f(caf::meta::type_name("troupe::supervision::child_info"), x.name, x.state,
             x.restarts, x.handle);
  }
};

/// Spawns a supervisor that starts `children` in order at once. Its exit reason is
/// `troupe.gave_up` when it gave up, else the reason it was told to exit with.
caf::actor spawn_supervisor(caf::actor_system& system, supervisor_options options,
                            std::vector<child_spec> children);

/// Registers the supervision message types (events, child infos), for supervisors
/// whose observers or clients live on other nodes; call before the system starts.
void register_supervision_types(caf::actor_system_config& cfg);

} // namespace troupe::supervision
