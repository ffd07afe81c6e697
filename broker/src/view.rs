//! What the broker shows of its state, and what it reports as calls end.
//!
//! The router implements [`View`]; introspection (`system.*`), `/metrics` and the exit
//! log read through it, and the router does not know them. This module depends on
//! neither side, so no import circle runs through it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use switchboard_protocol::{FunctionInfo, WorkerListing};

/// Read-only access to the broker's state for introspection and metrics.
pub(crate) trait View {
    /// The functions connected workers host, sorted by name.
    fn functions(&self) -> Vec<FunctionSummary>;
    /// The connected workers, sorted by name then registration number.
    fn workers(&self) -> Vec<WorkerListing>;
    /// Counters so far.
    fn stats(&self) -> &RouterStats;
    /// Number of connected workers.
    fn worker_count(&self) -> usize;
    /// Calls accepted and not yet finished (queued or running, answered or not).
    fn calls_in_progress(&self) -> usize;
    /// CURVE handshakes refused so far: (frontend, backend).
    fn auth_rejections(&self) -> (u64, u64);
}

/// A call that ended, as the router reports it for metrics.
#[derive(Debug, Clone)]
pub(crate) struct CallEnded {
    /// The function called.
    pub function: Arc<str>,
    /// `"ok"` or the error code of the reply.
    pub outcome: &'static str,
    /// Time from the broker receiving the call to its answer.
    pub latency: Duration,
}

/// A snapshot of one function for introspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FunctionSummary {
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
    /// CANCEL messages sent: calls whose deadline passed, or that their caller cancelled,
    /// while a worker that understands CANCEL ran them.
    pub cancels_sent: u64,
    /// Calls refused OVERLOADED because, from their function's measured run time and the
    /// calls queued ahead, they would have been answered only after their deadline.
    pub refused_late: u64,
    /// Queued calls answered TIMEOUT instead of being sent, because less time was left
    /// than their function's average run time.
    pub skipped_late: u64,
    /// (worker, function) pairs taken out of rotation for failing far more than the
    /// function's other hosts (outlier ejection).
    pub ejections: u64,
    /// Workers found running a call long past its deadline (given no new calls, and asked
    /// to leave when they understand DRAIN).
    pub hung_workers: u64,
    /// Hedges sent: second attempts of slow retry-safe calls on another worker.
    pub hedges: u64,
    /// Hedges that answered before the call they hedged.
    pub hedges_won: u64,
    /// Hedges not sent because the hedge budget was spent.
    pub hedges_throttled: u64,
}
