//! Switchboard worker: hosts Rust functions and runs calls from the broker.
//!
//! Register functions by name in a [`Registry`]; arguments arrive as
//! MessagePack and are decoded through serde straight into the function's
//! parameter types, and the return value travels back the same way. A
//! [`Worker`] connects to the broker's backend, announces the registry, and
//! runs calls on a pool of executor threads while one socket thread keeps
//! talking to the broker (heartbeats go on during long calls).
//!
//! With the `serve` feature (logs on stderr, graceful stop on SIGTERM/SIGINT):
//!
//! ```ignore
//! use switchboard_worker::Registry;
//! let mut registry = Registry::new();
//! registry.register("add", |a: i64, b: i64| a + b).doc("adds two integers");
//! // Settings from SWITCHBOARD_* variables, logs on stderr, graceful stop on SIGTERM:
//! switchboard_worker::serve(registry).unwrap();
//! ```
//!
//! For more control, build a [`WorkerConfig`] (or start from [`WorkerConfig::from_env`])
//! and call [`Worker::run`] with your own [`Shutdown`] (or, with the `serve` feature,
//! `Worker::run_until_signal`).
//!
//! # Layout
//! - `registry` — [`Registry`], typed functions erased to "body in, reply out".
//! - `executor` — the executor thread pool and its bounded job channel.
//! - `isolation` — functions run in a child process the worker can kill.
//! - `context` — [`CallContext`]: a running function's deadline, call id and
//!   [`CancelToken`].
//! - `link` — the conversation with the broker as a state machine with no socket: READY,
//!   heartbeats, coalesced replies, re-registering, reconnecting, the goodbye.
//! - `worker` — [`Worker`], the socket thread: drives the link, runs inline calls.
//! - `config` — [`WorkerConfig`].
//! - `error` — [`WorkerError`].

mod config;
mod context;
mod credit;
mod error;
mod executor;
mod isolation;
mod link;
mod registry;
mod worker;

pub use config::{default_name, vars, WorkerConfig};
pub use context::{CallContext, CancelToken};
pub use error::WorkerError;
pub use registry::{IntoFallibleFunction, IntoFunction, Kwargs, Registration, Registry};
pub use switchboard_protocol::{ErrorCode, RemoteError, Timestamp, Value};
pub use switchboard_transport::Shutdown;
pub use worker::Worker;

/// Serves `registry` the way the `worker` binary serves its demo functions: settings from
/// the `SWITCHBOARD_*` environment variables ([`WorkerConfig::from_env`]), logs on stderr
/// filtered by `RUST_LOG` (JSON lines with `SWITCHBOARD_LOG_FORMAT=json`) unless the
/// program set up `tracing` itself, and a graceful leave on SIGTERM or SIGINT.
///
/// Needs the `serve` feature.
///
/// ```ignore
/// let mut registry = switchboard_worker::Registry::new();
/// registry.register("add", |a: i64, b: i64| a + b);
/// switchboard_worker::serve(registry).unwrap();
/// ```
#[cfg(feature = "serve")]
pub fn serve(registry: Registry) -> Result<(), WorkerError> {
    switchboard_transport::process::init_logging("info");
    let config = WorkerConfig::from_env()?;
    tracing::info!(name = %config.name, broker = %config.broker, "worker starting");
    Worker::new(registry, config).run_until_signal()
}
