//! The client's socket thread: one DEALER socket multiplexing every call by id.
//!
//! Calls go through a bounded local queue of unsent calls: ZeroMQ is handed a call
//! only while the socket monitor reports a connection to the broker up (a finished
//! handshake) and its send queue has room. A call that cannot leave waits until it
//! can, or until its deadline, and then fails with an error saying why it never left
//! (no connection came up, the handshake was refused, or the send queue stayed full).
//!
//! It also watches the connection through a ZeroMQ socket monitor: when the
//! connection to the broker drops, calls in flight are lost with it. Calls
//! marked idempotent go back to the unsent queue and leave again on the next
//! connection; the others fail at once with BROKER_LOST instead of waiting for
//! their deadline.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_protocol::limits::MAX_PIPELINED_CALLS;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use serde::de::IgnoredAny;
use switchboard_protocol::client::{parse_replies, Pipeline};
use switchboard_protocol::codec::decode_reply;
use switchboard_protocol::{ErrorCode, Frame, RemoteError};
use switchboard_transport::socket::{recv_frames, try_send_frames};
use switchboard_transport::wake::WakeReceiver;
use tracing::{debug, info, warn};

use crate::error::CallError;

/// Where a call's outcome is delivered: the raw reply body, or why there is none.
pub(crate) type ReplySender = Sender<Result<Frame, CallError>>;

/// What caller threads ask of the socket thread.
pub(crate) enum Command {
    /// Send a request and deliver its reply to `reply`.
    Call {
        /// The call id in the header.
        id: u64,
        /// The request frames, ready to send.
        frames: Vec<Frame>,
        /// Where the outcome goes.
        reply: ReplySender,
        /// The call's deadline: an unsent call fails with a clear error at this instant.
        deadline: Instant,
        /// After this the caller has given up; the entry may be forgotten.
        forget_after: Instant,
        /// Safe to send again if the connection drops before the reply.
        idempotent: bool,
    },
    /// The caller stopped waiting for this call.
    Cancel(u64),
}

/// Counters shared between the socket thread and [`crate::Client::stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Replies whose call id matched no waiting call (late, duplicated or unknown).
    pub unmatched_replies: AtomicU64,
    /// Times the connection to the broker dropped.
    pub disconnects: AtomicU64,
    /// Idempotent calls sent again after a disconnect.
    pub resent_calls: AtomicU64,
}

/// What the socket thread keeps of a call until its outcome is delivered.
struct Call {
    reply: ReplySender,
    /// The call's deadline: a call still unsent then fails with a clear error.
    deadline: Instant,
    /// After this the caller has given up; the entry may be forgotten.
    forget_after: Instant,
    /// A copy of the request for idempotent calls.
    resend: Option<Vec<Vec<u8>>>,
    /// The call was sent again after the connection dropped or the broker was stopping.
    resent: bool,
}

impl Call {
    /// A fresh copy of the request, if the call may be sent again.
    fn copy_frames(&self) -> Option<Vec<Frame>> {
        let frames = self.resend.as_ref()?;
        Some(frames.iter().map(|f| Frame::from(&f[..])).collect())
    }
}

/// A call ZeroMQ could not take yet: no connection is up, or the send queue is full.
struct Unsent {
    id: u64,
    frames: Vec<Frame>,
    call: Call,
    /// When it started waiting, for the error message.
    queued_at: Instant,
}

/// What the socket monitor has told about the connection to the broker.
#[derive(Default)]
struct Link {
    /// A handshake succeeded and no disconnect followed.
    up: bool,
    /// The last failed handshake, e.g. "the broker refused this client's CURVE key".
    last_failure: Option<&'static str>,
}

/// Most calls kept waiting for a connection before new ones get OVERLOADED at once.
const MAX_UNSENT: usize = 10_000;
/// How often forgotten calls are swept even when nothing else happens.
const SWEEP: Duration = Duration::from_millis(500);
/// Pause before sending an idempotent call again after SHUTTING_DOWN, or after
/// UNKNOWN_FUNCTION from a restarted broker that has not heard from its workers yet.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// After the connection drops, for this long UNKNOWN_FUNCTION may mean "a restarted
/// broker whose workers have not registered yet": idempotent calls are retried.
const RESTART_WINDOW: Duration = Duration::from_secs(5);

