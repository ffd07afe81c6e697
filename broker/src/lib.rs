//! Switchboard broker: routes calls from clients to the workers that host them.
//!
//! Clients connect to the frontend ROUTER socket, workers to the backend ROUTER
//! socket. One thread polls both; routing decisions are made by a plain state
//! machine with no sockets in it. Call bodies are forwarded as they arrived and
//! never decoded.
//!
//! The public surface is small: [`BrokerConfig`] (with [`RouterConfig`] and
//! [`Security`]) says what to bind and how to route, [`Broker::bind`] binds, and
//! [`Broker::run`] (or [`run`]) serves until a [`Shutdown`] flag is set, returning the
//! lifetime's [`RouterStats`]. The `broker` program in `switchboard-cli` is a thin
//! flag parser around it.
//!
//! ```no_run
//! use switchboard_broker::{BrokerConfig, Shutdown};
//! let config = BrokerConfig {
//!     frontend: "tcp://127.0.0.1:5555".into(),
//!     backend: "tcp://127.0.0.1:5556".into(),
//!     ..BrokerConfig::default()
//! };
//! let shutdown = Shutdown::new();
//! let stats = switchboard_broker::run(config, shutdown)?;
//! println!("{} calls answered", stats.answers);
//! # Ok::<(), switchboard_broker::BrokerError>(())
//! ```
//!
//! # Layout (for contributors; see docs/ARCHITECTURE.md)
//! - `auth` — the CURVE ZAP handler with per-socket allow-lists.
//! - `backlog` — replies waiting for clients that read slowly, within byte budgets.
//! - `background` — helper threads that stop and join when dropped.
//! - `config` — [`BrokerConfig`], everything the broker can be told.
//! - `route` — `ReplyRoute`, where a reply goes, packed small; replies grouped per caller.
//! - `router` — `Router`, routing state and decisions (no I/O): a folder of
//!   owned tables (calls and deadlines, functions and queues, workers, batches).
//! - `handshakes` — socket monitors that count handshakes refused before ZAP is asked.
//! - `http` — the `/metrics` and `/health` HTTP endpoint.
//! - `introspection` — the built-in `system.` functions, answered from the router's state.
//! - `libzmq_seed` — an unpredictable start for libzmq's routing-id counter.
//! - `memory` — returns freed memory to the OS after a flood drains.
//! - `metrics` — Prometheus counters and histograms, rendered on request.
//! - `server` — [`Broker`], the sockets and the poll loop that feeds the router.
//! - `view` — what the router shows of its state (`View`) and reports as calls end.
//! - `error` — [`BrokerError`].

mod auth;
mod background;
mod backlog;
mod config;
mod error;
mod handshakes;
mod http;
mod introspection;
mod libzmq_seed;
mod memory;
mod metrics;
mod route;
mod router;
mod server;
mod view;

pub use auth::Security;
pub use config::BrokerConfig;
pub use error::BrokerError;
pub use router::RouterConfig;
pub use server::Broker;
pub use switchboard_transport::Shutdown;
pub use view::RouterStats;

/// Binds the broker's sockets and runs its loop until `shutdown` is triggered; returns
/// the counters of its lifetime.
pub fn run(config: BrokerConfig, shutdown: Shutdown) -> Result<RouterStats, BrokerError> {
    Broker::bind(config)?.run(shutdown)
}
