//! Routing state and decisions: which worker runs which call, what waits, what fails.
//!
//! [`Router`] never touches a socket. The socket loop feeds it parsed messages and the
//! current time, and performs the [`Action`]s it pushes into an outbox. Payload frames
//! are moved through it, never decoded or copied.
//!
//! Its methods are split by who they serve: `frontend` (calls from clients), `backend`
//! (workers), `listing` (what introspection and metrics read); this module holds the
//! types, the time-driven steps (deadlines, heartbeats) and the shutdown. It ties
//! together tables that each own one kind of state:
//! - `calls` — every call held, where it is (`calls::Place`) and its deadline: the one
//!   source of where a call is;
//! - `functions` — each hosted function's hosts, queue and running count;
//! - `workers` — each worker's budgets, held calls and heartbeats, and picking;
//! - `batches` — `system.batch` replies being assembled;
//! - `ready` — checking a READY before it changes anything.
//!
//! The queues and the workers' held sets are indexes over the call table;
//! `check_invariants` (debug builds and tests) asserts that they agree with it.

mod backend;
mod batches;
mod calls;
mod deadlines;
mod frontend;
mod functions;
mod health;
mod hedge;
mod invariants;
mod listeners;
mod listing;
mod queue;
mod ready;
mod workers;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::route::ReplyRoute;
use switchboard_protocol::worker::Ticket;
use switchboard_protocol::{ErrorCode, Frame};
use tracing::{debug, info, warn};

use crate::auth::AuthCounters;
use crate::view::{CallEnded, RouterStats};
use calls::{Call, CallTable, Place};
use functions::Functions;
use workers::Workers;

/// A worker's routing identity on the backend socket, shared: every call running on a
/// worker and every message for it holds one, without an allocation each.
pub(crate) type WorkerId = Arc<[u8]>;

/// Hash maps of the router: a fast hasher, seeded at random (keys come from peers).
type Map<K, V> = HashMap<K, V, ahash::RandomState>;
/// Hash sets of the router.
type Set<T> = HashSet<T, ahash::RandomState>;

/// Capacity the tables keep after a flood drains.
const SHRINK_FLOOR: usize = 4_096;

/// Tunables of the routing logic.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Calls that may wait per function when every capable worker is busy.
    pub queue_capacity: usize,
    /// Deadline of a call whose header has no `timeout_ms`.
    pub default_timeout: Duration,
    /// Longest deadline a call may ask for.
    pub max_timeout: Duration,
    /// Heartbeats a worker may miss before it is declared lost.
    pub heartbeat_liveness: u32,
    /// Largest request body accepted, in bytes.
    pub max_request_bytes: usize,
    /// Largest reply body forwarded from a worker, in bytes (larger: the caller gets
    /// PAYLOAD_TOO_LARGE instead, whatever the worker's own limit said).
    pub max_reply_bytes: usize,
    /// Most times a retry-safe call is dispatched before WORKER_LOST is final.
    pub max_attempts: u32,
    /// A worker still running a call this long after the call's deadline is hung: it gets
    /// no new calls and, if it understands DRAIN, is asked to leave (and be restarted).
    pub hung_after: Duration,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            queue_capacity: 10_000,
            default_timeout: Duration::from_secs(30),
            max_timeout: Duration::from_secs(3600),
            heartbeat_liveness: 3,
            max_request_bytes: 32 * 1024 * 1024,
            max_reply_bytes: 32 * 1024 * 1024,
            max_attempts: 3,
            hung_after: Duration::from_secs(60),
        }
    }
}

/// Something the socket loop must send.
#[derive(Debug)]
pub(crate) enum Action {
    /// Send a reply to a client on the frontend.
    Reply {
        /// The routing frames back to the caller and the header frame to echo.
        route: ReplyRoute,
        /// The reply body.
        body: Frame,
    },
    /// Run a call on a worker. The socket loop sends the calls for one worker
    /// together, in order, in as few REQUEST messages as it can.
    Run {
        /// The worker's identity.
        worker: WorkerId,
        /// The call.
        call: Dispatch,
    },
    /// Tell a client that this broker is stopping (a NOTICE).
    Notice {
        /// The route back to the client, with an empty header frame.
        route: ReplyRoute,
    },
    /// Send a worker a HEARTBEAT.
    Heartbeat {
        /// The worker's identity.
        worker: WorkerId,
    },
    /// Send a worker a LOAD: the heartbeat of a worker that moves its capacity.
    Load {
        /// The worker's identity.
        worker: WorkerId,
        /// Calls waiting here that it could take.
        backlog: u32,
        /// This broker is stopping.
        stopping: bool,
    },
    /// Send a worker a DISCONNECT: "send READY", or "your leave is acknowledged".
    Disconnect {
        /// The worker's identity.
        worker: WorkerId,
    },
    /// Ask a hung worker to leave (DRAIN).
    Drain {
        /// The worker's identity.
        worker: WorkerId,
    },
    /// Tell a worker that nobody waits for a call it runs any more (CANCEL).
    Cancel {
        /// The worker's identity.
        worker: WorkerId,
        /// The call.
        ticket: Ticket,
    },
}

