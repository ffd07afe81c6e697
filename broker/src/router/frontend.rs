//! Calls from clients: a request (one call, a pipeline or a batch) is routed, queued or
//! refused, and every answer goes back where it belongs (to a caller, or into a batch).

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_protocol::client::function_name;
use switchboard_protocol::client::CANCEL_FUNCTION;
use switchboard_protocol::codec::{encode_error, encode_result};
use switchboard_protocol::limits::MAX_UNHOSTED_FUNCTIONS;
use switchboard_protocol::message::is_traceparent;
use switchboard_protocol::worker::Ticket;
use switchboard_protocol::{
    CallHeader, ErrorCode, Frame, ProtocolError, RemoteError, RESERVED_PREFIX,
};
use tracing::{debug, warn};

use super::calls::{Call, Origin, Place};
use super::{batches, start, Action, Router, WorkerId};
use crate::introspection;
use crate::route::{BatchRequest, Incoming, Rejected, Request};
use crate::view::CallEnded;

/// One call as it arrives, before the router decides about it.
pub(super) struct CallIn<'a> {
    header: &'a CallHeader,
    function: &'a str,
    body: Frame,
    /// Who sent it, when the broker knows (CURVE).
    caller: &'a Option<Arc<str>>,
}

impl Router {
    /// Handles a well-formed request (one call or a batch) from a client.
    /// `caller` is who sent it, when the broker knows (CURVE: `curve:<public key>`).
    pub(crate) fn submit(
        &mut self,
        incoming: Incoming,
        caller: Option<Arc<str>>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        match incoming {
            Incoming::Call(request) => {
                self.stats.requests += 1;
                let Request {
                    route,
                    function,
                    header,
                    body,
                } = request;
                // Read from the name frame itself: no copy of the name per call.
                let name = function_name(&function).unwrap_or_default();
                let call = CallIn {
                    header: &header,
                    function: name,
                    body,
                    caller: &caller,
                };
                self.route(Origin::Caller(route), call, now, out);
            }
            Incoming::Pipelined(calls) => {
                for call in calls {
                    match call {
                        Ok(request) => {
                            self.submit(Incoming::Call(request), caller.clone(), now, out)
                        }
                        Err(rejected) => self.reject(rejected, out),
                    }
                }
            }
            Incoming::Batch(batch) => {
                self.stats.requests += 1;
                self.submit_batch(batch, &caller, now, out)
            }
        }
    }

    /// Routes every call of a batch; the batch is answered when the last one is.
    pub(super) fn submit_batch(
        &mut self,
        batch: BatchRequest,
        caller: &Option<Arc<str>>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let BatchRequest {
            route,
            header,
            calls,
        } = batch;
        let number = self.batches.open(route, calls.len());
        debug!(
            call_id = header.id,
            calls = calls.len(),
            batch = number,
            "batch accepted"
        );
        let mut system_calls = 0usize;
        for (index, (function, body)) in calls.into_iter().enumerate() {
            let origin = Origin::Batch {
                batch: number,
                index,
            };
            let refused = match &function {
                Ok(function) => batches::refusal(function, &mut system_calls),
                Err(error) => Some(error.to_string()),
            };
            match (refused, function) {
                (Some(message), _) => {
                    let error = RemoteError::new(ErrorCode::BadRequest, message);
                    self.deliver(origin, encode_error(&error).into(), out);
                }
                (None, Ok(function)) => {
                    let call = CallIn {
                        header: &header,
                        function: &function,
                        body,
                        caller,
                    };
                    self.route(origin, call, now, out)
                }
                (None, Err(_)) => unreachable!("a malformed name is refused above"),
            }
        }
    }

