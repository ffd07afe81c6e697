//! `broker` binary: parses configuration, sets up logging and signals, runs the broker.

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use std::path::PathBuf;

use switchboard_broker::{Broker, BrokerConfig, RouterConfig, Security};
use switchboard_transport::curve::{read_allow_list, KeyPair};
use switchboard_transport::socket::SocketLimits;

/// Switchboard broker: routes calls from clients to the workers that host them.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Endpoint clients connect to.
    #[arg(long, env = "SWITCHBOARD_FRONTEND", default_value_t = BrokerConfig::default().frontend)]
    frontend: String,
    /// Endpoint workers connect to.
    #[arg(long, env = "SWITCHBOARD_BACKEND", default_value_t = BrokerConfig::default().backend)]
    backend: String,
    /// Calls that may wait per function when every capable worker is busy.
    #[arg(long, env = "SWITCHBOARD_QUEUE_CAPACITY", default_value_t = RouterConfig::default().queue_capacity)]
    queue_capacity: usize,
    /// Deadline, in milliseconds, of calls that do not set one.
    #[arg(long, env = "SWITCHBOARD_DEFAULT_TIMEOUT_MS", default_value_t = RouterConfig::default().default_timeout.as_millis() as u64)]
    default_timeout_ms: u64,
    /// Longest deadline, in milliseconds, a call may ask for.
    #[arg(long, env = "SWITCHBOARD_MAX_TIMEOUT_MS", default_value_t = RouterConfig::default().max_timeout.as_millis() as u64)]
    max_timeout_ms: u64,
    /// Heartbeats a worker may miss before it is declared lost.
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT_LIVENESS", default_value_t = RouterConfig::default().heartbeat_liveness)]
    heartbeat_liveness: u32,
    /// Largest request body accepted, in bytes (larger: PAYLOAD_TOO_LARGE).
    #[arg(long, env = "SWITCHBOARD_MAX_REQUEST_BYTES", default_value_t = RouterConfig::default().max_request_bytes)]
    max_request_bytes: usize,
    /// Largest reply body forwarded from a worker, in bytes (larger: PAYLOAD_TOO_LARGE).
    #[arg(long, env = "SWITCHBOARD_MAX_REPLY_BYTES", default_value_t = RouterConfig::default().max_reply_bytes)]
    max_reply_bytes: usize,
    /// Most times a retry-safe call is dispatched when its workers keep dying.
    #[arg(long, env = "SWITCHBOARD_MAX_ATTEMPTS", default_value_t = RouterConfig::default().max_attempts)]
    max_attempts: u32,
    /// A worker still running a call this many milliseconds past the call's deadline is
    /// hung: it gets no new calls and is asked to leave (DRAIN), to be restarted.
    #[arg(long, env = "SWITCHBOARD_HUNG_AFTER_MS", default_value_t = RouterConfig::default().hung_after.as_millis() as u64)]
    hung_after_ms: u64,
    /// Largest message frame accepted from any peer, in bytes (larger: the peer is disconnected).
    #[arg(long, env = "SWITCHBOARD_MAX_MESSAGE_BYTES", default_value_t = SocketLimits::default().max_message_bytes)]
    max_message_bytes: i64,
    /// Most frames in one message from any peer (larger: PAYLOAD_TOO_LARGE or dropped).
    #[arg(long, env = "SWITCHBOARD_MAX_FRAMES", default_value_t = SocketLimits::default().max_frames)]
    max_frames: usize,
    /// Most bytes in one message from any peer, all frames together.
    #[arg(long, env = "SWITCHBOARD_MAX_TOTAL_BYTES", default_value_t = SocketLimits::default().max_total_bytes)]
    max_total_bytes: usize,
    /// Messages libzmq queues per connection, each way (for clients, see --client-send-hwm).
    #[arg(long, env = "SWITCHBOARD_HIGH_WATER_MARK", default_value_t = SocketLimits::default().high_water_mark)]
    high_water_mark: i32,
    /// Serve Prometheus metrics and a health page over HTTP at this address (e.g. 0.0.0.0:9100).
    #[arg(long, env = "SWITCHBOARD_METRICS")]
    metrics: Option<String>,
    /// The broker's CURVE key pair file: turns on encryption and authentication on both sockets.
    #[arg(long, env = "SWITCHBOARD_CURVE_KEY_FILE")]
    curve_key_file: Option<PathBuf>,
    /// Public keys allowed on the client socket, one per line (required with --curve-key-file).
    #[arg(long, env = "SWITCHBOARD_CLIENT_KEYS_FILE")]
    client_keys_file: Option<PathBuf>,
    /// Public keys allowed on the worker socket, one per line (required with --curve-key-file).
    #[arg(long, env = "SWITCHBOARD_WORKER_KEYS_FILE")]
    worker_keys_file: Option<PathBuf>,
    /// Reply messages libzmq queues for one client; past them, replies wait in the broker.
    #[arg(long, env = "SWITCHBOARD_CLIENT_SEND_HWM", default_value_t = BrokerConfig::default().client_send_hwm)]
    client_send_hwm: i32,
    /// Bytes of replies kept for one client that is not reading; more are dropped and counted.
    #[arg(long, env = "SWITCHBOARD_CLIENT_BACKLOG_BYTES", default_value_t = BrokerConfig::default().client_backlog_bytes)]
    client_backlog_bytes: usize,
    /// Bytes of replies kept for all slow clients together.
    #[arg(long, env = "SWITCHBOARD_BACKLOG_BYTES", default_value_t = BrokerConfig::default().backlog_bytes)]
    backlog_bytes: usize,
    /// How long, in milliseconds, a stopping broker waits for accepted calls.
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_GRACE_MS", default_value_t = BrokerConfig::default().shutdown_grace.as_millis() as u64)]
    shutdown_grace_ms: u64,
}