/// One call on its way to a worker.
#[derive(Debug)]
pub(crate) struct Dispatch {
    /// The broker's handle for the call, echoed in the worker's reply.
    pub ticket: Ticket,
    /// The caller's call id (for the worker's logs).
    pub call_id: u64,
    /// Milliseconds left before the call's deadline.
    pub time_left_ms: u32,
    /// The function to run.
    pub function: Arc<str>,
    /// The request body as the client wrote it.
    pub body: Frame,
    /// Which dispatch of the call this is (1 for the first; at most 255).
    pub attempt: u8,
    /// What the worker's REQUEST record carries for this call.
    pub shape: RecordShape,
}

/// What a worker's REQUEST record carries for one call: which REQUEST the worker takes
/// (plain, with context, with caller) and what the call has to put in it (a trace, a
/// known caller, a wish for timings). Packed in one byte, so that a dispatch — and the
/// action that carries it, moved once per call — stays within 120 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordShape(u8);

impl RecordShape {
    const CONTEXT: u8 = 1;
    const CALLER: u8 = 2;
    const TRACED: u8 = 4;
    const IDENTIFIED: u8 = 8;
    const TIMINGS: u8 = 16;

    fn new(started: &workers::Started, call: &Call) -> RecordShape {
        let bit = |on: bool, bit: u8| if on { bit } else { 0 };
        RecordShape(
            bit(started.context, Self::CONTEXT)
                | bit(started.caller, Self::CALLER)
                | bit(call.traceparent.is_some(), Self::TRACED)
                | bit(call.identified, Self::IDENTIFIED)
                | bit(call.timings, Self::TIMINGS),
        )
    }

    /// The worker takes the call context (attempt, trace): a REQUEST with context.
    pub(crate) fn context(self) -> bool {
        self.0 & Self::CONTEXT != 0
    }

    /// The worker also takes the caller and flags: a REQUEST with caller.
    pub(crate) fn caller(self) -> bool {
        self.0 & Self::CALLER != 0
    }

    /// The caller sent a valid W3C trace context (read with [`Router::traceparent`]: it
    /// stays with the call, so that a dispatch stays small enough to move cheaply).
    pub(crate) fn traced(self) -> bool {
        self.0 & Self::TRACED != 0
    }

    /// The broker knows who made the call (read with [`Router::caller`], like the trace).
    pub(crate) fn identified(self) -> bool {
        self.0 & Self::IDENTIFIED != 0
    }

    /// The caller asked for timings: the worker is asked to report its run time.
    pub(crate) fn timings(self) -> bool {
        self.0 & Self::TIMINGS != 0
    }
}

/// The broker's routing state machine.
pub(crate) struct Router {
    config: RouterConfig,
    calls: CallTable,
    functions: Functions,
    workers: Workers,
    batches: batches::Batches,
    shutting_down: bool,
    /// Clients that asked for NOTICEs.
    listeners: listeners::Listeners,
    stats: RouterStats,
    /// Calls ended since the socket loop last took them (for metrics).
    ended: Vec<CallEnded>,
    /// Hedges that may be sent now (see `hedge`).
    hedge_budget: f64,
    auth: Arc<AuthCounters>,
}

impl Router {
    /// An empty router.
    pub(crate) fn new(config: RouterConfig) -> Router {
        Router {
            config,
            calls: CallTable::new(first_ticket()),
            functions: Functions::default(),
            workers: Workers::default(),
            batches: batches::Batches::default(),
            shutting_down: false,
            listeners: listeners::Listeners::default(),
            stats: RouterStats::default(),
            ended: Vec::new(),
            hedge_budget: hedge::HEDGE_BURST,
            auth: Arc::default(),
        }
    }

    /// Shares the ZAP handler's counters of refused handshakes.
    pub(crate) fn set_auth_counters(&mut self, counters: Arc<AuthCounters>) {
        self.auth = counters;
    }

    /// The W3C trace context the caller of this call sent, if any.
    pub(crate) fn traceparent(&self, ticket: Ticket) -> Option<Arc<str>> {
        self.calls.get(ticket)?.traceparent.clone()
    }

    /// Who made the call with this ticket, when the broker knows.
    pub(crate) fn caller(&self, ticket: Ticket) -> Option<Arc<str>> {
        self.calls.caller_of(ticket)
    }

