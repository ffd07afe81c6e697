//! The CURVE flags of the programs that connect to a broker (client and worker).

use std::path::PathBuf;

use switchboard_transport::curve::{ClientCurve, KeyError};

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
