//! The client's socket thread: a thin driver of one [`Session`] per broker, each over its
//! own DEALER socket.
//!
//! It polls the sockets, the waker and the socket monitors, turns what it finds into
//! session events (calls and cancellations from callers, reply messages, links going up
//! or down, the time), and sends what each session hands out. Every decision about one
//! broker — what leaves when, what is retried, what fails and why — is its session's; the
//! driver only decides which broker a call goes to ([`Brokers`]).

use std::time::Instant;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, TryRecvError};
use switchboard_transport::resolve::Watcher;
use switchboard_transport::socket::{recv_frames, try_send_frames};
use switchboard_transport::wake::WakeReceiver;
use tracing::{info, warn};

use crate::balance::Brokers;
use crate::error::ConnectError;
use crate::session::{LinkEvent, NewCall, Session, Transmitted};

/// What caller threads ask of the socket thread.
pub(crate) enum Command {
    /// Send a call and deliver its outcome.
    Call(Routed),
    /// The caller stopped waiting for this call.
    Cancel(u64),
}

/// A call and where it must go.
pub(crate) struct Routed {
    /// The call.
    pub(crate) call: NewCall,
    /// Send it to the broker that holds this call (a cancellation must reach the broker
    /// running the call it names); any broker if none does.
    pub(crate) with_call: Option<u64>,
}

/// One broker: its socket, the monitor of that socket, and its session.
pub(crate) struct BrokerLink {
    /// The DEALER socket connected to the broker's frontend.
    pub(crate) socket: zmq::Socket,
    /// A PAIR socket connected to the socket's monitor.
    pub(crate) monitor: zmq::Socket,
    /// The broker's calls.
    pub(crate) session: Session,
}

/// Opens the connection to a broker that appeared in the client's list.
pub(crate) type OpenLink = Box<dyn Fn(&str) -> Result<BrokerLink, ConnectError> + Send>;

/// The socket thread's state.
pub(crate) struct Connection {
    brokers: Brokers<BrokerLink>,
    commands: Receiver<Command>,
    wake: WakeReceiver,
    /// With a host name in the list: the brokers it stands for as they change, and how to
    /// connect to a new one.
    follow: Option<(Watcher, OpenLink)>,
    /// Shared with the callers' side: there are several brokers (requests then ask for
    /// notices).
    several: Arc<AtomicBool>,
}

impl Connection {
    /// Drives `links` (one per broker, at least one).
    pub(crate) fn new(
        links: Vec<BrokerLink>,
        commands: Receiver<Command>,
        wake: WakeReceiver,
        follow: Option<(Watcher, OpenLink)>,
        several: Arc<AtomicBool>,
    ) -> Connection {
        let brokers = Brokers::new(links);
        several.store(brokers.several(), Ordering::Relaxed);
        Connection {
            brokers,
            commands,
            wake,
            follow,
            several,
        }
    }

    /// Follows the brokers the list stands for now: a new one gets a connection, one that
    /// left gets no new calls and is forgotten once its calls have ended.
    fn follow_brokers(&mut self) {
        let Some((watcher, open)) = &self.follow else {
            return;
        };
        if let Some(found) = watcher.latest() {
            for broker in self.brokers.iter_mut() {
                let session = &mut broker.session;
                if !session.is_retired() && !found.iter().any(|e| e == session.endpoint()) {
                    info!(broker = %session.endpoint(), "broker no longer listed; no new calls go to it");
                    session.retire();
                }
            }
            for endpoint in found {
                let served = self
                    .brokers
                    .iter()
                    .any(|b| !b.session.is_retired() && b.session.endpoint() == endpoint);
                if served {
                    continue;
                }
                match open(&endpoint) {
                    Ok(link) => {
                        info!(broker = %endpoint, "broker listed; connecting");
                        self.brokers.push(link);
                    }
                    Err(error) => {
                        warn!(broker = %endpoint, %error, "cannot connect to a listed broker")
                    }
                }
            }
        }
        self.brokers.drop_finished();
        self.several
            .store(self.brokers.several(), Ordering::Relaxed);
    }

