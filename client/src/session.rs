//! The client's call table as a state machine with no socket in it.
//!
//! [`Session`] knows every call between the caller and its outcome: waiting to be sent
//! (`unsent`), handed to ZeroMQ (`pending`), or paused before an idempotent retry
//! (`retries`). The socket thread (`connection`) feeds it what happened — a call or
//! cancellation from a caller, a reply message, the link going up or down, the time —
//! and asks it what to send ([`Session::poll_transmit`]) and when to wake
//! ([`Session::poll_timeout`]). Outcomes go straight to each caller's channel. Time is
//! always passed in, so the races of a real connection are unit tests here.
//!
//! Rules it keeps:
//! - nothing is sent while no connection is known to be up (right after a disconnect
//!   ZeroMQ may still take a message into the dying connection, where it would be lost
//!   with no event to tell);
//! - calls waiting together leave together, up to [`MAX_PIPELINED_CALLS`] in one
//!   pipelined message, in order; a message ZeroMQ refuses waits again, in order;
//! - a call still unsent at its deadline fails with an error saying why it never left;
//! - when the link drops, idempotent calls in flight are sent again on the next
//!   connection and the others fail at once with BROKER_LOST;
//! - an idempotent call answered SHUTTING_DOWN, or UNKNOWN_FUNCTION by a broker that
//!   just restarted, is sent again after a pause ([`RetryPolicy`]);
//! - with several brokers ([`RetryPolicy::other_brokers`]) every call keeps a copy of its
//!   request, so that one a stopping broker answered SHUTTING_DOWN (it never ran) can go
//!   to another broker whatever its kind, and the session counts as draining: the
//!   driver sends it nothing new and moves the calls it has not sent
//!   ([`Session::take_movable`]) to a broker that takes calls.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use switchboard_protocol::client::{parse_notice, parse_replies, Notice, Pipeline};
use switchboard_protocol::codec::reply_outcome;
use switchboard_protocol::limits::MAX_PIPELINED_CALLS;
use switchboard_protocol::{ErrorCode, Frame, RemoteError};
use tracing::{debug, info, warn};

use crate::error::CallError;

/// A call's outcome: the raw reply body, or why there is none.
pub(crate) type Outcome = Result<Frame, CallError>;

/// Where a call's outcome is delivered.
pub(crate) enum ReplySender {
    /// To a thread blocked in `PendingCall::wait` (it keeps its own timer).
    Blocking(Sender<Outcome>),
    /// To a `CallFuture`, which has no timer: the session delivers its TIMEOUT.
    Async(futures_channel::oneshot::Sender<Outcome>),
}

impl ReplySender {
    fn send(self, outcome: Outcome) {
        // A caller that stopped waiting dropped its receiver: nothing to do.
        match self {
            ReplySender::Blocking(sender) => {
                let _ = sender.send(outcome);
            }
            ReplySender::Async(sender) => {
                let _ = sender.send(outcome);
            }
        }
    }
}

/// Counters shared between the socket thread and [`crate::Client::stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Replies whose call id matched no waiting call (late, duplicated or unknown).
    pub(crate) unmatched_replies: AtomicU64,
    /// Times the connection to the broker dropped.
    pub(crate) disconnects: AtomicU64,
    /// Idempotent calls sent again after a disconnect.
    pub(crate) resent_calls: AtomicU64,
    /// Calls a broker refused without running them (SHUTTING_DOWN, or UNKNOWN_FUNCTION
    /// just after a restart), sent again.
    pub(crate) refused_calls: AtomicU64,
}

/// When and how often calls are retried or given up on: a value, so tests and callers
/// can see and change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Pause before sending an idempotent call again after SHUTTING_DOWN, or after
    /// UNKNOWN_FUNCTION from a restarted broker that has not heard from its workers yet.
    pub(crate) retry_pause: Duration,
    /// After the connection drops, for this long UNKNOWN_FUNCTION may mean "a restarted
    /// broker whose workers have not registered yet": idempotent calls are retried.
    pub(crate) restart_window: Duration,
    /// Most calls kept waiting for a connection before new ones get OVERLOADED at once.
    pub(crate) max_unsent: usize,
    /// How often calls whose callers gave up are forgotten.
    pub(crate) sweep_every: Duration,
    /// How many other brokers the client has. With any, every request keeps a copy (not
    /// only idempotent ones), so that a call refused unrun can go to another broker; a
    /// call answered UNKNOWN_FUNCTION by one broker is tried on another, at most this many
    /// times.
    pub(crate) other_brokers: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retry_pause: Duration::from_millis(100),
            restart_window: Duration::from_secs(5),
            max_unsent: 10_000,
            sweep_every: Duration::from_millis(500),
            other_brokers: 0,
        }
    }
}

