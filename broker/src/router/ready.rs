//! Checking a worker's READY before anything changes: what is refused whole, what is
//! clamped or ignored (each logged), and the registration that results.

use std::time::Duration;
use switchboard_protocol::limits::{
    HEARTBEAT_RANGE_MS, MAX_CAPACITY, MAX_DOC_BYTES, MAX_FUNCTIONS, MAX_FUNCTIONS_PER_WORKER,
    MAX_HEDGE_MS, MAX_SIGNATURE_BYTES,
};

use switchboard_protocol::client::function_name;
use switchboard_protocol::{FunctionInfo, ReadyInfo, RESERVED_PREFIX};
use tracing::warn;

use super::{worker_label, Set};

/// A READY that passed the checks, with its numbers in range.
#[derive(Debug)]
pub(crate) struct Registration {
    /// The announced name without control characters, at most 255 characters.
    pub(crate) name: String,
    pub(crate) capacity: u32,
    pub(crate) inline_capacity: u32,
    pub(crate) heartbeat: Duration,
    /// The functions kept, in announced order, docs and signatures cut to size.
    pub(crate) functions: Vec<FunctionInfo>,
    /// Whether a number was clamped or a function ignored or cut.
    pub(crate) corrected: bool,
    /// The worker understands CANCEL.
    pub(crate) cancel: bool,
    /// The worker understands DRAIN.
    pub(crate) drain: bool,
    /// The worker takes REQUESTs with context.
    pub(crate) context: bool,
    /// The worker takes REQUESTs with caller (which include the context).
    pub(crate) caller: bool,
    /// The worker moves its capacity between brokers (LOAD and CAPACITY).
    pub(crate) credit: bool,
}

/// Checks a READY from `worker`. `hosted` tells whether the broker hosts a name already
/// and `hosted_count` how many it hosts (new names stop at [`MAX_FUNCTIONS`]). A READY
/// with capacity 0 or no valid function is refused: the reason is returned. Linear in
/// the number of functions announced.
pub(crate) fn check(
    info: &ReadyInfo,
    worker: &[u8],
    hosted: impl Fn(&str) -> bool,
    hosted_count: usize,
) -> Result<Registration, &'static str> {
    let who = worker_label(&info.name, worker);
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
    let mut functions = Vec::with_capacity(info.functions.len().min(MAX_FUNCTIONS_PER_WORKER));
    for function in info.functions.iter().take(MAX_FUNCTIONS_PER_WORKER) {
        let name = &function.name;
        let refused = match function_name(name.as_bytes()) {
            Err(error) => Some(error.to_string()),
            Ok(name) if name.starts_with(RESERVED_PREFIX) => {
                Some(format!("names under '{RESERVED_PREFIX}' are the broker's"))
            }
            Ok(name) if !seen.insert(name) => Some("announced twice".to_owned()),
            Ok(name) if !hosted(name) && hosted_count + new_names >= MAX_FUNCTIONS => Some(
                format!("the broker hosts {MAX_FUNCTIONS} functions already"),
            ),
            Ok(_) => None,
        };
        if let Some(why) = refused {
            warn!(worker = %who, name = %name.escape_debug(), %why, "ignoring a function the worker announced");
            corrected = true;
            continue;
        }
        if !hosted(name) {
            new_names += 1;
        }
        let mut function = function.clone();
        if truncate(&mut function.doc, MAX_DOC_BYTES)
            | truncate(&mut function.signature, MAX_SIGNATURE_BYTES)
        {
            warn!(worker = %who, name = %name, "doc or signature too long; cut");
            corrected = true;
        }
        if function.hedge_ms > MAX_HEDGE_MS {
            warn!(worker = %who, name = %name, announced = function.hedge_ms, max = MAX_HEDGE_MS, "hedge_ms out of range; clamped");
            function.hedge_ms = MAX_HEDGE_MS;
            corrected = true;
        }
        functions.push(function);
    }
    if capacity == 0 {
        return Err("capacity 0: it could never take a call");
    }
    if functions.is_empty() {
        return Err("no valid function");
    }
    Ok(Registration {
        name: info
            .name
            .chars()
            .filter(|c| !c.is_control())
            .take(255)
            .collect(),
        capacity,
        inline_capacity,
        heartbeat: Duration::from_millis(heartbeat_ms),
        functions,
        corrected,
        cancel: info.cancel,
        drain: info.drain,
        context: info.context || info.caller,
        caller: info.caller,
        credit: info.credit,
    })
}

/// Whether two hosts' announcements of one function disagree (doc, signature or
/// retry-safety; inline or not is how a worker runs it, not what the function is).
pub(crate) fn differ(a: &FunctionInfo, b: &FunctionInfo) -> bool {
    a.doc != b.doc || a.signature != b.signature || a.retry_safe != b.retry_safe
}

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
