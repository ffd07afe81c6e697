//! Routing state and decisions: which worker runs which call, what waits, what fails.
//!
//! [`Router`] never touches a socket. The socket loop feeds it parsed messages and the
//! current time, and performs the [`Action`]s it pushes into an outbox. Payload frames
//! are moved through it, never decoded or copied.
//!
//! The router ties together tables that each own one kind of state:
//! - `calls` — every call held, where it is (`calls::Place`) and its deadline: the one
//!   source of where a call is;
//! - `functions` — each hosted function's hosts, queue and running count;
//! - `workers` — each worker's budgets, held calls and heartbeats, and picking;
//! - `batches` — `system.batch` replies being assembled;
//! - `ready` — checking a READY before it changes anything.
//!
//! The queues and the workers' held sets are indexes over the call table;
//! `check_invariants` (debug builds and tests) asserts that they agree with it.

mod batches;
mod calls;
mod deadlines;
mod functions;
mod invariants;
mod queue;
mod ready;
mod workers;

#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::route::{BatchRequest, Incoming, Rejected, ReplyRoute, Request};
use switchboard_protocol::client::function_name;
use switchboard_protocol::codec::{encode_error, reply_outcome};
use switchboard_protocol::worker::{Ticket, WorkerMessage};
use switchboard_protocol::ProtocolError;
use switchboard_protocol::{
    CallHeader, ErrorCode, Frame, FunctionInfo, ReadyInfo, RemoteError, WorkerListing,
    RESERVED_PREFIX,
};
use tracing::{debug, info, warn};

use crate::auth::AuthCounters;
use crate::introspection;
use crate::view::{CallEnded, FunctionSummary, RouterStats, View};
use calls::{Call, CallTable, Origin, Place};
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
    /// Send a worker a HEARTBEAT.
    Heartbeat {
        /// The worker's identity.
        worker: WorkerId,
    },
    /// Send a worker a DISCONNECT: "send READY", or "your leave is acknowledged".
    Disconnect {
        /// The worker's identity.
        worker: WorkerId,
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
}