/// The socket thread's state.
pub(crate) struct Connection {
    socket: zmq::Socket,
    monitor: zmq::Socket,
    commands: Receiver<Command>,
    wake: WakeReceiver,
    /// Calls handed to ZeroMQ, waiting for their reply.
    pending: HashMap<u64, Call>,
    /// Idempotent calls to send again at an instant (the broker was stopping or restarting).
    retries: Vec<(Instant, u64, Call)>,
    counters: Arc<Counters>,
    /// When the connection to the broker last dropped.
    last_disconnect: Option<Instant>,
    /// Calls waiting to be handed to ZeroMQ, oldest first.
    unsent: VecDeque<Unsent>,
    link: Link,
    /// The broker's address, for error messages.
    endpoint: String,
}

impl Connection {
    /// Wraps a connected DEALER socket; `monitor` is a PAIR socket connected to its monitor.
    pub(crate) fn new(
        endpoint: &str,
        socket: zmq::Socket,
        monitor: zmq::Socket,
        commands: Receiver<Command>,
        wake: WakeReceiver,
        counters: Arc<Counters>,
    ) -> Connection {
        Connection {
            socket,
            monitor,
            commands,
            wake,
            pending: HashMap::new(),
            retries: Vec::new(),
            counters,
            last_disconnect: None,
            unsent: VecDeque::new(),
            link: Link::default(),
            endpoint: endpoint.to_owned(),
        }
    }

    /// Runs until every client handle is dropped.
    pub(crate) fn run(mut self) {
        let mut next_sweep = Instant::now() + SWEEP;
        loop {
            let retry_due = self.retries.iter().map(|(at, _, _)| *at).min();
            let unsent_due = self.unsent.iter().map(|u| u.call.deadline).min();
            let wake_at = [retry_due, unsent_due]
                .into_iter()
                .flatten()
                .fold(next_sweep, Instant::min);
            let wait = wake_at.saturating_duration_since(Instant::now());
            // With calls waiting to be sent, also wake when the socket can take them.
            let socket_events = if self.unsent.is_empty() || !self.link.up {
                zmq::POLLIN
            } else {
                zmq::POLLIN | zmq::POLLOUT
            };
            let mut items = [
                self.socket.as_poll_item(socket_events),
                self.wake.poll_item(),
                self.monitor.as_poll_item(zmq::POLLIN),
            ];
            if let Err(e) = zmq::poll(&mut items, wait.as_millis() as i64 + 1) {
                if e != zmq::Error::EINTR {
                    warn!(error = %e, "client poll failed; closing");
                    return;
                }
            }
            let (replies, woken, events) = (
                items[0].is_readable(),
                items[1].is_readable(),
                items[2].is_readable(),
            );
            if woken {
                self.wake.drain();
            }
            // Commands first, then replies: a reply never arrives before its call is known.
            if !self.take_commands() {
                return;
            }
            if replies && !self.take_replies() {
                return;
            }
            if events {
                self.take_events();
            }
            let now = Instant::now();
            if retry_due.is_some_and(|at| at <= now) {
                self.queue_due_retries(now);
            }
            if !self.unsent.is_empty() {
                // Once per loop, not per command: a long queue is scanned once per wake-up.
                self.expire_unsent();
                self.send_unsent();
            }
            if now >= next_sweep {
                self.pending.retain(|_, call| call.forget_after > now);
                next_sweep = now + SWEEP;
            }
        }
    }

    /// Moves retries whose pause is over back to the unsent queue.
    fn queue_due_retries(&mut self, now: Instant) {
        let (due, later) = std::mem::take(&mut self.retries)
            .into_iter()
            .partition(|(at, _, _)| *at <= now);
        self.retries = later;
        for (_, id, call) in due {
            self.queue_again(id, call);
        }
    }

    /// Queues an idempotent call to be sent again.
    fn queue_again(&mut self, id: u64, mut call: Call) {
        let Some(frames) = call.copy_frames() else {
            return;
        };
        call.resent = true;
        self.counters.resent_calls.fetch_add(1, Ordering::Relaxed);
        self.unsent.push_back(Unsent {
            id,
            frames,
            call,
            queued_at: Instant::now(),
        });
    }

