//! The worker's side of its conversation with the broker, as a state machine with no
//! socket in it.
//!
//! [`Link`] decides what the worker says and when: READY on every (re)connection,
//! heartbeats, replies coalesced into REPLY messages, re-registering when the broker
//! does not know the worker, reconnecting when the broker falls silent, and the
//! two-step goodbye (DISCONNECT, drain, stop). The socket thread (`worker`) feeds it the
//! broker's messages, finished calls and the time, runs the calls it hands back, and
//! sends what [`Link::poll_transmit`] gives. Time is always passed in.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use switchboard_protocol::worker::{
    BrokerMessage, ReplyMessage, RequestMessage, Ticket, WorkerMessage, LOAD_STOPPING,
};
use switchboard_protocol::{owned_frame, ReadyInfo};
use tracing::{debug, info, warn};

use crate::context::CancelToken;
use crate::credit::Demand;
use crate::executor::{Done, Registration};

/// The timing a link keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// Interval between heartbeats.
    pub(crate) heartbeat: Duration,
    /// Heartbeat intervals without a word from the broker before it counts as gone.
    pub(crate) liveness: u32,
    /// How long a stopping worker waits for the calls it holds.
    pub(crate) shutdown_grace: Duration,
}

impl Timing {
    /// How long the broker may stay silent.
    fn broker_silence(&self) -> Duration {
        self.heartbeat * self.liveness.max(1)
    }
}

/// Where the worker is in its goodbye.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// DISCONNECT sent; waiting for the broker's acknowledgement and our calls.
    Draining {
        acknowledged: bool,
        until: Instant,
    },
}

/// What the driver must do after [`Link::handle_timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Go on: send, then poll until [`Link::poll_timeout`].
    Continue,
    /// The broker fell silent: open a fresh socket, then call [`Link::connected`].
    Reconnect,
    /// The goodbye is over. `out_of_grace`: calls were still held when the grace period
    /// ended (the driver abandons them, see [`Link::abandon`]).
    Stop { out_of_grace: bool },
}

/// The worker's conversation with one broker.
pub(crate) struct Link {
    timing: Timing,
    ready: ReadyInfo,
    registration: Registration,
    phase: Phase,
    /// The broker counts as gone if nothing arrives before this instant.
    broker_expires: Instant,
    next_heartbeat: Instant,
    /// Calls handed to the executors whose reply has not come back, with the token that
    /// cancels each.
    held: HashMap<Ticket, CancelToken>,
    /// Replies gathered for the next REPLY message.
    replies: ReplyMessage,
    /// Messages ready to send, in order.
    outbox: VecDeque<WorkerMessage>,
    /// Heard from the broker since the connection opened.
    heard: bool,
    /// What the broker's last LOAD said on this connection (none: it does not move
    /// capacity, or has not said yet).
    load: Option<BrokerLoad>,
    /// The ordinary capacity the broker currently has for this worker.
    granted: u32,
    /// A LOAD arrived since [`Link::take_load_news`] last looked.
    load_news: bool,
}

/// What a broker's LOAD says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BrokerLoad {
    /// Calls waiting there that this worker could take.
    pub(crate) backlog: u32,
    /// The broker is stopping.
    pub(crate) stopping: bool,
}

impl Link {
    /// A link that announces `ready`; nothing is said until [`Link::connected`].
    pub(crate) fn new(
        timing: Timing,
        ready: ReadyInfo,
        registration: Registration,
        now: Instant,
    ) -> Link {
        Link {
            timing,
            registration,
            phase: Phase::Serving,
            broker_expires: now + timing.broker_silence(),
            next_heartbeat: now + timing.heartbeat,
            held: HashMap::new(),
            replies: ReplyMessage::new(),
            outbox: VecDeque::new(),
            heard: false,
            load: None,
            granted: ready.capacity,
            load_news: false,
            ready,
        }
    }

    /// A fresh socket is connected: register (a new registration: replies of calls from
    /// before it are dropped, never sent) and restart the clocks.
    pub(crate) fn connected(&mut self, now: Instant) {
        self.outbox.clear();
        self.register();
        self.broker_expires = now + self.timing.broker_silence();
        self.next_heartbeat = now + self.timing.heartbeat;
    }

