//! Routing state and decisions: which worker runs which call, what waits, what fails.
//!
//! [`Router`] owns every piece of broker state and never touches a socket. The
//! socket loop feeds it parsed messages and the current time, and performs the
//! [`Action`]s it pushes into an outbox. Payload frames are moved through it,
//! never decoded or copied.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_protocol::client::{
    function_name, BatchRequest, Incoming, Rejected, Request, BATCH_FUNCTION,
};
use switchboard_protocol::codec::{batch_reply_body, encode_error, reply_outcome};
use switchboard_protocol::route::ReplyRoute;
use switchboard_protocol::worker::{Ticket, WorkerMessage};
use switchboard_protocol::ProtocolError;
use switchboard_protocol::{
    CallHeader, ErrorCode, Frame, FunctionInfo, ReadyInfo, RemoteError, WorkerListing,
    RESERVED_PREFIX,
};
use tracing::{debug, info, warn};

use crate::auth::AuthCounters;
use crate::deadlines::Deadlines;
use crate::introspection;
use crate::metrics::Metrics;

/// A worker's routing identity on the backend socket, shared: every call running on a
/// worker and every message for it holds one, without an allocation each.
pub type WorkerId = Arc<[u8]>;

/// Hash maps of the router: a fast hasher, seeded at random (keys come from peers).
type Map<K, V> = HashMap<K, V, ahash::RandomState>;
/// Hash sets of the router.
type Set<T> = HashSet<T, ahash::RandomState>;

/// Heartbeat intervals a worker may announce are clamped to this range, so that a worker
/// that dies is declared lost within `liveness × 30 s` whatever it announced.
pub const HEARTBEAT_RANGE_MS: (u64, u64) = (10, 30_000);
/// Largest capacity (and inline capacity) a worker may announce; more is clamped.
pub const MAX_CAPACITY: u32 = 10_000;
/// Most functions one worker may host; the rest of its READY is ignored.
pub const MAX_FUNCTIONS_PER_WORKER: usize = 1_024;
/// A batch's reply keeps every slot at most this large, whatever its budget says.
const SMALL_REPLY_BYTES: usize = 256;
/// Most `system.*` calls one batch may carry; the others are answered BAD_REQUEST.
pub const MAX_SYSTEM_CALLS_PER_BATCH: usize = 16;
/// Most distinct function names the broker hosts at once; new ones beyond are ignored.
pub const MAX_FUNCTIONS: usize = 10_000;
/// Longest doc line kept, in bytes (longer ones are cut at a character boundary).
pub const MAX_DOC_BYTES: usize = 1_024;
/// Longest signature kept, in bytes (same).
pub const MAX_SIGNATURE_BYTES: usize = 256;

/// Cuts `text` to at most `max` bytes, at a character boundary; says whether it did.
fn truncate(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    true
}

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
pub enum Action {
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
pub struct Dispatch {
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

/// Counters of what the router has seen, for logs, `system.stats` and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RouterStats {
    /// Client requests read that can be answered: single calls, each call of a pipelined
    /// message, batches (one each), and malformed messages with a return address.
    pub requests: u64,
    /// Replies decided for those requests. Once the broker is idle the two are equal: every
    /// request it read was answered.
    pub answers: u64,
    /// Calls accepted from clients (dispatched or queued).
    pub calls_accepted: u64,
    /// Replies forwarded from workers to clients.
    pub calls_completed: u64,
    /// Calls answered with an error by the broker itself, by code.
    pub broker_errors: HashMap<&'static str, u64>,
    /// Replies from workers that nobody waits for any more (late or unknown).
    pub late_replies: u64,
    /// Workers declared lost (silent or unreachable).
    pub workers_lost: u64,
    /// Malformed messages received from workers.
    pub malformed_worker_messages: u64,
    /// Calls re-dispatched after their worker was lost.
    pub retries: u64,
    /// Replies dropped because the client was gone or not reading (its queue was full).
    pub dropped_replies: u64,
    /// Client messages dropped because they carry no return address (too large to read
    /// up to the delimiter).
    pub unanswerable_requests: u64,
    /// READY messages refused whole (capacity 0, or no valid function).
    pub ready_refused: u64,
    /// READY messages accepted after clamping a number or ignoring a function.
    pub ready_corrected: u64,
    /// Worker messages dropped because another CURVE key than the registered worker's
    /// spoke under its identity.
    pub impostor_messages: u64,
    /// Registrations in which a worker announced a function differently (doc, signature or
    /// retry-safety) from a connected host of the same function.
    pub function_conflicts: u64,
}

enum CallState {
    Queued,
    Running { worker: WorkerId },
}

/// Where a call's reply goes.
enum Origin {
    /// Straight back to a caller.
    Caller(ReplyRoute),
    /// Into slot `index` of a pending batch.
    Batch { batch: u64, index: usize },
}

/// A batch whose calls are not all answered yet.
struct PendingBatch {
    route: ReplyRoute,
    replies: Vec<Option<Frame>>,
    missing: usize,
    /// Bytes of the replies so far: the whole reply stays within `max_reply_bytes`.
    bytes: usize,
}

struct Call {
    /// Where the reply goes; `None` once the caller was answered.
    client: Option<Origin>,
    id: u64,
    /// Shared with the function's entry: no allocation per call.
    function: Arc<str>,
    /// The request body: taken when dispatched, or kept as a copy when the
    /// function is retry-safe so a lost worker's call can be sent again.
    body: Option<Frame>,
    deadline: Instant,
    state: CallState,
    /// How many times the call has been dispatched.
    attempts: u32,
    /// When the broker received it.
    received: Instant,
}

struct WorkerState {
    name: String,
    /// Its registration number, shown by `system.workers` in place of its routing
    /// identity (which must stay secret: see `libzmq_seed`).
    number: u64,
    /// Under CURVE, the public key its READY came with: only that key speaks for it.
    key: Option<String>,
    /// Calls of ordinary functions it holds at once (its executor slots).
    capacity: u32,
    /// Calls of its inline functions it holds at once, beyond `capacity`.
    inline_capacity: u32,
    /// Tickets of the ordinary calls it holds.
    running: Set<Ticket>,
    /// Tickets of the inline calls it holds.
    running_inline: Set<Ticket>,
    /// What it announced about each function it hosts: the broker retries a call after
    /// losing this worker only if this worker said the function is retry-safe.
    functions: Vec<FunctionInfo>,
    /// The functions it runs inline (empty when it announced no inline capacity).
    inline: Vec<String>,
    heartbeat: Duration,
    expires: Instant,
    next_heartbeat: Instant,
    last_dispatch: u64,
    draining: bool,
}

impl WorkerState {
    /// Its name for logs (see [`worker_label`]).
    fn label(&self, id: &[u8]) -> String {
        worker_label(&self.name, id)
    }

    /// What it announced about `function`, if it hosts it.
    fn announced(&self, function: &str) -> Option<&FunctionInfo> {
        self.functions.iter().find(|f| f.name == function)
    }

    /// Whether calls of `function` use the inline budget on this worker.
    fn runs_inline(&self, function: &str) -> bool {
        self.inline.iter().any(|f| f == function)
    }

    /// Free room for one more call of `function`.
    fn free_for(&self, function: &str) -> u32 {
        if self.draining {
            0
        } else if self.runs_inline(function) {
            self.inline_capacity
                .saturating_sub(self.running_inline.len() as u32)
        } else {
            self.capacity.saturating_sub(self.running.len() as u32)
        }
    }

    /// How many calls it holds.
    fn held(&self) -> usize {
        self.running.len() + self.running_inline.len()
    }

    /// Forgets a call it held.
    fn release(&mut self, ticket: Ticket) {
        if !self.running.remove(&ticket) {
            self.running_inline.remove(&ticket);
        }
    }
}

struct FunctionState {
    /// The name, shared by every call of the function.
    name: Arc<str>,
    /// Connected workers hosting it; what each said about it lives with the worker.
    hosts: Vec<WorkerId>,
    queue: VecDeque<Ticket>,
    queued: usize,
    running: usize,
}

/// A snapshot of one function for introspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSummary {
    /// What its connected hosts say about it (when they disagree, what most of them say).
    pub info: FunctionInfo,
    /// Each distinct announcement (doc, signature, retry-safety) with how many connected
    /// hosts made it, most common first; more than one means the hosts disagree.
    pub variants: Vec<(FunctionInfo, usize)>,
    /// How many connected workers host it.
    pub workers: usize,
    /// How many calls wait for a free worker.
    pub queued: usize,
    /// How many calls are running on workers.
    pub running: usize,
}

