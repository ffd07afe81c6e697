//! The demo registry hosted by the `worker` binary, used by the README demo, tests and benchmarks.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_bytes::ByteBuf;
use switchboard_protocol::{Timestamp, Value};

use switchboard_worker::{CallContext, Kwargs, Registry};

/// Keyword arguments of `greet`.
#[derive(Debug, Deserialize)]
pub struct Greeting {
    /// Who to greet.
    pub name: String,
    /// The greeting word; "hello" when absent.
    #[serde(default)]
    pub greeting: Option<String>,
}

/// Longest sleep `sleep_ms` accepts, so a caller cannot pin an executor forever.
pub const MAX_SLEEP_MS: u64 = 600_000;

/// Builds the demo registry. `worker_name` is what `whoami` answers; with a
/// `record` journal, the `work` functions note each execution in it.
pub fn registry(worker_name: &str, record: Option<Journal>) -> Registry {
    registry_with(worker_name, record, Lookup::default())
}

/// How this worker's `lookup` behaves: for tail-latency and failure experiments, where one
/// host of a pool is slow or broken.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lookup {
    /// Extra milliseconds each lookup takes here (it stops early when cancelled).
    pub delay_ms: u64,
    /// Every lookup fails here, as with a broken database connection.
    pub fails: bool,
}

/// The demo registry, with this worker's `lookup` behaviour.
pub fn registry_with(worker_name: &str, record: Option<Journal>, lookup: Lookup) -> Registry {
    let mut registry = Registry::new();
    let run_lookup = move |key: u64| -> Result<u64, String> {
        if lookup.fails {
            return Err("lookup: the backend is unreachable".into());
        }
        let context = CallContext::current();
        let mut waited = 0;
        while waited < lookup.delay_ms {
            if context.as_ref().is_some_and(CallContext::is_cancelled) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
            waited += 5;
        }
        Ok(key)
    };
    registry
        .register_fallible("lookup", run_lookup)
        .retry_safe()
        .hedge_after(Duration::from_millis(50))
        .doc("Returns its key; retry-safe and hedged after 50 ms (a worker started with --lookup-delay-ms or --lookup-fails is slow or broken).");
    registry
        .register_fallible("lookup_unhedged", run_lookup)
        .retry_safe()
        .doc("The same lookup, not hedged.");
    registry
        .register("add", |a: i64, b: i64| a.wrapping_add(b))
        .doc("Adds two integers.")
        .inline();
    registry
        .register("echo", |value: Value| value)
        .doc("Returns its argument unchanged (any MessagePack value, bytes included).")
        .inline()
        .signature("echo(value: any) -> any");
    registry
        .register("upper", |text: String| text.to_uppercase())
        .doc("Returns the text in upper case.");
    registry
        .register_fallible("sleep_ms", |ms: u64| {
            if ms > MAX_SLEEP_MS {
                return Err(format!("sleep_ms: at most {MAX_SLEEP_MS} ms"));
            }
            std::thread::sleep(Duration::from_millis(ms));
            Ok(ms)
        })
        .doc("Sleeps for the given milliseconds, then returns them.");
    registry
        .register_fallible("work_ms", |ms: u64| {
            if ms > MAX_SLEEP_MS {
                return Err(format!("work_ms: at most {MAX_SLEEP_MS} ms"));
            }
            // Works in 5 ms steps and stops early when the call is cancelled.
            let context = CallContext::current();
            let mut worked = 0;
            while worked < ms {
                if context.as_ref().is_some_and(CallContext::is_cancelled) {
                    break;
                }
                let step = (ms - worked).min(5);
                std::thread::sleep(Duration::from_millis(step));
                worked += step;
            }
            Ok(worked)
        })
        .doc("Works for the given milliseconds (stopping early if the call is cancelled); returns how long it worked.");
    registry
        .register("context", || {
            let context = CallContext::current();
            let mut map = std::collections::BTreeMap::new();
            if let Some(context) = context {
                map.insert("call_id", Value::from(context.call_id()));
                map.insert("attempt", Value::from(context.attempt()));
                map.insert(
                    "traceparent",
                    context.traceparent().map_or(Value::Nil, Value::from),
                );
                let left = context.time_left().as_millis().min(u64::MAX as u128) as u64;
                map.insert("time_left_ms", Value::from(left));
                map.insert("caller", context.caller().map_or(Value::Nil, Value::from));
            }
            map
        })
        .doc(
            "Returns what the function sees of its call: call id, attempt, traceparent, time left, caller.",
        );
    registry
        .register_fallible("fail", |message: String| -> Result<(), String> {
            Err(message)
        })
        .doc("Always fails with the given message (FUNCTION_ERROR).");
    registry
        .register("panic", |message: String| -> () { panic!("{message}") })
        .doc("Panics with the given message; the worker reports it and keeps serving.");
    registry
        .register("greet", |Kwargs(g): Kwargs<Greeting>| {
            format!("{}, {}!", g.greeting.as_deref().unwrap_or("hello"), g.name)
        })
        .doc("Greets by keyword arguments: name, optional greeting.")
        .signature("greet(name: str, greeting: str = \"hello\") -> str");
    let name = worker_name.to_owned();
    registry
        .register("whoami", move || name.clone())
        .doc("Returns the name of the worker that ran the call.");
    registry.mount("time", time_functions());
    registry.mount("bytes", bytes_functions());
    registry.mount("work", work_functions(record));
    registry.mount("isolated", isolated_functions());
    registry
}

