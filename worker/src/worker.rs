//! The worker's socket thread: talks to the broker and feeds the executor pool.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use switchboard_protocol::codec::encode_error;
use switchboard_protocol::worker::CallRecord;
use switchboard_protocol::worker::{BrokerMessage, ReplyMessage, Ticket, WorkerMessage};
use switchboard_protocol::{owned_frame, ErrorCode, Frame, ReadyInfo, RemoteError};
use switchboard_transport::socket::{recv_frames, send_frames};
use switchboard_transport::wake::{waker, WakeReceiver};
use switchboard_transport::Shutdown;
use tracing::{debug, info, warn};

use crate::config::WorkerConfig;
use crate::error::WorkerError;
use crate::executor::{execute, Done, Executor, Job, Session};
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
    session: Session,
}

/// Where a stopping worker is in its goodbye.
#[derive(PartialEq, Eq)]
enum Phase {
    Serving,
    /// DISCONNECT sent; waiting for the broker's acknowledgement and our calls.
    Draining {
        acknowledged: bool,
        until: Instant,
    },
}

struct Link {
    socket: zmq::Socket,
    /// Replies not sent yet: sent together once the loop has no more to gather.
    replies: ReplyMessage,
    /// The broker counts as gone if nothing arrives before this instant.
    broker_expires: Instant,
    next_heartbeat: Instant,
}