    /// Runs until every client handle is dropped.
    pub(crate) fn run(mut self) {
        loop {
            // Before the poll: the set of brokers polled below stays as it is until the
            // poll's answers are read.
            self.follow_brokers();
            let now = Instant::now();
            let wait = self
                .brokers
                .iter()
                .map(|b| b.session.poll_timeout())
                .min()
                .unwrap_or(now)
                .saturating_duration_since(now);
            let mut items = Vec::with_capacity(2 * self.brokers.len() + 1);
            items.push(self.wake.poll_item());
            for broker in self.brokers.iter() {
                // With calls waiting to be sent, also wake when the socket can take them.
                let socket_events = if broker.session.wants_to_send() {
                    zmq::POLLIN | zmq::POLLOUT
                } else {
                    zmq::POLLIN
                };
                items.push(broker.socket.as_poll_item(socket_events));
                items.push(broker.monitor.as_poll_item(zmq::POLLIN));
            }
            if let Err(e) = zmq::poll(&mut items, wait.as_millis() as i64 + 1) {
                if e != zmq::Error::EINTR {
                    warn!(error = %e, "client poll failed; closing");
                    return;
                }
            }
            let ready: Vec<bool> = items.iter().map(|i| i.is_readable()).collect();
            drop(items);
            if ready[0] {
                self.wake.drain();
            }
            // Commands first, then replies: a reply never arrives before its call is known.
            if !self.take_commands() {
                return;
            }
            for (index, broker) in self.brokers.iter_mut().enumerate() {
                let (replies, events) = (ready[1 + 2 * index], ready[2 + 2 * index]);
                if replies && !take_replies(broker) {
                    return;
                }
                if events && !take_events(broker, self.follow.as_ref().map(|(w, _)| w)) {
                    return;
                }
                broker.session.handle_timeout(Instant::now());
            }
            self.brokers.move_stranded_calls();
            for broker in self.brokers.iter_mut() {
                send(broker);
            }
        }
    }

    /// Takes every queued command. Returns false when every client handle is gone.
    fn take_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                // Sent once every command is taken: calls made together leave together.
                Ok(Command::Call(Routed { call, with_call })) => {
                    let broker = with_call
                        .and_then(|id| self.brokers.position(|b| b.session.holds(id)))
                        .unwrap_or_else(|| self.brokers.choose());
                    self.brokers[broker]
                        .session
                        .handle_call(call, Instant::now());
                }
                Ok(Command::Cancel(id)) => {
                    for broker in self.brokers.iter_mut() {
                        broker.session.handle_cancel(id);
                    }
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }
}

/// Hands a session's messages to ZeroMQ until it has none or the socket is full.
fn send(broker: &mut BrokerLink) {
    while let Some(frames) = broker.session.poll_transmit() {
        let outcome = match try_send_frames(&broker.socket, frames) {
            Ok(()) => Transmitted::Sent,
            Err((zmq::Error::EAGAIN, frames)) if !frames.is_empty() => {
                Transmitted::WouldBlock(frames)
            }
            Err((e, _)) => Transmitted::Failed(e.to_string()),
        };
        let blocked = matches!(outcome, Transmitted::WouldBlock(_));
        broker.session.transmitted(outcome);
        if blocked {
            return;
        }
    }
}

/// Hands every waiting reply message to the session. Returns false if the socket failed.
fn take_replies(broker: &mut BrokerLink) -> bool {
    loop {
        match recv_frames(&broker.socket, zmq::DONTWAIT) {
            Ok(frames) => broker.session.handle_reply_message(frames, Instant::now()),
            Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => return true,
            Err(e) => {
                warn!(error = %e, "client receive failed; closing");
                return false;
            }
        }
    }
}

/// Hands connection events to the session (and asks `watcher` for a lookup when a
/// connection drops: the broker may be back at another address). Returns false if the
/// socket failed.
fn take_events(broker: &mut BrokerLink, watcher: Option<&Watcher>) -> bool {
    while let Ok(frames) = broker.monitor.recv_multipart(zmq::DONTWAIT) {
        let event = frames
            .first()
            .and_then(|f| f.get(..2))
            .map(|b| u16::from_ne_bytes([b[0], b[1]]));
        let Some(event) = event.map(zmq::SocketEvent::from_raw) else {
            continue;
        };
        let event = match event {
            zmq::SocketEvent::HANDSHAKE_SUCCEEDED => LinkEvent::Up,
            zmq::SocketEvent::DISCONNECTED => LinkEvent::Down { failure: None },
            zmq::SocketEvent::HANDSHAKE_FAILED_AUTH => LinkEvent::Down {
                failure: Some("the broker refused this client's CURVE key (is it on the broker's allow-list?)"),
            },
            zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL => LinkEvent::Down {
                failure: Some("the handshake failed: the two sides do not speak the same security mechanism (CURVE on one side only?)"),
            },
            zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL => LinkEvent::Down {
                failure: Some("the handshake with the broker failed (with CURVE: is the broker's public key right?)"),
            },
            _ => continue,
        };
        if matches!(event, LinkEvent::Down { .. }) {
            if let Some(watcher) = watcher {
                watcher.look_again();
            }
            if !take_replies(broker) {
                // Replies that arrived before the connection closed are still queued in
                // the socket (the poll may have looked before they came): they go first.
                return false;
            }
        }
        broker.session.handle_link(event, Instant::now());
    }
    true
}
