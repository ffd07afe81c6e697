//! The broker's built-in functions in the reserved `system.` namespace,
//! answered from the broker's state (through [`View`]) without involving a worker.

use switchboard_protocol::args::{decode_args, ArgsError, ArgsShape};
use switchboard_protocol::codec::encode_result;
use switchboard_protocol::{ErrorCode, FunctionListing, FunctionVariant, RemoteError};

use crate::view::{FunctionSummary, RouterStats, View};

/// Names of the built-in functions (besides `system.batch`, which is a frame-level form).
pub(crate) const BUILTINS: [&str; 6] = [
    "system.ping",
    "system.cancel",
    "system.functions",
    "system.describe",
    "system.workers",
    "system.stats",
];

/// Answers a `system.` call with a reply body, or the error to reply with.
pub(crate) fn answer(
    router: &dyn View,
    function: &str,
    body: &[u8],
) -> Result<Vec<u8>, RemoteError> {
    let encoded = match function {
        "system.ping" => {
            no_arguments(function, body)?;
            encode_result("pong")
        }
        "system.functions" => {
            no_arguments(function, body)?;
            let listing: Vec<FunctionListing> =
                router.functions().into_iter().map(listing).collect();
            encode_result(&listing)
        }
        "system.workers" => {
            no_arguments(function, body)?;
            encode_result(&router.workers())
        }
        "system.stats" => {
            no_arguments(function, body)?;
            let (frontend, backend) = router.auth_rejections();
            encode_result(&Stats {
                workers: router.worker_count(),
                calls_in_progress: router.calls_in_progress(),
                auth_rejections_frontend: frontend,
                auth_rejections_backend: backend,
                counters: router.stats(),
            })
        }
        "system.describe" => {
            let (name,): (String,) = arguments(function, body, 1)?;
            let found = router.functions().into_iter().find(|f| f.info.name == name);
            match found {
                Some(summary) => encode_result(&listing(summary)),
                None => {
                    return Err(RemoteError::new(
                        ErrorCode::UnknownFunction,
                        format!("no connected worker hosts function '{name}'"),
                    ))
                }
            }
        }
        _ => {
            return Err(RemoteError::new(
                ErrorCode::UnknownFunction,
                format!(
                    "the broker has no built-in function '{function}' (it has {})",
                    BUILTINS.join(", ")
                ),
            ))
        }
    };
    encoded.map_err(|e| RemoteError::new(ErrorCode::BadRequest, e.with_causes()))
}

/// The answer of `system.stats`.
#[derive(serde::Serialize)]
struct Stats<'a> {
    workers: usize,
    calls_in_progress: usize,
    auth_rejections_frontend: u64,
    auth_rejections_backend: u64,
    #[serde(flatten)]
    counters: &'a RouterStats,
}

fn listing(summary: FunctionSummary) -> FunctionListing {
    let conflict = summary.variants.len() > 1;
    let variants = if conflict {
        summary
            .variants
            .into_iter()
            .map(|(info, workers)| FunctionVariant {
                doc: info.doc,
                signature: info.signature,
                retry_safe: info.retry_safe,
                workers: workers as u32,
            })
            .collect()
    } else {
        Vec::new()
    };
    FunctionListing {
        name: summary.info.name,
        doc: summary.info.doc,
        signature: summary.info.signature,
        workers: summary.workers as u32,
        queued: summary.queued as u32,
        running: summary.running as u32,
        retry_safe: summary.info.retry_safe,
        conflict,
        variants,
    }
}

fn no_arguments(function: &str, body: &[u8]) -> Result<(), RemoteError> {
    arguments::<()>(function, body, 0)
}

/// Decodes the positional arguments of a built-in function, with the error to answer.
pub(crate) fn arguments<T: serde::de::DeserializeOwned>(
    function: &str,
    body: &[u8],
    arity: usize,
) -> Result<T, RemoteError> {
    decode_args(body, ArgsShape::Positional { arity }).map_err(|e| match e {
        ArgsError::Malformed(m) => RemoteError::new(
            ErrorCode::BadRequest,
            format!("{function}: malformed request body: {m}"),
        ),
        ArgsError::Mismatch(m) => {
            RemoteError::new(ErrorCode::BadArguments, format!("{function}: {m}"))
        }
    })
}
