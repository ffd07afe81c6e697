//! Process setup shared by the `broker`, `worker` and `client` binaries:
//! logging, signals, and the CURVE flags of the peers that connect to a broker.

use std::path::PathBuf;

use crate::curve::{ClientCurve, KeyError};
use crate::Shutdown;

/// CURVE flags of a peer that connects to the broker (client or worker).
#[derive(Debug, Clone, clap::Args)]
pub struct CurveArgs {
    /// The broker's CURVE public key (Z85); turns CURVE on. Public, so an env value is fine.
    #[arg(long, env = "SWITCHBOARD_CURVE_SERVER_KEY", hide_env_values = true)]
    pub curve_server_key: Option<String>,
    /// File with the broker's CURVE public key (instead of --curve-server-key).
    #[arg(long, env = "SWITCHBOARD_CURVE_SERVER_KEY_FILE")]
    pub curve_server_key_file: Option<PathBuf>,
    /// This peer's CURVE key pair file (its public key must be on the broker's allow-list).
    #[arg(long, env = "SWITCHBOARD_CURVE_KEY_FILE")]
    pub curve_key_file: Option<PathBuf>,
}

impl CurveArgs {
    /// The CURVE settings these flags describe; `None` when CURVE is off.
    pub fn load(&self) -> Result<Option<ClientCurve>, KeyError> {
        ClientCurve::load(
            self.curve_server_key.as_deref(),
            self.curve_server_key_file.as_deref(),
            self.curve_key_file.as_deref(),
        )
    }
}

/// Sends `tracing` output to stderr, filtered by `RUST_LOG` (else `default_filter`).
///
/// `SWITCHBOARD_LOG_FORMAT=json` writes one JSON object per line (for log
/// shippers); anything else, or unset, writes human-readable lines, coloured only
/// when stderr is a terminal. Does nothing if the program already set a subscriber.
pub fn init_logging(default_filter: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let json =
        std::env::var("SWITCHBOARD_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // An error only means a subscriber is already set: keep that one.
    let _ = if json {
        builder.json().with_current_span(false).try_init()
    } else {
        builder.try_init()
    };
}

/// A [`Shutdown`] flag that SIGTERM and SIGINT set.
pub fn shutdown_on_signals() -> std::io::Result<Shutdown> {
    let shutdown = Shutdown::new();
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, shutdown.flag())?;
    }
    Ok(shutdown)
}
