//! Calls as futures, for async code on any runtime (or none): no second ZeroMQ binding,
//! the same socket thread and session as the blocking API, the same reliability
//! contract.
//!
//! ```no_run
//! # async fn run() -> Result<(), switchboard_client::CallError> {
//! let client = switchboard_client::Client::connect("tcp://127.0.0.1:5555").unwrap();
//! let sum: i64 = client.call_async("add", (2, 3)).await?;
//! // Many calls at once over the one connection:
//! let calls: Vec<_> = (0..100)
//!     .map(|i| client.request("add").args((i, i)).send_async::<i64>())
//!     .collect::<Result<_, _>>()?;
//! for call in calls {
//!     let _ = call.await?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Every call still has a deadline: the session answers a call TIMEOUT when its caller's
//! time is up, no timer of the runtime is needed. Dropping a [`CallFuture`] before it is
//! ready cancels the call at the broker (`system.cancel`, PROTOCOL.md 4.10): a queued call
//! never runs and a running one's worker is told.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_channel::oneshot;
use serde::de::DeserializeOwned;
use serde::Serialize;
use switchboard_protocol::client::request_frames;
use switchboard_protocol::codec::decode_reply;

use crate::client::{Client, RequestBuilder};
use crate::error::CallError;
use crate::session::{Outcome, ReplySender};

/// A call in flight, as a future of its typed result. Dropping it before it is ready
/// cancels the call.
#[must_use = "a call future does nothing useful unless awaited; dropping it cancels the call"]
pub struct CallFuture<R> {
    client: Client,
    id: u64,
    timeout: Duration,
    outcome: oneshot::Receiver<Outcome>,
    finished: bool,
    result: PhantomData<fn() -> R>,
}

impl<R> CallFuture<R> {
    /// The call id carried in the header.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl<R: DeserializeOwned> Future for CallFuture<R> {
    type Output = Result<R, CallError>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let outcome = match Pin::new(&mut self.outcome).poll(context) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(outcome) => outcome,
        };
        self.finished = true;
        let result = match outcome {
            Ok(Ok(body)) => decode_reply::<R>(&body)
                .map_err(CallError::Decode)
                .and_then(|reply| reply.map_err(CallError::from)),
            Ok(Err(error)) => Err(error),
            Err(oneshot::Canceled) => Err(CallError::Transport(
                "the client thread stopped before the reply".into(),
            )),
        };
        Poll::Ready(result)
    }
}

impl<R> Drop for CallFuture<R> {
    fn drop(&mut self) {
        let answered = matches!(self.outcome.try_recv(), Ok(Some(_)) | Err(_));
        if !self.finished && !answered {
            // Best effort: a client that is closing cannot send it, and then the call
            // ends with the connection anyway.
            let _ = self.client.send_cancel(self.id, self.timeout);
        }
    }
}

impl RequestBuilder<'_> {
    /// Sends the call without waiting and returns a future of its result.
    pub fn send_async<R: DeserializeOwned>(self) -> Result<CallFuture<R>, CallError> {
        let body = self.body()?;
        let (reply, outcome) = oneshot::channel();
        let client = self.client.clone();
        let function = self.function;
        let queued = client.submit(
            self.timeout,
            self.idempotent,
            crate::client::HeaderExtras {
                traceparent: self.traceparent,
                timings: self.timings,
                wait_for_ready: self.wait_for_ready,
            },
            |header| request_frames(&function, header, body),
            ReplySender::Async(reply),
            None,
        )?;
        Ok(CallFuture {
            client,
            id: queued.id,
            timeout: queued.timeout,
            outcome,
            finished: false,
            result: PhantomData,
        })
    }

    /// Sends the call and awaits its result.
    pub async fn call_async<R: DeserializeOwned>(self) -> Result<R, CallError> {
        self.send_async()?.await
    }
}

impl Client {
    /// Calls `function` with positional arguments (a tuple; `()` for none) and awaits the
    /// result.
    pub async fn call_async<R: DeserializeOwned>(
        &self,
        function: &str,
        args: impl Serialize,
    ) -> Result<R, CallError> {
        self.request(function).args(args).send_async()?.await
    }
}