    /// Whether an idempotent call's error reply means "try again shortly".
    fn worth_retrying(&self, call: &Call, body: &[u8]) -> bool {
        let now = Instant::now();
        if call.resend.is_none() || now + RETRY_PAUSE >= call.forget_after {
            return false;
        }
        let restarting = call.resent
            || self
                .last_disconnect
                .is_some_and(|at| now.duration_since(at) < RESTART_WINDOW);
        match decode_reply::<IgnoredAny>(body) {
            Ok(Err(error)) => {
                error.code == ErrorCode::ShuttingDown
                    || (restarting && error.code == ErrorCode::UnknownFunction)
            }
            _ => false,
        }
    }

    /// Takes every queued command. Returns false when every client handle is gone.
    fn take_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Call {
                    id,
                    frames,
                    reply,
                    deadline,
                    forget_after,
                    idempotent,
                }) => {
                    if self.unsent.len() >= MAX_UNSENT {
                        let error = RemoteError::new(
                            ErrorCode::Overloaded,
                            format!(
                                "{MAX_UNSENT} calls are already waiting to be sent to the broker at {}",
                                self.endpoint
                            ),
                        );
                        let _ = reply.send(Err(CallError::from(error)));
                        continue;
                    }
                    let resend = idempotent.then(|| frames.iter().map(|f| f.to_vec()).collect());
                    let call = Call {
                        reply,
                        deadline,
                        forget_after,
                        resend,
                        resent: false,
                    };
                    // Sent once every command is taken: calls made together leave together.
                    self.unsent.push_back(Unsent {
                        id,
                        frames,
                        call,
                        queued_at: Instant::now(),
                    });
                }
                Ok(Command::Cancel(id)) => {
                    self.pending.remove(&id);
                    self.unsent.retain(|u| u.id != id);
                    self.retries.retain(|(_, retry, _)| *retry != id);
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Fails the waiting calls whose deadline passed before they could be sent.
    fn expire_unsent(&mut self) {
        let now = Instant::now();
        if self.unsent.iter().any(|u| u.call.deadline <= now) {
            let (expired, waiting) = std::mem::take(&mut self.unsent)
                .into_iter()
                .partition(|u| u.call.deadline <= now);
            self.unsent = waiting;
            for unsent in expired {
                let error = self.unsent_error(now.duration_since(unsent.queued_at));
                let _ = unsent.call.reply.send(Err(error));
            }
        }
    }

    /// Hands waiting calls to ZeroMQ in order, those waiting together in one pipelined
    /// message, stopping at the first message it cannot take.
    ///
    /// Nothing is sent while no connection is known to be up: right after a disconnect
    /// ZeroMQ may still take a message into the dying connection, where it would be lost
    /// with no event to tell. Calls wait for the next handshake instead.
    fn send_unsent(&mut self) {
        if !self.link.up {
            return;
        }
        while !self.unsent.is_empty() {
            // Calls waiting together leave together: one message for up to 256 calls.
            let mut leaving = Vec::new();
            while let Some(next) = self.unsent.front() {
                if !Pipeline::can_take(&next.frames) || leaving.len() == MAX_PIPELINED_CALLS {
                    break;
                }
                leaving.push(self.unsent.pop_front().expect("looked at it"));
            }
            if leaving.len() < 2 {
                let single = leaving.pop().or_else(|| self.unsent.pop_front());
                let Some(Unsent {
                    id,
                    frames,
                    call,
                    queued_at,
                }) = single
                else {
                    return;
                };
                match try_send_frames(&self.socket, frames) {
                    Ok(()) => {
                        self.pending.insert(id, call);
                    }
                    Err((zmq::Error::EAGAIN, frames)) if !frames.is_empty() => {
                        self.unsent.push_front(Unsent {
                            id,
                            frames,
                            call,
                            queued_at,
                        });
                        return;
                    }
                    Err((e, _)) => {
                        let _ = call.reply.send(Err(CallError::Transport(e.to_string())));
                    }
                }
                continue;
            }
            let mut pipeline = Pipeline::new();
            for unsent in &mut leaving {
                pipeline.push(std::mem::take(&mut unsent.frames));
            }
            match try_send_frames(&self.socket, pipeline.into_frames()) {
                Ok(()) => {
                    for Unsent { id, call, .. } in leaving {
                        self.pending.insert(id, call);
                    }
                }
                Err((zmq::Error::EAGAIN, frames)) if !frames.is_empty() => {
                    // Refused as a whole: every call waits again, in order.
                    for (mut unsent, frames) in
                        leaving.into_iter().zip(Pipeline::split(frames)).rev()
                    {
                        unsent.frames = frames;
                        self.unsent.push_front(unsent);
                    }
                    return;
                }
                Err((e, _)) => {
                    for Unsent { call, .. } in leaving {
                        let _ = call.reply.send(Err(CallError::Transport(e.to_string())));
                    }
                }
            }
        }
    }

    /// Why a call waited `waited` and never left: no connection, or a full send queue.
    fn unsent_error(&self, waited: Duration) -> CallError {
        let waited = waited.as_millis();
        let endpoint = &self.endpoint;
        let error = if self.link.up {
            RemoteError::new(
                ErrorCode::Overloaded,
                format!("the call was not sent: the send queue to the broker at {endpoint} stayed full for {waited} ms"),
            )
        } else {
            let why = self.link.last_failure.map_or_else(
                || " (is the broker running and reachable?)".to_owned(),
                |failure| format!(": {failure}"),
            );
            RemoteError::new(
                ErrorCode::BrokerLost,
                format!("the call was not sent: no connection to the broker at {endpoint} came up in {waited} ms{why}"),
            )
        };
        CallError::from(error)
    }

    /// Delivers every waiting reply. Returns false if the socket failed.
    fn take_replies(&mut self) -> bool {
        loop {
            let frames = match recv_frames(&self.socket, zmq::DONTWAIT) {
                Ok(frames) => frames,
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => return true,
                Err(e) => {
                    warn!(error = %e, "client receive failed; closing");
                    return false;
                }
            };
            let replies = match parse_replies(frames) {
                Ok(replies) => replies,
                Err(error) => {
                    let error = switchboard_protocol::error::with_causes(&error);
                    warn!(%error, "dropping malformed reply");
                    continue;
                }
            };
            for reply in replies {
                match self.pending.remove(&reply.header.id) {
                    Some(call) if self.worth_retrying(&call, &reply.body) => {
                        let at = Instant::now() + RETRY_PAUSE;
                        self.retries.push((at, reply.header.id, call));
                    }
                    Some(call) => {
                        let _ = call.reply.send(Ok(reply.body));
                    }
                    None => {
                        self.counters
                            .unmatched_replies
                            .fetch_add(1, Ordering::Relaxed);
                        debug!(
                            call_id = reply.header.id,
                            "reply for a call nobody waits for"
                        );
                    }
                }
            }
        }
    }

    /// Reacts to connection events: tracks whether a connection is up, and on a
    /// disconnect queues idempotent calls to leave again and fails the rest.
    fn take_events(&mut self) {
        while let Ok(frames) = self.monitor.recv_multipart(zmq::DONTWAIT) {
            let event = frames
                .first()
                .and_then(|f| f.get(..2))
                .map(|b| u16::from_ne_bytes([b[0], b[1]]));
            let Some(event) = event.map(zmq::SocketEvent::from_raw) else {
                continue;
            };
            let failure = match event {
                zmq::SocketEvent::HANDSHAKE_SUCCEEDED => {
                    self.link = Link {
                        up: true,
                        last_failure: None,
                    };
                    continue;
                }
                zmq::SocketEvent::DISCONNECTED => None,
                zmq::SocketEvent::HANDSHAKE_FAILED_AUTH => {
                    Some("the broker refused this client's CURVE key (is it on the broker's allow-list?)")
                }
                zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL => Some(
                    "the handshake failed: the two sides do not speak the same security mechanism (CURVE on one side only?)",
                ),
                zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL => Some(
                    "the handshake with the broker failed (with CURVE: is the broker's public key right?)",
                ),
                _ => continue,
            };
            let was_up = std::mem::take(&mut self.link.up);
            if failure.is_some() {
                self.link.last_failure = failure;
            }
            if !was_up {
                // A connection that never completed its handshake carried no calls.
                continue;
            }
            // Replies that arrived before the connection closed are still queued in the
            // socket (the poll may have looked before they came): deliver them first.
            self.take_replies();
            self.counters.disconnects.fetch_add(1, Ordering::Relaxed);
            self.last_disconnect = Some(Instant::now());
            info!(
                in_flight = self.pending.len(),
                "connection to the broker lost"
            );
            for (id, call) in std::mem::take(&mut self.pending) {
                if call.resend.is_some() {
                    self.queue_again(id, call);
                    continue;
                }
                let error = RemoteError::new(
                    ErrorCode::BrokerLost,
                    "the connection to the broker dropped; the call may or may not have run",
                );
                let _ = call.reply.send(Err(CallError::from(error)));
            }
        }
    }
}
