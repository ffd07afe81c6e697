//! Everything the broker can be told, with defaults suited to a local run.

use crate::auth::Security;
use crate::router::RouterConfig;
use std::time::Duration;
use switchboard_protocol::socket::SocketLimits;

/// Broker settings. `main` fills them from flags and environment variables.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Endpoint clients connect to, e.g. `tcp://*:5555`.
    pub frontend: String,
    /// Endpoint workers connect to, e.g. `tcp://*:5556`.
    pub backend: String,
    /// Routing tunables (queue bound, deadlines, heartbeat liveness, body limit).
    pub router: RouterConfig,
    /// Socket options for both sockets (linger, message size, high-water marks).
    pub limits: SocketLimits,
    /// How long a stopping broker waits for calls already accepted.
    pub shutdown_grace: Duration,
    /// CURVE encryption and authentication; plain when `None`.
    pub security: Option<Security>,
    /// Reply messages libzmq queues for one client; past them, replies wait in the broker.
    pub client_send_hwm: i32,
    /// Bytes of replies the broker keeps for one client that is not reading; more are
    /// dropped and counted.
    pub client_backlog_bytes: usize,
    /// Bytes of replies the broker keeps for all such clients together.
    pub backlog_bytes: usize,
    /// Address of the HTTP endpoint for `/metrics` and `/health` (e.g. `0.0.0.0:9100`); none if unset.
    pub metrics: Option<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            frontend: "tcp://*:5555".into(),
            backend: "tcp://*:5556".into(),
            router: RouterConfig::default(),
            limits: SocketLimits::default(),
            shutdown_grace: Duration::from_secs(10),
            client_send_hwm: 256,
            client_backlog_bytes: 64 * 1024 * 1024,
            backlog_bytes: 1024 * 1024 * 1024,
            metrics: None,
            security: None,
        }
    }
}
