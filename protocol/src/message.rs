//! The MessagePack bodies carried in frames. All structs travel as maps.

use crate::code::ErrorCode;
use serde::{Deserialize, Serialize};

/// The call header frame: what the broker needs to know about a call without
/// reading its arguments. A client writes it; the broker echoes it verbatim in
/// the reply, and tells workers the id and the time left in its REQUEST record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallHeader {
    /// Caller-chosen id that matches a reply to its request.
    pub id: u64,
    /// How long the caller will wait, in milliseconds; absent means the broker's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// W3C trace context of the caller (`00-<trace id>-<parent id>-<flags>`), forwarded to
    /// workers that take it; absent when the caller traces nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Ask for the call's timings in the reply body (`"timings"`, see [`CallTimings`]).
    #[serde(default, skip_serializing_if = "is_false")]
    pub timings: bool,
    /// When no connected worker hosts the function, wait in its queue (until a worker that
    /// hosts it registers, or the deadline) instead of UNKNOWN_FUNCTION at once.
    #[serde(default, skip_serializing_if = "is_false")]
    pub wait_for_ready: bool,
    /// The client hears NOTICEs from this broker (PROTOCOL.md 4.11): it is sent one when
    /// the broker begins to stop. Only for clients that read every message they get
    /// (DEALER), never for a REQ socket.
    #[serde(default, skip_serializing_if = "is_false")]
    pub notices: bool,
}

/// How a call went, as the broker measured it: added to the reply body under
/// `"timings"` when the request's header asked for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallTimings {
    /// Microseconds from the broker receiving the call to sending it to the worker that
    /// answered (the last attempt).
    pub queued_us: u64,
    /// Microseconds from sending it to that worker to its reply.
    pub running_us: u64,
    /// How many times the broker sent the call (retries and hedges included).
    pub attempts: u32,
    /// The name of the worker that answered (may be empty).
    pub worker: String,
    /// Microseconds the function itself ran, as that worker measured it (the reply body's
    /// top-level `"run_us"`, when the worker reports it); the rest of `running_us` is
    /// transit and waiting in the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_us: Option<u64>,
}

/// Whether `value` is a W3C `traceparent` this protocol forwards: version `00`, a 32-digit
/// trace id and a 16-digit parent id (neither all zeros), 2-digit flags, lower-case hex.
pub fn is_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    matches!(parts[..], [version, trace, parent, flags]
        if version == "00"
            && hex(trace, 32)
            && hex(parent, 16)
            && hex(flags, 2)
            && trace.bytes().any(|b| b != b'0')
            && parent.bytes().any(|b| b != b'0'))
}

/// The error half of a reply body: `{"code": "...", "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RemoteError {
    /// What kind of failure this is.
    pub code: ErrorCode,
    /// A human-readable explanation.
    pub message: String,
}

impl RemoteError {
    /// Builds an error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> RemoteError {
        RemoteError {
            code,
            message: message.into(),
        }
    }
}

/// One function a worker hosts, as announced in READY.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionInfo {
    /// The name callers use.
    pub name: String,
    /// One line saying what the function does.
    #[serde(default)]
    pub doc: String,
    /// The parameters and result, e.g. `add(a: i64, b: i64) -> i64`.
    #[serde(default)]
    pub signature: String,
    /// Running it twice for one call is harmless, so the broker may re-dispatch a call
    /// whose worker was lost. Absent means false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub retry_safe: bool,
    /// The worker runs it at once on its socket thread (a quick, non-blocking function):
    /// its calls count against the worker's `inline_capacity`, not its executor slots.
    /// Absent means false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub inline: bool,
    /// Hedge calls of this (retry-safe) function: when a call has run this many
    /// milliseconds without an answer, the broker sends a second attempt to another
    /// worker; the first answer wins. Absent or 0: no hedging.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub hedge_ms: u64,
}

fn is_zero_u64(value: &u64) -> bool {
    *value == 0
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// The body of a worker's READY message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyInfo {
    /// How many calls the worker runs at once.
    pub capacity: u32,
    /// How many calls of its `inline` functions the worker accepts at once, on top of
    /// `capacity`; absent or 0: inline functions share `capacity` like the others.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inline_capacity: u32,
    /// How often the worker sends heartbeats, in milliseconds.
    pub heartbeat_ms: u64,
    /// The functions it hosts.
    pub functions: Vec<FunctionInfo>,
    /// A name for operators (host name, pod name); absent if not given.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The worker understands CANCEL: the broker tells it when a call it runs is no
    /// longer wanted (absent or false: the broker never sends it CANCEL).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel: bool,
    /// The worker understands DRAIN: the broker may ask it to leave when its calls run
    /// long past their deadlines (absent or false: never asked).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drain: bool,
    /// The worker takes REQUESTs with context (each call's attempt and trace context);
    /// absent or false: plain REQUESTs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub context: bool,
    /// The worker takes REQUESTs with caller (context, the caller's identity, and whether
    /// to report its run time); wins over `context`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub caller: bool,
    /// The worker moves its capacity between brokers: it wants LOAD (the broker's
    /// backlog) in place of HEARTBEAT, and may answer with CAPACITY; absent or false:
    /// the capacity of READY holds for the whole registration.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub credit: bool,
}

/// One entry of the broker's `system.workers` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerListing {
    /// The name the worker announced (may be empty).
    pub name: String,
    /// The number the broker gave this registration (decimal): an opaque handle for
    /// operators, never the worker's routing identity, which stays secret.
    pub id: String,
    /// Calls it runs at once.
    pub capacity: u32,
    /// Calls running on it now.
    pub running: u32,
    /// How many functions it hosts.
    pub functions: u32,
    /// Whether it is leaving (takes no new calls).
    pub draining: bool,
    /// Functions whose calls stay away from it for now: it failed them far more often
    /// than their other hosts (outlier ejection). Absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ejected: Vec<String>,
}

/// One entry of the broker's `system.functions` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionListing {
    /// The name callers use.
    pub name: String,
    /// One line saying what the function does.
    pub doc: String,
    /// The parameters and result.
    pub signature: String,
    /// How many connected workers host it.
    pub workers: u32,
    /// How many calls wait for a free worker.
    pub queued: u32,
    /// How many calls are running on workers.
    pub running: u32,
    /// Whether calls may be re-dispatched after a worker is lost (what most hosts say;
    /// the broker asks the host that held the call).
    #[serde(default)]
    pub retry_safe: bool,
    /// Whether its hosts announce it differently (doc, signature or retry-safety): calls
    /// may then behave differently depending on the worker that runs them.
    #[serde(default)]
    pub conflict: bool,
    /// With a conflict, each distinct announcement and how many hosts made it, most
    /// common first; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<FunctionVariant>,
}

/// One way the hosts of a function announced it, in a [`FunctionListing`] with a conflict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionVariant {
    /// The doc line these hosts announced.
    pub doc: String,
    /// The signature these hosts announced.
    pub signature: String,
    /// Whether these hosts said the function is retry-safe.
    pub retry_safe: bool,
    /// How many connected hosts announced it this way.
    pub workers: u32,
}