/// A call as a caller hands it over.
pub(crate) struct NewCall {
    /// The call id in the header.
    pub(crate) id: u64,
    /// The request frames, ready to send.
    pub(crate) frames: Vec<Frame>,
    /// Where the outcome goes.
    pub(crate) reply: ReplySender,
    /// The call's deadline: an unsent call fails with a clear error at this instant.
    pub(crate) deadline: Instant,
    /// After this the caller has given up; the entry may be forgotten.
    pub(crate) forget_after: Instant,
    /// Safe to send again if the connection drops before the reply.
    pub(crate) idempotent: bool,
    /// The call's timeout, for the TIMEOUT error of an async call.
    pub(crate) timeout: Duration,
}

/// What the socket monitor reports about the connection to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkEvent {
    /// A handshake succeeded.
    Up,
    /// The connection closed, or a handshake failed (`failure` says why, for messages).
    Down { failure: Option<&'static str> },
}

/// What the session keeps of a call until its outcome is delivered.
struct Call {
    reply: ReplySender,
    deadline: Instant,
    forget_after: Instant,
    timeout: Duration,
    /// Safe to send twice: sent again when the connection drops with it in flight.
    idempotent: bool,
    /// A copy of the request, for calls that may be sent again (idempotent ones, and
    /// every call when the client has [`RetryPolicy::other_brokers`]).
    resend: Option<Vec<Vec<u8>>>,
    /// The call was sent again after the connection dropped or the broker was stopping.
    resent: bool,
    /// Brokers that answered UNKNOWN_FUNCTION to it.
    refusals: u8,
}

impl Call {
    /// A fresh copy of the request, if the call may be sent again.
    fn copy_frames(&self) -> Option<Vec<Frame>> {
        let frames = self.resend.as_ref()?;
        Some(frames.iter().map(|f| Frame::from(&f[..])).collect())
    }

    fn deliver(self, outcome: Outcome) {
        self.reply.send(outcome);
    }
}

/// A call ZeroMQ has not taken yet.
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

/// A call the session gives up to be sent by another (see [`Session::take_movable`]).
pub(crate) struct Movable(Unsent);

/// Every call of one client connection, and what the link is doing.
pub(crate) struct Session {
    /// Calls waiting to be handed to ZeroMQ, oldest first.
    unsent: VecDeque<Unsent>,
    /// Calls in the message [`Session::poll_transmit`] last handed out, until the driver
    /// says how sending it went.
    in_transit: Vec<Unsent>,
    /// Calls handed to ZeroMQ, waiting for their reply.
    pending: HashMap<u64, Call>,
    /// Idempotent calls to send again at an instant.
    retries: Vec<(Instant, u64, Call)>,
    /// When each async call's caller gives up, earliest first: the session answers it
    /// TIMEOUT then (a blocking caller keeps its own timer). Entries of calls that ended
    /// are skipped.
    async_timers: BinaryHeap<Reverse<(Instant, u64)>>,
    link: Link,
    /// When the connection to the broker last dropped.
    last_disconnect: Option<Instant>,
    /// The broker said it is stopping (a call answered SHUTTING_DOWN): it gets no new
    /// calls until a new connection comes up.
    draining: bool,
    /// The broker just restarted and knows no worker yet (a call came back
    /// UNKNOWN_FUNCTION): no new calls until this instant.
    cold_until: Option<Instant>,
    /// The broker left the client's list (its host name no longer stands for it): no
    /// new calls; the session ends once its calls have.
    retired: bool,
    next_sweep: Instant,
    policy: RetryPolicy,
    counters: Arc<Counters>,
    /// The broker's address, for error messages.
    endpoint: String,
}

impl Session {
    /// A session with no call, the link down.
    pub(crate) fn new(
        endpoint: &str,
        policy: RetryPolicy,
        counters: Arc<Counters>,
        now: Instant,
    ) -> Session {
        Session {
            unsent: VecDeque::new(),
            in_transit: Vec::new(),
            pending: HashMap::new(),
            retries: Vec::new(),
            async_timers: BinaryHeap::new(),
            link: Link::default(),
            last_disconnect: None,
            draining: false,
            cold_until: None,
            retired: false,
            next_sweep: now + policy.sweep_every,
            policy,
            counters,
            endpoint: endpoint.to_owned(),
        }
    }