    /// Sends READY, starting a new registration: the broker that hears it knows none of
    /// the calls this worker still holds, so their replies are dropped here.
    fn register(&mut self) {
        // Their replies will be dropped: the functions may as well stop.
        self.cancel_all();
        // The broker that hears it starts from READY's capacity, and may not move capacity.
        self.heard = false;
        self.load = None;
        self.granted = self.ready.capacity;
        self.registration.renew();
        self.replies = ReplyMessage::new();
        self.outbox
            .push_back(WorkerMessage::Ready(self.ready.clone()));
    }

    /// The current registration's number (calls carry it to the executors).
    pub(crate) fn registration(&self) -> u64 {
        self.registration.current()
    }

    /// The registration itself, for the executors to check a call is still wanted.
    pub(crate) fn registration_handle(&self) -> Registration {
        self.registration.clone()
    }

    /// A message from the broker. Returns the calls of a REQUEST for the driver to run
    /// (each answered through [`Link::reply`], or handed to an executor with
    /// [`Link::handed_off`]).
    pub(crate) fn handle_message(
        &mut self,
        message: BrokerMessage,
        now: Instant,
    ) -> Option<RequestMessage> {
        self.broker_expires = now + self.timing.broker_silence();
        self.heard = true;
        match message {
            BrokerMessage::Request(calls) => return Some(calls),
            BrokerMessage::Heartbeat => {}
            BrokerMessage::Load { backlog, flags } => {
                let stopping = flags & LOAD_STOPPING != 0;
                if stopping && !self.load.is_some_and(|l| l.stopping) {
                    info!("the broker is stopping: its share of this worker's capacity goes to the others");
                }
                self.load = Some(BrokerLoad { backlog, stopping });
                self.load_news = true;
            }
            BrokerMessage::Drain => {
                warn!(held = self.held.len(), "the broker asks this worker to leave: a call it runs is long past its deadline");
                self.begin_shutdown(now);
            }
            BrokerMessage::Cancel(tickets) => {
                let mut cancelled = 0;
                for ticket in &tickets {
                    if let Some(token) = self.held.get(ticket) {
                        token.cancel();
                        cancelled += 1;
                    }
                }
                debug!(
                    asked = tickets.len(),
                    cancelled, "calls cancelled by the broker"
                );
            }
            BrokerMessage::Disconnect => match &mut self.phase {
                Phase::Draining { acknowledged, .. } => *acknowledged = true,
                Phase::Serving => {
                    info!("broker does not know this worker; registering again");
                    self.register();
                }
            },
        }
        None
    }

    /// A reply to send (a call run on the socket thread, or refused there).
    pub(crate) fn reply(&mut self, ticket: Ticket, body: Vec<u8>) {
        self.replies.push(ticket, owned_frame(body));
        if self.replies.is_full() {
            self.flush();
        }
    }

    /// A call went to an executor: its reply comes back through [`Link::finished`];
    /// `cancel` is set if the broker cancels it meanwhile.
    pub(crate) fn handed_off(&mut self, ticket: Ticket, cancel: CancelToken) {
        self.held.insert(ticket, cancel);
    }

    /// An executor finished a call. A call of an earlier registration is not answered.
    pub(crate) fn finished(&mut self, done: Done) {
        self.held.remove(&done.ticket);
        if done.registration != self.registration.current() {
            debug!(
                ticket = done.ticket.0,
                "dropping the reply to a call of an earlier registration"
            );
            return;
        }
        self.reply(done.ticket, done.body);
    }

    /// Calls handed to executors and not finished.
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    /// What this conversation asks of the worker's capacity split (see `credit`):
    /// `static_share` is what a broker that does not move capacity keeps.
    pub(crate) fn demand(&self, static_share: u32) -> Demand {
        let held = self.held.len().min(u32::MAX as usize) as u32;
        match self.load {
            _ if self.phase != Phase::Serving => Demand::Reserved(held),
            Some(load) if !load.stopping => Demand::Active {
                held,
                backlog: load.backlog,
            },
            Some(_) => Demand::Reserved(held),
            None if self.heard => Demand::Reserved(static_share),
            None => Demand::Reserved(held),
        }
    }

