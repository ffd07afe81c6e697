//! Everything a worker can be told, and the environment variables that tell it.

use std::path::PathBuf;
use std::time::Duration;
use switchboard_transport::curve::ClientCurve;
use switchboard_transport::socket::SocketLimits;

use crate::error::WorkerError;

/// The environment variables [`WorkerConfig::from_env`] reads (the `worker` binary reads
/// the same ones as fallbacks for its flags).
pub mod vars {
    /// The broker's backend endpoint.
    pub const BROKER: &str = "SWITCHBOARD_BROKER";
    /// Executor threads.
    pub const THREADS: &str = "SWITCHBOARD_THREADS";
    /// Calls accepted beyond the threads.
    pub const PREFETCH: &str = "SWITCHBOARD_PREFETCH";
    /// Calls of inline functions accepted at once.
    pub const INLINE_CAPACITY: &str = "SWITCHBOARD_INLINE_CAPACITY";
    /// Heartbeat interval in milliseconds.
    pub const HEARTBEAT_MS: &str = "SWITCHBOARD_HEARTBEAT_MS";
    /// How often broker host names are looked up again, in milliseconds.
    pub const RESOLVE_INTERVAL_MS: &str = "SWITCHBOARD_RESOLVE_INTERVAL_MS";
    /// Silent broker intervals before reconnecting.
    pub const HEARTBEAT_LIVENESS: &str = "SWITCHBOARD_HEARTBEAT_LIVENESS";
    /// How long a stopping worker finishes its calls, in milliseconds.
    pub const SHUTDOWN_GRACE_MS: &str = "SWITCHBOARD_SHUTDOWN_GRACE_MS";
    /// Largest reply body, in bytes.
    pub const MAX_REPLY_BYTES: &str = "SWITCHBOARD_MAX_REPLY_BYTES";
    /// Largest frame accepted from the broker, in bytes.
    pub const MAX_MESSAGE_BYTES: &str = "SWITCHBOARD_MAX_MESSAGE_BYTES";
    /// The name announced to the broker.
    pub const WORKER_NAME: &str = "SWITCHBOARD_WORKER_NAME";
    /// The broker's CURVE public key (Z85).
    pub const CURVE_SERVER_KEY: &str = "SWITCHBOARD_CURVE_SERVER_KEY";
    /// A file holding the broker's CURVE public key.
    pub const CURVE_SERVER_KEY_FILE: &str = "SWITCHBOARD_CURVE_SERVER_KEY_FILE";
    /// This worker's CURVE key pair file.
    pub const CURVE_KEY_FILE: &str = "SWITCHBOARD_CURVE_KEY_FILE";
}

/// Worker settings. `main` fills them from flags and environment variables.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The broker's backend endpoint, e.g. `tcp://127.0.0.1:5556`; several brokers as a
    /// comma-separated list (`tcp://b1:5556,tcp://b2:5556`), or a host name that resolves
    /// to several addresses (one broker each, looked up again every `resolve_interval`):
    /// the worker registers with each and moves its capacity to where calls wait.
    pub broker: String,
    /// How often host names in `broker` are looked up again (brokers that appeared get a
    /// connection, brokers that are gone are left).
    pub resolve_interval: Duration,
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
    /// A name for operators, announced in READY and listed by `system.workers`
    /// (default: `$HOSTNAME`, else `worker-<pid>`).
    pub name: String,
    /// CURVE settings when the broker requires them.
    pub curve: Option<ClientCurve>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            broker: "tcp://127.0.0.1:5556".into(),
            resolve_interval: Duration::from_secs(5),
            threads: 4,
            prefetch: 16,
            inline_capacity: 1024,
            heartbeat: Duration::from_secs(1),
            heartbeat_liveness: 3,
            shutdown_grace: Duration::from_secs(10),
            max_reply_bytes: 32 * 1024 * 1024,
            limits: SocketLimits::default(),
            name: default_name(),
            curve: None,
        }
    }
}

/// `$HOSTNAME` (a container's or pod's name), else `worker-<pid>`.
pub fn default_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("worker-{}", std::process::id()))
}

impl WorkerConfig {
    /// The broker endpoints [`WorkerConfig::broker`] lists, in order, without duplicates.
    pub fn brokers(&self) -> Vec<String> {
        let mut endpoints = switchboard_transport::socket::endpoint_list(&self.broker);
        if endpoints.is_empty() {
            endpoints.push(WorkerConfig::default().broker);
        }
        endpoints
    }

