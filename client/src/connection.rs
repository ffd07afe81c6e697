//! The client's socket thread: a thin driver of [`Session`] over one DEALER socket.
//!
//! It polls the socket, the waker and the socket monitor, turns what it finds into
//! session events (calls and cancellations from callers, reply messages, the link going
//! up or down, the time), and sends what the session hands out. Every decision — what
//! leaves when, what is retried, what fails and why — is the session's.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, TryRecvError};
use switchboard_transport::socket::{recv_frames, try_send_frames};
use switchboard_transport::wake::WakeReceiver;
use tracing::warn;

use crate::session::{Counters, LinkEvent, NewCall, RetryPolicy, Session, Transmitted};

/// What caller threads ask of the socket thread.
pub(crate) enum Command {
    /// Send a call and deliver its outcome.
    Call(NewCall),
    /// The caller stopped waiting for this call.
    Cancel(u64),
}

/// The socket thread's state.
pub(crate) struct Connection {
    socket: zmq::Socket,
    monitor: zmq::Socket,
    commands: Receiver<Command>,
    wake: WakeReceiver,
    session: Session,
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
        let session = Session::new(endpoint, RetryPolicy::default(), counters, Instant::now());
        Connection {
            socket,
            monitor,
            commands,
            wake,
            session,
        }
    }

    /// Runs until every client handle is dropped.
    pub(crate) fn run(mut self) {
        loop {
            let wait = self
                .session
                .poll_timeout()
                .saturating_duration_since(Instant::now());
            // With calls waiting to be sent, also wake when the socket can take them.
            let socket_events = if self.session.wants_to_send() {
                zmq::POLLIN | zmq::POLLOUT
            } else {
                zmq::POLLIN
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
            if events && !self.take_events() {
                return;
            }
            self.session.handle_timeout(Instant::now());
            self.send();
        }
    }

    /// Takes every queued command. Returns false when every client handle is gone.
    fn take_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                // Sent once every command is taken: calls made together leave together.
                Ok(Command::Call(call)) => self.session.handle_call(call, Instant::now()),
                Ok(Command::Cancel(id)) => self.session.handle_cancel(id),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Hands the session's messages to ZeroMQ until it has none or the socket is full.
    fn send(&mut self) {
        while let Some(frames) = self.session.poll_transmit() {
            let outcome = match try_send_frames(&self.socket, frames) {
                Ok(()) => Transmitted::Sent,
                Err((zmq::Error::EAGAIN, frames)) if !frames.is_empty() => {
                    Transmitted::WouldBlock(frames)
                }
                Err((e, _)) => Transmitted::Failed(e.to_string()),
            };
            let blocked = matches!(outcome, Transmitted::WouldBlock(_));
            self.session.transmitted(outcome);
            if blocked {
                return;
            }
        }
    }

    /// Hands every waiting reply message to the session. Returns false if the socket failed.
    fn take_replies(&mut self) -> bool {
        loop {
            match recv_frames(&self.socket, zmq::DONTWAIT) {
                Ok(frames) => self.session.handle_reply_message(frames, Instant::now()),
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => return true,
                Err(e) => {
                    warn!(error = %e, "client receive failed; closing");
                    return false;
                }
            }
        }
    }

    /// Hands connection events to the session. Returns false if the socket failed.
    fn take_events(&mut self) -> bool {
        while let Ok(frames) = self.monitor.recv_multipart(zmq::DONTWAIT) {
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
            if matches!(event, LinkEvent::Down { .. }) && !self.take_replies() {
                // Replies that arrived before the connection closed are still queued in
                // the socket (the poll may have looked before they came): they go first.
                return false;
            }
            self.session.handle_link(event, Instant::now());
        }
        true
    }
}