    /// Whether a LOAD arrived since the last look: the time to split the capacity again.
    pub(crate) fn take_load_news(&mut self) -> bool {
        std::mem::take(&mut self.load_news)
    }

    /// Gives the broker `capacity` for ordinary calls (CAPACITY), if it moves capacity
    /// and that is not what it has already.
    pub(crate) fn grant(&mut self, capacity: u32) {
        if self.load.is_none() || capacity == self.granted || self.phase != Phase::Serving {
            return;
        }
        debug!(from = self.granted, to = capacity, "moving capacity");
        self.granted = capacity;
        self.outbox.push_back(WorkerMessage::Capacity {
            capacity,
            inline_capacity: self.ready.inline_capacity,
        });
    }

    /// Cancels every call held (their answers will go nowhere).
    fn cancel_all(&mut self) {
        for token in self.held.values() {
            token.cancel();
        }
    }

    /// Whether the goodbye has started.
    pub(crate) fn is_leaving(&self) -> bool {
        self.phase != Phase::Serving
    }

    /// Starts the goodbye (once): gathered replies go out, then DISCONNECT; calls held
    /// may finish within the grace period.
    pub(crate) fn begin_shutdown(&mut self, now: Instant) {
        if self.phase != Phase::Serving {
            return;
        }
        info!(held = self.held.len(), "stopping: leaving the broker");
        self.flush();
        self.outbox.push_back(WorkerMessage::Disconnect);
        self.phase = Phase::Draining {
            acknowledged: false,
            until: now + self.timing.shutdown_grace,
        };
    }

    /// Time passed: says whether to stop or reconnect, and queues a due heartbeat.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Next {
        let broker_gone = now >= self.broker_expires;
        match self.phase {
            Phase::Draining {
                acknowledged,
                until,
            } => {
                if self.held.is_empty() && (acknowledged || broker_gone) {
                    return Next::Stop {
                        out_of_grace: false,
                    };
                }
                if now >= until {
                    return Next::Stop { out_of_grace: true };
                }
            }
            Phase::Serving if broker_gone => {
                warn!("broker silent; reconnecting");
                return Next::Reconnect;
            }
            Phase::Serving => {}
        }
        if now >= self.next_heartbeat {
            self.flush();
            self.outbox.push_back(WorkerMessage::Heartbeat);
            self.next_heartbeat = now + self.timing.heartbeat;
        }
        Next::Continue
    }

    /// The earliest instant [`Link::handle_timeout`] has something to do.
    pub(crate) fn poll_timeout(&self) -> Instant {
        let until = match self.phase {
            Phase::Draining { until, .. } => until,
            Phase::Serving => self.broker_expires,
        };
        self.next_heartbeat.min(self.broker_expires).min(until)
    }

    /// Moves the gathered replies into one REPLY message, ready to send. The driver calls
    /// it once it has nothing more to gather, so that replies travel together.
    pub(crate) fn flush(&mut self) {
        if !self.replies.is_empty() {
            let replies = std::mem::take(&mut self.replies);
            self.outbox.push_back(WorkerMessage::Reply(replies));
        }
    }

    /// The next message to send.
    pub(crate) fn poll_transmit(&mut self) -> Option<WorkerMessage> {
        self.outbox.pop_front()
    }

    /// The grace period ended with calls held: they are abandoned. A new registration
    /// keeps their replies from ever being sent, and a second DISCONNECT tells the broker
    /// the worker is gone now, so it answers those calls (WORKER_LOST: they may have run)
    /// without waiting for heartbeats to stop.
    pub(crate) fn abandon(&mut self) {
        self.cancel_all();
        self.registration.renew();
        self.replies = ReplyMessage::new();
        self.outbox.push_back(WorkerMessage::Disconnect);
    }
}

#[cfg(test)]
mod tests;