impl Worker {
    /// A worker hosting `registry`, not yet connected (`config` is brought into its
    /// working range: see [`WorkerConfig::validated`]).
    pub fn new(registry: Registry, config: WorkerConfig) -> Worker {
        Worker {
            registry: Arc::new(registry),
            config: config.validated(),
            session: Session::default(),
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
    pub fn run(self, shutdown: Shutdown) -> Result<(), WorkerError> {
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
        let executor = Executor::start(
            threads,
            self.config.prefetch + self.config.inline_capacity,
            self.config.max_reply_bytes,
            done_tx,
            wake,
            self.session.clone(),
        )?;
        let mut link = self.connect(&context)?;
        let mut phase = Phase::Serving;
        let mut held = 0usize;
        let out_of_grace = loop {
            let now = Instant::now();
            if shutdown.is_triggered() && phase == Phase::Serving {
                info!(held, "stopping: leaving the broker");
                self.send_replies(&mut link);
                self.send(&link.socket, WorkerMessage::Disconnect);
                phase = Phase::Draining {
                    acknowledged: false,
                    until: now + self.config.shutdown_grace,
                };
            }
            if let Phase::Draining {
                acknowledged,
                until,
            } = phase
            {
                let broker_gone = now >= link.broker_expires;
                if held == 0 && (acknowledged || broker_gone) {
                    break false;
                }
                if now >= until {
                    break true;
                }
            }
            if now >= link.broker_expires && phase == Phase::Serving {
                warn!(broker = %self.config.broker, "broker silent; reconnecting");
                link = self.connect(&context)?;
            }
            if now >= link.next_heartbeat {
                self.send_replies(&mut link);
                self.send(&link.socket, WorkerMessage::Heartbeat);
                link.next_heartbeat = now + self.config.heartbeat;
            }
            let wait = link
                .next_heartbeat
                .min(link.broker_expires)
                .saturating_duration_since(now)
                .min(MAX_POLL);
            let mut items = [link.socket.as_poll_item(zmq::POLLIN), wake_rx.poll_item()];
            match zmq::poll(&mut items, wait.as_millis() as i64) {
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            let (socket_ready, done_ready) = (items[0].is_readable(), items[1].is_readable());
            if done_ready {
                held -= self.take_finished(&mut link, &wake_rx, &done_rx);
            }
            if socket_ready {
                held += self.receive(&mut link, &executor, &mut phase)?;
            }
            self.send_replies(&mut link);
        };
        held -= self.take_finished(&mut link, &wake_rx, &done_rx);
        self.send_replies(&mut link);
        if out_of_grace {
            // Calls still waiting for an executor are not started; the ones running are
            // left to finish on their own (their replies go nowhere): the worker exits now.
            // A second DISCONNECT tells the broker it is gone, so it answers the calls
            // this worker held (WORKER_LOST: they may have run) without waiting for
            // heartbeats to stop.
            self.session.renew();
            self.send(&link.socket, WorkerMessage::Disconnect);
            executor.detach();
            warn!(
                abandoned = held,
                "shutdown grace period over; left the calls still running"
            );
        } else {
            drop(executor);
            info!("worker stopped");
        }
        Ok(())
    }

    /// Opens a fresh DEALER socket to the broker and announces READY.
    fn connect(&self, context: &zmq::Context) -> Result<Link, WorkerError> {
        let socket = context.socket(zmq::DEALER)?;
        self.config.limits.apply(&socket)?;
        if let Some(curve) = &self.config.curve {
            curve.apply(&socket)?;
        }
        socket.connect(&self.config.broker)?;
        let info = self.ready_info();
        info!(broker = %self.config.broker, functions = info.functions.len(), capacity = info.capacity, "registering with broker");
        self.register(&socket);
        let now = Instant::now();
        Ok(Link {
            socket,
            replies: ReplyMessage::new(),
            broker_expires: now + self.config.heartbeat * self.config.heartbeat_liveness.max(1),
            next_heartbeat: now + self.config.heartbeat,
        })
    }

    /// Sends READY, starting a new session: the broker that hears it knows none of the
    /// calls this worker still holds, so their replies are dropped here, not sent.
    fn register(&self, socket: &zmq::Socket) {
        self.session.renew();
        self.send(socket, WorkerMessage::Ready(self.ready_info()));
    }

    fn ready_info(&self) -> ReadyInfo {
        ReadyInfo {
            capacity: (self.config.threads.max(1) + self.config.prefetch) as u32,
            inline_capacity: self.config.inline_capacity.min(u32::MAX as usize) as u32,
            heartbeat_ms: self.config.heartbeat.as_millis() as u64,
            functions: self.registry.functions(),
            name: self.config.name.clone(),
        }
    }

    fn send(&self, socket: &zmq::Socket, message: WorkerMessage) {
        if let Err(e) = send_frames(socket, message.into_frames(), zmq::DONTWAIT) {
            warn!(error = %e, "cannot send to broker; message dropped");
        }
    }

    /// Handles every message waiting on the socket. Returns how many calls were taken on.
    fn receive(
        &self,
        link: &mut Link,
        executor: &Executor,
        phase: &mut Phase,
    ) -> Result<usize, WorkerError> {
        let mut taken = 0;
        loop {
            let frames = match recv_frames(&link.socket, zmq::DONTWAIT) {
                Ok(frames) => frames,
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => return Ok(taken),
                Err(e) => return Err(e.into()),
            };
            let now = Instant::now();
            link.broker_expires =
                now + self.config.heartbeat * self.config.heartbeat_liveness.max(1);
            match BrokerMessage::parse(frames) {
                Ok(BrokerMessage::Request(mut calls)) => {
                    for (record, body) in calls.calls() {
                        taken += self.start(link, executor, record, body, now);
                    }
                }
                Ok(BrokerMessage::Heartbeat) => {}
                Ok(BrokerMessage::Disconnect) => match phase {
                    Phase::Draining { acknowledged, .. } => *acknowledged = true,
                    Phase::Serving => {
                        info!("broker does not know this worker; registering again");
                        // Replies not sent yet answer calls that broker does not know.
                        link.replies = ReplyMessage::new();
                        self.register(&link.socket);
                    }
                },
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
    ) -> usize {
        let CallRecord {
            ticket,
            call_id,
            time_left_ms,
            function,
        } = record;
        debug!(call_id, %function, "request");
        let Some(found) = self.registry.get(function) else {
            let error = RemoteError::new(
                ErrorCode::UnknownFunction,
                format!("this worker does not host '{function}'"),
            );
            self.reply(link, ticket, encode_error(&error));
            return 0;
        };
        let job = Job {
            ticket,
            call_id,
            function: found.clone(),
            body,
            deadline: now + Duration::from_millis(time_left_ms.into()),
            session: self.session.current(),
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
            self.reply(link, ticket, reply);
            return 0;
        }
        match executor.submit(job) {
            Ok(()) => 1,
            Err(ticket) => {
                let error = RemoteError::new(
                    ErrorCode::Overloaded,
                    "every executor thread of this worker is busy",
                );
                self.reply(link, ticket, encode_error(&error));
                0
            }
        }
    }

    /// Adds a reply to the pending REPLY; sends that when it is full.
    fn reply(&self, link: &mut Link, ticket: Ticket, body: Vec<u8>) {
        link.replies.push(ticket, owned_frame(body));
        if link.replies.is_full() {
            self.send_replies(link);
        }
    }

    /// Sends the pending replies, if any.
    fn send_replies(&self, link: &mut Link) {
        if !link.replies.is_empty() {
            let replies = std::mem::take(&mut link.replies);
            self.send(&link.socket, WorkerMessage::Reply(replies));
        }
    }

    /// Gathers every finished call's reply. Returns how many there were.
    fn take_finished(
        &self,
        link: &mut Link,
        wake_rx: &WakeReceiver,
        done: &Receiver<Done>,
    ) -> usize {
        wake_rx.drain();
        let mut finished = 0;
        let current = self.session.current();
        while let Ok(Done {
            ticket,
            body,
            session: of,
        }) = done.try_recv()
        {
            finished += 1;
            if of != current {
                debug!(
                    ticket = ticket.0,
                    "dropping the reply to a call of an earlier registration"
                );
                continue;
            }
            self.reply(link, ticket, body);
        }
        finished
    }
}