/// CURVE settings from the flags; fails closed when they are incomplete.
fn security(args: &Args) -> anyhow::Result<Option<Security>> {
    let (key, clients, workers) = (
        &args.curve_key_file,
        &args.client_keys_file,
        &args.worker_keys_file,
    );
    let Some(key) = key else {
        if clients.is_some() || workers.is_some() {
            anyhow::bail!(
                "allow-lists were given without --curve-key-file: refusing to run without CURVE"
            );
        }
        return Ok(None);
    };
    let (Some(clients), Some(workers)) = (clients, workers) else {
        anyhow::bail!(
            "with --curve-key-file, both --client-keys-file and --worker-keys-file are required"
        );
    };
    let security = Security {
        keys: KeyPair::read(key)?,
        clients: read_allow_list(clients)?,
        workers: read_allow_list(workers)?,
    };
    tracing::info!(
        clients = security.clients.len(),
        workers = security.workers.len(),
        "CURVE on: only listed keys may connect"
    );
    Ok(Some(security))
}

fn main() -> anyhow::Result<()> {
    switchboard_transport::process::init_logging("info");
    let args = Args::parse();
    let security = security(&args)?;
    let config = BrokerConfig {
        frontend: args.frontend,
        backend: args.backend,
        router: RouterConfig {
            queue_capacity: args.queue_capacity,
            default_timeout: Duration::from_millis(args.default_timeout_ms),
            max_timeout: Duration::from_millis(args.max_timeout_ms),
            heartbeat_liveness: args.heartbeat_liveness,
            max_request_bytes: args.max_request_bytes,
            max_reply_bytes: args.max_reply_bytes,
            max_attempts: args.max_attempts,
            hung_after: Duration::from_millis(args.hung_after_ms),
        },
        limits: SocketLimits {
            max_message_bytes: args.max_message_bytes,
            high_water_mark: args.high_water_mark,
            max_frames: args.max_frames,
            max_total_bytes: args.max_total_bytes,
            ..SocketLimits::default()
        },
        shutdown_grace: Duration::from_millis(args.shutdown_grace_ms),
        client_send_hwm: args.client_send_hwm,
        client_backlog_bytes: args.client_backlog_bytes,
        backlog_bytes: args.backlog_bytes,
        metrics: args.metrics,
        security,
    };
    let shutdown = switchboard_transport::process::shutdown_on_signals()
        .context("installing signal handlers")?;
    let broker = Broker::bind(config).context("starting broker")?;
    let (frontend, backend) = broker.endpoints();
    let metrics = broker
        .metrics_address()
        .map(|a| format!(" metrics=http://{a}/metrics"))
        .unwrap_or_default();
    // One machine-readable line on stdout so scripts and tests learn the real ports.
    println!("switchboard-broker listening frontend={frontend} backend={backend}{metrics}");
    broker.run(shutdown).context("broker failed")?;
    Ok(())
}