    /// A caller's new call: queued to be sent (OVERLOADED at once when the queue is full).
    pub(crate) fn handle_call(&mut self, call: NewCall, now: Instant) {
        let NewCall {
            id,
            frames,
            reply,
            deadline,
            forget_after,
            idempotent,
            timeout,
        } = call;
        if self.unsent.len() >= self.policy.max_unsent {
            let error = RemoteError::new(
                ErrorCode::Overloaded,
                format!(
                    "{} calls are already waiting to be sent to the broker at {}",
                    self.policy.max_unsent, self.endpoint
                ),
            );
            reply.send(Err(CallError::from(error)));
            return;
        }
        if matches!(reply, ReplySender::Async(_)) {
            self.async_timers.push(Reverse((forget_after, id)));
        }
        let resend = (idempotent || self.policy.other_brokers > 0)
            .then(|| frames.iter().map(|f| f.to_vec()).collect());
        let call = Call {
            reply,
            deadline,
            forget_after,
            timeout,
            idempotent,
            resend,
            resent: false,
            refusals: 0,
        };
        self.unsent.push_back(Unsent {
            id,
            frames,
            call,
            queued_at: now,
        });
    }

    /// The caller stopped waiting for call `id`: forget it wherever it is.
    pub(crate) fn handle_cancel(&mut self, id: u64) {
        self.pending.remove(&id);
        self.unsent.retain(|u| u.id != id);
        self.retries.retain(|(_, retry, _)| *retry != id);
    }

