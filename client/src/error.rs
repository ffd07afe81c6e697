//! Errors a call can end in, and errors of connecting.

use std::time::Duration;
use switchboard_protocol::{CodecError, ErrorCode, RemoteError};

/// Why a call produced no result.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The broker or the worker answered with an error (see [`CallError::code`]).
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// No reply arrived before the deadline (measured by the client itself).
    #[error("TIMEOUT: no reply within {0:?}")]
    Timeout(Duration),
    /// The arguments could not be encoded.
    #[error("cannot encode the arguments")]
    Encode(#[source] CodecError),
    /// The reply did not decode into the expected result type.
    #[error("cannot decode the result")]
    Decode(#[source] CodecError),
    /// The client's socket thread is gone or could not send.
    #[error("the client connection is closed or cannot send: {0}")]
    Transport(String),
}

impl CallError {
    /// The wire error code, when the failure has one (a local timeout counts as TIMEOUT).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            CallError::Remote(e) => Some(e.code),
            CallError::Timeout(_) => Some(ErrorCode::Timeout),
            _ => None,
        }
    }

    /// True when the function itself failed (returned an error or panicked),
    /// as opposed to the broker or transport failing to run it.
    pub fn is_function_error(&self) -> bool {
        self.code() == Some(ErrorCode::FunctionError)
    }
}

/// Why a client could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The socket could not be created, configured or connected.
    #[error("cannot connect to {endpoint}")]
    Socket {
        /// The endpoint asked for.
        endpoint: String,
        /// The ZeroMQ error.
        #[source]
        source: zmq::Error,
    },
    /// The socket thread or its waker could not be started.
    #[error("cannot start the client thread")]
    Thread(#[from] std::io::Error),
}
