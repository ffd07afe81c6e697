//! The executor pool: named threads that run calls taken from a bounded channel.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use switchboard_protocol::codec::{append_run_time, encode_error};
use switchboard_protocol::worker::Ticket;
use switchboard_protocol::{ErrorCode, Frame, RemoteError};
use switchboard_transport::wake::Waker;
use tracing::debug;

use crate::context::{CallContext, CancelToken};
use crate::registry::Function;

/// One call handed to the pool.
pub(crate) struct Job {
    /// The broker's ticket, echoed in the reply.
    pub ticket: Ticket,
    /// The caller's call id, for logs.
    pub call_id: u64,
    /// The function to run.
    pub function: Arc<Function>,
    /// The request body.
    pub body: Frame,
    /// Past this instant the caller no longer waits: skip the call.
    pub deadline: Instant,
    /// The registration with the broker that the call came in (see [`Registration`]).
    pub registration: u64,
    /// That broker link's registration now: a call whose registration has ended by the
    /// time a thread takes it is not started.
    pub current: Registration,
    /// Which broker link the call came from (its reply goes back there).
    pub link: usize,
    /// Set when the broker cancels the call; the function sees it in its context.
    pub cancel: CancelToken,
    /// Which dispatch of the call this is (1 for the first; 0 when the broker did not say).
    pub attempt: u32,
    /// The caller's W3C trace context, if the broker forwarded one.
    pub traceparent: Option<String>,
    /// Who called, as the broker authenticated it (`curve:<public key>`), if known.
    pub caller: Option<String>,
    /// The caller asked for timings: add the function's run time to the reply.
    pub report_run_time: bool,
}

/// The worker's current registration with a broker. Every READY starts a new one; a call
/// received in an earlier one belongs to a broker (or a broker's memory of this worker)
/// that is gone, so it is not started, and its reply is never sent: the ticket it carries
/// means nothing to whoever is listening now.
#[derive(Debug, Clone, Default)]
pub(crate) struct Registration(Arc<AtomicU64>);

impl Registration {
    /// The current registration's number.
    pub(crate) fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Starts a new registration and returns its number.
    pub(crate) fn renew(&self) -> u64 {
        self.0.fetch_add(1, Ordering::AcqRel) + 1
    }
}

/// A finished call: the reply body to send back under `ticket`.
pub(crate) struct Done {
    /// The ticket of the job.
    pub ticket: Ticket,
    /// `{"result": ...}` or `{"error": ...}`; empty when the call was not started
    /// because its registration had ended.
    pub body: Vec<u8>,
    /// The registration the call came in.
    pub registration: u64,
    /// The broker link the call came from.
    pub link: usize,
}

/// A fixed pool of executor threads fed by a bounded channel.
pub(crate) struct Executor {
    jobs: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Executor {
    /// Starts `threads` executors with room for `queued` more calls waiting for one.
    /// Finished calls go to `done`, followed by a `waker` wake-up. Calls of a registration
    /// that has ended by the time a thread takes them are not run.
    pub(crate) fn start(
        threads: usize,
        queued: usize,
        max_reply_bytes: usize,
        done: Sender<Done>,
        waker: Waker,
    ) -> std::io::Result<Executor> {
        let (jobs, queue) = crossbeam_channel::bounded::<Job>(threads + queued);
        let handles = (0..threads)
            .map(|i| {
                let queue = queue.clone();
                let done = done.clone();
                let waker = waker.clone();
                std::thread::Builder::new()
                    .name(format!("switchboard-exec-{i}"))
                    .spawn(move || run_jobs(queue, done, waker, max_reply_bytes))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Executor {
            jobs: Some(jobs),
            threads: handles,
        })
    }

    /// Hands a job to a free executor; if all are busy, returns the job's ticket.
    pub(crate) fn submit(&self, job: Job) -> Result<(), Ticket> {
        let jobs = self.jobs.as_ref().expect("executor is running");
        jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(job) | TrySendError::Disconnected(job) => job.ticket,
        })
    }
}

impl Executor {
    /// Stops taking jobs and returns without waiting for the running ones: each thread
    /// exits once its current job ends (whose reply then goes nowhere).
    pub(crate) fn detach(mut self) {
        self.jobs.take();
        // Dropping a join handle detaches its thread.
        self.threads.clear();
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        // Closing the channel lets each thread finish its job and exit.
        self.jobs.take();
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

fn run_jobs(queue: Receiver<Job>, done: Sender<Done>, waker: Waker, max_reply_bytes: usize) {
    for job in queue {
        let body = if job.registration == job.current.current() {
            execute(&job, max_reply_bytes)
        } else {
            debug!(
                call_id = job.call_id,
                "not starting a call of an ended registration"
            );
            Vec::new()
        };
        if done
            .send(Done {
                ticket: job.ticket,
                body,
                registration: job.registration,
                link: job.link,
            })
            .is_err()
        {
            return;
        }
        waker.wake();
    }
}

/// Runs one call and returns its reply body: TIMEOUT without running it if its deadline
/// passed, PAYLOAD_TOO_LARGE if the result is over the limit.
pub(crate) fn execute(job: &Job, max_reply_bytes: usize) -> Vec<u8> {
    let name = &job.function.info().name;
    if job.cancel.is_cancelled() {
        debug!(
            call_id = job.call_id,
            "skipping call cancelled before it started"
        );
        return encode_error(&RemoteError::new(
            ErrorCode::Timeout,
            format!("{name}: cancelled before the call started"),
        ));
    }
    if Instant::now() >= job.deadline {
        debug!(call_id = job.call_id, "skipping call whose deadline passed");
        return encode_error(&RemoteError::new(
            ErrorCode::Timeout,
            format!("{name}: deadline passed before the call started"),
        ));
    }
    let context = CallContext::new(
        job.call_id,
        job.deadline,
        job.cancel.clone(),
        job.attempt,
        job.traceparent.clone(),
    )
    .with_caller(job.caller.clone());
    let started = Instant::now();
    let reply = if job.function.is_isolated() {
        crate::isolation::execute_isolated(job)
    } else {
        context.enter(|| job.function.call(&job.body))
    };
    let reply = if job.report_run_time {
        let run_us = started.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
        append_run_time(&reply, run_us).unwrap_or(reply)
    } else {
        reply
    };
    if reply.len() > max_reply_bytes {
        return encode_error(&RemoteError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "{name}: result is {} bytes; the limit is {max_reply_bytes}",
                reply.len()
            ),
        ));
    }
    reply
}