    /// The calls that ended since the last time this was asked, for metrics.
    pub(crate) fn take_ended(&mut self) -> std::vec::Drain<'_, CallEnded> {
        self.ended.drain(..)
    }

    /// The earliest instant at which [`Router::tick`] has something to do.
    pub(crate) fn next_wakeup(&self) -> Option<Instant> {
        match (self.calls.next_deadline(), self.workers.next_wakeup()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Stops accepting calls; calls already accepted go on. Clients that asked for
    /// notices are told at once (a NOTICE), so that they send their new calls to other
    /// brokers; workers that move their capacity between brokers too (a LOAD saying so),
    /// so that they give it to the other brokers as this one's queue drains.
    pub(crate) fn begin_shutdown(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.shutting_down = true;
        self.workers.hurry_loads(now);
        let told = self.listeners.len();
        for route in self.listeners.take() {
            out.push(Action::Notice { route });
        }
        if told > 0 {
            info!(
                clients = told,
                "told the clients that asked that this broker is stopping"
            );
        }
    }

    /// Answers every unfinished call at the end of the shutdown grace period: a call that
    /// never left the broker gets SHUTTING_DOWN (it did not run), a call a worker holds
    /// gets WORKER_LOST (it may have run: the caller must not assume either way).
    pub(crate) fn abandon_all(&mut self, now: Instant, out: &mut Vec<Action>) {
        for (_, mut call) in self.calls.take_all() {
            let (code, message) = match call.place {
                Place::Queued => (
                    ErrorCode::ShuttingDown,
                    "the broker stopped before the call was sent to a worker",
                ),
                Place::Running { .. } => (
                    ErrorCode::WorkerLost,
                    "the broker stopped while a worker was running the call; it may or may not have run",
                ),
            };
            self.finish(&mut call, code, message.to_owned(), now, out);
        }
        self.functions.clear_calls();
        self.workers.clear_calls();
    }

    /// Expires deadlines, declares silent workers lost, sends due heartbeats, and gives
    /// back memory a drained flood left behind.
    pub(crate) fn tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.calls.shrink_after_flood(SHRINK_FLOOR);
        self.functions.shrink_after_flood(SHRINK_FLOOR);
        while let Some(ticket) = self.calls.pop_due(now) {
            self.expire(ticket, now, out);
        }
        for worker in self.workers.silent(now) {
            warn!(worker = %self.workers.label(&worker), "worker missed its heartbeats; declaring it lost");
            self.lose_worker(&worker, now, out);
        }
        let Router {
            workers, functions, ..
        } = self;
        let backlog = |worker: &workers::Worker| {
            let waiting: usize = worker
                .functions
                .keys()
                .filter_map(|name| functions.get(name))
                .map(|f| f.queue.len())
                .sum();
            waiting.min(u32::MAX as usize) as u32
        };
        workers.send_heartbeats(now, backlog, self.shutting_down, out);
        for worker in self.workers.readmit(now) {
            // Back in rotation: it may take calls that wait.
            self.pull_queued(&worker, now, out);
        }
    }

    /// A call's deadline passed: its caller gets TIMEOUT. A queued call leaves the
    /// broker; a running one keeps its worker's slot until the worker answers or is lost.
    fn expire(&mut self, ticket: Ticket, now: Instant, out: &mut Vec<Action>) {
        let Some(call) = self.calls.get_mut(ticket) else {
            return;
        };
        match call.place {
            Place::Queued => {
                let why = "timed out waiting for a free worker";
                self.end_queued(ticket, ErrorCode::Timeout, why, now, out);
            }
            Place::Running { ref worker, .. } if call.origin.is_none() => {
                // Answered already: its caller gave up or cancelled it. Still running
                // `hung_after` later: the worker is hung.
                if call.hung_at.is_some_and(|at| at <= now) {
                    let worker = worker.clone();
                    self.hung(&worker, out);
                }
            }
            Place::Running { .. } if now < call.deadline => {
                // Not its deadline: its hedge's time.
                self.hedge_due(ticket, now, out);
            }
            Place::Running { .. } => {
                let message = format!("call to '{}' timed out while running", call.function);
                self.stop_running(ticket, ErrorCode::Timeout, message, now, out);
            }
        }
    }
}

impl Router {
    /// Answers a running call's caller with `code` (unless answered already) and, when
    /// its worker understands CANCEL, tells it that nobody waits. The worker keeps the
    /// place until it answers (that reply is dropped and counted late).
    pub(super) fn stop_running(
        &mut self,
        ticket: Ticket,
        code: ErrorCode,
        message: String,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(call) = self.calls.get_mut(ticket) else {
            return;
        };
        if !matches!(call.place, Place::Running { .. }) {
            return;
        }
        let Some(origin) = call.origin.take() else {
            return; // already answered
        };
        let (id, function, received) = (call.id, Arc::clone(&call.function), call.received);
        let hedge = call.hedge.take();
        self.release_copy(ticket, now, out);
        if let Some(hedge) = hedge {
            self.drop_hedge(hedge, now, out);
        }
        self.fail(origin, id, function, received, code, message, now, out);
    }

