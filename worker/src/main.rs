//! `worker` binary: hosts the demo registry and serves it to a broker.

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use switchboard_protocol::process::CurveArgs;
use switchboard_protocol::socket::SocketLimits;
use switchboard_worker::{demo, Worker, WorkerConfig};

/// Switchboard demo worker: hosts add, echo, upper, sleep_ms, fail, panic, greet, whoami,
/// time.now, time.shift, bytes.len and bytes.reverse.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The broker's backend endpoint.
    #[arg(
        long,
        env = "SWITCHBOARD_BROKER",
        default_value = "tcp://127.0.0.1:5556"
    )]
    broker: String,
    /// Executor threads (calls run at once).
    #[arg(long, env = "SWITCHBOARD_THREADS", default_value_t = 4)]
    threads: usize,
    /// Calls accepted beyond --threads, waiting for a free thread (hides the broker round
    /// trip for short calls; 0 keeps every waiting call in the broker's queue).
    #[arg(long, env = "SWITCHBOARD_PREFETCH", default_value_t = 16)]
    prefetch: usize,
    /// Calls of quick (inline) functions accepted at once, on top of --threads and
    /// --prefetch (they run on the socket thread as they arrive; 0: they share the slots).
    #[arg(long, env = "SWITCHBOARD_INLINE_CAPACITY", default_value_t = 1024)]
    inline_capacity: usize,
    /// Heartbeat interval in milliseconds.
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT_MS", default_value_t = 1000)]
    heartbeat_ms: u64,
    /// Missed broker heartbeats before reconnecting.
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT_LIVENESS", default_value_t = 3)]
    heartbeat_liveness: u32,
    /// How long, in milliseconds, a stopping worker waits for the calls it holds.
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    shutdown_grace_ms: u64,
    /// Largest reply body, in bytes.
    #[arg(long, env = "SWITCHBOARD_MAX_REPLY_BYTES", default_value_t = 32 * 1024 * 1024)]
    max_reply_bytes: usize,
    /// Largest message frame accepted from the broker, in bytes.
    #[arg(long, env = "SWITCHBOARD_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024 * 1024)]
    max_message_bytes: i64,
    #[command(flatten)]
    curve: CurveArgs,
    /// Append a line per execution of `work.*` to this file (for reliability tests).
    #[arg(long, env = "SWITCHBOARD_RECORD_FILE")]
    record_file: Option<std::path::PathBuf>,
    /// Name announced to the broker and answered by `whoami` (default: `$HOSTNAME`, else `worker-PID`).
    #[arg(long, env = "SWITCHBOARD_WORKER_NAME")]
    name: Option<String>,
}

fn main() -> anyhow::Result<()> {
    switchboard_protocol::process::init_logging("info");
    let args = Args::parse();
    let name = args
        .name
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| format!("worker-{}", std::process::id()));
    let config = WorkerConfig {
        broker: args.broker,
        threads: args.threads.max(1),
        prefetch: args.prefetch,
        inline_capacity: args.inline_capacity,
        heartbeat: Duration::from_millis(args.heartbeat_ms.max(10)),
        heartbeat_liveness: args.heartbeat_liveness.max(1),
        shutdown_grace: Duration::from_millis(args.shutdown_grace_ms),
        max_reply_bytes: args.max_reply_bytes,
        limits: SocketLimits {
            max_message_bytes: args.max_message_bytes,
            ..SocketLimits::default()
        },
        name: name.clone(),
        curve: args.curve.load().context("loading CURVE keys")?,
    };
    let shutdown = switchboard_protocol::process::shutdown_on_signals()
        .context("installing signal handlers")?;
    tracing::info!(%name, "worker starting");
    let journal = match &args.record_file {
        Some(path) => Some(demo::Journal::open(path).context("opening the record file")?),
        None => None,
    };
    Worker::new(demo::registry(&name, journal), config)
        .run(shutdown)
        .context("worker failed")?;
    Ok(())
}
