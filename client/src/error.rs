//! Errors a call can end in, and errors of connecting.
//!
//! A failed call tells apart the function's own failure ([`CallError::Function`]),
//! a call that could not run as sent ([`CallError::Rejected`]), and delivery
//! failures reported by the broker ([`CallError::Broker`]) or noticed locally.

use std::time::Duration;
use switchboard_protocol::{CodecError, ErrorCode, RemoteError};

/// Why a call produced no result.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The function ran and failed (returned an error or panicked): FUNCTION_ERROR,
    /// with the function's own message.
    #[error("{0}")]
    Function(RemoteError),
    /// The call could not run as sent: BAD_ARGUMENTS, BAD_REQUEST, PAYLOAD_TOO_LARGE,
    /// or a code this client does not know.
    #[error("{0}")]
    Rejected(RemoteError),
    /// The broker could not deliver the call or its result: UNKNOWN_FUNCTION, TIMEOUT,
    /// OVERLOADED, WORKER_LOST, SHUTTING_DOWN, or (noticed by the client) BROKER_LOST.
    #[error("{0}")]
    Broker(RemoteError),
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

impl From<RemoteError> for CallError {
    fn from(error: RemoteError) -> CallError {
        match error.code {
            ErrorCode::FunctionError => CallError::Function(error),
            ErrorCode::UnknownFunction
            | ErrorCode::Timeout
            | ErrorCode::Overloaded
            | ErrorCode::WorkerLost
            | ErrorCode::ShuttingDown
            | ErrorCode::BrokerLost
            | ErrorCode::Cancelled => CallError::Broker(error),
            ErrorCode::BadArguments
            | ErrorCode::BadRequest
            | ErrorCode::PayloadTooLarge
            | ErrorCode::Unrecognized => CallError::Rejected(error),
        }
    }
}

impl CallError {
    /// The error as it came over the wire, if it did.
    pub fn remote(&self) -> Option<&RemoteError> {
        match self {
            CallError::Function(e) | CallError::Rejected(e) | CallError::Broker(e) => Some(e),
            _ => None,
        }
    }

    /// The wire error code, when the failure has one (a local timeout counts as TIMEOUT).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            CallError::Timeout(_) => Some(ErrorCode::Timeout),
            other => other.remote().map(|e| e.code),
        }
    }

    /// The human-readable message, without the code (for a local error, with the
    /// reasons behind it: "cannot decode the result: …").
    pub fn message(&self) -> String {
        match self.remote() {
            Some(e) => e.message.clone(),
            None => switchboard_protocol::error::with_causes(self),
        }
    }

    /// True when the function itself failed, as opposed to the call not reaching it.
    pub fn is_function_error(&self) -> bool {
        matches!(self, CallError::Function(_))
    }

    /// True for delivery failures (broker errors and local timeouts and transport errors).
    pub fn is_delivery_error(&self) -> bool {
        matches!(
            self,
            CallError::Broker(_) | CallError::Timeout(_) | CallError::Transport(_)
        )
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
    /// CURVE could not be set up.
    #[error("cannot set up CURVE")]
    Curve(#[from] switchboard_transport::curve::KeyError),
    /// The socket thread or its waker could not be started.
    #[error("cannot start the client thread")]
    Thread(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_errors_are_classified_by_who_failed() {
        let of = |code| CallError::from(RemoteError::new(code, "m"));
        assert!(of(ErrorCode::FunctionError).is_function_error());
        for code in [
            ErrorCode::UnknownFunction,
            ErrorCode::Timeout,
            ErrorCode::Overloaded,
            ErrorCode::WorkerLost,
            ErrorCode::ShuttingDown,
        ] {
            assert!(matches!(of(code), CallError::Broker(_)), "{code}");
            assert!(of(code).is_delivery_error());
        }
        for code in [
            ErrorCode::BadArguments,
            ErrorCode::BadRequest,
            ErrorCode::PayloadTooLarge,
        ] {
            assert!(matches!(of(code), CallError::Rejected(_)), "{code}");
        }
        assert_eq!(of(ErrorCode::WorkerLost).to_string(), "WORKER_LOST: m");
        assert_eq!(of(ErrorCode::WorkerLost).message(), "m");
    }
}
