//! The worker's socket thread: a thin driver of [`Link`] over one DEALER socket, which
//! runs quick (inline) calls itself and feeds the executor pool the others.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_protocol::codec::encode_error;
use switchboard_protocol::worker::{BrokerMessage, CallRecord, FLAG_REPORT_RUN_TIME};
use switchboard_protocol::{ErrorCode, Frame, ReadyInfo, RemoteError};
use switchboard_transport::socket::{recv_frames, send_frames};
use switchboard_transport::wake::waker;
use switchboard_transport::Shutdown;
use tracing::{debug, info, warn};

use crate::config::WorkerConfig;
use crate::context::CancelToken;
use crate::error::WorkerError;
use crate::executor::{execute, Executor, Job, Registration};
use crate::link::{Link, Next, Timing};
use crate::registry::Registry;

/// Largest request body an inline function runs on the socket thread; larger ones go
/// to the executors (decoding them would hold up heartbeats).
const INLINE_BODY_LIMIT: usize = 64 * 1024;

/// Longest poll wait, so a shutdown request is noticed promptly.
const MAX_POLL: Duration = Duration::from_millis(100);

/// A worker process's connection to the broker.
pub struct Worker {
    registry: Arc<Registry>,
    config: WorkerConfig,
    /// The current registration: calls from an earlier one are never answered.
    registration: Registration,
}

impl Worker {
    /// A worker hosting `registry`, not yet connected (`config` is brought into its
    /// working range: see [`WorkerConfig::validated`]).
    pub fn new(registry: Registry, config: WorkerConfig) -> Worker {
        Worker {
            registry: Arc::new(registry),
            config: config.validated(),
            registration: Registration::default(),
        }
    }

    /// [`Worker::run`] until the process gets SIGTERM or SIGINT (as `docker stop` and
    /// Ctrl-C send), then leaves gracefully as the `worker` binary does.
    #[cfg(feature = "serve")]
    pub fn run_until_signal(self) -> Result<(), WorkerError> {
        let shutdown = switchboard_transport::process::shutdown_on_signals()?;
        self.run(shutdown)
    }

