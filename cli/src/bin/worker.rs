//! `worker` binary: hosts the demo registry and serves it to a broker.

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use switchboard_cli::curve_args::CurveArgs;
use switchboard_cli::demo;
use switchboard_transport::socket::SocketLimits;
use switchboard_worker::{default_name, vars, Worker, WorkerConfig};

/// Switchboard demo worker: hosts add, echo, upper, sleep_ms, work_ms, context, lookup, fail, panic, greet, whoami,
/// time.now, time.shift, bytes.len and bytes.reverse.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The broker's backend endpoint; several brokers as a comma-separated list (the worker
    /// serves each and splits its capacity evenly among them).
    #[arg(
        long,
        env = vars::BROKER,
        default_value_t = WorkerConfig::default().broker
    )]
    broker: String,
    /// Executor threads (calls run at once).
    #[arg(long, env = vars::THREADS, default_value_t = WorkerConfig::default().threads)]
    threads: usize,
    /// Calls accepted beyond --threads, waiting for a free thread (hides the broker round
    /// trip for short calls; 0 keeps every waiting call in the broker's queue).
    #[arg(long, env = vars::PREFETCH, default_value_t = WorkerConfig::default().prefetch)]
    prefetch: usize,
    /// Calls of quick (inline) functions accepted at once, on top of --threads and
    /// --prefetch (they run on the socket thread as they arrive; 0: they share the slots).
    #[arg(long, env = vars::INLINE_CAPACITY, default_value_t = WorkerConfig::default().inline_capacity)]
    inline_capacity: usize,
    /// How often broker host names are looked up again, in milliseconds (a name that
    /// resolves to several addresses is one broker per address).
    #[arg(long, env = vars::RESOLVE_INTERVAL_MS, default_value_t = WorkerConfig::default().resolve_interval.as_millis() as u64)]
    resolve_interval_ms: u64,
    /// Heartbeat interval in milliseconds.
    #[arg(long, env = vars::HEARTBEAT_MS, default_value_t = WorkerConfig::default().heartbeat.as_millis() as u64)]
    heartbeat_ms: u64,
    /// Missed broker heartbeats before reconnecting.
    #[arg(long, env = vars::HEARTBEAT_LIVENESS, default_value_t = WorkerConfig::default().heartbeat_liveness)]
    heartbeat_liveness: u32,
    /// How long, in milliseconds, a stopping worker waits for the calls it holds.
    #[arg(long, env = vars::SHUTDOWN_GRACE_MS, default_value_t = WorkerConfig::default().shutdown_grace.as_millis() as u64)]
    shutdown_grace_ms: u64,
    /// Largest reply body, in bytes.
    #[arg(long, env = vars::MAX_REPLY_BYTES, default_value_t = WorkerConfig::default().max_reply_bytes)]
    max_reply_bytes: usize,
    /// Largest message frame accepted from the broker, in bytes.
    #[arg(long, env = vars::MAX_MESSAGE_BYTES, default_value_t = WorkerConfig::default().limits.max_message_bytes)]
    max_message_bytes: i64,
    #[command(flatten)]
    curve: CurveArgs,
    /// Append a line per execution of `work.*` to this file (for reliability tests).
    #[arg(long, env = "SWITCHBOARD_RECORD_FILE")]
    record_file: Option<std::path::PathBuf>,
    /// Make this worker's `lookup` slow by this many milliseconds (experiments).
    #[arg(long, env = "SWITCHBOARD_DEMO_LOOKUP_DELAY_MS", default_value_t = 0)]
    lookup_delay_ms: u64,
    /// Make every `lookup` on this worker fail (experiments).
    #[arg(long, env = "SWITCHBOARD_DEMO_LOOKUP_FAILS")]
    lookup_fails: bool,
    /// Name announced to the broker and answered by `whoami` (default: `$HOSTNAME`, else `worker-PID`).
    #[arg(long, env = vars::WORKER_NAME)]
    name: Option<String>,
}

fn main() -> anyhow::Result<()> {
    switchboard_transport::process::init_logging("info");
    let args = Args::parse();
    let name = args.name.unwrap_or_else(default_name);
    let config = WorkerConfig {
        broker: args.broker,
        resolve_interval: Duration::from_millis(args.resolve_interval_ms),
        threads: args.threads,
        prefetch: args.prefetch,
        inline_capacity: args.inline_capacity,
        heartbeat: Duration::from_millis(args.heartbeat_ms),
        heartbeat_liveness: args.heartbeat_liveness,
        shutdown_grace: Duration::from_millis(args.shutdown_grace_ms),
        max_reply_bytes: args.max_reply_bytes,
        limits: SocketLimits {
            max_message_bytes: args.max_message_bytes,
            ..SocketLimits::default()
        },
        name: name.clone(),
        curve: args.curve.load().context("loading CURVE keys")?,
    };
    let shutdown = switchboard_transport::process::shutdown_on_signals()
        .context("installing signal handlers")?;
    tracing::info!(%name, "worker starting");
    let journal = match &args.record_file {
        Some(path) => Some(demo::Journal::open(path).context("opening the record file")?),
        None => None,
    };
    let lookup = demo::Lookup {
        delay_ms: args.lookup_delay_ms,
        fails: args.lookup_fails,
    };
    Worker::new(demo::registry_with(&name, journal, lookup), config)
        .run(shutdown)
        .context("worker failed")?;
    Ok(())
}
