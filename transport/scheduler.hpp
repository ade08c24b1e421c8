#pragma once
// The progress scheduler: a CAF scheduler whose idle workers progress the transport
// (DESIGN.md, "Transport"; the threading model is in transport/README.md).
//
// Loaded instead of CAF's own scheduler (`use_progress_scheduler`), it runs actors on
// N worker threads like CAF's, but a worker with nothing to run polls the node's UCX
// worker, keeps polling for `spin_us` after the last activity, and then sleeps on
// UCX's event fd and its own wakeup fd. A message that arrives while a worker polls
// runs its actor on that same thread: no thread hand-off and no wakeup on the way
// in. Without the middleman loaded it is a plain work-stealing scheduler.

#include <cstdint>

#include <caf/fwd.hpp>

namespace troupe::transport {

namespace detail {
class engine;
} // namespace detail

/// Makes `cfg`'s actor system run the progress scheduler instead of CAF's default
/// (`scheduler.max-threads` still sets the number of workers).
void use_progress_scheduler(caf::actor_system_config& cfg);

/// Whether `sys` runs the progress scheduler.
bool runs_progress_scheduler(caf::actor_system& sys);

/// The progress scheduler's worker running on this thread, or null on any other
/// thread (it polls the transport itself when idle: its sends need no helper).
caf::execution_unit* current_progress_worker();

/// That worker while it polls the transport from its scheduling loop, else null:
/// messages handed on then are enqueued with it as execution unit, so their actor
/// runs here next. (Not inside an actor's handler: the worker may block there.)
caf::execution_unit* polling_progress_worker();

/// A thread that is not one of the scheduler's workers sent a message and will wait
/// for the answer (a blocking actor, typically): if no worker polls, wake one, so it
/// polls while the answer is on its way instead of being woken by its arrival.
void nudge_progress_scheduler(caf::actor_system& sys);

/// A caller's thread polls the transport itself while it waits for an answer
/// (blocking_waiter): it is the process's spinner meanwhile, workers do not spin
/// beside it and sleep without arming UCX's event fd.
void caller_polls(caf::actor_system& sys);
/// ... and stopped; if its answer has not come (`answered` false: it will block), a
/// worker is woken to poll for it.
void caller_stops_polling(caf::actor_system& sys, bool answered);

/// Counters of the progress scheduler, for introspection and tests.
struct progress_scheduler_stats {
  uint64_t sleeps = 0;       ///< times a worker went to sleep
  uint64_t armed_sleeps = 0; ///< ... of which on the UCX worker's event fd
  uint64_t wakeups_sent = 0; ///< wakeup fd writes (a job for a sleeping worker)
  /// Callers polling for an answer that did not come within the spin window, with no
  /// worker asleep on UCX's event fd: a worker was woken to poll for it instead.
  uint64_t waiter_handoffs = 0;
};

/// Counters of `sys`'s progress scheduler (all zero if it runs another one).
progress_scheduler_stats progress_stats(caf::actor_system& sys);

/// Whether a message from `sender` (this thread's) may wait until the end of the
/// turn of the actor running on this progress worker: true when `sender` is that
/// actor and this is not its first message to another node in this turn (the first
/// leaves at once). Its messages are then queued in order and sent together, in
/// batches, when its turn ends (or every `max_sends_per_turn`). Counts it.
bool defer_until_turn_end(const caf::actor_control_block* sender);

/// How many messages of one turn wait at most before they are sent.
constexpr unsigned max_sends_per_turn = 64;

/// Sends deferred in this thread's current turn so far.
unsigned sends_deferred_in_turn();

namespace detail {

/// The middleman's engine starts being polled by the scheduler's workers.
void attach_engine(caf::actor_system& sys, engine* e);

/// Workers stop touching the engine; returns once none does.
void detach_engine(caf::actor_system& sys);

} // namespace detail

} // namespace troupe::transport
