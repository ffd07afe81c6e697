//! The reliability contract as a checker: load that records every call's outcome, the
//! workers' journals of what ran, and [`check_contract`], which holds the two against
//! docs/RELIABILITY.md (exactly one outcome per call, non-retry-safe work never twice,
//! only documented failure codes).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_client::{CallError, Client, ClientConfig, ClientStats, ErrorCode, PendingCall};

use crate::{ScratchDir, WorkerProcess};

/// The demo worker's journaling function that is not retry-safe.
pub const ONCE: &str = "work.once";
/// The demo worker's journaling function that is retry-safe.
pub const IDEMPOTENT: &str = "work.idempotent";

/// One call's token, function and outcome.
#[derive(Debug)]
pub struct Outcome {
    /// The call's unique token (what the worker journals and returns).
    pub token: String,
    /// [`ONCE`] or [`IDEMPOTENT`].
    pub function: &'static str,
    /// What the caller got.
    pub result: Result<String, CallError>,
    /// From the call's start to its outcome.
    pub waited: Duration,
    /// The call's timeout.
    pub timeout: Duration,
}

/// How a load thread calls `work.*`.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Most calls to make.
    pub calls: usize,
    /// Calls kept in flight.
    pub window: usize,
    /// Mark the calls of the retry-safe function idempotent.
    pub mark_idempotent: bool,
    /// Each call's timeout.
    pub timeout: Duration,
    /// Stop making new calls once this is set (the calls in flight still end).
    pub stop: Option<Arc<AtomicBool>>,
}

impl Plan {
    /// `calls` calls, `window` in flight, 5 s each.
    pub fn new(calls: usize, window: usize, mark_idempotent: bool) -> Plan {
        Plan {
            calls,
            window,
            mark_idempotent,
            timeout: Duration::from_secs(5),
            stop: None,
        }
    }
}

/// Calls `work.*` as `plan` says, alternating the two functions, each with a token of
/// its own; `done` counts the calls ended. `endpoint` may list several brokers.
pub fn load_with(
    endpoint: &str,
    client: usize,
    plan: &Plan,
    done: &AtomicUsize,
) -> (Vec<Outcome>, ClientStats) {
    let mut config = ClientConfig::new(endpoint);
    config.default_timeout = plan.timeout;
    let connection = Client::with_config(config).expect("client");
    let mut outcomes = Vec::with_capacity(plan.calls);
    let mut in_flight = std::collections::VecDeque::new();
    let stopped = || {
        plan.stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    };
    let mut sent = 0;
    loop {
        let more = sent < plan.calls && !stopped();
        if in_flight.len() == plan.window || (!more && !in_flight.is_empty()) {
            let (token, function, started, call): (_, _, Instant, PendingCall) =
                in_flight.pop_front().expect("non-empty");
            let result = call.wait::<String>();
            outcomes.push(Outcome {
                token,
                function,
                result,
                waited: started.elapsed(),
                timeout: plan.timeout,
            });
            done.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if !more {
            break;
        }
        let token = format!("c{client}-{sent}");
        let function = if sent % 2 == 0 { ONCE } else { IDEMPOTENT };
        let mut request = connection.request(function).args((&token, 2u64));
        if plan.mark_idempotent && function == IDEMPOTENT {
            request = request.idempotent();
        }
        let started = Instant::now();
        in_flight.push_back((token, function, started, request.send().expect("send")));
        sent += 1;
    }
    (outcomes, connection.stats())
}

/// Runs `clients` load threads (as `plan` says) against `endpoint` (one broker, or several
/// comma-separated) while `disturb` runs on this thread; returns every outcome and how many
/// replies matched no waiting call, over all clients.
pub fn under_load(
    endpoint: &str,
    clients: usize,
    plan: &Plan,
    disturb: impl FnOnce(&AtomicUsize),
) -> (Vec<Outcome>, u64) {
    let done = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let done = Arc::clone(&done);
                scope.spawn(move || load_with(endpoint, c, plan, &done))
            })
            .collect();
        disturb(&done);
        let mut unmatched = 0;
        let mut outcomes = Vec::new();
        for handle in handles {
            let (some, stats) = handle.join().expect("load thread");
            unmatched += stats.unmatched_replies;
            outcomes.extend(some);
        }
        (outcomes, unmatched)
    })
}

/// How many times each token was executed, from every worker's journal.
pub fn executions(dir: &ScratchDir) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for entry in std::fs::read_dir(&dir.path).expect("journal dir") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("journal");
        for token in text.lines() {
            *counts.entry(token.to_owned()).or_insert(0) += 1;
        }
    }
    counts
}

/// Checks the contract over all outcomes and returns the count of each outcome kind.
pub fn check_contract(
    outcomes: &[Outcome],
    expected_calls: usize,
    executions: &HashMap<String, usize>,
    allowed: &[ErrorCode],
) -> HashMap<String, usize> {
    assert_eq!(
        outcomes.len(),
        expected_calls,
        "every call ends in exactly one outcome"
    );
    let mut seen = std::collections::HashSet::new();
    let mut tally: HashMap<String, usize> = HashMap::new();
    for outcome in outcomes {
        assert!(
            seen.insert(&outcome.token),
            "{} has two outcomes",
            outcome.token
        );
        let ran = executions.get(&outcome.token).copied().unwrap_or(0);
        if outcome.function == ONCE {
            assert!(
                ran <= 1,
                "{} is not retry-safe but ran {ran} times",
                outcome.token
            );
        }
        match &outcome.result {
            Ok(token) => {
                assert_eq!(token, &outcome.token, "a reply reached the wrong call");
                assert!(ran >= 1, "{} succeeded without running", outcome.token);
                *tally.entry(format!("ok {}", outcome.function)).or_default() += 1;
            }
            Err(error) => {
                let code = error
                    .code()
                    .unwrap_or_else(|| panic!("undocumented failure: {error:?}"));
                assert!(
                    allowed.contains(&code),
                    "{}: unexpected {error}",
                    outcome.token
                );
                *tally
                    .entry(format!("{code} {}", outcome.function))
                    .or_default() += 1;
            }
        }
    }
    tally
}

/// The worker flags that make it journal every execution in `dir`.
pub fn journal_flags(dir: &ScratchDir, name: &str) -> Vec<String> {
    let path = dir.path.join(format!("{name}.log"));
    vec!["--record-file".into(), path.to_string_lossy().into_owned()]
}

/// Starts `count` journaling demo workers (`w0`, `w1`, ...) on `backend` (one broker's
/// backend, or several, comma-separated).
pub fn start_workers(
    backend: &str,
    dir: &ScratchDir,
    count: usize,
    extra: &[&str],
) -> Vec<WorkerProcess> {
    (0..count)
        .map(|i| {
            let name = format!("w{i}");
            let mut flags: Vec<String> = journal_flags(dir, &name);
            flags.extend(extra.iter().map(|s| s.to_string()));
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            WorkerProcess::start(backend, &name, &flags)
        })
        .collect()
}

/// Waits (at most 30 s) until `done` reaches `count`.
pub fn wait_until(done: &AtomicUsize, count: usize) {
    let until = Instant::now() + Duration::from_secs(30);
    while done.load(Ordering::Relaxed) < count {
        assert!(
            Instant::now() < until,
            "load stalled at {}",
            done.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