/// An append-only file with one line per execution, for reliability tests that
/// check how many times each call ran.
#[derive(Clone)]
pub struct Journal {
    file: Arc<Mutex<File>>,
}

impl Journal {
    /// Opens (creating or appending to) the journal at `path`.
    pub fn open(path: &Path) -> std::io::Result<Journal> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Journal {
            file: Arc::new(Mutex::new(file)),
        })
    }

    fn note(&self, token: &str) {
        if let Ok(mut file) = self.file.lock() {
            let _ = writeln!(file, "{token}");
        }
    }
}

/// Functions mounted under `work.`: sleep, note the token in the journal, return it.
/// `work.once` is not retry-safe; `work.idempotent` is.
fn work_functions(record: Option<Journal>) -> Registry {
    let mut work = Registry::new();
    let run = move |token: String, ms: u64| -> Result<String, String> {
        if ms > MAX_SLEEP_MS {
            return Err(format!("at most {MAX_SLEEP_MS} ms"));
        }
        std::thread::sleep(Duration::from_millis(ms));
        if let Some(journal) = &record {
            journal.note(&token);
        }
        Ok(token)
    };
    work.register_fallible("once", run.clone())
        .doc("Sleeps, records the token, returns it. Not retry-safe.");
    work.register_fallible("idempotent", run)
        .doc("Sleeps, records the token, returns it. Retry-safe.")
        .retry_safe();
    work
}

/// Functions mounted under `isolated.`: each call runs in a child process the worker kills
/// when the call is cancelled.
fn isolated_functions() -> Registry {
    let mut isolated = Registry::new();
    isolated
        .register("pid", std::process::id)
        .doc("The id of the process the call ran in (not the worker's: isolated).")
        .isolated();
    isolated
        .register_fallible("hang", |path: String| -> Result<(), String> {
            std::fs::write(&path, std::process::id().to_string()).map_err(|e| e.to_string())?;
            loop {
                // Ignores its cancellation token, as a stuck call would.
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .doc("Writes its process id to the file named, then never returns, cancelled or not (isolated: the worker kills it).")
        .isolated();
    isolated
        .register("abort", || -> () { std::process::abort() })
        .doc("Aborts the process it runs in (isolated: the call fails, the worker lives).")
        .isolated();
    isolated
}

/// Functions mounted under `time.`: timestamps travel as the MessagePack timestamp extension.
fn time_functions() -> Registry {
    let mut time = Registry::new();
    time.register("now", Timestamp::now)
        .doc("The worker's current time.");
    time.register_fallible("shift", |at: Timestamp, seconds: f64| {
        let shift = Duration::try_from_secs_f64(seconds.abs()).map_err(|e| e.to_string())?;
        let moved = if seconds >= 0.0 {
            at.to_system_time().checked_add(shift)
        } else {
            at.to_system_time().checked_sub(shift)
        };
        moved
            .map(Timestamp::from)
            .ok_or_else(|| "the result is out of range".to_owned())
    })
    .doc("Moves a timestamp by the given seconds (negative: earlier).");
    time
}

/// Functions mounted under `bytes.`: binary data travels as MessagePack `bin`.
fn bytes_functions() -> Registry {
    let mut bytes = Registry::new();
    bytes
        .register("len", |data: ByteBuf| data.len())
        .doc("The length of binary data.");
    bytes
        .register("reverse", |mut data: ByteBuf| {
            data.reverse();
            data
        })
        .doc("The binary data, reversed.");
    bytes
}
