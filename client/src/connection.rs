//! The client's socket thread: one DEALER socket multiplexing every call by id.
//!
//! It also watches the connection through a ZeroMQ socket monitor: when the
//! connection to the broker drops, calls in flight are lost with it. Calls
//! marked idempotent are sent again (ZeroMQ queues them until it reconnects);
//! the others fail at once with BROKER_LOST instead of waiting for their deadline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use serde::de::IgnoredAny;
use switchboard_protocol::client::parse_reply;
use switchboard_protocol::codec::decode_reply;
use switchboard_protocol::socket::{recv_frames, send_frames};
use switchboard_protocol::wake::WakeReceiver;
use switchboard_protocol::{ErrorCode, Frame, RemoteError};
use tracing::{debug, info, warn};

use crate::error::CallError;

/// Where a call's outcome is delivered: the raw reply body, or why there is none.
pub type ReplySender = Sender<Result<Frame, CallError>>;

/// What caller threads ask of the socket thread.
pub enum Command {
    /// Send a request and deliver its reply to `reply`.
    Call {
        /// The call id in the header.
        id: u64,
        /// The request frames, ready to send.
        frames: Vec<Frame>,
        /// Where the outcome goes.
        reply: ReplySender,
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
pub struct Counters {
    /// Replies whose call id matched no waiting call (late, duplicated or unknown).
    pub unmatched_replies: AtomicU64,
    /// Times the connection to the broker dropped.
    pub disconnects: AtomicU64,
    /// Idempotent calls sent again after a disconnect.
    pub resent_calls: AtomicU64,
}

struct Pending {
    reply: ReplySender,
    forget_after: Instant,
    /// A copy of the request for idempotent calls.
    resend: Option<Vec<Vec<u8>>>,
    /// The call was sent again after the connection dropped.
    resent: bool,
    /// Send again at this instant (an idempotent call the broker could not take yet).
    retry_at: Option<Instant>,
}

/// How often forgotten calls are swept even when nothing else happens.
const SWEEP: Duration = Duration::from_millis(500);
/// Pause before sending an idempotent call again after SHUTTING_DOWN, or after
/// UNKNOWN_FUNCTION from a restarted broker that has not heard from its workers yet.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// After the connection drops, for this long UNKNOWN_FUNCTION may mean "a restarted
/// broker whose workers have not registered yet": idempotent calls are retried.
const RESTART_WINDOW: Duration = Duration::from_secs(5);

/// The socket thread's state.
pub struct Connection {
    socket: zmq::Socket,
    monitor: zmq::Socket,
    commands: Receiver<Command>,
    wake: WakeReceiver,
    pending: HashMap<u64, Pending>,
    counters: Arc<Counters>,
    /// When the connection to the broker last dropped.
    last_disconnect: Option<Instant>,
}

impl Connection {
    /// Wraps a connected DEALER socket; `monitor` is a PAIR socket connected to its monitor.
    pub fn new(
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
            counters,
            last_disconnect: None,
        }
    }

    /// Runs until every client handle is dropped.
    pub fn run(mut self) {
        let mut next_sweep = Instant::now() + SWEEP;
        loop {
            let retry_due = self.pending.values().filter_map(|p| p.retry_at).min();
            let wake_at = retry_due.map_or(next_sweep, |at| at.min(next_sweep));
            let wait = wake_at.saturating_duration_since(Instant::now());
            let mut items = [
                self.socket.as_poll_item(zmq::POLLIN),
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
                self.send_due_retries(now);
            }
            if now >= next_sweep {
                self.pending.retain(|_, p| p.forget_after > now);
                next_sweep = now + SWEEP;
            }
        }
    }

    fn send_due_retries(&mut self, now: Instant) {
        for pending in self.pending.values_mut() {
            if pending.retry_at.is_some_and(|at| at <= now) {
                pending.retry_at = None;
                if let Some(frames) = &pending.resend {
                    let frames = frames.iter().map(|f| Frame::from(&f[..])).collect();
                    if send_frames(&self.socket, frames, zmq::DONTWAIT).is_ok() {
                        self.counters.resent_calls.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// Whether an idempotent call's error reply means "try again shortly".
    fn worth_retrying(&self, pending: &Pending, body: &[u8]) -> bool {
        let now = Instant::now();
        if pending.resend.is_none() || now + RETRY_PAUSE >= pending.forget_after {
            return false;
        }
        let restarting = pending.resent
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

    /// Sends queued calls. Returns false when every client handle is gone.
    fn take_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Call {
                    id,
                    frames,
                    reply,
                    forget_after,
                    idempotent,
                }) => {
                    let resend = idempotent.then(|| frames.iter().map(|f| f.to_vec()).collect());
                    match send_frames(&self.socket, frames, zmq::DONTWAIT) {
                        Ok(()) => {
                            let pending = Pending {
                                reply,
                                forget_after,
                                resend,
                                resent: false,
                                retry_at: None,
                            };
                            self.pending.insert(id, pending);
                        }
                        Err(zmq::Error::EAGAIN) => {
                            let error = RemoteError::new(
                                ErrorCode::Overloaded,
                                "cannot send: too many calls are waiting to be sent, or no connection to the broker is up (refused handshake?)",
                            );
                            let _ = reply.send(Err(CallError::from(error)));
                        }
                        Err(e) => {
                            let _ = reply.send(Err(CallError::Transport(e.to_string())));
                        }
                    }
                }
                Ok(Command::Cancel(id)) => {
                    self.pending.remove(&id);
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
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
            match parse_reply(frames) {
                Ok(reply) => match self.pending.remove(&reply.header.id) {
                    Some(mut pending) if self.worth_retrying(&pending, &reply.body) => {
                        pending.retry_at = Some(Instant::now() + RETRY_PAUSE);
                        self.pending.insert(reply.header.id, pending);
                    }
                    Some(pending) => {
                        let _ = pending.reply.send(Ok(reply.body));
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
                },
                Err(error) => warn!(%error, "dropping malformed reply"),
            }
        }
    }

    /// Reacts to connection events: on a disconnect, resend idempotent calls and fail the rest.
    fn take_events(&mut self) {
        while let Ok(frames) = self.monitor.recv_multipart(zmq::DONTWAIT) {
            let event = frames
                .first()
                .and_then(|f| f.get(..2))
                .map(|b| u16::from_ne_bytes([b[0], b[1]]));
            if event != Some(zmq::SocketEvent::DISCONNECTED.to_raw()) {
                continue;
            }
            self.counters.disconnects.fetch_add(1, Ordering::Relaxed);
            self.last_disconnect = Some(Instant::now());
            info!(
                in_flight = self.pending.len(),
                "connection to the broker lost"
            );
            let ids: Vec<u64> = self.pending.keys().copied().collect();
            for id in ids {
                let pending = self.pending.get_mut(&id).expect("listed above");
                let sent = pending.resend.as_ref().is_some_and(|frames| {
                    let frames = frames.iter().map(|f| Frame::from(&f[..])).collect();
                    send_frames(&self.socket, frames, zmq::DONTWAIT).is_ok()
                });
                if sent {
                    pending.resent = true;
                    pending.retry_at = None;
                    self.counters.resent_calls.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if let Some(pending) = self.pending.remove(&id) {
                    let error = RemoteError::new(
                        ErrorCode::BrokerLost,
                        "the connection to the broker dropped; the call may or may not have run",
                    );
                    let _ = pending.reply.send(Err(CallError::from(error)));
                }
            }
        }
    }
}
