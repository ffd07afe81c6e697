//! CURVE authentication: a ZAP handler that admits only listed public keys,
//! with separate allow-lists for the client socket and the worker socket.
//!
//! libzmq asks the handler at `inproc://zeromq.zap.01` about every CURVE
//! handshake on a socket with a ZAP domain. Without a handler it would admit
//! anyone who knows the server's public key, so the handler is bound before
//! either socket and the broker refuses to start without both allow-lists.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use switchboard_transport::curve::{encode_key, Key, KeyPair};

use crate::background::Background;
use crate::error::BrokerError;
use tracing::{debug, warn};

/// ZAP domain of the client-facing socket.
pub(crate) const FRONTEND_DOMAIN: &str = "frontend";
/// ZAP domain of the worker-facing socket.
pub(crate) const BACKEND_DOMAIN: &str = "backend";

/// The broker's CURVE identity and who may connect where.
#[derive(Debug, Clone)]
pub struct Security {
    /// The broker's key pair; clients and workers are given its public key.
    pub keys: KeyPair,
    /// Public keys allowed on the frontend (clients).
    pub clients: HashSet<Key>,
    /// Public keys allowed on the backend (workers).
    pub workers: HashSet<Key>,
}

/// Handshakes refused, by socket.
#[derive(Debug, Default)]
pub(crate) struct AuthCounters {
    /// Refused on the frontend (by ZAP, or in a handshake that never reached it).
    pub frontend: Arc<AtomicU64>,
    /// Refused on the backend (same).
    pub backend: Arc<AtomicU64>,
}

/// The running ZAP handler; stops and joins its thread when dropped.
pub(crate) type Authenticator = Background;

/// Binds the ZAP handler in `context` and serves it on a named thread.
pub(crate) fn start(
    context: &zmq::Context,
    security: &Security,
    counters: Arc<AuthCounters>,
) -> Result<Authenticator, BrokerError> {
    let fail = |source| BrokerError::Bind {
        socket: "ZAP handler",
        endpoint: "inproc://zeromq.zap.01".into(),
        source,
    };
    let socket = context.socket(zmq::REP).map_err(fail)?;
    socket.set_linger(0).map_err(fail)?;
    socket.bind("inproc://zeromq.zap.01").map_err(fail)?;
    let (clients, workers) = (security.clients.clone(), security.workers.clone());
    Background::spawn("switchboard-zap", move |stop| {
        while !stop.is_triggered() {
            match socket.poll(zmq::POLLIN, 100) {
                Ok(0) | Err(zmq::Error::EINTR) => continue,
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %e, "ZAP handler poll failed");
                    return;
                }
            }
            let Ok(request) = socket.recv_multipart(0) else {
                continue;
            };
            let reply = decide(&request, &clients, &workers, &counters);
            if let Err(e) = socket.send_multipart(reply, 0) {
                warn!(error = %e, "ZAP handler cannot answer");
            }
        }
    })
    .map_err(|source| BrokerError::Thread {
        name: "switchboard-zap",
        source,
    })
}

/// Answers one ZAP request (RFC 27): 200 for a listed key in its domain, 400 otherwise.
fn decide(
    request: &[Vec<u8>],
    clients: &HashSet<Key>,
    workers: &HashSet<Key>,
    counters: &AuthCounters,
) -> Vec<Vec<u8>> {
    let frame = |i: usize| request.get(i).map(Vec::as_slice).unwrap_or_default();
    let (version, request_id, domain, address, mechanism) =
        (frame(0), frame(1), frame(2), frame(3), frame(5));
    let key: Option<Key> = frame(6).try_into().ok();
    let (allowed, counter) = match domain {
        b"frontend" => (clients, &counters.frontend),
        b"backend" => (workers, &counters.backend),
        _ => (&HashSet::new(), &counters.frontend),
    };
    let accepted =
        version == b"1.0" && mechanism == b"CURVE" && key.is_some_and(|k| allowed.contains(&k));
    let shown_key = key
        .map(|k| encode_key(&k))
        .unwrap_or_else(|| "(none)".into());
    let address = String::from_utf8_lossy(address);
    let domain = String::from_utf8_lossy(domain);
    if accepted {
        debug!(%address, %domain, key = %shown_key, "CURVE peer admitted");
    } else {
        counter.fetch_add(1, Ordering::Relaxed);
        warn!(%address, %domain, key = %shown_key, "CURVE peer refused: key not on this socket's allow-list");
    }
    let (status, text): (&[u8], &[u8]) = if accepted {
        (b"200", b"OK")
    } else {
        (b"400", b"key not allowed")
    };
    vec![
        b"1.0".to_vec(),
        request_id.to_vec(),
        status.to_vec(),
        text.to_vec(),
        if accepted {
            shown_key.into_bytes()
        } else {
            Vec::new()
        },
        Vec::new(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(domain: &str, key: &Key) -> Vec<Vec<u8>> {
        vec![
            b"1.0".to_vec(),
            b"7".to_vec(),
            domain.as_bytes().to_vec(),
            b"127.0.0.1".to_vec(),
            Vec::new(),
            b"CURVE".to_vec(),
            key.to_vec(),
        ]
    }

    #[test]
    fn each_socket_admits_only_its_own_allow_list() {
        let client = [1u8; 32];
        let worker = [2u8; 32];
        let clients = HashSet::from([client]);
        let workers = HashSet::from([worker]);
        let counters = AuthCounters::default();
        let status =
            |domain, key| decide(&request(domain, key), &clients, &workers, &counters)[2].clone();
        assert_eq!(status("frontend", &client), b"200");
        assert_eq!(status("backend", &worker), b"200");
        assert_eq!(
            status("backend", &client),
            b"400",
            "a client key cannot pose as a worker"
        );
        assert_eq!(status("frontend", &worker), b"400");
        assert_eq!(status("elsewhere", &client), b"400");
        assert_eq!(status("frontend", &[9u8; 32]), b"400");
        assert_eq!(counters.frontend.load(Ordering::Relaxed), 3);
        assert_eq!(counters.backend.load(Ordering::Relaxed), 1);
        let reply = decide(&request("frontend", &client), &clients, &workers, &counters);
        assert_eq!(reply[1], b"7", "the request id is echoed");
        let short = vec![b"1.0".to_vec()];
        assert_eq!(decide(&short, &clients, &workers, &counters)[2], b"400");
    }
}
