//! Everything a worker can be told.

use std::time::Duration;
use switchboard_protocol::curve::ClientCurve;
use switchboard_protocol::socket::SocketLimits;

/// Worker settings. `main` fills them from flags and environment variables.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The broker's backend endpoint, e.g. `tcp://127.0.0.1:5556`.
    pub broker: String,
    /// Executor threads: how many calls run at once.
    pub threads: usize,
    /// Calls the worker accepts beyond its threads, waiting for a free thread. The broker
    /// sees `threads + prefetch` as the worker's capacity. More prefetch hides the round
    /// trip to the broker for short calls; less keeps calls in the broker's queue, where
    /// any worker that frees up first can take them.
    pub prefetch: usize,
    /// Calls of `.inline()` functions the worker accepts at once, on top of
    /// `threads + prefetch`: they run on the socket thread as they arrive, so they
    /// need no executor slot, and a deep window keeps them flowing.
    pub inline_capacity: usize,
    /// How often to send heartbeats (announced to the broker, which uses it both ways).
    pub heartbeat: Duration,
    /// Heartbeats from the broker that may be missed before reconnecting.
    pub heartbeat_liveness: u32,
    /// How long a stopping worker waits for the calls it holds.
    pub shutdown_grace: Duration,
    /// Largest reply body sent, in bytes (larger: PAYLOAD_TOO_LARGE).
    pub max_reply_bytes: usize,
    /// Socket options (linger, message size, high-water marks).
    pub limits: SocketLimits,
    /// A name for operators, announced in READY and listed by `system.workers`.
    pub name: String,
    /// CURVE settings when the broker requires them.
    pub curve: Option<ClientCurve>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            broker: "tcp://127.0.0.1:5556".into(),
            threads: 4,
            prefetch: 16,
            inline_capacity: 1024,
            heartbeat: Duration::from_secs(1),
            heartbeat_liveness: 3,
            shutdown_grace: Duration::from_secs(10),
            max_reply_bytes: 32 * 1024 * 1024,
            limits: SocketLimits::default(),
            name: String::new(),
            curve: None,
        }
    }
}