    /// A reply message from the broker (one reply, or a group of replies to a pipeline).
    pub(crate) fn handle_reply_message(&mut self, frames: Vec<Frame>, now: Instant) {
        if let Some(notice) = parse_notice(&frames) {
            return self.handle_notice(notice);
        }
        let replies = match parse_replies(frames) {
            Ok(replies) => replies,
            Err(error) => {
                let error = switchboard_protocol::error::with_causes(&error);
                warn!(%error, "dropping malformed reply");
                return;
            }
        };
        for reply in replies {
            match self.pending.remove(&reply.header.id) {
                Some(mut call) => {
                    if self.worth_retrying(&mut call, &reply.body, now) {
                        self.counters.refused_calls.fetch_add(1, Ordering::Relaxed);
                        let at = now + self.policy.retry_pause;
                        self.retries.push((at, reply.header.id, call));
                    } else {
                        call.deliver(Ok(reply.body));
                    }
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

    /// A NOTICE from the broker: one that is stopping gets no new calls (its calls in
    /// flight still end there).
    fn handle_notice(&mut self, notice: Notice) {
        match notice {
            Notice::Stopping => {
                if !self.draining {
                    info!(broker = %self.endpoint, "the broker says it is stopping: no new calls go to it");
                }
                self.draining = true;
            }
            Notice::Other(name) => debug!(%name, "ignoring a notice this client does not know"),
        }
    }

    /// The link went up or down. The driver hands over, before a `Down`, every reply the
    /// socket still holds: a broker that answers and then exits loses no answer.
    pub(crate) fn handle_link(&mut self, event: LinkEvent, now: Instant) {
        let failure = match event {
            LinkEvent::Up => {
                self.link = Link {
                    up: true,
                    last_failure: None,
                };
                // A new connection: a broker that was stopping is gone, this one is new.
                self.draining = false;
                return;
            }
            LinkEvent::Down { failure } => failure,
        };
        let was_up = std::mem::take(&mut self.link.up);
        if failure.is_some() {
            self.link.last_failure = failure;
        }
        if !was_up {
            // A connection that never completed its handshake carried no calls.
            return;
        }
        self.counters.disconnects.fetch_add(1, Ordering::Relaxed);
        self.last_disconnect = Some(now);
        info!(
            in_flight = self.pending.len(),
            "connection to the broker lost"
        );
        for (id, call) in std::mem::take(&mut self.pending) {
            if call.idempotent {
                self.queue_again(id, call, now);
                continue;
            }
            let error = RemoteError::new(
                ErrorCode::BrokerLost,
                "the connection to the broker dropped; the call may or may not have run",
            );
            call.deliver(Err(CallError::from(error)));
        }
    }

    /// Time passed: paused retries whose time came are queued, unsent calls past their
    /// deadline fail, and calls whose callers gave up are forgotten.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.cold_until.is_some_and(|until| until <= now) {
            self.cold_until = None;
        }
        if self.retries.iter().any(|(at, _, _)| *at <= now) {
            let (due, later) = std::mem::take(&mut self.retries)
                .into_iter()
                .partition(|(at, _, _)| *at <= now);
            self.retries = later;
            for (_, id, call) in due {
                self.queue_again(id, call, now);
            }
        }
        if self.unsent.iter().any(|u| u.call.deadline <= now) {
            let (expired, waiting) = std::mem::take(&mut self.unsent)
                .into_iter()
                .partition(|u| u.call.deadline <= now);
            self.unsent = waiting;
            for unsent in expired {
                let error = self.unsent_error(now.saturating_duration_since(unsent.queued_at));
                unsent.call.deliver(Err(error));
            }
        }
        while let Some(&Reverse((at, id))) = self.async_timers.peek() {
            if at > now {
                break;
            }
            self.async_timers.pop();
            self.give_up(id, now);
        }
        if now >= self.next_sweep {
            self.pending.retain(|_, call| call.forget_after > now);
            self.next_sweep = now + self.policy.sweep_every;
        }
    }

    /// An async call's caller gives up on call `id` if it is still held here: it is
    /// answered TIMEOUT and forgotten.
    fn give_up(&mut self, id: u64, now: Instant) {
        let expired = |call: &Call| call.forget_after <= now;
        let call = if self.pending.get(&id).is_some_and(expired) {
            self.pending.remove(&id)
        } else if let Some(at) = self
            .retries
            .iter()
            .position(|(_, r, c)| *r == id && expired(c))
        {
            Some(self.retries.remove(at).2)
        } else if let Some(at) = self
            .unsent
            .iter()
            .position(|u| u.id == id && expired(&u.call))
        {
            self.unsent.remove(at).map(|u| u.call)
        } else {
            None
        };
        if let Some(call) = call {
            let timeout = call.timeout;
            call.deliver(Err(CallError::Timeout(timeout)));
        }
    }

    /// The earliest instant [`Session::handle_timeout`] has something to do.
    pub(crate) fn poll_timeout(&self) -> Instant {
        let retry = self.retries.iter().map(|(at, _, _)| *at).min();
        let unsent = self.unsent.iter().map(|u| u.call.deadline).min();
        let give_up = self.async_timers.peek().map(|Reverse((at, _))| *at);
        [retry, unsent, give_up, self.cold_until]
            .into_iter()
            .flatten()
            .fold(self.next_sweep, Instant::min)
    }

    /// Whether calls wait for room in the socket (the driver then also polls for it).
    pub(crate) fn wants_to_send(&self) -> bool {
        self.link.up && !self.unsent.is_empty()
    }

    /// The next message to hand to ZeroMQ: the waiting calls at the head of the queue,
    /// as one call or one pipeline. `None` while the link is down or nothing waits. The
    /// driver must answer with [`Session::transmitted`] before asking again.
    pub(crate) fn poll_transmit(&mut self) -> Option<Vec<Frame>> {
        debug_assert!(self.in_transit.is_empty(), "transmitted() was not called");
        if !self.link.up || self.unsent.is_empty() {
            return None;
        }
        while let Some(next) = self.unsent.front() {
            let pipelines = Pipeline::can_take(&next.frames);
            if !pipelines || self.in_transit.len() == MAX_PIPELINED_CALLS {
                if self.in_transit.is_empty() {
                    // A call that cannot be pipelined leaves alone.
                    self.in_transit
                        .push(self.unsent.pop_front().expect("looked at it"));
                }
                break;
            }
            self.in_transit
                .push(self.unsent.pop_front().expect("looked at it"));
        }
        if self.in_transit.len() == 1 {
            return Some(std::mem::take(&mut self.in_transit[0].frames));
        }
        let mut pipeline = Pipeline::new();
        for unsent in &mut self.in_transit {
            pipeline.push(std::mem::take(&mut unsent.frames));
        }
        Some(pipeline.into_frames())
    }

    /// How sending the message from [`Session::poll_transmit`] went: sent; refused for
    /// now (`WouldBlock`: the calls wait again, in order, with the frames handed back);
    /// or failed (each of its calls fails with `error`).
    pub(crate) fn transmitted(&mut self, outcome: Transmitted) {
        let leaving = std::mem::take(&mut self.in_transit);
        match outcome {
            Transmitted::Sent => {
                for Unsent { id, call, .. } in leaving {
                    self.pending.insert(id, call);
                }
            }
            Transmitted::WouldBlock(frames) => {
                let parts = if leaving.len() == 1 {
                    vec![frames]
                } else {
                    Pipeline::split(frames)
                };
                for (mut unsent, frames) in leaving.into_iter().zip(parts).rev() {
                    unsent.frames = frames;
                    self.unsent.push_front(unsent);
                }
            }
            Transmitted::Failed(error) => {
                for Unsent { call, .. } in leaving {
                    call.deliver(Err(CallError::Transport(error.clone())));
                }
            }
        }
    }

    /// Calls this session holds, sent or not: what power-of-two-choices compares.
    pub(crate) fn load(&self) -> usize {
        self.unsent.len() + self.pending.len() + self.retries.len()
    }

    /// Whether new calls should come here: connected, and the broker is not stopping, not
    /// just restarted without workers, and still listed.
    pub(crate) fn accepting(&self) -> bool {
        self.link.up && !self.draining && self.cold_until.is_none() && !self.retired
    }

    /// The broker left the client's list: it gets no new calls (calls not sent there
    /// move on, calls sent there end there).
    pub(crate) fn retire(&mut self) {
        self.retired = true;
    }

    /// Whether the broker left the client's list.
    pub(crate) fn is_retired(&self) -> bool {
        self.retired
    }

    /// The client has `brokers` brokers now: with several, every call keeps a copy of
    /// its request, and one answered UNKNOWN_FUNCTION may try the others.
    pub(crate) fn set_brokers(&mut self, brokers: usize) {
        self.policy.other_brokers = brokers.saturating_sub(1);
    }

    /// The broker's endpoint.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether call `id` was sent here and waits for its reply.
    pub(crate) fn holds(&self, id: u64) -> bool {
        self.pending.contains_key(&id)
    }

    /// Whether [`Session::take_movable`] would give anything.
    pub(crate) fn has_movable(&self) -> bool {
        !self.unsent.is_empty() || !self.retries.is_empty()
    }

    /// Gives up every call this session has not sent (waiting for the link, or paused
    /// before a retry): none of them is at the broker, so another session may send it.
    pub(crate) fn take_movable(&mut self) -> Vec<Movable> {
        let mut moving: Vec<Movable> = self.unsent.drain(..).map(Movable).collect();
        for (_, id, call) in std::mem::take(&mut self.retries) {
            if let Some(frames) = call.copy_frames() {
                moving.push(Movable(Unsent {
                    id,
                    frames,
                    call,
                    queued_at: Instant::now(),
                }));
            }
        }
        moving
    }

    /// Takes a call another session gave up, to send it after the ones waiting here.
    pub(crate) fn adopt(&mut self, moved: Movable) {
        let Movable(unsent) = moved;
        if matches!(unsent.call.reply, ReplySender::Async(_)) {
            self.async_timers
                .push(Reverse((unsent.call.forget_after, unsent.id)));
        }
        self.unsent.push_back(unsent);
    }

    /// Queues an idempotent call to be sent again.
    fn queue_again(&mut self, id: u64, mut call: Call, now: Instant) {
        let Some(frames) = call.copy_frames() else {
            return;
        };
        call.resent = true;
        self.counters.resent_calls.fetch_add(1, Ordering::Relaxed);
        self.unsent.push_back(Unsent {
            id,
            frames,
            call,
            queued_at: now,
        });
    }

    /// Whether a call's error reply means "it never ran: try again shortly" (only calls
    /// that kept a copy of their request). SHUTTING_DOWN also marks the broker draining.
    fn worth_retrying(&mut self, call: &mut Call, body: &[u8], now: Instant) -> bool {
        if call.resend.is_none() || now + self.policy.retry_pause >= call.forget_after {
            return false;
        }
        let restarting = call.resent
            || self
                .last_disconnect
                .is_some_and(|at| now.saturating_duration_since(at) < self.policy.restart_window);
        // A result is recognised from its first bytes: only error replies are decoded.
        match reply_outcome(body) {
            Some(ErrorCode::ShuttingDown) => {
                if !self.draining {
                    info!(broker = %self.endpoint, "the broker is stopping: no new calls go to it");
                }
                self.draining = true;
                true
            }
            // A broker that just restarted and knows no worker yet; or, with other
            // brokers, one that lost its workers (cut off from them): the call never ran,
            // another broker may run it (each broker is tried once).
            Some(ErrorCode::UnknownFunction)
                if restarting || usize::from(call.refusals) < self.policy.other_brokers =>
            {
                call.refusals = call.refusals.saturating_add(1);
                self.cold_until = Some(now + self.policy.retry_pause);
                true
            }
            _ => false,
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
}

/// How handing a message to ZeroMQ went.
#[derive(Debug)]
pub(crate) enum Transmitted {
    /// ZeroMQ took it.
    Sent,
    /// ZeroMQ cannot take it now; these are its frames, handed back.
    WouldBlock(Vec<Frame>),
    /// Sending failed for good, for this reason.
    Failed(String),
}

#[cfg(test)]
mod tests;
