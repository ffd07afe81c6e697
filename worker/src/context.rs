//! What a running function may know about its call: its deadline, its id, and whether
//! the broker cancelled it.
//!
//! The worker sets the context around each call it runs; a function reads it with
//! [`CallContext::current`] (no extra parameter: every registered function can use it).
//!
//! ```
//! use std::time::Duration;
//! use switchboard_worker::{CallContext, Registry};
//! let mut registry = Registry::new();
//! registry.register("crunch", |rounds: u32| {
//!     let context = CallContext::current();
//!     let mut done = 0;
//!     for _ in 0..rounds {
//!         // Stop early once nobody waits for the answer any more.
//!         if context.as_ref().is_some_and(|c| c.is_cancelled()) {
//!             break;
//!         }
//!         std::thread::sleep(Duration::from_millis(1));
//!         done += 1;
//!     }
//!     done
//! });
//! ```

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Set when the call it belongs to is no longer wanted: its deadline passed (the broker
/// sent CANCEL), or the worker's registration or life ended. Cheap to clone and to check.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// Whether the call was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Marks the call cancelled.
    pub(crate) fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The call a function is running for.
#[derive(Debug, Clone)]
pub struct CallContext {
    call_id: u64,
    deadline: Instant,
    cancel: CancelToken,
    attempt: u32,
    traceparent: Option<String>,
    caller: Option<String>,
}

thread_local! {
    static CURRENT: RefCell<Option<CallContext>> = const { RefCell::new(None) };
}

impl CallContext {
    pub(crate) fn new(
        call_id: u64,
        deadline: Instant,
        cancel: CancelToken,
        attempt: u32,
        traceparent: Option<String>,
    ) -> CallContext {
        CallContext {
            call_id,
            deadline,
            cancel,
            attempt,
            traceparent,
            caller: None,
        }
    }

    /// The same context, with who made the call.
    pub(crate) fn with_caller(mut self, caller: Option<String>) -> CallContext {
        self.caller = caller;
        self
    }

    /// Who made the call, as the broker authenticated it: `curve:<Z85 public key>` when the
    /// broker runs CURVE; `None` when it does not know (no CURVE), or an older broker.
    pub fn caller(&self) -> Option<&str> {
        self.caller.as_deref()
    }

    /// The context of the call this thread is running, or `None` outside a call.
    pub fn current() -> Option<CallContext> {
        CURRENT.with(|current| current.borrow().clone())
    }

    /// The caller's call id (for logs).
    pub fn call_id(&self) -> u64 {
        self.call_id
    }

    /// When the caller stops waiting.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Time left before the deadline (zero once it passed). A call made from inside the
    /// function should not be given longer.
    pub fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Whether the call was cancelled: a long function should check it now and then
    /// and stop early, since its answer will be dropped.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Which dispatch of the call this is: 1 for the first, more when the broker sent it
    /// again after losing a worker (retry-safe functions only); 0 when the broker did not
    /// say (an older broker).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The caller's W3C trace context (`00-<trace id>-<parent id>-<flags>`), when it sent
    /// one. Pass it on to calls made from inside the function, with at most
    /// [`CallContext::time_left`] as their timeout, so that nested calls belong to the same
    /// trace and never outlive their parent.
    pub fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }

    /// The call's cancellation token, to hand to other threads the function uses.
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// A call to `function` made from inside this call: its timeout is the time this call
    /// has left (a nested call never outlives its parent) and it carries this call's trace
    /// context. Needs the `client` feature.
    #[cfg(feature = "client")]
    pub fn request<'c>(
        &self,
        client: &'c switchboard_client::Client,
        function: &str,
    ) -> switchboard_client::RequestBuilder<'c> {
        let mut request = client.request(function).timeout(self.time_left());
        if let Some(trace) = self.traceparent() {
            request = request.traceparent(trace);
        }
        request
    }

    /// Runs `work` with this context as the current one, then restores the previous one.
    pub(crate) fn enter<R>(self, work: impl FnOnce() -> R) -> R {
        let previous = CURRENT.with(|current| current.replace(Some(self)));
        let result = work();
        CURRENT.with(|current| *current.borrow_mut() = previous);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_is_there_inside_a_call_only_and_sees_a_cancel() {
        assert!(CallContext::current().is_none());
        let token = CancelToken::default();
        let context = CallContext::new(
            7,
            Instant::now() + Duration::from_secs(5),
            token.clone(),
            1,
            None,
        );
        let seen = context.enter(|| {
            let inside = CallContext::current().expect("set during the call");
            assert!(!inside.is_cancelled());
            token.cancel();
            (
                inside.call_id(),
                inside.is_cancelled(),
                inside.time_left() > Duration::ZERO,
            )
        });
        assert_eq!(seen, (7, true, true));
        assert!(CallContext::current().is_none(), "restored after the call");
    }
}
