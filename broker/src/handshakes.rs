//! Handshakes that fail before ZAP is asked: a peer without CURVE, or one that uses a
//! wrong server key, never reaches the ZAP handler, so a socket monitor counts and logs
//! them (on a CURVE broker only: there every failed handshake is a refused peer).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tracing::warn;

use crate::background::Background;
use crate::error::BrokerError;

/// How long one wait for a monitor event lasts, so a stop request is noticed.
const POLL_MS: i64 = 100;

/// Watches `socket`'s connections from a named thread until dropped, adding every
/// handshake refused without ZAP (no CURVE, wrong server key, protocol garbage) to
/// `refusals` and logging it with the peer's address when it can be told.
pub(crate) fn watch(
    context: &zmq::Context,
    socket: &zmq::Socket,
    name: &'static str,
    refusals: Arc<AtomicU64>,
) -> Result<Background, BrokerError> {
    let endpoint = format!("inproc://switchboard-handshakes-{name}");
    let fail = |source| BrokerError::Bind {
        socket: name,
        endpoint: endpoint.clone(),
        source,
    };
    let events = zmq::SocketEvent::ACCEPTED as i32
        | zmq::SocketEvent::DISCONNECTED as i32
        | zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32
        | zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL as i32
        | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as i32
        | zmq::SocketEvent::HANDSHAKE_FAILED_AUTH as i32;
    socket.monitor(&endpoint, events).map_err(fail)?;
    let events = context.socket(zmq::PAIR).map_err(fail)?;
    events.set_linger(0).map_err(fail)?;
    events.connect(&endpoint).map_err(fail)?;
    Background::spawn("switchboard-handshakes", move |stop| {
        let mut watcher = Watcher::default();
        while !stop.is_triggered() {
            match events.poll(zmq::POLLIN, POLL_MS) {
                Ok(0) | Err(zmq::Error::EINTR) => continue,
                Ok(_) => {}
                Err(_) => return,
            }
            let Ok(frames) = events.recv_multipart(zmq::DONTWAIT) else {
                continue;
            };
            let Some((event, value)) = frames.first().and_then(|f| parse_event(f)) else {
                continue;
            };
            if let Some(failure) = watcher.observe(event, value) {
                refusals.fetch_add(1, Ordering::Relaxed);
                match failure.peers.as_slice() {
                    [peer] => warn!(socket = name, %peer, reason = failure.reason, "handshake refused before authentication"),
                    peers => warn!(socket = name, peers = %peers.join(", "), reason = failure.reason, "handshake refused before authentication (one of these peers)"),
                }
            }
        }
    })
    .map_err(|source| BrokerError::Thread {
        name: "switchboard-handshakes",
        source,
    })
}

/// A monitor event's first frame: the event number (2 bytes) and its value (4 bytes).
fn parse_event(frame: &[u8]) -> Option<(u16, u32)> {
    let event = u16::from_ne_bytes(frame.get(..2)?.try_into().ok()?);
    let value = u32::from_ne_bytes(frame.get(2..6)?.try_into().ok()?);
    Some((event, value))
}

/// A refused handshake: why, and which peers it may have been.
#[derive(Debug, PartialEq, Eq)]
struct Failure {
    reason: &'static str,
    peers: Vec<String>,
}

/// Connections accepted whose handshake has not ended yet, oldest first.
#[derive(Default)]
struct Watcher {
    awaiting: Vec<(RawFd, String)>,
}

impl Watcher {
    /// Takes one event; returns the failure it reports, if it reports one that ZAP did
    /// not already count (an AUTH failure is ZAP's refusal, counted there).
    fn observe(&mut self, event: u16, value: u32) -> Option<Failure> {
        let event = event as u32;
        let fd = value as RawFd;
        if event == zmq_event(zmq::SocketEvent::ACCEPTED) {
            self.awaiting.push((fd, peer_address(fd)));
            return None;
        }
        if event == zmq_event(zmq::SocketEvent::DISCONNECTED) {
            self.awaiting.retain(|(f, _)| *f != fd);
            return None;
        }
        // Handshake events carry no descriptor: with one connection waiting it is that
        // one; with several, the oldest most likely, but all of them are named.
        let peers: Vec<String> = self.awaiting.iter().map(|(_, a)| a.clone()).collect();
        if !self.awaiting.is_empty() {
            self.awaiting.remove(0);
        }
        let reason = match event {
            e if e == zmq_event(zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL) => "no detail",
            e if e == zmq_event(zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL) => {
                "protocol error (no CURVE, or a wrong server key)"
            }
            _ => return None,
        };
        Some(Failure { reason, peers })
    }
}

fn zmq_event(event: zmq::SocketEvent) -> u32 {
    event as u32
}

/// The remote address of an accepted connection, or `?` if it cannot be read.
fn peer_address(fd: RawFd) -> String {
    let Ok(address) = nix::sys::socket::getpeername::<nix::sys::socket::SockaddrStorage>(fd) else {
        return "?".to_owned();
    };
    if let Some(v4) = address.as_sockaddr_in() {
        v4.to_string()
    } else if let Some(v6) = address.as_sockaddr_in6() {
        v6.to_string()
    } else {
        "?".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: zmq::SocketEvent) -> u16 {
        event as u16
    }

    #[test]
    fn a_failure_names_its_peer_when_only_one_is_waiting() {
        let mut watcher = Watcher::default();
        watcher.awaiting.push((7, "10.0.0.7:40000".into()));
        let failure = watcher
            .observe(ev(zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL), 0)
            .expect("counted");
        assert_eq!(failure.peers, ["10.0.0.7:40000"]);
        assert!(watcher.awaiting.is_empty());
        // ZAP's own refusals are counted by ZAP; successes are not failures.
        watcher.awaiting.push((8, "a".into()));
        assert_eq!(
            watcher.observe(ev(zmq::SocketEvent::HANDSHAKE_FAILED_AUTH), 0),
            None
        );
        watcher.awaiting.push((9, "b".into()));
        assert_eq!(
            watcher.observe(ev(zmq::SocketEvent::HANDSHAKE_SUCCEEDED), 0),
            None
        );
        watcher.observe(ev(zmq::SocketEvent::DISCONNECTED), 9);
        assert!(watcher.awaiting.is_empty());
    }
}
