//! The executor pool: named threads that run calls taken from a bounded channel.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use switchboard_protocol::codec::encode_error;
use switchboard_protocol::wake::Waker;
use switchboard_protocol::worker::Ticket;
use switchboard_protocol::{ErrorCode, Frame, RemoteError};
use tracing::debug;

use crate::registry::Function;

/// One call handed to the pool.
pub struct Job {
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
}

/// A finished call: the reply body to send back under `ticket`.
pub struct Done {
    /// The ticket of the job.
    pub ticket: Ticket,
    /// `{"result": ...}` or `{"error": ...}`.
    pub body: Vec<u8>,
}

/// A fixed pool of executor threads fed by a bounded channel.
pub struct Executor {
    jobs: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Executor {
    /// Starts `threads` executors with room for `queued` more calls waiting for one.
    /// Finished calls go to `done`, followed by a `waker` wake-up.
    pub fn start(
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
    pub fn submit(&self, job: Job) -> Result<(), Ticket> {
        let jobs = self.jobs.as_ref().expect("executor is running");
        jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(job) | TrySendError::Disconnected(job) => job.ticket,
        })
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
        let body = execute(&job, max_reply_bytes);
        if done
            .send(Done {
                ticket: job.ticket,
                body,
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
pub fn execute(job: &Job, max_reply_bytes: usize) -> Vec<u8> {
    let name = &job.function.info().name;
    if Instant::now() >= job.deadline {
        debug!(call_id = job.call_id, "skipping call whose deadline passed");
        return encode_error(&RemoteError::new(
            ErrorCode::Timeout,
            format!("{name}: deadline passed before the call started"),
        ));
    }
    let reply = job.function.call(&job.body);
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