/// The broker's routing state machine.
pub struct Router {
    config: RouterConfig,
    workers: Map<WorkerId, WorkerState>,
    functions: Map<String, FunctionState>,
    /// Functions with calls waiting in their queue.
    waiting: Set<Arc<str>>,
    /// Boxed: a table of 100 000 queued calls then grows by pointers, not by whole calls.
    calls: Map<Ticket, Box<Call>>,
    batches: Map<u64, PendingBatch>,
    next_batch: u64,
    deadlines: Deadlines,
    next_ticket: u64,
    /// Registrations so far: the last one's number.
    registrations: u64,
    dispatch_count: u64,
    shutting_down: bool,
    stats: RouterStats,
    metrics: Metrics,
    auth: Arc<AuthCounters>,
}

impl Router {
    /// An empty router.
    pub fn new(config: RouterConfig) -> Router {
        Router {
            config,
            workers: Map::default(),
            functions: Map::default(),
            waiting: Set::default(),
            calls: Map::default(),
            batches: Map::default(),
            next_batch: 1,
            deadlines: Deadlines::default(),
            next_ticket: first_ticket(),
            registrations: 0,
            dispatch_count: 0,
            shutting_down: false,
            stats: RouterStats::default(),
            metrics: Metrics::default(),
            auth: Arc::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &RouterStats {
        &self.stats
    }

    /// Shares the ZAP handler's counters of refused handshakes.
    pub fn set_auth_counters(&mut self, counters: Arc<AuthCounters>) {
        self.auth = counters;
    }

    /// CURVE handshakes refused so far: (frontend, backend).
    pub fn auth_rejections(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.auth.frontend.load(Relaxed),
            self.auth.backend.load(Relaxed),
        )
    }

    /// Metrics for `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Metrics, for the socket loop to count bytes.
    pub fn metrics_mut(&mut self) -> &mut Metrics {
        &mut self.metrics
    }

    /// Number of connected workers.
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// Calls accepted and not yet finished (queued or running, answered or not).
    pub fn calls_in_progress(&self) -> usize {
        self.calls.len()
    }

    /// The functions connected workers host, sorted by name.
    pub fn functions(&self) -> Vec<FunctionSummary> {
        let mut list: Vec<_> = self
            .functions
            .values()
            .filter(|f| !f.hosts.is_empty())
            .map(|f| {
                let variants = self.variants(f);
                FunctionSummary {
                    info: variants[0].0.clone(),
                    variants,
                    workers: f.hosts.len(),
                    queued: f.queued,
                    running: f.running,
                }
            })
            .collect();
        list.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        list
    }

    /// What the hosts of a function announced, each distinct announcement once with its
    /// number of hosts, most common first (ties: the earliest host's first).
    fn variants(&self, function: &FunctionState) -> Vec<(FunctionInfo, usize)> {
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

    /// The connected workers, sorted by name then identity.
    pub fn workers(&self) -> Vec<WorkerListing> {
        let mut list: Vec<WorkerListing> = self
            .workers
            .values()
            .map(|w| WorkerListing {
                name: w.name.clone(),
                id: w.number.to_string(),
                capacity: w.capacity,
                running: w.held() as u32,
                functions: w.functions.len() as u32,
                draining: w.draining,
            })
            .collect();
        list.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then(a.id.len().cmp(&b.id.len()))
                .then(a.id.cmp(&b.id))
        });
        list
    }

    /// The earliest instant at which [`Router::tick`] has something to do.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let deadline = self.deadlines.first();
        let worker = self
            .workers
            .values()
            .map(|w| w.expires.min(w.next_heartbeat))
            .min();
        match (deadline, worker) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Stops accepting calls; calls already accepted go on.
    pub fn begin_shutdown(&mut self) {
        self.shutting_down = true;
    }

    /// Answers every unfinished call at the end of the shutdown grace period: a call that
    /// never left the broker gets SHUTTING_DOWN (it did not run), a call a worker holds
    /// gets WORKER_LOST (it may have run: the caller must not assume either way).
    pub fn abandon_all(&mut self, out: &mut Vec<Action>) {
        let calls = std::mem::take(&mut self.calls);
        self.deadlines.clear();
        for (_, mut call) in calls {
            let (code, message) = match call.state {
                CallState::Queued => (
                    ErrorCode::ShuttingDown,
                    "the broker stopped before the call was sent to a worker".to_owned(),
                ),
                CallState::Running { .. } => (
                    ErrorCode::WorkerLost,
                    "the broker stopped while a worker was running the call; it may or may not have run"
                        .to_owned(),
                ),
            };
            self.finish(&mut call, code, message, out);
        }
        for function in self.functions.values_mut() {
            function.queue.clear();
            function.queued = 0;
            function.running = 0;
        }
        self.waiting.clear();
        for worker in self.workers.values_mut() {
            worker.running.clear();
            worker.running_inline.clear();
        }
    }

    /// Handles a well-formed request (one call or a batch) from a client.
    pub fn submit(&mut self, incoming: Incoming, now: Instant, out: &mut Vec<Action>) {
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
        let id = self.next_batch;
        self.next_batch += 1;
        debug!(
            call_id = header.id,
            calls = calls.len(),
            batch = id,
            "batch accepted"
        );
        self.batches.insert(
            id,
            PendingBatch {
                route,
                replies: (0..calls.len()).map(|_| None).collect(),
                missing: calls.len(),
                bytes: 0,
            },
        );
        let mut introspection_calls = 0usize;
        for (index, (function, body)) in calls.into_iter().enumerate() {
            let function = match function {
                Ok(function) => function,
                Err(error) => {
                    let error = RemoteError::new(ErrorCode::BadRequest, error.to_string());
                    self.deliver(
                        Origin::Batch { batch: id, index },
                        encode_error(&error).into(),
                        out,
                    );
                    continue;
                }
            };
            let refused = if function == BATCH_FUNCTION {
                Some("batches cannot be nested".to_owned())
            } else if function.starts_with(RESERVED_PREFIX) {
                // Each answer is built from the broker's whole state: bound the work and the
                // bytes one small request can ask for.
                introspection_calls += 1;
                (introspection_calls > MAX_SYSTEM_CALLS_PER_BATCH).then(|| {
                    format!("at most {MAX_SYSTEM_CALLS_PER_BATCH} system.* calls per batch")
                })
            } else {
                None
            };
            if let Some(message) = refused {
                let error = RemoteError::new(ErrorCode::BadRequest, message);
                self.deliver(
                    Origin::Batch { batch: id, index },
                    encode_error(&error).into(),
                    out,
                );
                continue;
            }
            self.route(
                Origin::Batch { batch: id, index },
                &header,
                &function,
                body,
                now,
                out,
            );
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
            let reply = match introspection::answer(self, function, &body) {
                Ok(reply) => reply,
                Err(error) => encode_error(&error),
            };
            return self.deliver(origin, Frame::from(reply), out);
        }
        let worker = match self.admit(function, body.len()) {
            Ok(worker) => worker,
            Err((code, message)) => {
                debug!(call_id = header.id, %function, %code, "call refused");
                return self.answer(Some(origin), header.id, code, message, out);
            }
        };
        let timeout = header
            .timeout_ms
            .map_or(self.config.default_timeout, Duration::from_millis)
            .min(self.config.max_timeout);
        if timeout.is_zero() {
            let message =
                "timeout_ms is 0: the call's deadline passed as it arrived, so it was not run";
            return self.answer(
                Some(origin),
                header.id,
                ErrorCode::Timeout,
                message.into(),
                out,
            );
        }
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        let deadline = now + timeout;
        let calls = &self.calls;
        let live = |t: Ticket| t == ticket || calls.contains_key(&t);
        self.deadlines
            .insert(deadline, ticket, calls.len() + 1, live);
        self.stats.calls_accepted += 1;
        debug!(call_id = header.id, %function, ticket = ticket.0, "call accepted");
        let name = Arc::clone(&self.functions.get(function).expect("admitted").name);
        let call = Box::new(Call {
            client: Some(origin),
            id: header.id,
            function: name,
            body: Some(body),
            deadline,
            state: CallState::Queued,
            attempts: 0,
            received: now,
        });
        match worker {
            Some(worker) => self.dispatch(ticket, call, worker, now, out),
            None => {
                self.enqueue(&call.function, ticket, false);
                self.calls.insert(ticket, call);
            }
        }
    }

