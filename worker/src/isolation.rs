//! Isolated functions: each call runs in a child process the worker can kill.
//!
//! A function registered with [`Registration::isolated`](crate::Registration::isolated)
//! does not run on an executor thread: the thread starts the worker's own program again
//! (same executable, same arguments) with [`CHILD_VAR`] naming the function, writes the
//! request body to the child's stdin and waits for the reply on its stdout. The child
//! goes as far as [`Worker::run`](crate::Worker::run), which sees the variable, runs that
//! one call and exits. So when the call is cancelled (its deadline passed, its caller
//! cancelled it, its hedge lost) the thread kills the child at once and its slot is free
//! again: a function that hangs, or ignores its cancellation token, cannot hold capacity.
//! A child that crashes (abort, segfault) fails its call, not the worker.
//!
//! The price is a process start per call (milliseconds): for long or risky functions.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchboard_protocol::codec::encode_error;
use switchboard_protocol::{ErrorCode, RemoteError};
use tracing::warn;

use crate::context::{CallContext, CancelToken};
use crate::executor::Job;
use crate::registry::Registry;

/// Set in an isolated call's child process: the name of the function to run.
pub(crate) const CHILD_VAR: &str = "SWITCHBOARD_ISOLATED_CALL";
/// The call's details for the child's [`CallContext`]: "call_id attempt time_left_ms [traceparent]".
const CONTEXT_VAR: &str = "SWITCHBOARD_ISOLATED_CONTEXT";
/// How often the waiting thread looks at the call's cancellation and deadline.
const CHECK_EVERY: Duration = Duration::from_millis(5);
/// How long past its deadline a child may run when no CANCEL came (an older broker).
const DEADLINE_GRACE: Duration = Duration::from_millis(500);

/// In the child process of an isolated call: runs that call and exits the process (never
/// returns). Anywhere else: returns at once.
pub(crate) fn serve_child_if_asked(registry: &Registry) {
    let Some(name) = std::env::var_os(CHILD_VAR) else {
        return;
    };
    let name = name.to_string_lossy().into_owned();
    let mut stdin = std::io::stdin().lock();
    let mut length = [0u8; 4];
    let mut body = Vec::new();
    let read = stdin.read_exact(&mut length).and_then(|()| {
        body.resize(u32::from_be_bytes(length) as usize, 0);
        stdin.read_exact(&mut body)
    });
    drop(stdin);
    if read.is_err() {
        std::process::exit(3);
    }
    // The parent keeps our stdin open while it waits: when it goes away (killed), so do we.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(2);
    });
    let reply = match registry.get(&name) {
        Some(function) => child_context().enter(|| function.call(&body)),
        None => encode_error(&RemoteError::new(
            ErrorCode::FunctionError,
            format!("{name}: not in the isolated child's registry (does the program build the same registry every run?)"),
        )),
    };
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(&(reply.len() as u32).to_be_bytes())
        .and_then(|()| stdout.write_all(&reply))
        .and_then(|()| stdout.flush());
    std::process::exit(if written.is_ok() { 0 } else { 4 });
}

fn child_context() -> CallContext {
    let text = std::env::var(CONTEXT_VAR).unwrap_or_default();
    let mut fields = text.split(' ');
    let mut number = || {
        fields
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (call_id, attempt, time_left_ms) = (number(), number(), number());
    let traceparent = text.split(' ').nth(3).map(str::to_owned);
    CallContext::new(
        call_id,
        Instant::now() + Duration::from_millis(time_left_ms),
        CancelToken::default(),
        attempt as u32,
        traceparent,
    )
}

/// Runs `job` in a child process and returns its reply body; kills the child when the
/// call is cancelled or its deadline (plus a grace) passes.
pub(crate) fn execute_isolated(job: &Job) -> Vec<u8> {
    let name = &job.function.info().name;
    let failed = |code: ErrorCode, why: String| {
        encode_error(&RemoteError::new(code, format!("{name}: {why}")))
    };
    let time_left = job.deadline.saturating_duration_since(Instant::now());
    let mut context = format!("{} {} {}", job.call_id, job.attempt, time_left.as_millis());
    if let Some(trace) = &job.traceparent {
        context.push(' ');
        context.push_str(trace);
    }
    let spawned = std::env::current_exe().and_then(|program| {
        Command::new(program)
            .args(std::env::args_os().skip(1))
            .env(CHILD_VAR, name)
            .env(CONTEXT_VAR, context)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
    });
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            return failed(
                ErrorCode::FunctionError,
                format!("cannot start the isolated process: {e}"),
            )
        }
    };
    let mut stdin = child.stdin.take().expect("piped stdin");
    let sent = stdin
        .write_all(&(job.body.len() as u32).to_be_bytes())
        .and_then(|()| stdin.write_all(&job.body))
        .and_then(|()| stdin.flush());
    if let Err(e) = sent {
        kill(&mut child);
        return failed(
            ErrorCode::FunctionError,
            format!("cannot hand the call to the isolated process: {e}"),
        );
    }
    let mut stdout = child.stdout.take().expect("piped stdout");
    let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
    std::thread::Builder::new()
        .name("switchboard-isolated-reader".into())
        .spawn(move || {
            let mut reply = Vec::new();
            let _ = reply_tx.send(stdout.read_to_end(&mut reply).map(|_| reply));
        })
        .ok();
    loop {
        match reply_rx.recv_timeout(CHECK_EVERY) {
            Ok(output) => {
                drop(stdin);
                let status = child.wait();
                return match (output, status) {
                    (Ok(bytes), Ok(status)) if status.success() => match framed_reply(&bytes) {
                        Some(reply) => reply,
                        None => failed(
                            ErrorCode::FunctionError,
                            "the isolated process wrote no reply".into(),
                        ),
                    },
                    (_, Ok(status)) => failed(
                        ErrorCode::FunctionError,
                        format!("the isolated process died ({status})"),
                    ),
                    (_, Err(e)) => failed(
                        ErrorCode::FunctionError,
                        format!("lost the isolated process: {e}"),
                    ),
                };
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                let cancelled = job.cancel.is_cancelled();
                if cancelled || Instant::now() >= job.deadline + DEADLINE_GRACE {
                    kill(&mut child);
                    drop(stdin);
                    let why = if cancelled {
                        "cancelled; its isolated process was killed"
                    } else {
                        "deadline passed; its isolated process was killed"
                    };
                    return failed(
                        if cancelled {
                            ErrorCode::Cancelled
                        } else {
                            ErrorCode::Timeout
                        },
                        why.into(),
                    );
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                kill(&mut child);
                return failed(ErrorCode::FunctionError, "lost the isolated process".into());
            }
        }
    }
}

/// The reply a child wrote: a 4-byte length, then that many bytes.
fn framed_reply(bytes: &[u8]) -> Option<Vec<u8>> {
    let length = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let reply = bytes.get(4..)?;
    (reply.len() == length).then(|| reply.to_vec())
}

fn kill(child: &mut Child) {
    if let Err(e) = child.kill() {
        warn!(error = %e, "cannot kill an isolated process");
    }
    let _ = child.wait();
}