    /// Runs, queues or refuses one call.
    pub(super) fn route(
        &mut self,
        origin: Origin,
        call: CallIn<'_>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let CallIn {
            header,
            function,
            body,
            caller,
        } = call;
        if header.notices {
            if let Origin::Caller(route) = &origin {
                self.listeners.note(route);
            }
        }
        if function == CANCEL_FUNCTION {
            return self.cancel_request(origin, &body, now, out);
        }
        if function.starts_with(RESERVED_PREFIX) {
            let reply = match introspection::answer(&*self, function, &body) {
                Ok(reply) => reply,
                Err(error) => encode_error(&error),
            };
            return self.deliver(origin, Frame::from(reply), out);
        }
        let timeout = header
            .timeout_ms
            .map_or(self.config.default_timeout, Duration::from_millis)
            .min(self.config.max_timeout);
        let worker = match self.admit(function, body.len(), timeout, header.wait_for_ready) {
            Ok(worker) => worker,
            Err(refusal) => {
                let Refusal {
                    code,
                    message,
                    late,
                } = refusal;
                debug!(call_id = header.id, %function, %code, "call refused");
                self.stats.refused_late += u64::from(late);
                return self.answer(origin, header.id, code, message, out);
            }
        };
        if timeout.is_zero() {
            let message =
                "timeout_ms is 0: the call's deadline passed as it arrived, so it was not run";
            return self.answer(origin, header.id, ErrorCode::Timeout, message.into(), out);
        }
        self.stats.calls_accepted += 1;
        // A call that waits for a first host creates its function's entry.
        let name = match self.functions.get(function) {
            Some(entry) => &entry.name,
            None => &self.functions.ensure(function).name,
        };
        let mut call = Box::new(Call {
            origin: Some(origin),
            id: header.id,
            function: Arc::clone(name),
            body: Some(body),
            deadline: now + timeout,
            place: Place::Queued,
            attempts: 0,
            received: now,
            caller_key: None,
            hung_at: None,
            traceparent: header
                .traceparent
                .as_deref()
                .filter(|t| is_traceparent(t))
                .map(Arc::from),
            parent: None,
            hedge: None,
            timings: header.timings,
            wait: header.wait_for_ready,
            identified: caller.is_some(),
        });
        let ticket = self.calls.next_ticket();
        debug!(call_id = header.id, %function, ticket = ticket.0, "call accepted");
        self.earn_hedge_budget();
        let hedge_at = match worker {
            Some(worker) => {
                let Router {
                    workers, functions, ..
                } = self;
                start(workers, functions, ticket, &mut call, worker, now, out)
            }
            None => {
                self.functions.enqueue(function, ticket, false);
                None
            }
        };
        self.calls.insert(ticket, call);
        if let Some(caller) = caller {
            self.calls.identify(ticket, Arc::clone(caller));
        }
        if let Some(at) = hedge_at {
            self.calls.watch(ticket, at);
        }
    }

    /// Sends a reply body where it belongs: to the caller, or into its batch.
    pub(super) fn deliver(&mut self, origin: Origin, body: Frame, out: &mut Vec<Action>) {
        let reply = match origin {
            Origin::Caller(route) => Some((route, body)),
            Origin::Batch { batch, index } => {
                self.batches
                    .fill(batch, index, body, self.config.max_reply_bytes)
            }
        };
        if let Some((route, body)) = reply {
            self.stats.answers += 1;
            out.push(Action::Reply { route, body });
        }
    }

    /// Decides whether a call can be taken: `Ok(Some(worker))` to run now,
    /// `Ok(None)` to queue, or the error to answer with.
    ///
    /// A call that would have to wait is refused OVERLOADED when the queue is full, or
    /// when, from the function's measured run time and the calls ahead of it, it would
    /// finish only after its `timeout` (`late`: it would run for a caller that is gone).
    pub(super) fn admit(
        &self,
        function: &str,
        body_len: usize,
        timeout: Duration,
        wait_for_ready: bool,
    ) -> Result<Option<WorkerId>, Refusal> {
        if self.shutting_down {
            return Err(Refusal::new(
                ErrorCode::ShuttingDown,
                "the broker is shutting down".into(),
            ));
        }
        if body_len > self.config.max_request_bytes {
            return Err(Refusal::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "request body is {body_len} bytes; the limit is {}",
                    self.config.max_request_bytes
                ),
            ));
        }
        let entry = match self.functions.get(function) {
            Some(entry) if !entry.hosts.is_empty() || wait_for_ready => entry,
            _ if !wait_for_ready => {
                return Err(Refusal::new(
                    ErrorCode::UnknownFunction,
                    format!("no connected worker hosts function '{function}'"),
                ))
            }
            _ if self.functions.unhosted_len() >= MAX_UNHOSTED_FUNCTIONS => {
                return Err(Refusal::new(
                    ErrorCode::Overloaded,
                    format!(
                        "no worker hosts '{function}', and calls already wait for the first host of {MAX_UNHOSTED_FUNCTIONS} other functions"
                    ),
                ))
            }
            // The first call to wait for a host of this function: it will be queued.
            _ => return Ok(None),
        };
        if let Some(worker) = self.workers.pick(&entry.hosts, function) {
            return Ok(Some(worker));
        }
        if entry.queue.len() >= self.config.queue_capacity {
            return Err(Refusal::new(
                ErrorCode::Overloaded,
                format!(
                    "every worker hosting '{function}' is busy and {} calls already wait",
                    self.config.queue_capacity
                ),
            ));
        }
        match entry.expected_finish() {
            Some(wait) if wait > timeout => Err(Refusal {
                code: ErrorCode::Overloaded,
                message: format!(
                    "every worker hosting '{function}' is busy: with {} calls ahead it would be answered in about {} ms, after its {} ms deadline",
                    entry.queue.len(),
                    wait.as_millis(),
                    timeout.as_millis()
                ),
                late: true,
            }),
            _ => Ok(None),
        }
    }

    /// Answers a malformed frontend message with BAD_REQUEST, when it says whom to answer.
    pub(crate) fn reject(&mut self, rejected: Rejected, out: &mut Vec<Action>) {
        let Rejected { route, error } = rejected;
        if route.is_unroutable() {
            let error = switchboard_protocol::error::with_causes(&error);
            warn!(%error, "dropping malformed client message with no return address");
            self.stats.unanswerable_requests += 1;
            return;
        }
        let code = match error {
            ProtocolError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
            _ => ErrorCode::BadRequest,
        };
        let message = switchboard_protocol::error::with_causes(&error);
        warn!(error = %message, %code, "answering malformed client message");
        self.stats.requests += 1;
        self.answer(Origin::Caller(route), 0, code, message, out);
    }

    /// Counts replies the socket could not take (client gone or not reading).
    pub(crate) fn replies_dropped(&mut self, count: usize) {
        self.stats.dropped_replies += count as u64;
    }

    /// Answers a call taken out of the table with a broker error (nothing if its caller
    /// was already answered).
    pub(super) fn finish(
        &mut self,
        call: &mut Call,
        code: ErrorCode,
        message: String,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if let Some(origin) = call.origin.take() {
            let function = Arc::clone(&call.function);
            self.fail(
                origin,
                call.id,
                function,
                call.received,
                code,
                message,
                now,
                out,
            );
        }
    }

    /// Answers an accepted call with a broker error and reports how it ended.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fail(
        &mut self,
        origin: Origin,
        call_id: u64,
        function: Arc<str>,
        received: Instant,
        code: ErrorCode,
        message: String,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        self.ended.push(CallEnded {
            function,
            outcome: code.as_str(),
            latency: now.saturating_duration_since(received),
        });
        self.answer(origin, call_id, code, message, out);
    }

    /// Answers with a broker error, counted by code.
    pub(super) fn answer(
        &mut self,
        origin: Origin,
        call_id: u64,
        code: ErrorCode,
        message: String,
        out: &mut Vec<Action>,
    ) {
        debug!(call_id, %code, %message, "broker error reply");
        *self.stats.broker_errors.entry(code.as_str()).or_default() += 1;
        let body = encode_error(&RemoteError::new(code, message));
        self.deliver(origin, Frame::from(body), out);
    }

    /// `system.cancel(call_id)`: the caller cancels one of its calls. Answered `true` when
    /// the call was found (it is then answered CANCELLED, and its worker told when it runs
    /// one), `false` when the broker holds no such call of this caller waiting for an answer.
    pub(super) fn cancel_request(
        &mut self,
        origin: Origin,
        body: &[u8],
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Origin::Caller(route) = &origin else {
            let error = RemoteError::new(
                ErrorCode::BadRequest,
                "system.cancel cannot be part of a batch",
            );
            return self.deliver(origin, encode_error(&error).into(), out);
        };
        let (call_id,): (u64,) = match introspection::arguments(CANCEL_FUNCTION, body, 1) {
            Ok(args) => args,
            Err(error) => return self.deliver(origin, encode_error(&error).into(), out),
        };
        let found = self.calls.find_by_caller(route, call_id);
        if let Some(ticket) = found {
            self.cancel_call(ticket, now, out);
        }
        let reply = encode_result(&found.is_some()).expect("a bool encodes");
        self.deliver(origin, Frame::from(reply), out);
    }

    /// Ends a call its caller cancelled: answered CANCELLED; a queued call leaves its
    /// queue, a running one keeps its place until its worker answers (told by CANCEL).
    fn cancel_call(&mut self, ticket: Ticket, now: Instant, out: &mut Vec<Action>) {
        let Some(call) = self.calls.get(ticket) else {
            return;
        };
        match call.place {
            Place::Queued => {
                let why = "cancelled by its caller before it ran";
                self.end_queued(ticket, ErrorCode::Cancelled, why, now, out);
            }
            Place::Running { .. } => {
                let message =
                    "cancelled by its caller while a worker ran it; it may or may not have run";
                self.stop_running(ticket, ErrorCode::Cancelled, message.to_owned(), now, out);
            }
        }
    }
}

/// Why a call is not taken.
pub(super) struct Refusal {
    code: ErrorCode,
    message: String,
    /// It would have started after its deadline.
    late: bool,
}

impl Refusal {
    fn new(code: ErrorCode, message: String) -> Refusal {
        Refusal {
            code,
            message,
            late: false,
        }
    }
}
