//! Everything the broker can be told, with defaults suited to a local run.

use crate::auth::Security;
use crate::router::RouterConfig;
use std::time::Duration;
use switchboard_transport::socket::SocketLimits;

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

impl BrokerConfig {
    /// The configuration with every value brought into its working range (at least one
    /// heartbeat of liveness, one attempt, one queued reply message per client, durations
    /// of at most a year so that no deadline overflows the clock).
    /// [`crate::Broker::bind`] applies it, so a configuration built by hand gets the same
    /// treatment as the binary's flags.
    pub fn validated(mut self) -> BrokerConfig {
        self.router.heartbeat_liveness = self.router.heartbeat_liveness.max(1);
        self.router.max_attempts = self.router.max_attempts.max(1);
        self.client_send_hwm = self.client_send_hwm.max(1);
        let year = Duration::from_secs(365 * 24 * 3600);
        let router = &mut self.router;
        router.max_timeout = router.max_timeout.min(year);
        router.default_timeout = router.default_timeout.min(year);
        router.hung_after = router.hung_after.min(year);
        self
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_brings_values_into_their_working_range() {
        let mut config = BrokerConfig::default();
        config.router.heartbeat_liveness = 0;
        config.router.max_attempts = 0;
        config.client_send_hwm = -5;
        let config = config.validated();
        assert_eq!(config.router.heartbeat_liveness, 1);
        assert_eq!(config.router.max_attempts, 1);
        assert_eq!(config.client_send_hwm, 1);
    }
}