/// The broker's routing state machine.
pub(crate) struct Router {
    config: RouterConfig,
    calls: CallTable,
    functions: Functions,
    workers: Workers,
    batches: batches::Batches,
    shutting_down: bool,
    stats: RouterStats,
    /// Calls ended since the socket loop last took them (for metrics).
    ended: Vec<CallEnded>,
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
            stats: RouterStats::default(),
            ended: Vec::new(),
            auth: Arc::default(),
        }
    }

    /// Shares the ZAP handler's counters of refused handshakes.
    pub(crate) fn set_auth_counters(&mut self, counters: Arc<AuthCounters>) {
        self.auth = counters;
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

    /// Stops accepting calls; calls already accepted go on.
    pub(crate) fn begin_shutdown(&mut self) {
        self.shutting_down = true;
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

    /// Handles a well-formed request (one call or a batch) from a client.
    pub(crate) fn submit(&mut self, incoming: Incoming, now: Instant, out: &mut Vec<Action>) {
        match incoming {
            Incoming::Call(request) => {
                self.stats.requests += 1;
                let Request {
                    route,
                    function,
                    header,
                    body,
                } = request;
                // Read from the name frame itself: no copy of the name per call.
                let name = function_name(&function).unwrap_or_default();
                self.route(Origin::Caller(route), &header, name, body, now, out);
            }
            Incoming::Pipelined(calls) => {
                for call in calls {
                    match call {
                        Ok(request) => self.submit(Incoming::Call(request), now, out),
                        Err(rejected) => self.reject(rejected, out),
                    }
                }
            }
            Incoming::Batch(batch) => {
                self.stats.requests += 1;
                self.submit_batch(batch, now, out)
            }
        }
    }

    /// Routes every call of a batch; the batch is answered when the last one is.
    fn submit_batch(&mut self, batch: BatchRequest, now: Instant, out: &mut Vec<Action>) {
        let BatchRequest {
            route,
            header,
            calls,
        } = batch;
        let number = self.batches.open(route, calls.len());
        debug!(
            call_id = header.id,
            calls = calls.len(),
            batch = number,
            "batch accepted"
        );
        let mut system_calls = 0usize;
        for (index, (function, body)) in calls.into_iter().enumerate() {
            let origin = Origin::Batch {
                batch: number,
                index,
            };
            let refused = match &function {
                Ok(function) => batches::refusal(function, &mut system_calls),
                Err(error) => Some(error.to_string()),
            };
            match (refused, function) {
                (Some(message), _) => {
                    let error = RemoteError::new(ErrorCode::BadRequest, message);
                    self.deliver(origin, encode_error(&error).into(), out);
                }
                (None, Ok(function)) => self.route(origin, &header, &function, body, now, out),
                (None, Err(_)) => unreachable!("a malformed name is refused above"),
            }
        }
    }

    /// Runs, queues or refuses one call.
    fn route(
        &mut self,
        origin: Origin,
        header: &CallHeader,
        function: &str,
        body: Frame,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if function.starts_with(RESERVED_PREFIX) {
            let reply = match introspection::answer(&*self, function, &body) {
                Ok(reply) => reply,
                Err(error) => encode_error(&error),
            };
            return self.deliver(origin, Frame::from(reply), out);
        }
        let worker = match self.admit(function, body.len()) {
            Ok(worker) => worker,
            Err((code, message)) => {
                debug!(call_id = header.id, %function, %code, "call refused");
                return self.answer(origin, header.id, code, message, out);
            }
        };
        let timeout = header
            .timeout_ms
            .map_or(self.config.default_timeout, Duration::from_millis)
            .min(self.config.max_timeout);
        if timeout.is_zero() {
            let message =
                "timeout_ms is 0: the call's deadline passed as it arrived, so it was not run";
            return self.answer(origin, header.id, ErrorCode::Timeout, message.into(), out);
        }
        self.stats.calls_accepted += 1;
        let name = &self.functions.get(function).expect("admitted").name;
        let mut call = Box::new(Call {
            origin: Some(origin),
            id: header.id,
            function: Arc::clone(name),
            body: Some(body),
            deadline: now + timeout,
            place: Place::Queued,
            attempts: 0,
            received: now,
        });
        let ticket = self.calls.next_ticket();
        debug!(call_id = header.id, %function, ticket = ticket.0, "call accepted");
        match worker {
            Some(worker) => {
                let Router {
                    workers, functions, ..
                } = self;
                start(workers, functions, ticket, &mut call, worker, now, out);
            }
            None => self.functions.enqueue(function, ticket, false),
        }
        self.calls.insert(ticket, call);
    }

    /// Sends a reply body where it belongs: to the caller, or into its batch.
    fn deliver(&mut self, origin: Origin, body: Frame, out: &mut Vec<Action>) {
        let reply = match origin {
            Origin::Caller(route) => Some((route, body)),
            Origin::Batch { batch, index } => {
                self.batches
                    .fill(batch, index, body, self.config.max_reply_bytes)
            }
        };
        if let Some((route, body)) = reply {
            self.stats.answers += 1;
            out.push(Action::Reply { route, body });
        }
    }

    /// Decides whether a call can be taken: `Ok(Some(worker))` to run now,
    /// `Ok(None)` to queue, or the error to answer with.
    fn admit(
        &self,
        function: &str,
        body_len: usize,
    ) -> Result<Option<WorkerId>, (ErrorCode, String)> {
        if self.shutting_down {
            return Err((
                ErrorCode::ShuttingDown,
                "the broker is shutting down".into(),
            ));
        }
        if body_len > self.config.max_request_bytes {
            return Err((
                ErrorCode::PayloadTooLarge,
                format!(
                    "request body is {body_len} bytes; the limit is {}",
                    self.config.max_request_bytes
                ),
            ));
        }
        let Some(entry) = self.functions.get(function) else {
            return Err((
                ErrorCode::UnknownFunction,
                format!("no connected worker hosts function '{function}'"),
            ));
        };
        match self.workers.pick(&entry.hosts, function) {
            Some(worker) => Ok(Some(worker)),
            None if entry.queue.len() >= self.config.queue_capacity => Err((
                ErrorCode::Overloaded,
                format!(
                    "every worker hosting '{function}' is busy and {} calls already wait",
                    self.config.queue_capacity
                ),
            )),
            None => Ok(None),
        }
    }

    /// Answers a malformed frontend message with BAD_REQUEST, when it says whom to answer.
    pub(crate) fn reject(&mut self, rejected: Rejected, out: &mut Vec<Action>) {
        let Rejected { route, error } = rejected;
        if route.is_unroutable() {
            let error = switchboard_protocol::error::with_causes(&error);
            warn!(%error, "dropping malformed client message with no return address");
            self.stats.unanswerable_requests += 1;
            return;
        }
        let code = match error {
            ProtocolError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
            _ => ErrorCode::BadRequest,
        };
        let message = switchboard_protocol::error::with_causes(&error);
        warn!(error = %message, %code, "answering malformed client message");
        self.stats.requests += 1;
        self.answer(Origin::Caller(route), 0, code, message, out);
    }

    /// Handles a parsed message from a worker.
    pub(crate) fn worker_message(
        &mut self,
        worker: WorkerId,
        message: WorkerMessage,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if let WorkerMessage::Ready(info) = message {
            return self.register(worker, info, now, out);
        }
        let Some(state) = self.workers.get_mut(&worker) else {
            if let WorkerMessage::Reply(replies) = &message {
                // Its calls were answered when it was declared lost (or it never had any).
                self.stats.late_replies += replies.len() as u64;
            }
            if !matches!(message, WorkerMessage::Disconnect) {
                debug!(worker = %hex(&worker), "message from unknown worker; asking it to register");
                out.push(Action::Disconnect { worker });
            }
            return;
        };
        let draining = state.draining;
        self.workers
            .heard_from(&worker, now, self.config.heartbeat_liveness);
        match message {
            WorkerMessage::Ready(_) => unreachable!("handled above"),
            WorkerMessage::Heartbeat => {}
            WorkerMessage::Reply(replies) => {
                for (ticket, body) in replies.into_replies() {
                    self.complete(&worker, ticket, body, now, out);
                }
            }
            WorkerMessage::Disconnect if draining => {
                // A second DISCONNECT: "gone now", without the calls it still held.
                let held = self.workers.get(&worker).map_or(0, |w| w.held());
                warn!(worker = %self.workers.label(&worker), abandoned = held, "worker left without finishing its calls");
                self.lose_worker(&worker, now, out);
            }
            WorkerMessage::Disconnect => {
                let state = self.workers.get_mut(&worker).expect("checked above");
                info!(worker = %state.label(&worker), running = state.held(), "worker leaving");
                state.draining = true;
                let idle = state.held() == 0;
                out.push(Action::Disconnect {
                    worker: worker.clone(),
                });
                if idle {
                    self.remove_worker(&worker, now, out);
                }
            }
        }
    }

    /// Under CURVE: whether a message from `worker`, authenticated as `key`, may speak for
    /// it. A registered worker is bound to the key of its READY; another key under the same
    /// routing identity means its connection was replaced by a stranger's, so the worker is
    /// declared lost (its calls re-dispatched or answered WORKER_LOST) and the message is
    /// dropped and counted in `impostor_messages` — unless it is a READY, which registers
    /// the newcomer afresh under its own key.
    pub(crate) fn authenticate_worker(
        &mut self,
        worker: &[u8],
        key: &str,
        is_ready: bool,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> bool {
        let Some(state) = self.workers.get(worker) else {
            return true;
        };
        if state.key.as_deref().is_none_or(|k| k == key) {
            return true;
        }
        warn!(worker = %state.label(worker), registered = state.key.as_deref().unwrap_or_default(), key, "another CURVE key speaks under a registered worker's identity; declaring the worker lost");
        self.stats.impostor_messages += 1;
        self.lose_worker(worker, now, out);
        is_ready
    }

    /// Under CURVE: binds a just-registered worker to the key its READY came with.
    pub(crate) fn bind_worker_key(&mut self, worker: &[u8], key: &str) {
        if let Some(state) = self.workers.get_mut(worker) {
            state.key = Some(key.to_owned());
        }
    }

    /// Counts replies the socket could not take (client gone or not reading).
    pub(crate) fn replies_dropped(&mut self, count: usize) {
        self.stats.dropped_replies += count as u64;
    }

    /// Counts a malformed message from a worker. The worker keeps its calls.
    pub(crate) fn worker_malformed(&mut self, worker: &[u8], error: &dyn std::error::Error) {
        self.stats.malformed_worker_messages += 1;
        let error = switchboard_protocol::error::with_causes(error);
        warn!(worker = %self.workers.label(worker), %error, "dropping malformed worker message");
    }

    /// A send to this worker failed: it is lost. The calls that were on their way to it
    /// (`undelivered`: ticket and body of each) certainly did not run, so they go back to
    /// the front of their queues, as if never dispatched, for another host to take; the
    /// calls it already held are handled as for any lost worker.
    pub(crate) fn worker_unreachable(
        &mut self,
        worker: &[u8],
        undelivered: Vec<(Ticket, Frame)>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if !self.workers.contains(worker) {
            return;
        }
        warn!(worker = %self.workers.label(worker), undelivered = undelivered.len(), "worker unreachable; declaring it lost");
        let mut requeued: Vec<Arc<str>> = Vec::new();
        // In reverse, so that pushing each to the front keeps their order.
        for (ticket, body) in undelivered.into_iter().rev() {
            if !self.calls.is_held_by(ticket, worker) {
                continue;
            }
            let call = self.calls.get_mut(ticket).expect("checked above");
            let Place::Running { inline, .. } = call.place else {
                unreachable!("held by the worker")
            };
            call.body = Some(body);
            call.attempts -= 1;
            call.place = Place::Queued;
            let function = Arc::clone(&call.function);
            self.workers.release(worker, ticket, inline);
            self.functions.stopped(&function);
            self.functions.enqueue(&function, ticket, true);
            if !requeued.contains(&function) {
                requeued.push(function);
            }
        }
        self.lose_worker(worker, now, out);
        for function in requeued {
            self.offer_to_hosts(&function, now, out);
        }
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
        self.workers.send_heartbeats(now, out);
    }

    /// Registers a worker (or starts a new session for a registered one) from its READY.
    ///
    /// Checked before anything changes (see `ready::check`): a refused READY leaves the
    /// worker unknown, and its next message is answered DISCONNECT.
    fn register(&mut self, worker: WorkerId, info: ReadyInfo, now: Instant, out: &mut Vec<Action>) {
        let functions = &self.functions;
        let checked = ready::check(
            &info,
            &worker,
            |name| functions.contains(name),
            functions.len(),
        );
        let registration = match checked {
            Ok(registration) => registration,
            Err(why) => {
                warn!(worker = %worker_label(&info.name, &worker), why, "refusing READY");
                self.stats.ready_refused += 1;
                return;
            }
        };
        if registration.corrected {
            self.stats.ready_corrected += 1;
        }
        // A READY from a registered worker starts a new session: it no longer answers
        // the calls it held (a worker sends READY when its broker does not know it).
        let mut orphans: Vec<Ticket> = Vec::new();
        if let Some(previous) = self.workers.remove(&worker) {
            orphans.extend(previous.held.iter().copied());
            for &ticket in &orphans {
                if let Some(call) = self.calls.get(ticket) {
                    self.functions.stopped(&call.function);
                }
            }
            let names: Set<&str> = registration
                .functions
                .iter()
                .map(|f| f.name.as_str())
                .collect();
            for old in previous.functions.keys() {
                if !names.contains(&**old) {
                    self.unhost(&worker, old, now, out);
                }
            }
        }
        let who = worker_label(&registration.name, &worker);
        for function in &registration.functions {
            let hosts = self.functions.host(&function.name, &worker);
            let other = hosts
                .iter()
                .filter(|h| **h != worker)
                .find_map(|h| self.workers.get(h)?.announced(&function.name));
            if let Some(other) = other.filter(|other| ready::differ(other, function)) {
                warn!(worker = %who, function = %function.name, signature = %function.signature, other_signature = %other.signature, retry_safe = function.retry_safe, other_retry_safe = other.retry_safe, "hosts of one function announce it differently");
                self.stats.function_conflicts += 1;
            }
        }
        info!(worker = %who, capacity = registration.capacity, inline_capacity = registration.inline_capacity, functions = registration.functions.len(), "worker ready");
        self.workers.insert(
            worker.clone(),
            registration,
            now,
            self.config.heartbeat_liveness,
        );
        if !orphans.is_empty() {
            warn!(worker = %who, calls = orphans.len(), "worker registered again; the calls it held are lost");
        }
        for ticket in orphans {
            self.retry_or_fail(ticket, now, out);
        }
        self.pull_queued(&worker, now, out);
    }

    /// Fills a worker's free slots from the queues of the functions it hosts, oldest call first.
    fn pull_queued(&mut self, worker: &WorkerId, now: Instant, out: &mut Vec<Action>) {
        while self.functions.any_waiting() {
            let Some(state) = self.workers.get(worker) else {
                return;
            };
            let calls = &self.calls;
            let found = self.functions.oldest_waiting(
                |name| state.announced(name).is_some() && state.free_for(name) > 0,
                |t| calls.is_queued(t),
            );
            let Some((ticket, name)) = found else { return };
            self.functions.pop_head(&name);
            let Router {
                calls,
                workers,
                functions,
                ..
            } = self;
            let call = calls.get_mut(ticket).expect("queue heads are live calls");
            start(workers, functions, ticket, call, worker.clone(), now, out);
        }
    }

    /// Lets every host of `function` take queued calls.
    fn offer_to_hosts(&mut self, function: &str, now: Instant, out: &mut Vec<Action>) {
        let Some(entry) = self.functions.get(function) else {
            return;
        };
        for host in entry.hosts.clone() {
            self.pull_queued(&host, now, out);
        }
    }

    /// Forwards a worker's reply to the call it answers.
    fn complete(
        &mut self,
        worker: &WorkerId,
        ticket: Ticket,
        body: Frame,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if !self.calls.is_held_by(ticket, worker) {
            self.stats.late_replies += 1;
            warn!(worker = %self.workers.label(worker), ticket = ticket.0, "dropping reply for a call this worker does not hold");
            return;
        }
        let call = self.calls.remove(ticket).expect("checked above");
        let Place::Running { inline, .. } = call.place else {
            unreachable!("held by the worker")
        };
        self.functions.stopped(&call.function);
        let leaving = self.workers.release(worker, ticket, inline);
        let body = if body.len() > self.config.max_reply_bytes {
            warn!(worker = %self.workers.label(worker), bytes = body.len(), max = self.config.max_reply_bytes, "reply over the limit; the caller gets PAYLOAD_TOO_LARGE");
            let message = format!(
                "the result of '{}' is {} bytes; the limit is {}",
                call.function,
                body.len(),
                self.config.max_reply_bytes
            );
            Frame::from(encode_error(&RemoteError::new(
                ErrorCode::PayloadTooLarge,
                message,
            )))
        } else {
            body
        };
        match call.origin {
            Some(origin) => {
                self.stats.calls_completed += 1;
                let outcome = reply_outcome(&body).map_or("ok", ErrorCode::as_str);
                self.ended.push(CallEnded {
                    function: call.function,
                    outcome,
                    latency: now.saturating_duration_since(call.received),
                });
                debug!(call_id = call.id, "reply");
                self.deliver(origin, body, out);
            }
            None => {
                self.stats.late_replies += 1;
                debug!(
                    call_id = call.id,
                    "dropping reply to a call that already timed out"
                );
            }
        }
        if leaving {
            self.remove_worker(worker, now, out);
        } else {
            self.pull_queued(worker, now, out);
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
                let mut call = self.calls.remove(ticket).expect("present");
                let calls = &self.calls;
                self.functions
                    .forget_queued(&call.function, |t| calls.is_queued(t));
                let message = format!(
                    "call to '{}' timed out waiting for a free worker",
                    call.function
                );
                self.finish(&mut call, ErrorCode::Timeout, message, now, out);
            }
            Place::Running { .. } => {
                let Some(origin) = call.origin.take() else {
                    return; // already answered
                };
                let (id, function, received) = (call.id, Arc::clone(&call.function), call.received);
                let message = format!("call to '{function}' timed out while running");
                self.fail(
                    origin,
                    id,
                    function,
                    received,
                    ErrorCode::Timeout,
                    message,
                    now,
                    out,
                );
            }
        }
    }

    /// Answers a call taken out of the table with a broker error (nothing if its caller
    /// was already answered).
    fn finish(
        &mut self,
        call: &mut Call,
        code: ErrorCode,
        message: String,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if let Some(origin) = call.origin.take() {
            let function = Arc::clone(&call.function);
            self.fail(
                origin,
                call.id,
                function,
                call.received,
                code,
                message,
                now,
                out,
            );
        }
    }

    /// Answers an accepted call with a broker error and reports how it ended.
    #[allow(clippy::too_many_arguments)]
    fn fail(
        &mut self,
        origin: Origin,
        call_id: u64,
        function: Arc<str>,
        received: Instant,
        code: ErrorCode,
        message: String,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        self.ended.push(CallEnded {
            function,
            outcome: code.as_str(),
            latency: now.saturating_duration_since(received),
        });
        self.answer(origin, call_id, code, message, out);
    }

    /// Answers with a broker error, counted by code.
    fn answer(
        &mut self,
        origin: Origin,
        call_id: u64,
        code: ErrorCode,
        message: String,
        out: &mut Vec<Action>,
    ) {
        debug!(call_id, %code, %message, "broker error reply");
        *self.stats.broker_errors.entry(code.as_str()).or_default() += 1;
        let body = encode_error(&RemoteError::new(code, message));
        self.deliver(origin, Frame::from(body), out);
    }

    /// Declares a worker lost: each call it held is re-dispatched when its function is
    /// retry-safe (within the attempt limit and the deadline), or answered WORKER_LOST.
    fn lose_worker(&mut self, worker: &[u8], now: Instant, out: &mut Vec<Action>) {
        let Some(held) = self.workers.get(worker).map(|w| w.held.clone()) else {
            return;
        };
        self.stats.workers_lost += 1;
        for &ticket in &held {
            if let Some(call) = self.calls.get(ticket) {
                self.functions.stopped(&call.function);
            }
        }
        self.remove_worker(worker, now, out);
        for ticket in held {
            self.retry_or_fail(ticket, now, out);
        }
    }

    /// A call whose worker is gone: back to the front of its queue when it may run again
    /// (a retry-safe body kept, attempts and deadline left, a host left), else WORKER_LOST.
    fn retry_or_fail(&mut self, ticket: Ticket, now: Instant, out: &mut Vec<Action>) {
        let Some(call) = self.calls.get_mut(ticket) else {
            return;
        };
        let retry = call.origin.is_some()
            && call.body.is_some()
            && call.attempts < self.config.max_attempts
            && call.deadline > now
            && self.functions.contains(&call.function);
        if !retry {
            let mut call = self.calls.remove(ticket).expect("present");
            let message = format!(
                "the worker running '{}' was lost (attempt {} of {})",
                call.function,
                call.attempts,
                if call.body.is_some() {
                    self.config.max_attempts
                } else {
                    1
                }
            );
            return self.finish(&mut call, ErrorCode::WorkerLost, message, now, out);
        }
        self.stats.retries += 1;
        debug!(call_id = call.id, function = %call.function, attempt = call.attempts + 1, "re-dispatching a lost call");
        call.place = Place::Queued;
        let function = Arc::clone(&call.function);
        self.functions.enqueue(&function, ticket, true);
        self.offer_to_hosts(&function, now, out);
    }

    /// Unregisters a worker and takes it off the hosts of its functions.
    fn remove_worker(&mut self, worker: &[u8], now: Instant, out: &mut Vec<Action>) {
        let Some(state) = self.workers.remove(worker) else {
            return;
        };
        for name in state.functions.keys() {
            self.unhost(worker, name, now, out);
        }
        info!(worker = %state.label(worker), "worker removed");
    }

    /// Removes a worker from a function's hosts; with none left, fails its queued calls.
    fn unhost(&mut self, worker: &[u8], name: &str, now: Instant, out: &mut Vec<Action>) {
        let Some(queue) = self.functions.unhost(name, worker) else {
            return;
        };
        for ticket in queue {
            if !self.calls.is_queued(ticket) {
                continue;
            }
            let mut call = self.calls.remove(ticket).expect("queued");
            let message = format!("the last worker hosting '{name}' left");
            self.finish(&mut call, ErrorCode::UnknownFunction, message, now, out);
        }
    }

    /// What the hosts of a function announced, each distinct announcement once with its
    /// number of hosts, most common first (ties: the earliest host's first).
    fn variants(&self, function: &functions::Function) -> Vec<(FunctionInfo, usize)> {
        let mut variants: Vec<(FunctionInfo, usize)> = Vec::new();
        let announced = function
            .hosts
            .iter()
            .filter_map(|id| self.workers.get(id)?.announced(&function.name));
        for info in announced {
            // Inline or not is how that worker runs it, not what the function is.
            let info = FunctionInfo {
                inline: false,
                ..info.clone()
            };
            match variants.iter_mut().find(|(v, _)| *v == info) {
                Some((_, count)) => *count += 1,
                None => variants.push((info, 1)),
            }
        }
        variants.sort_by_key(|v| Reverse(v.1));
        variants
    }
}

/// Sends a call to `worker`: records it as held there, takes its body (keeping a copy
/// only if the worker said the function is retry-safe) and pushes the REQUEST.
fn start(
    workers: &mut Workers,
    functions: &mut Functions,
    ticket: Ticket,
    call: &mut Call,
    worker: WorkerId,
    now: Instant,
    out: &mut Vec<Action>,
) {
    let (inline, retry_safe) = workers.start(&worker, ticket, &call.function);
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
        },
    });
    call.place = Place::Running { worker, inline };
}

impl View for Router {
    fn functions(&self) -> Vec<FunctionSummary> {
        let mut list: Vec<_> = self
            .functions
            .iter()
            .map(|f| {
                let variants = self.variants(f);
                FunctionSummary {
                    info: variants[0].0.clone(),
                    variants,
                    workers: f.hosts.len(),
                    queued: f.queue.len(),
                    running: f.running,
                }
            })
            .collect();
        list.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        list
    }

    fn workers(&self) -> Vec<WorkerListing> {
        self.workers.listing()
    }

    fn stats(&self) -> &RouterStats {
        &self.stats
    }

    fn worker_count(&self) -> usize {
        self.workers.len()
    }

    fn calls_in_progress(&self) -> usize {
        self.calls.len()
    }

    fn auth_rejections(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.auth.frontend.load(Relaxed),
            self.auth.backend.load(Relaxed),
        )
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