    /// The configuration the `SWITCHBOARD_*` environment variables describe (see [`vars`]
    /// and docs/OPERATIONS.md); unset variables keep their [`Default`] value. A variable
    /// that does not parse is an error that names it.
    pub fn from_env() -> Result<WorkerConfig, WorkerError> {
        WorkerConfig::from_vars(|name| std::env::var(name).ok())
    }

    /// [`WorkerConfig::from_env`] over any source of variables.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<WorkerConfig, WorkerError> {
        fn parse<T: std::str::FromStr>(
            get: &impl Fn(&str) -> Option<String>,
            name: &'static str,
        ) -> Result<Option<T>, WorkerError>
        where
            T::Err: std::fmt::Display,
        {
            let Some(text) = get(name).filter(|t| !t.trim().is_empty()) else {
                return Ok(None);
            };
            text.trim()
                .parse()
                .map(Some)
                .map_err(|e: T::Err| WorkerError::Config {
                    variable: name,
                    value: text.clone(),
                    reason: e.to_string(),
                })
        }
        let mut config = WorkerConfig::default();
        if let Some(broker) = get(vars::BROKER).filter(|b| !b.is_empty()) {
            config.broker = broker;
        }
        if let Some(threads) = parse(&get, vars::THREADS)? {
            config.threads = threads;
        }
        if let Some(prefetch) = parse(&get, vars::PREFETCH)? {
            config.prefetch = prefetch;
        }
        if let Some(inline) = parse(&get, vars::INLINE_CAPACITY)? {
            config.inline_capacity = inline;
        }
        if let Some(ms) = parse(&get, vars::HEARTBEAT_MS)? {
            config.heartbeat = Duration::from_millis(ms);
        }
        if let Some(ms) = parse(&get, vars::RESOLVE_INTERVAL_MS)? {
            config.resolve_interval = Duration::from_millis(ms);
        }
        if let Some(liveness) = parse(&get, vars::HEARTBEAT_LIVENESS)? {
            config.heartbeat_liveness = liveness;
        }
        if let Some(ms) = parse(&get, vars::SHUTDOWN_GRACE_MS)? {
            config.shutdown_grace = Duration::from_millis(ms);
        }
        if let Some(bytes) = parse(&get, vars::MAX_REPLY_BYTES)? {
            config.max_reply_bytes = bytes;
        }
        if let Some(bytes) = parse(&get, vars::MAX_MESSAGE_BYTES)? {
            config.limits.max_message_bytes = bytes;
        }
        if let Some(name) = get(vars::WORKER_NAME).filter(|n| !n.is_empty()) {
            config.name = name;
        }
        let server_key = get(vars::CURVE_SERVER_KEY).filter(|k| !k.is_empty());
        let server_key_file = get(vars::CURVE_SERVER_KEY_FILE)
            .filter(|f| !f.is_empty())
            .map(PathBuf::from);
        let key_file = get(vars::CURVE_KEY_FILE)
            .filter(|f| !f.is_empty())
            .map(PathBuf::from);
        config.curve = ClientCurve::load(
            server_key.as_deref(),
            server_key_file.as_deref(),
            key_file.as_deref(),
        )?;
        Ok(config.validated())
    }

    /// The configuration with every value brought into its working range: at least one
    /// thread, a heartbeat of at least 10 ms, a liveness of at least 1. [`crate::Worker::run`]
    /// applies it, so a configuration built by hand gets the same treatment.
    pub fn validated(mut self) -> WorkerConfig {
        self.threads = self.threads.max(1);
        self.heartbeat = self.heartbeat.max(Duration::from_millis(10));
        self.heartbeat_liveness = self.heartbeat_liveness.max(1);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_variables_fill_the_config_and_bad_ones_are_named() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let config = WorkerConfig::from_vars(vars(&[
            (vars::BROKER, "tcp://broker:5556"),
            (vars::THREADS, "8"),
            (vars::HEARTBEAT_MS, "250"),
            (vars::SHUTDOWN_GRACE_MS, "2000"),
            (vars::WORKER_NAME, "pod-7"),
            (vars::PREFETCH, ""),
        ]))
        .unwrap();
        assert_eq!(config.broker, "tcp://broker:5556");
        assert_eq!(config.threads, 8);
        assert_eq!(config.heartbeat, Duration::from_millis(250));
        assert_eq!(config.shutdown_grace, Duration::from_secs(2));
        assert_eq!(config.name, "pod-7");
        assert_eq!(config.prefetch, WorkerConfig::default().prefetch);
        let error = WorkerConfig::from_vars(vars(&[(vars::THREADS, "four")])).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("SWITCHBOARD_THREADS") && text.contains("four"),
            "{text}"
        );
        assert!(!WorkerConfig::default().name.is_empty());
    }
}