    /// Ends a call that waits in its queue: it leaves the queue and is answered `code`,
    /// "call to '<function>' <why>".
    pub(super) fn end_queued(
        &mut self,
        ticket: Ticket,
        code: ErrorCode,
        why: &str,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(mut call) = self.calls.remove(ticket) else {
            return;
        };
        let calls = &self.calls;
        self.functions
            .forget_queued(&call.function, |t| calls.is_queued(t));
        let message = format!("call to '{}' {why}", call.function);
        self.finish(&mut call, code, message, now, out);
    }

    /// A running call nobody waits for any more (answered, or won by its twin): its worker
    /// is told when it understands CANCEL, and if it still holds it `hung_after` later, it
    /// is hung.
    pub(super) fn release_copy(&mut self, ticket: Ticket, now: Instant, out: &mut Vec<Action>) {
        let Some(call) = self.calls.get_mut(ticket) else {
            return;
        };
        let Place::Running { worker, .. } = &call.place else {
            return;
        };
        if self.workers.get(worker).is_some_and(|w| w.cancels) {
            self.stats.cancels_sent += 1;
            out.push(Action::Cancel {
                worker: worker.clone(),
                ticket,
            });
        }
        let hung_at = now + self.config.hung_after;
        call.hung_at = Some(hung_at);
        self.calls.watch(ticket, hung_at);
    }
}

impl Router {
    /// A worker still runs a call long past its deadline: its capacity is stuck. It gets
    /// no new calls and, when it understands DRAIN, is asked to leave, so that it finishes
    /// or abandons what it holds, exits and is restarted with its full capacity.
    fn hung(&mut self, worker: &WorkerId, out: &mut Vec<Action>) {
        let Some(state) = self.workers.get_mut(worker) else {
            return;
        };
        if state.hung {
            return;
        }
        state.hung = true;
        self.stats.hung_workers += 1;
        let asked = state.drains;
        warn!(worker = %state.label(worker), held = state.held(), asked_to_drain = asked, "worker runs a call long past its deadline; no new calls for it");
        if asked {
            out.push(Action::Drain {
                worker: worker.clone(),
            });
        }
    }
}

/// Where this broker's tickets start: a random point in `[2^32, 2^62)`, so that two
/// broker lifetimes on the same endpoints never hand out the same ticket (a worker that
/// outlived a broker cannot complete a new broker's call with an old call's reply), and
/// counting up from it never wraps.
fn first_ticket() -> u64 {
    // Without an OS random source, the clock still separates broker lifetimes.
    let random = getrandom::u64().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    (1 << 32) + random % ((1 << 62) - (1 << 32))
}

/// Short printable form of a routing identity for logs.
pub(crate) fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// A worker's name for logs: the name it announced, else its routing identity in hex.
fn worker_label(name: &str, id: &[u8]) -> String {
    if name.is_empty() {
        hex(id)
    } else {
        name.to_owned()
    }
}

/// Sends a call to `worker`: records it as held there, takes its body (keeping a copy
/// only if the worker said the function is retry-safe) and pushes the REQUEST. Returns
/// when to hedge it, if its function is hedged.
fn start(
    workers: &mut Workers,
    functions: &mut Functions,
    ticket: Ticket,
    call: &mut Call,
    worker: WorkerId,
    now: Instant,
    out: &mut Vec<Action>,
) -> Option<Instant> {
    let started = workers.start(&worker, ticket, &call.function);
    let shape = RecordShape::new(&started, call);
    let workers::Started {
        inline,
        retry_safe,
        hedge_after,
        ..
    } = started;
    functions.started(&call.function);
    let remaining = call.deadline.saturating_duration_since(now);
    let body = call.body.take().expect("a queued call has its body");
    call.attempts += 1;
    if retry_safe {
        call.body = Some(Frame::from(&body[..]));
    }
    debug!(call_id = call.id, function = %call.function, worker = %hex(&worker), "dispatch");
    out.push(Action::Run {
        worker: worker.clone(),
        call: Dispatch {
            ticket,
            call_id: call.id,
            time_left_ms: remaining.as_millis().try_into().unwrap_or(u32::MAX),
            function: Arc::clone(&call.function),
            body,
            attempt: call.attempts.min(255) as u8,
            shape,
        },
    });
    call.place = Place::Running {
        worker,
        inline,
        since: now,
    };
    // A hedge is never hedged again; a call whose deadline comes first is not hedged.
    hedge_after
        .filter(|_| call.parent.is_none())
        .map(|after| now + after)
        .filter(|at| *at < call.deadline)
}