    /// Sends a reply body where it belongs: to the caller, or into its batch.
    fn deliver(&mut self, origin: Origin, body: Frame, out: &mut Vec<Action>) {
        match origin {
            Origin::Caller(route) => {
                self.stats.answers += 1;
                out.push(Action::Reply { route, body })
            }
            Origin::Batch { batch, index } => {
                let Some(pending) = self.batches.get_mut(&batch) else {
                    return;
                };
                // Small replies (errors among them) always fit: at most 1 000 × 256 bytes.
                let over = pending.bytes + body.len() > self.config.max_reply_bytes;
                let body = if over && body.len() > SMALL_REPLY_BYTES {
                    let error = RemoteError::new(
                        ErrorCode::PayloadTooLarge,
                        format!(
                            "this result would make the batch's reply larger than {} bytes",
                            self.config.max_reply_bytes
                        ),
                    );
                    Frame::from(encode_error(&error))
                } else {
                    body
                };
                pending.bytes += body.len();
                if pending.replies[index].replace(body).is_none() {
                    pending.missing -= 1;
                }
                if pending.missing == 0 {
                    let pending = self.batches.remove(&batch).expect("present");
                    let replies: Vec<&[u8]> =
                        pending.replies.iter().flatten().map(|f| &f[..]).collect();
                    self.stats.answers += 1;
                    out.push(Action::Reply {
                        route: pending.route,
                        body: Frame::from(batch_reply_body(&replies)),
                    });
                }
            }
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
        let Some(entry) = self.functions.get(function).filter(|f| !f.hosts.is_empty()) else {
            return Err((
                ErrorCode::UnknownFunction,
                format!("no connected worker hosts function '{function}'"),
            ));
        };
        match self.pick_worker(function) {
            Some(worker) => Ok(Some(worker)),
            None if entry.queued >= self.config.queue_capacity => Err((
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
    pub fn reject(&mut self, rejected: Rejected, out: &mut Vec<Action>) {
        let Rejected { route, error } = rejected;
        if route.is_unroutable() {
            warn!(%error, "dropping malformed client message with no return address");
            self.stats.unanswerable_requests += 1;
            return;
        }
        let code = match error {
            ProtocolError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
            _ => ErrorCode::BadRequest,
        };
        warn!(%error, %code, "answering malformed client message");
        *self.stats.broker_errors.entry(code.as_str()).or_default() += 1;
        self.stats.requests += 1;
        self.stats.answers += 1;
        let message = switchboard_protocol::error::with_causes(&error);
        out.push(error_reply(route, code, message));
    }

    /// Handles a parsed message from a worker.
    pub fn worker_message(
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
        state.expires = now + state.heartbeat * self.config.heartbeat_liveness;
        match message {
            WorkerMessage::Ready(_) => unreachable!("handled above"),
            WorkerMessage::Heartbeat => {}
            WorkerMessage::Reply(replies) => {
                for (ticket, body) in replies.into_replies() {
                    self.complete(&worker, ticket, body, now, out);
                }
            }
            WorkerMessage::Disconnect if state.draining => {
                // A second DISCONNECT: "gone now", without the calls it still held.
                warn!(worker = %state.label(&worker), abandoned = state.held(), "worker left without finishing its calls");
                self.lose_worker(&worker, now, out);
            }
            WorkerMessage::Disconnect => {
                info!(worker = %state.label(&worker), running = state.held(), "worker leaving");
                state.draining = true;
                out.push(Action::Disconnect {
                    worker: worker.clone(),
                });
                if state.held() == 0 {
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
    pub fn authenticate_worker(
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
    pub fn bind_worker_key(&mut self, worker: &[u8], key: &str) {
        if let Some(state) = self.workers.get_mut(worker) {
            state.key = Some(key.to_owned());
        }
    }

    /// Counts replies the socket could not take (client gone or not reading).
    pub fn replies_dropped(&mut self, count: usize) {
        self.stats.dropped_replies += count as u64;
    }

    /// Counts a malformed message from a worker. The worker keeps its calls.
    pub fn worker_malformed(&mut self, worker: &[u8], error: &dyn std::fmt::Display) {
        self.stats.malformed_worker_messages += 1;
        warn!(worker = %self.worker_name(worker), %error, "dropping malformed worker message");
    }

    /// A send to this worker failed: it is lost. The calls that were on their way to it
    /// (`undelivered`: ticket and body of each) certainly did not run, so they go back to
    /// the front of their queues, as if never dispatched, for another host to take; the
    /// calls it already held are handled as for any lost worker.
    pub fn worker_unreachable(
        &mut self,
        worker: &[u8],
        undelivered: Vec<(Ticket, Frame)>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if !self.workers.contains_key(worker) {
            return;
        }
        warn!(worker = %self.worker_name(worker), undelivered = undelivered.len(), "worker unreachable; declaring it lost");
        let mut functions: Vec<Arc<str>> = Vec::new();
        // In reverse, so that pushing each to the front keeps their order.
        for (ticket, body) in undelivered.into_iter().rev() {
            let held = matches!(
                self.calls.get(&ticket).map(|call| &call.state),
                Some(CallState::Running { worker: w }) if **w == *worker
            );
            if !held {
                continue;
            }
            let mut call = self.take_call(ticket).expect("checked above");
            if let Some(state) = self.workers.get_mut(worker) {
                state.release(ticket);
            }
            call.body = Some(body);
            call.attempts -= 1;
            call.state = CallState::Queued;
            self.enqueue(&call.function, ticket, true);
            if !functions.contains(&call.function) {
                functions.push(Arc::clone(&call.function));
            }
            // Its deadline entry is still in the heap: same ticket, same deadline.
            self.calls.insert(ticket, call);
        }
        self.lose_worker(worker, now, out);
        for function in functions {
            let hosts = match self.functions.get(&*function) {
                Some(entry) => entry.hosts.clone(),
                None => continue,
            };
            for host in hosts {
                self.pull_queued(&host, now, out);
            }
        }
    }

    /// A worker's name for logs: the one it announced, else its routing identity in hex.
    fn worker_name(&self, worker: &[u8]) -> String {
        match self.workers.get(worker) {
            Some(state) => state.label(worker),
            None => hex(worker),
        }
    }

    /// Expires deadlines, declares silent workers lost, sends due heartbeats, and gives
    /// back memory a drained flood left behind.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.shrink_after_flood();
        while let Some((_, ticket)) = self.deadlines.pop_due(now) {
            // Entries of calls that already ended are skipped by `expire`.
            self.expire(ticket, out);
        }
        let silent: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.expires <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for worker in silent {
            warn!(worker = %self.worker_name(&worker), "worker missed its heartbeats; declaring it lost");
            self.lose_worker(&worker, now, out);
        }
        for (id, worker) in &mut self.workers {
            if worker.next_heartbeat <= now {
                worker.next_heartbeat = now + worker.heartbeat;
                out.push(Action::Heartbeat { worker: id.clone() });
            }
        }
    }

    /// After a flood drains, the tables keep their peak capacity: release it.
    fn shrink_after_flood(&mut self) {
        const FLOOR: usize = 4_096;
        let calls = &self.calls;
        self.deadlines
            .sweep(calls.len(), |t| calls.contains_key(&t));
        self.deadlines.shrink(FLOOR);
        if self.calls.capacity() > FLOOR && self.calls.len() < self.calls.capacity() / 8 {
            self.calls.shrink_to(FLOOR.max(self.calls.len() * 2));
        }
        for function in self.functions.values_mut() {
            if function.queue.capacity() > FLOOR
                && function.queue.len() < function.queue.capacity() / 8
            {
                function
                    .queue
                    .shrink_to(FLOOR.max(function.queue.len() * 2));
            }
        }
    }

    /// Registers a worker (or starts a new session for a registered one) from its READY.
    ///
    /// Checked before anything changes: a READY with `capacity` 0 or no valid function is
    /// refused whole (logged, counted in `ready_refused`); the worker stays unknown and its
    /// next message is answered DISCONNECT. Out-of-range numbers are clamped and invalid or
    /// reserved function names ignored (logged, counted in `ready_corrected`). Linear in
    /// the number of functions announced.
    fn register(&mut self, worker: WorkerId, info: ReadyInfo, now: Instant, out: &mut Vec<Action>) {
        let who = worker_label(&info.name, &worker);
        let mut corrected = false;
        let heartbeat_ms = info
            .heartbeat_ms
            .clamp(HEARTBEAT_RANGE_MS.0, HEARTBEAT_RANGE_MS.1);
        if heartbeat_ms != info.heartbeat_ms {
            warn!(worker = %who, announced = info.heartbeat_ms, used = heartbeat_ms, "heartbeat_ms out of range; clamped");
            corrected = true;
        }
        let capacity = info.capacity.min(MAX_CAPACITY);
        let inline_capacity = info.inline_capacity.min(MAX_CAPACITY);
        if capacity != info.capacity || inline_capacity != info.inline_capacity {
            warn!(worker = %who, capacity = info.capacity, inline_capacity = info.inline_capacity, max = MAX_CAPACITY, "capacity out of range; clamped");
            corrected = true;
        }
        if info.functions.len() > MAX_FUNCTIONS_PER_WORKER {
            warn!(worker = %who, announced = info.functions.len(), max = MAX_FUNCTIONS_PER_WORKER, "too many functions; ignoring the rest");
            corrected = true;
        }
        let mut seen: Set<&str> = Set::default();
        // Names this READY adds to the broker's (against MAX_FUNCTIONS).
        let mut new_names = 0usize;
        let mut functions: Vec<FunctionInfo> =
            Vec::with_capacity(info.functions.len().min(MAX_FUNCTIONS_PER_WORKER));
        for function in info.functions.iter().take(MAX_FUNCTIONS_PER_WORKER) {
            let name = &function.name;
            let refused = match switchboard_protocol::client::function_name(name.as_bytes()) {
                Err(error) => Some(error.to_string()),
                Ok(name) if name.starts_with(RESERVED_PREFIX) => {
                    Some(format!("names under '{RESERVED_PREFIX}' are the broker's"))
                }
                Ok(name) if !seen.insert(name) => Some("announced twice".to_owned()),
                Ok(name)
                    if !self.functions.contains_key(name)
                        && self.functions.len() + new_names >= MAX_FUNCTIONS =>
                {
                    Some(format!(
                        "the broker hosts {MAX_FUNCTIONS} functions already"
                    ))
                }
                Ok(_) => None,
            };
            if let Some(why) = refused {
                warn!(worker = %who, name = %name.escape_debug(), %why, "ignoring a function the worker announced");
                corrected = true;
                continue;
            }
            if !self.functions.contains_key(name.as_str()) {
                new_names += 1;
            }
            let mut function = function.clone();
            if truncate(&mut function.doc, MAX_DOC_BYTES)
                | truncate(&mut function.signature, MAX_SIGNATURE_BYTES)
            {
                warn!(worker = %who, name = %name, "doc or signature too long; cut");
                corrected = true;
            }
            functions.push(function);
        }
        if capacity == 0 || functions.is_empty() {
            let why = if capacity == 0 {
                "capacity 0: it could never take a call"
            } else {
                "no valid function"
            };
            warn!(worker = %who, why, "refusing READY");
            self.stats.ready_refused += 1;
            return;
        }
        if corrected {
            self.stats.ready_corrected += 1;
        }
        let inline: Vec<String> = if inline_capacity > 0 {
            functions
                .iter()
                .filter(|f| f.inline)
                .map(|f| f.name.clone())
                .collect()
        } else {
            Vec::new()
        };
        // A READY from a registered worker starts a new session: it no longer answers
        // the calls it held (a worker sends READY when its broker does not know it).
        let previous = self.workers.remove(&worker);
        let mut orphans = Vec::new();
        if let Some(previous) = &previous {
            let held = previous.running.iter().chain(&previous.running_inline);
            orphans.extend(held.filter_map(|&t| self.take_call(t).map(|call| (t, call))));
            let names: Set<&str> = functions.iter().map(|f| f.name.as_str()).collect();
            for old in previous
                .functions
                .iter()
                .filter(|f| !names.contains(f.name.as_str()))
            {
                self.unhost(&worker, &old.name, out);
            }
        }
        for function in &functions {
            let entry = self
                .functions
                .entry(function.name.clone())
                .or_insert_with(|| FunctionState {
                    name: Arc::from(function.name.as_str()),
                    hosts: Vec::new(),
                    queue: VecDeque::new(),
                    queued: 0,
                    running: 0,
                });
            if let Some(other) = entry
                .hosts
                .iter()
                .filter(|h| **h != worker)
                .find_map(|h| self.workers.get(h)?.announced(&function.name))
            {
                let differs = other.doc != function.doc
                    || other.signature != function.signature
                    || other.retry_safe != function.retry_safe;
                if differs {
                    warn!(worker = %who, function = %function.name, signature = %function.signature, other_signature = %other.signature, retry_safe = function.retry_safe, other_retry_safe = other.retry_safe, "hosts of one function announce it differently");
                    self.stats.function_conflicts += 1;
                }
            }
            if !entry.hosts.contains(&worker) {
                entry.hosts.push(worker.clone());
            }
        }
        info!(worker = %who, capacity, inline_capacity, functions = functions.len(), "worker ready");
        self.registrations += 1;
        self.workers.insert(
            worker.clone(),
            WorkerState {
                number: self.registrations,
                key: None,
                name: info
                    .name
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(255)
                    .collect(),
                capacity,
                inline_capacity,
                running: Set::default(),
                running_inline: Set::default(),
                inline,
                functions,
                heartbeat: Duration::from_millis(heartbeat_ms),
                expires: now + Duration::from_millis(heartbeat_ms) * self.config.heartbeat_liveness,
                next_heartbeat: now + Duration::from_millis(heartbeat_ms),
                last_dispatch: 0,
                draining: false,
            },
        );
        if !orphans.is_empty() {
            warn!(worker = %who, calls = orphans.len(), "worker registered again; the calls it held are lost");
        }
        for (ticket, call) in orphans {
            self.retry_or_fail(ticket, call, now, out);
        }
        self.pull_queued(&worker, now, out);
    }

    /// Chooses the capable worker with the most free slots; ties go to the least recently used.
    fn pick_worker(&self, function: &str) -> Option<WorkerId> {
        let entry = self.functions.get(function)?;
        entry
            .hosts
            .iter()
            .filter_map(|id| self.workers.get(id).map(|w| (id, w)))
            .map(|(id, w)| (id, w, w.free_for(function)))
            .filter(|(_, _, free)| *free > 0)
            .max_by_key(|(_, w, free)| (*free, Reverse(w.last_dispatch)))
            .map(|(id, _, _)| id.clone())
    }

    fn dispatch(
        &mut self,
        ticket: Ticket,
        mut call: Box<Call>,
        worker: WorkerId,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let state = self
            .workers
            .get_mut(&worker)
            .expect("picked from connected workers");
        self.dispatch_count += 1;
        state.last_dispatch = self.dispatch_count;
        if state.runs_inline(&call.function) {
            state.running_inline.insert(ticket);
        } else {
            state.running.insert(ticket);
        }
        let remaining = call.deadline.saturating_duration_since(now);
        let body = call.body.take().expect("a queued call has its body");
        call.attempts += 1;
        // Kept for a retry only if this worker said running the call twice is harmless.
        if state
            .announced(&call.function)
            .is_some_and(|info| info.retry_safe)
        {
            call.body = Some(Frame::from(&body[..]));
        } else {
            call.body = None;
        }
        if let Some(function) = self.functions.get_mut(&*call.function) {
            function.running += 1;
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
        call.state = CallState::Running { worker };
        self.calls.insert(ticket, call);
    }

    /// Fills a worker's free slots from the queues of the functions it hosts, oldest call first.
    fn pull_queued(&mut self, worker: &WorkerId, now: Instant, out: &mut Vec<Action>) {
        while !self.waiting.is_empty() {
            let Some(state) = self.workers.get(worker) else {
                return;
            };
            let mut oldest: Option<(Ticket, &Arc<str>)> = None;
            for name in &self.waiting {
                if state.free_for(name) == 0 || state.announced(name).is_none() {
                    continue;
                }
                let Some(function) = self.functions.get_mut(&**name) else {
                    continue;
                };
                while let Some(&head) = function.queue.front() {
                    if matches!(self.calls.get(&head), Some(c) if matches!(c.state, CallState::Queued))
                    {
                        break;
                    }
                    function.queue.pop_front();
                }
                if let Some(&head) = function.queue.front() {
                    if oldest.is_none_or(|(t, _)| head < t) {
                        oldest = Some((head, name));
                    }
                }
            }
            let Some((ticket, name)) = oldest else { return };
            let name = Arc::clone(name);
            self.functions
                .get_mut(&*name)
                .expect("found above")
                .queue
                .pop_front();
            self.dequeued(&name);
            let call = self
                .calls
                .remove(&ticket)
                .expect("queue heads are live calls");
            // The deadline entry stays: the call is re-inserted under the same ticket.
            self.dispatch(ticket, call, worker.clone(), now, out);
        }
    }

    /// Puts a call in its function's queue (at the front when it is being retried).
    fn enqueue(&mut self, function: &str, ticket: Ticket, front: bool) {
        let entry = self
            .functions
            .get_mut(function)
            .expect("queued calls have a function");
        if front {
            entry.queue.push_front(ticket);
        } else {
            entry.queue.push_back(ticket);
        }
        entry.queued += 1;
        if entry.queued == 1 {
            self.waiting.insert(Arc::clone(&entry.name));
        }
    }

    /// Counts a call that left its function's queue (dispatched or expired).
    fn dequeued(&mut self, function: &str) {
        if let Some(entry) = self.functions.get_mut(function) {
            entry.queued = entry.queued.saturating_sub(1);
            if entry.queued == 0 {
                self.waiting.remove(function);
            }
        }
    }

    fn complete(
        &mut self,
        worker: &WorkerId,
        ticket: Ticket,
        body: Frame,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let owned = matches!(
            self.calls.get(&ticket).map(|call| &call.state),
            Some(CallState::Running { worker: w }) if w == worker
        );
        if !owned {
            self.stats.late_replies += 1;
            warn!(worker = %self.worker_name(worker), ticket = ticket.0, "dropping reply for a call this worker does not hold");
            return;
        }
        let call = self.take_call(ticket).expect("checked above");
        let state = self.workers.get_mut(worker).expect("sender is registered");
        state.release(ticket);
        let leaving = state.draining && state.held() == 0;
        let body = if body.len() > self.config.max_reply_bytes {
            warn!(worker = %self.worker_name(worker), bytes = body.len(), max = self.config.max_reply_bytes, "reply over the limit; the caller gets PAYLOAD_TOO_LARGE");
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
        match call.client {
            Some(origin) => {
                self.stats.calls_completed += 1;
                let outcome = reply_outcome(&body).map_or("ok", ErrorCode::as_str);
                self.metrics
                    .call_ended(&call.function, outcome, call.received.elapsed());
                debug!(call_id = call.id, function = %call.function, "reply");
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

    fn expire(&mut self, ticket: Ticket, out: &mut Vec<Action>) {
        let Some(call) = self.calls.get_mut(&ticket) else {
            return;
        };
        match call.state {
            CallState::Queued => {
                let mut call = self.calls.remove(&ticket).expect("present");
                self.dequeued(&call.function);
                if let Some(function) = self.functions.get_mut(&*call.function) {
                    compact_queue(function, &self.calls);
                }
                let message = format!(
                    "call to '{}' timed out waiting for a free worker",
                    call.function
                );
                self.finish(&mut call, ErrorCode::Timeout, message, out);
            }
            CallState::Running { .. } => {
                // The worker keeps the slot until it replies or is lost.
                if call.client.is_none() {
                    return; // already answered (a second deadline entry of a retried call)
                }
                let message = format!("call to '{}' timed out while running", call.function);
                // Out of the table while it is answered; back in, since it holds the slot.
                let mut call = self.calls.remove(&ticket).expect("present");
                self.finish(&mut call, ErrorCode::Timeout, message, out);
                self.calls.insert(ticket, call);
            }
        }
    }

    /// Removes a finished call. Its deadline entry stays behind; `tick` skips it when it
    /// comes due (see `Deadlines`).
    fn take_call(&mut self, ticket: Ticket) -> Option<Box<Call>> {
        let call = self.calls.remove(&ticket)?;
        if let CallState::Running { .. } = call.state {
            if let Some(function) = self.functions.get_mut(&*call.function) {
                function.running = function.running.saturating_sub(1);
            }
        }
        Some(call)
    }

    /// Answers an accepted call with a broker error and records how it ended (nothing if
    /// its caller was already answered).
    fn finish(&mut self, call: &mut Call, code: ErrorCode, message: String, out: &mut Vec<Action>) {
        let Some(client) = call.client.take() else {
            return;
        };
        self.metrics
            .call_ended(&call.function, code.as_str(), call.received.elapsed());
        self.answer(Some(client), call.id, code, message, out);
    }

    fn answer(
        &mut self,
        client: Option<Origin>,
        call_id: u64,
        code: ErrorCode,
        message: String,
        out: &mut Vec<Action>,
    ) {
        if let Some(origin) = client {
            debug!(call_id, %code, %message, "broker error reply");
            *self.stats.broker_errors.entry(code.as_str()).or_default() += 1;
            let body = encode_error(&RemoteError::new(code, message));
            self.deliver(origin, Frame::from(body), out);
        }
    }

    /// Declares a worker lost: each call it held is re-dispatched when its function is
    /// retry-safe (within the attempt limit and the deadline), or answered WORKER_LOST.
    fn lose_worker(&mut self, worker: &[u8], now: Instant, out: &mut Vec<Action>) {
        self.stats.workers_lost += 1;
        let held: Vec<Ticket> = self
            .workers
            .get(worker)
            .map(|state| {
                let held = state.running.iter().chain(&state.running_inline);
                held.copied().collect()
            })
            .unwrap_or_default();
        let lost: Vec<(Ticket, Box<Call>)> = held
            .into_iter()
            .filter_map(|ticket| self.take_call(ticket).map(|call| (ticket, call)))
            .collect();
        self.remove_worker(worker, now, out);
        for (ticket, call) in lost {
            self.retry_or_fail(ticket, call, now, out);
        }
    }

    fn retry_or_fail(
        &mut self,
        ticket: Ticket,
        mut call: Box<Call>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let retry = call.client.is_some()
            && call.body.is_some()
            && call.attempts < self.config.max_attempts
            && call.deadline > now;
        let hosts = match self.functions.get(&*call.function) {
            Some(function) if retry && !function.hosts.is_empty() => function.hosts.clone(),
            _ => {
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
                return self.finish(&mut call, ErrorCode::WorkerLost, message, out);
            }
        };
        self.stats.retries += 1;
        debug!(call_id = call.id, function = %call.function, attempt = call.attempts + 1, "re-dispatching a lost call");
        call.state = CallState::Queued;
        self.enqueue(&call.function, ticket, true);
        self.calls.insert(ticket, call);
        let calls = &self.calls;
        let deadline = calls[&ticket].deadline;
        self.deadlines
            .insert(deadline, ticket, calls.len(), |t| calls.contains_key(&t));
        for host in hosts {
            self.pull_queued(&host, now, out);
        }
    }

    fn remove_worker(&mut self, worker: &[u8], _now: Instant, out: &mut Vec<Action>) {
        let Some(state) = self.workers.remove(worker) else {
            return;
        };
        for function in &state.functions {
            self.unhost(worker, &function.name, out);
        }
        info!(worker = %state.label(worker), "worker removed");
    }

    /// Removes a worker from a function's hosts; with none left, fails its queued calls.
    fn unhost(&mut self, worker: &[u8], name: &str, out: &mut Vec<Action>) {
        let Some(function) = self.functions.get_mut(name) else {
            return;
        };
        function.hosts.retain(|h| **h != *worker);
        if !function.hosts.is_empty() {
            return;
        }
        let queue = std::mem::take(&mut function.queue);
        function.queued = 0;
        self.functions.remove(name);
        self.waiting.remove(name);
        for ticket in queue {
            if let Some(mut call) = self.take_call(ticket) {
                let message = format!("the last worker hosting '{name}' left");
                self.finish(&mut call, ErrorCode::UnknownFunction, message, out);
            }
        }
    }
}

/// Drops dead queue entries once they outnumber the live ones.
fn compact_queue(function: &mut FunctionState, calls: &Map<Ticket, Box<Call>>) {
    if function.queue.len() > 2 * function.queued + 16 {
        function
            .queue
            .retain(|t| matches!(calls.get(t), Some(c) if matches!(c.state, CallState::Queued)));
    }
}

fn error_reply(route: ReplyRoute, code: ErrorCode, message: String) -> Action {
    Action::Reply {
        route,
        body: Frame::from(encode_error(&RemoteError::new(code, message))),
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

/// A worker's name for logs: the name it announced, else its routing identity in hex.
fn worker_label(name: &str, id: &[u8]) -> String {
    if name.is_empty() {
        hex(id)
    } else {
        name.to_owned()
    }
}

/// Short printable form of a routing identity for logs.
pub fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::codec::decode_reply;
    use switchboard_protocol::worker::ReplyBatch;

    fn request(client: &[u8], function: &str, id: u64, timeout_ms: Option<u64>) -> Incoming {
        let header = CallHeader { id, timeout_ms };
        Incoming::Call(Request {
            route: ReplyRoute::new(&[Frame::from(client)], &header.encode()),
            function: function.into(),
            header,
            body: Frame::from(&b"\x80"[..]),
        })
    }

    fn ready(functions: &[&str], capacity: u32) -> WorkerMessage {
        WorkerMessage::Ready(ReadyInfo {
            capacity,
            heartbeat_ms: 100,
            functions: functions
                .iter()
                .map(|name| FunctionInfo {
                    name: (*name).into(),
                    doc: String::new(),
                    signature: String::new(),
                    retry_safe: false,
                    inline: false,
                })
                .collect(),
            inline_capacity: 0,
            name: String::new(),
        })
    }

    /// The worker and ticket of every REQUEST in the outbox.
    fn dispatched(out: &[Action]) -> Vec<(WorkerId, Ticket)> {
        out.iter()
            .filter_map(|a| match a {
                Action::Run { worker, call } => Some((worker.clone(), call.ticket)),
                _ => None,
            })
            .collect()
    }

    /// The error code of every reply in the outbox (`None` for forwarded results).
    fn reply_codes(out: &[Action]) -> Vec<Option<ErrorCode>> {
        out.iter()
            .filter_map(|a| match a {
                Action::Reply { body, .. } => {
                    Some(decode_reply::<Value>(body).unwrap().err().map(|e| e.code))
                }
                _ => None,
            })
            .collect()
    }

    type Value = switchboard_protocol::Value;

    fn router() -> Router {
        Router::new(RouterConfig {
            queue_capacity: 2,
            ..RouterConfig::default()
        })
    }

    #[test]
    fn unknown_function_is_refused_at_once() {
        let mut router = router();
        let mut out = Vec::new();
        router.submit(request(b"c", "nope", 1, None), Instant::now(), &mut out);
        assert_eq!(reply_codes(&out), [Some(ErrorCode::UnknownFunction)]);
    }

    #[test]
    fn a_zero_timeout_is_answered_timeout_without_dispatch() {
        let mut router = router();
        let now = Instant::now();
        let mut out = Vec::new();
        router.worker_message(WorkerId::from(&b"w"[..]), ready(&["f"], 1), now, &mut out);
        router.submit(request(b"c", "f", 1, Some(0)), now, &mut out);
        assert_eq!(reply_codes(&out), [Some(ErrorCode::Timeout)]);
        assert!(dispatched(&out).is_empty());
        // Absent (or nil): the broker's default deadline.
        router.submit(request(b"c", "f", 2, None), now, &mut out);
        assert_eq!(dispatched(&out).len(), 1);
    }

    #[test]
    fn calls_go_to_the_worker_with_most_free_slots() {
        let mut router = router();
        let now = Instant::now();
        let mut out = Vec::new();
        router.worker_message(
            WorkerId::from(&b"small"[..]),
            ready(&["f"], 1),
            now,
            &mut out,
        );
        router.worker_message(WorkerId::from(&b"big"[..]), ready(&["f"], 3), now, &mut out);
        for id in 0..4 {
            router.submit(request(b"c", "f", id, None), now, &mut out);
        }
        let workers: Vec<_> = dispatched(&out).into_iter().map(|(w, _)| w).collect();
        assert_eq!(
            workers,
            [
                WorkerId::from(&b"big"[..]),
                WorkerId::from(&b"big"[..]),
                WorkerId::from(&b"small"[..]),
                WorkerId::from(&b"big"[..])
            ]
        );
    }

    #[test]
    fn inline_functions_have_their_own_budget_beside_the_slots() {
        let mut router = Router::new(RouterConfig::default());
        let now = Instant::now();
        let mut out = Vec::new();
        let WorkerMessage::Ready(mut info) = ready(&["slow", "fast"], 1) else {
            unreachable!()
        };
        info.functions[1].inline = true;
        info.inline_capacity = 3;
        router.worker_message(
            WorkerId::from(&b"w"[..]),
            WorkerMessage::Ready(info),
            now,
            &mut out,
        );
        for id in 0..2 {
            router.submit(request(b"c", "slow", id, None), now, &mut out);
        }
        for id in 10..14 {
            router.submit(request(b"c", "fast", id, None), now, &mut out);
        }
        // One slow call fills the one slot; three fast ones fill the inline budget.
        let running = dispatched(&out);
        assert_eq!(running.len(), 4);
        let held = router.workers();
        assert_eq!(held[0].running, 4);
        let queued: Vec<(String, usize)> = router
            .functions()
            .into_iter()
            .map(|f| (f.info.name, f.queued))
            .collect();
        assert!(queued.contains(&("slow".into(), 1)) && queued.contains(&("fast".into(), 1)));
        // A fast reply frees an inline place, which goes to the waiting fast call only.
        let (_, fast_ticket) = running[1];
        out.clear();
        router.worker_message(
            WorkerId::from(&b"w"[..]),
            WorkerMessage::Reply(ReplyBatch::single(fast_ticket, Frame::from(&b"\x80"[..]))),
            now,
            &mut out,
        );
        assert_eq!(dispatched(&out).len(), 1);
        let functions = router.functions();
        let slow = functions.iter().find(|f| f.info.name == "slow").unwrap();
        assert_eq!((slow.queued, slow.running), (1, 1));
    }

    #[test]
    fn equal_workers_take_turns() {
        let mut router = router();
        let now = Instant::now();
        let mut out = Vec::new();
        router.worker_message(WorkerId::from(&b"a"[..]), ready(&["f"], 1), now, &mut out);
        router.worker_message(WorkerId::from(&b"b"[..]), ready(&["f"], 1), now, &mut out);
        let mut seen = Vec::new();
        for id in 0..4 {
            out.clear();
            router.submit(request(b"c", "f", id, None), now, &mut out);
            let (worker, ticket) = dispatched(&out).remove(0);
            router.worker_message(
                worker.clone(),
                WorkerMessage::Reply(ReplyBatch::single(
                    ticket,
                    Frame::from(&b"\x81\xa6result\x01"[..]),
                )),
                now,
                &mut out,
            );
            seen.push(worker);
        }
        assert_ne!(seen[0], seen[1]);
        assert_eq!((&seen[0], &seen[1]), (&seen[2], &seen[3]));
    }

    #[test]
    fn busy_workers_queue_calls_then_overload() {
        let mut router = router();
        let now = Instant::now();
        let mut out = Vec::new();
        router.worker_message(WorkerId::from(&b"w"[..]), ready(&["f"], 1), now, &mut out);
        for id in 0..4 {
            router.submit(request(b"c", "f", id, None), now, &mut out);
        }
        // One runs, two wait (queue capacity 2), the fourth is refused.
        assert_eq!(dispatched(&out).len(), 1);
        assert_eq!(reply_codes(&out), [Some(ErrorCode::Overloaded)]);
        let (_, ticket) = dispatched(&out)[0];
        out.clear();
        let body = Frame::from(&b"\x81\xa6result\x01"[..]);
        router.worker_message(
            WorkerId::from(&b"w"[..]),
            WorkerMessage::Reply(ReplyBatch::single(ticket, body)),
            now,
            &mut out,
        );
        // The reply goes out and the oldest queued call is dispatched.
        assert_eq!(reply_codes(&out), [None]);
        assert_eq!(dispatched(&out).len(), 1);
    }

    #[test]
    fn queued_call_times_out_at_its_deadline() {
        let mut router = router();
        let now = Instant::now();
        let mut out = Vec::new();
        router.worker_message(WorkerId::from(&b"w"[..]), ready(&["f"], 1), now, &mut out);
        router.submit(request(b"c", "f", 1, Some(10_000)), now, &mut out);
        router.submit(request(b"c", "f", 2, Some(50)), now, &mut out);
        out.clear();
        router.tick(now + Duration::from_millis(40), &mut out);
        assert!(reply_codes(&out).is_empty());
        router.tick(now + Duration::from_millis(60), &mut out);
        assert_eq!(reply_codes(&out), [Some(ErrorCode::Timeout)]);
        assert_eq!(router.functions()[0].queued, 0);
    }

    #[test]
    fn silent_worker_is_lost_and_its_calls_fail() {
        let mut router = router();
        let now = Instant::now();
        let mut out = Vec::new();
        router.worker_message(WorkerId::from(&b"w"[..]), ready(&["f"], 2), now, &mut out);
        router.submit(request(b"c", "f", 1, None), now, &mut out);
        out.clear();
        // Heartbeat 100 ms, liveness 3: lost after 300 ms of silence.
        router.tick(now + Duration::from_millis(250), &mut out);
        assert!(reply_codes(&out).is_empty());
        router.tick(now + Duration::from_millis(301), &mut out);
        assert_eq!(reply_codes(&out), [Some(ErrorCode::WorkerLost)]);
        assert_eq!(router.worker_count(), 0);
        assert_eq!(router.stats().workers_lost, 1);
    }

    fn ready_retry_safe(name: &str) -> WorkerMessage {
        let WorkerMessage::Ready(mut info) = ready(&[name], 1) else {
            unreachable!()
        };
        info.functions[0].retry_safe = true;
        WorkerMessage::Ready(info)
    }

    fn ready_safe_and_unsafe() -> WorkerMessage {
        let WorkerMessage::Ready(mut info) = ready(&["safe", "unsafe"], 2) else {
            unreachable!()
        };
        info.functions[0].retry_safe = true;
        WorkerMessage::Ready(info)
    }

    #[test]
    fn retry_safe_call_moves_to_another_worker_when_its_worker_is_lost() {
        let mut router = router();
        let now = Instant::now();
        let mut out = Vec::new();
        router.worker_message(
            WorkerId::from(&b"a"[..]),
            ready_safe_and_unsafe(),
            now,
            &mut out,
        );
        router.submit(request(b"c", "safe", 1, None), now, &mut out);
        router.submit(request(b"c", "unsafe", 2, None), now, &mut out);
        let on_a = dispatched(&out);
        assert_eq!(on_a.len(), 2);
        router.worker_message(
            WorkerId::from(&b"b"[..]),
            ready_safe_and_unsafe(),
            now,
            &mut out,
        );
        out.clear();
        router.worker_unreachable(b"a", Vec::new(), now, &mut out);
        assert_eq!(
            dispatched(&out),
            [(WorkerId::from(&b"b"[..]), on_a[0].1)],
            "safe call re-sent to b"
        );
        assert_eq!(
            reply_codes(&out),
            [Some(ErrorCode::WorkerLost)],
            "unsafe call fails"
        );
        assert_eq!(router.stats().retries, 1);
    }

    #[test]
    fn retry_safe_call_gives_up_after_max_attempts() {
        let mut router = Router::new(RouterConfig {
            max_attempts: 2,
            ..RouterConfig::default()
        });
        let now = Instant::now();
        let mut out = Vec::new();
        for worker in [b"a", b"b", b"c"] {
            router.worker_message(
                WorkerId::from(&worker[..]),
                ready_retry_safe("safe"),
                now,
                &mut out,
            );
        }
        router.submit(request(b"c", "safe", 1, None), now, &mut out);
        for attempt in 1..=2 {
            let (worker, _) = dispatched(&out).pop().expect("dispatched");
            out.clear();
            router.worker_unreachable(&worker, Vec::new(), now, &mut out);
            if attempt == 2 {
                assert_eq!(reply_codes(&out), [Some(ErrorCode::WorkerLost)]);
                assert!(dispatched(&out).is_empty());
            }
        }
    }

    #[test]
    fn a_call_whose_send_failed_goes_to_another_worker_not_worker_lost() {
        let mut router = router();
        let now = Instant::now();
        let mut out = Vec::new();
        let (dead, alive) = (WorkerId::from(&b"dead"[..]), WorkerId::from(&b"alive"[..]));
        router.worker_message(dead.clone(), ready(&["f"], 3), now, &mut out);
        router.worker_message(alive.clone(), ready(&["f"], 1), now, &mut out);
        for id in 0..2 {
            router.submit(request(b"c", "f", id, None), now, &mut out);
        }
        let sent = dispatched(&out);
        assert!(sent.iter().all(|(w, _)| *w == dead), "{sent:?}");
        out.clear();
        let body = || Frame::from(&b"\x80"[..]);
        let undelivered = sent.iter().map(|(_, t)| (*t, body())).collect();
        router.worker_unreachable(&dead, undelivered, now, &mut out);
        // Neither call ran, so neither fails: the first goes to the one free slot left,
        // in its original order; the second waits for it.
        assert!(reply_codes(&out).is_empty(), "{:?}", reply_codes(&out));
        assert_eq!(dispatched(&out), [(alive.clone(), sent[0].1)]);
        assert_eq!(router.functions()[0].queued, 1);
        assert_eq!(router.stats().workers_lost, 1);
        out.clear();
        router.worker_message(
            alive.clone(),
            WorkerMessage::Reply(ReplyBatch::single(sent[0].1, body())),
            now,
            &mut out,
        );
        assert_eq!(dispatched(&out), [(alive, sent[1].1)]);
    }

    #[test]
    fn a_worker_announcing_a_huge_heartbeat_still_dies() {
        for heartbeat_ms in [1u64 << 32, u64::MAX] {
            let mut router = router();
            let now = Instant::now();
            let mut out = Vec::new();
            let WorkerMessage::Ready(mut info) = ready(&["f"], 1) else {
                unreachable!()
            };
            info.heartbeat_ms = heartbeat_ms;
            let worker = WorkerId::from(&b"w"[..]);
            router.worker_message(worker, WorkerMessage::Ready(info), now, &mut out);
            router.submit(request(b"c", "f", 1, Some(600_000)), now, &mut out);
            // Clamped to 30 s: lost after 3 silent intervals, long before the call's deadline.
            let limit = Duration::from_millis(HEARTBEAT_RANGE_MS.1) * 3;
            router.tick(now + limit - Duration::from_millis(1), &mut out);
            assert_eq!(router.stats().workers_lost, 0);
            router.tick(now + limit, &mut out);
            assert_eq!(
                router.stats().workers_lost,
                1,
                "heartbeat_ms {heartbeat_ms}"
            );
            assert_eq!(reply_codes(&out), [Some(ErrorCode::WorkerLost)]);
            assert_eq!(router.stats().ready_corrected, 1);
        }
    }

    #[test]
    fn a_ready_that_cannot_work_is_refused_and_bad_names_are_ignored() {
        let mut router = router();
        let now = Instant::now();
        let mut out = Vec::new();
        let announce = |router: &mut Router, id: &[u8], capacity: u32, names: &[&str]| {
            let mut out = Vec::new();
            let worker = WorkerId::from(id);
            router.worker_message(worker, ready(names, capacity), now, &mut out);
        };
        announce(&mut router, b"a", 0, &["f"]);
        let long = "x".repeat(256);
        announce(
            &mut router,
            b"b",
            1,
            &["", &long, "system.ping", "bad\u{7}"],
        );
        assert_eq!(router.stats().ready_refused, 2);
        assert_eq!(router.worker_count(), 0);
        // Refused: still unknown, so its next message is answered "send READY".
        router.worker_message(
            WorkerId::from(&b"a"[..]),
            WorkerMessage::Heartbeat,
            now,
            &mut out,
        );
        assert!(matches!(out[..], [Action::Disconnect { .. }]));
        announce(&mut router, b"c", 1, &["", "f", "f", "system.x"]);
        assert_eq!(router.stats().ready_corrected, 1);
        let names: Vec<String> = router
            .functions()
            .into_iter()
            .map(|f| f.info.name)
            .collect();
        assert_eq!(names, ["f"]);
    }

    #[test]
    fn the_broker_hosts_at_most_max_functions_names_and_hosts_known_ones_beyond() {
        let mut router = router();
        let now = Instant::now();
        let mut out = Vec::new();
        let names: Vec<String> = (0..MAX_FUNCTIONS).map(|i| format!("f{i}")).collect();
        for (w, chunk) in names.chunks(MAX_FUNCTIONS_PER_WORKER).enumerate() {
            let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let id = WorkerId::from(format!("w{w}").as_bytes());
            router.worker_message(id, ready(&chunk, 1), now, &mut out);
        }
        assert_eq!(router.functions().len(), MAX_FUNCTIONS);
        // Full: a known name is still hosted by a new worker, a new one is not.
        let extra = WorkerId::from(&b"extra"[..]);
        router.worker_message(extra, ready(&["f0", "f1", "new"], 1), now, &mut out);
        let hosted: Vec<(String, usize)> = router
            .functions()
            .into_iter()
            .filter(|f| ["f0", "f1", "new"].contains(&f.info.name.as_str()))
            .map(|f| (f.info.name, f.workers))
            .collect();
        assert_eq!(hosted, [("f0".to_owned(), 2), ("f1".to_owned(), 2)]);
    }

    #[test]
    fn hosts_that_disagree_are_shown_and_a_retry_follows_the_host_that_held_the_call() {
        let mut router = router();
        let now = Instant::now();
        let mut out = Vec::new();
        let announce = |router: &mut Router, id: &[u8], signature: &str, retry_safe: bool| {
            let WorkerMessage::Ready(mut info) = ready(&["f"], 1) else {
                unreachable!()
            };
            info.functions[0].signature = signature.into();
            info.functions[0].retry_safe = retry_safe;
            let mut out = Vec::new();
            router.worker_message(
                WorkerId::from(id),
                WorkerMessage::Ready(info),
                now,
                &mut out,
            );
        };
        // The first host says retry-safe, the second does not.
        announce(&mut router, b"old", "f(a)", true);
        announce(&mut router, b"new", "f(a, b)", false);
        assert_eq!(router.stats().function_conflicts, 1);
        let summary = &router.functions()[0];
        assert_eq!(summary.variants.len(), 2);
        let mut signatures: Vec<&str> = summary
            .variants
            .iter()
            .map(|(v, _)| v.signature.as_str())
            .collect();
        signatures.sort();
        assert_eq!(signatures, ["f(a)", "f(a, b)"]);
        // Each host gets one call; both hosts are lost: only the call held by the host
        // that said "retry-safe" is re-dispatched (to the host that is still there).
        router.submit(request(b"c", "f", 1, None), now, &mut out);
        router.submit(request(b"c", "f", 2, None), now, &mut out);
        assert_eq!(dispatched(&out).len(), 2);
        out.clear();
        router.worker_unreachable(b"new", Vec::new(), now, &mut out);
        assert_eq!(
            reply_codes(&out),
            [Some(ErrorCode::WorkerLost)],
            "new said not retry-safe"
        );
        announce(&mut router, b"third", "f(a)", false);
        out.clear();
        router.worker_unreachable(b"old", Vec::new(), now, &mut out);
        assert!(
            reply_codes(&out).is_empty(),
            "old said retry-safe: {:?}",
            reply_codes(&out)
        );
        assert_eq!(dispatched(&out).len(), 1);
        assert_eq!(*dispatched(&out)[0].0, *b"third");
    }

    #[test]
    fn replies_from_a_worker_declared_lost_are_counted_late() {
        let mut router = router();
        let now = Instant::now();
        let mut out = Vec::new();
        let worker = WorkerId::from(&b"w"[..]);
        router.worker_message(worker.clone(), ready(&["f"], 1), now, &mut out);
        router.submit(request(b"c", "f", 1, None), now, &mut out);
        let (_, ticket) = dispatched(&out)[0];
        router.tick(now + Duration::from_secs(1), &mut out);
        assert_eq!(router.stats().workers_lost, 1);
        out.clear();
        let reply = Frame::from(&b"\x81\xa6result\x01"[..]);
        router.worker_message(
            worker,
            WorkerMessage::Reply(ReplyBatch::single(ticket, reply)),
            now,
            &mut out,
        );
        assert!(reply_codes(&out).is_empty());
        assert_eq!(router.stats().late_replies, 1);
    }

    #[test]
    fn reply_after_timeout_or_from_wrong_worker_is_dropped() {
        let mut router = router();
        let now = Instant::now();
        let mut out = Vec::new();
        router.worker_message(WorkerId::from(&b"w"[..]), ready(&["f"], 1), now, &mut out);
        router.worker_message(WorkerId::from(&b"x"[..]), ready(&["g"], 1), now, &mut out);
        router.submit(request(b"c", "f", 1, Some(10)), now, &mut out);
        let (_, ticket) = dispatched(&out)[0];
        out.clear();
        let body = || Frame::from(&b"\x81\xa6result\x01"[..]);
        router.worker_message(
            WorkerId::from(&b"x"[..]),
            WorkerMessage::Reply(ReplyBatch::single(ticket, body())),
            now,
            &mut out,
        );
        assert!(
            reply_codes(&out).is_empty(),
            "a stranger's reply is not forwarded"
        );
        router.tick(now + Duration::from_millis(20), &mut out);
        assert_eq!(reply_codes(&out), [Some(ErrorCode::Timeout)]);
        out.clear();
        router.worker_message(
            WorkerId::from(&b"w"[..]),
            WorkerMessage::Reply(ReplyBatch::single(ticket, body())),
            now,
            &mut out,
        );
        assert!(
            reply_codes(&out).is_empty(),
            "a late reply is not forwarded"
        );
        assert_eq!(router.stats().late_replies, 2);
        assert_eq!(router.calls_in_progress(), 0);
    }

    #[test]
    fn batch_is_answered_once_with_every_reply_in_order() {
        let mut router = router();
        let now = Instant::now();
        let mut out = Vec::new();
        router.worker_message(WorkerId::from(&b"w"[..]), ready(&["f"], 2), now, &mut out);
        let header = CallHeader {
            id: 5,
            timeout_ms: None,
        };
        let body = || Frame::from(&b"\x80"[..]);
        let batch = Incoming::Batch(BatchRequest {
            route: ReplyRoute::new(&[Frame::from(&b"c"[..])], &header.encode()),
            header,
            calls: vec![
                (Ok("f".into()), body()),
                (Ok("nope".into()), body()),
                (Ok("f".into()), body()),
            ],
        });
        router.submit(batch, now, &mut out);
        let tickets = dispatched(&out);
        assert_eq!(tickets.len(), 2, "both calls to f run in parallel");
        assert!(
            reply_codes(&out).is_empty(),
            "no reply before every call is answered"
        );
        for (i, (worker, ticket)) in tickets.into_iter().enumerate().rev() {
            let body = Frame::from(switchboard_protocol::codec::encode_result(&i).unwrap());
            router.worker_message(
                worker,
                WorkerMessage::Reply(ReplyBatch::single(ticket, body)),
                now,
                &mut out,
            );
        }
        let replies: Vec<_> = out
            .iter()
            .filter_map(|a| match a {
                Action::Reply { body, .. } => {
                    Some(decode_reply::<Vec<Value>>(body).unwrap().unwrap())
                }
                _ => None,
            })
            .collect();
        assert_eq!(replies.len(), 1);
        let slots = &replies[0];
        assert_eq!(slots[0]["result"], Value::from(0));
        assert_eq!(slots[1]["error"]["code"].as_str(), Some("UNKNOWN_FUNCTION"));
        assert_eq!(slots[2]["result"], Value::from(1));
    }

    #[test]
    fn workers_cannot_register_reserved_names() {
        let mut router = router();
        let mut out = Vec::new();
        router.worker_message(
            WorkerId::from(&b"w"[..]),
            ready(&["system.ping", "f"], 1),
            Instant::now(),
            &mut out,
        );
        let names: Vec<_> = router
            .functions()
            .into_iter()
            .map(|f| f.info.name)
            .collect();
        assert_eq!(names, ["f"]);
    }

    #[test]
    fn draining_worker_gets_no_new_calls_and_leaves_when_done() {
        let mut router = router();
        let now = Instant::now();
        let mut out = Vec::new();
        router.worker_message(WorkerId::from(&b"w"[..]), ready(&["f"], 2), now, &mut out);
        router.submit(request(b"c", "f", 1, None), now, &mut out);
        let (_, ticket) = dispatched(&out)[0];
        router.worker_message(
            WorkerId::from(&b"w"[..]),
            WorkerMessage::Disconnect,
            now,
            &mut out,
        );
        out.clear();
        router.submit(request(b"c", "f", 2, None), now, &mut out);
        assert!(
            dispatched(&out).is_empty(),
            "no dispatch to a draining worker"
        );
        let body = Frame::from(&b"\x81\xa6result\x01"[..]);
        router.worker_message(
            WorkerId::from(&b"w"[..]),
            WorkerMessage::Reply(ReplyBatch::single(ticket, body)),
            now,
            &mut out,
        );
        assert_eq!(router.worker_count(), 0);
        // The result of call 1 went out; queued call 2 lost its only host.
        assert_eq!(reply_codes(&out), [None, Some(ErrorCode::UnknownFunction)]);
    }
}