    /// Connects, registers and serves calls until `shutdown` is triggered; then
    /// leaves gracefully: tells the broker, finishes held calls (bounded), returns.
    ///
    /// In the child process of an isolated call ([`Registration::isolated`]) it runs that
    /// call and exits the process instead.
    ///
    /// [`Registration::isolated`]: crate::Registration::isolated
    pub fn run(self, shutdown: Shutdown) -> Result<(), WorkerError> {
        crate::isolation::serve_child_if_asked(&self.registry);
        if self.registry.functions().is_empty() {
            return Err(WorkerError::EmptyRegistry);
        }
        let invalid = self.registry.invalid_names();
        if !invalid.is_empty() {
            let list: Vec<String> = invalid
                .into_iter()
                .map(|(name, why)| format!("'{name}' ({why})"))
                .collect();
            return Err(WorkerError::InvalidNames(list.join(", ")));
        }
        let context = zmq::Context::new();
        let (wake, wake_rx) = waker()?;
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let threads = self.config.threads.max(1);
        // Room for every call the broker may send at once: inline calls can land here too
        // (a large body, or a function demoted for being slow).
        // A programmatic stop wakes the poll at once (a signal is noticed within MAX_POLL).
        shutdown.wake_on_trigger(wake.clone());
        let executor = Executor::start(
            threads,
            self.config.prefetch + self.config.inline_capacity,
            self.config.max_reply_bytes,
            done_tx,
            wake,
            self.registration.clone(),
        )?;
        let timing = Timing {
            heartbeat: self.config.heartbeat,
            liveness: self.config.heartbeat_liveness,
            shutdown_grace: self.config.shutdown_grace,
        };
        let now = Instant::now();
        let mut link = Link::new(timing, self.ready_info(), self.registration.clone(), now);
        let mut socket = self.connect(&context)?;
        link.connected(now);
        let out_of_grace = loop {
            let now = Instant::now();
            if shutdown.is_triggered() {
                link.begin_shutdown(now);
            }
            match link.handle_timeout(now) {
                Next::Continue => {}
                Next::Reconnect => {
                    socket = self.connect(&context)?;
                    link.connected(now);
                }
                Next::Stop { out_of_grace } => break out_of_grace,
            }
            self.transmit(&socket, &mut link);
            let wait = link
                .poll_timeout()
                .saturating_duration_since(now)
                .min(MAX_POLL);
            let mut items = [socket.as_poll_item(zmq::POLLIN), wake_rx.poll_item()];
            match zmq::poll(&mut items, wait.as_millis() as i64) {
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            if items[1].is_readable() {
                wake_rx.drain();
                for done in done_rx.try_iter() {
                    link.finished(done);
                }
            }
            if items[0].is_readable() {
                self.receive(&socket, &mut link, &executor)?;
            }
            link.flush();
            self.transmit(&socket, &mut link);
        };
        wake_rx.drain();
        for done in done_rx.try_iter() {
            link.finished(done);
        }
        link.flush();
        self.transmit(&socket, &mut link);
        if out_of_grace {
            // Calls still waiting for an executor are not started; the ones running are
            // left to finish on their own (their replies go nowhere): the worker exits now.
            let abandoned = link.held();
            link.abandon();
            self.transmit(&socket, &mut link);
            executor.detach();
            warn!(
                abandoned,
                "shutdown grace period over; left the calls still running"
            );
        } else {
            drop(executor);
            info!("worker stopped");
        }
        Ok(())
    }

    /// Opens a fresh DEALER socket to the broker.
    fn connect(&self, context: &zmq::Context) -> Result<zmq::Socket, WorkerError> {
        let socket = context.socket(zmq::DEALER)?;
        self.config.limits.apply(&socket)?;
        if let Some(curve) = &self.config.curve {
            curve.apply(&socket)?;
        }
        socket.connect(&self.config.broker)?;
        info!(broker = %self.config.broker, functions = self.registry.functions().len(), "registering with broker");
        Ok(socket)
    }

    fn ready_info(&self) -> ReadyInfo {
        ReadyInfo {
            capacity: (self.config.threads.max(1) + self.config.prefetch) as u32,
            inline_capacity: self.config.inline_capacity.min(u32::MAX as usize) as u32,
            heartbeat_ms: self.config.heartbeat.as_millis() as u64,
            functions: self.registry.functions(),
            name: self.config.name.clone(),
            cancel: true,
            drain: true,
            context: true,
            caller: true,
        }
    }

    /// Sends every message the link has ready. A message the socket cannot take now is
    /// dropped (the broker's liveness checks and the callers' deadlines cover it).
    fn transmit(&self, socket: &zmq::Socket, link: &mut Link) {
        while let Some(message) = link.poll_transmit() {
            if let Err(e) = send_frames(socket, message.into_frames(), zmq::DONTWAIT) {
                warn!(error = %e, "cannot send to broker; message dropped");
            }
        }
    }

    /// Handles every message waiting on the socket, running or handing off the calls.
    fn receive(
        &self,
        socket: &zmq::Socket,
        link: &mut Link,
        executor: &Executor,
    ) -> Result<(), WorkerError> {
        loop {
            let frames = match recv_frames(socket, zmq::DONTWAIT) {
                Ok(frames) => frames,
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let now = Instant::now();
            match BrokerMessage::parse(frames) {
                Ok(message) => {
                    if let Some(mut calls) = link.handle_message(message, now) {
                        for (record, body) in calls.calls() {
                            self.start(link, executor, record, body, now);
                        }
                    }
                }
                Err(error) => {
                    let error = switchboard_protocol::error::with_causes(&error);
                    warn!(%error, "dropping malformed message from broker")
                }
            }
        }
    }

    /// Starts one call: runs it here if it is inline, else hands it to an executor.
    /// Returns 1 if an executor took it (a reply will come back through `done`).
    fn start(
        &self,
        link: &mut Link,
        executor: &Executor,
        record: CallRecord<'_>,
        body: Frame,
        now: Instant,
    ) {
        let CallRecord {
            ticket,
            call_id,
            time_left_ms,
            function,
            attempt,
            traceparent,
            caller,
            flags,
        } = record;
        debug!(call_id, %function, "request");
        let Some(found) = self.registry.get(function) else {
            let error = RemoteError::new(
                ErrorCode::UnknownFunction,
                format!("this worker does not host '{function}'"),
            );
            link.reply(ticket, encode_error(&error));
            return;
        };
        let cancel = CancelToken::default();
        let job = Job {
            ticket,
            call_id,
            function: found.clone(),
            body,
            deadline: now + Duration::from_millis(time_left_ms.into()),
            registration: link.registration(),
            cancel: cancel.clone(),
            attempt: u32::from(attempt),
            traceparent: (!traceparent.is_empty()).then(|| traceparent.to_owned()),
            caller: (!caller.is_empty()).then(|| caller.to_owned()),
            report_run_time: flags & FLAG_REPORT_RUN_TIME != 0,
        };
        if found.is_inline() && job.body.len() <= INLINE_BODY_LIMIT {
            // Quick functions run right here: no hand-off to an executor. A large body
            // (slow to decode) goes to the executors instead, and a function whose call
            // held this thread too long is sent there from then on: heartbeats must not
            // wait for calls.
            let started = Instant::now();
            let reply = execute(&job, self.config.max_reply_bytes);
            let took = started.elapsed();
            if took > self.config.heartbeat / 4 {
                warn!(%function, ?took, "an inline call held the socket thread too long; running this function on the executor threads from now on");
                found.demote();
            }
            link.reply(ticket, reply);
            return;
        }
        match executor.submit(job) {
            Ok(()) => link.handed_off(ticket, cancel),
            Err(ticket) => {
                let error = RemoteError::new(
                    ErrorCode::Overloaded,
                    "every executor thread of this worker is busy",
                );
                link.reply(ticket, encode_error(&error));
            }
        }
    }
}
