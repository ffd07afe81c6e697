//! A router driven by hand for tests: workers and clients are names, time moves only
//! when told, every step checks the router's invariants, and the outbox is read back
//! as dispatches and reply codes.

use std::time::{Duration, Instant};

use crate::route::{BatchRequest, Incoming, ReplyRoute, Request};
use switchboard_protocol::client::CANCEL_FUNCTION;
use switchboard_protocol::codec::{decode_reply, encode_request_body};
use switchboard_protocol::worker::{ReplyMessage, Ticket, WorkerMessage};
use switchboard_protocol::{CallHeader, ErrorCode, Frame, FunctionInfo, ReadyInfo, Value};

use crate::router::{Action, Router, RouterConfig, WorkerId};

/// A result body (`{"result": 1}`).
pub(super) fn ok_body() -> Frame {
    Frame::from(&b"\x81\xa6result\x01"[..])
}

/// An empty argument list.
pub(super) fn no_args() -> Frame {
    Frame::from(&b"\x80"[..])
}

/// A worker's identity from its name in the test.
pub(super) fn id(name: &str) -> WorkerId {
    WorkerId::from(name.as_bytes())
}

/// A READY announcing `functions` (plain: not retry-safe, not inline), heartbeat 100 ms.
pub(super) fn ready_info(functions: &[&str], capacity: u32) -> ReadyInfo {
    ReadyInfo {
        capacity,
        heartbeat_ms: 100,
        functions: functions
            .iter()
            .map(|name| FunctionInfo {
                name: (*name).into(),
                doc: String::new(),
                signature: String::new(),
                retry_safe: false,
                inline: false,
                hedge_ms: 0,
            })
            .collect(),
        inline_capacity: 0,
        name: String::new(),
        cancel: false,
        drain: false,
        context: false,
        caller: false,
        credit: false,
    }
}

/// The router under test, its clock and its outbox.
pub(super) struct Harness {
    pub(super) router: Router,
    pub(super) now: Instant,
    pub(super) out: Vec<Action>,
}

impl Harness {
    /// A router whose queues hold two calls per function.
    pub(super) fn new() -> Harness {
        Harness::with(RouterConfig {
            queue_capacity: 2,
            ..RouterConfig::default()
        })
    }

    /// A router with this configuration.
    pub(super) fn with(config: RouterConfig) -> Harness {
        Harness {
            router: Router::new(config),
            now: Instant::now(),
            out: Vec::new(),
        }
    }

    fn checked(&mut self) -> &mut Self {
        self.router.check_invariants();
        self
    }

    /// Worker `name` registers `functions` with `capacity` slots.
    pub(super) fn ready(&mut self, name: &str, functions: &[&str], capacity: u32) -> &mut Self {
        self.ready_with(name, ready_info(functions, capacity))
    }

    /// Worker `name` registers with this READY.
    pub(super) fn ready_with(&mut self, name: &str, info: ReadyInfo) -> &mut Self {
        self.message(name, WorkerMessage::Ready(info))
    }

    /// Worker `name` sends a message.
    pub(super) fn message(&mut self, name: &str, message: WorkerMessage) -> &mut Self {
        let now = self.now;
        self.router
            .worker_message(id(name), message, now, &mut self.out);
        self.checked()
    }

    /// Worker `name` answers `ticket` with `body`.
    pub(super) fn reply_with(&mut self, name: &str, ticket: Ticket, body: Frame) -> &mut Self {
        self.message(
            name,
            WorkerMessage::Reply(ReplyMessage::single(ticket, body)),
        )
    }

    /// Worker `name` answers `ticket` with a result.
    pub(super) fn reply(&mut self, name: &str, ticket: Ticket) -> &mut Self {
        self.reply_with(name, ticket, ok_body())
    }

    /// A client calls `function` with call id `id`.
    pub(super) fn call(&mut self, function: &str, id: u64, timeout_ms: Option<u64>) -> &mut Self {
        self.call_from("c", function, id, timeout_ms, no_args())
    }

    /// Client `client` calls `function` with call id `id` and this body.
    pub(super) fn call_from(
        &mut self,
        client: &str,
        function: &str,
        id: u64,
        timeout_ms: Option<u64>,
        body: Frame,
    ) -> &mut Self {
        let header = CallHeader {
            id,
            timeout_ms,
            traceparent: None,
            timings: false,
            wait_for_ready: false,
            notices: false,
        };
        let request = Incoming::Call(Request {
            route: ReplyRoute::new(&[Frame::from(client.as_bytes())], &header.encode()),
            function: function.into(),
            header,
            body,
        });
        self.submit(request)
    }

    /// A client calls `function` asking to wait for a worker if none hosts it.
    pub(super) fn call_waiting(&mut self, function: &str, id: u64, timeout_ms: u64) -> &mut Self {
        let header = CallHeader {
            id,
            timeout_ms: Some(timeout_ms),
            traceparent: None,
            timings: false,
            wait_for_ready: true,
            notices: false,
        };
        let request = Incoming::Call(Request {
            route: ReplyRoute::new(&[Frame::from(&b"c"[..])], &header.encode()),
            function: function.into(),
            header,
            body: no_args(),
        });
        self.submit(request)
    }

    /// Client `client` cancels its call `call_id` (with request id `id`).
    pub(super) fn cancel_from(&mut self, client: &str, call_id: u64, id: u64) -> &mut Self {
        let body = encode_request_body(&(call_id,), &()).unwrap();
        self.call_from(client, CANCEL_FUNCTION, id, None, Frame::from(body))
    }

    /// A client sends a `system.batch` of calls to `functions`.
    pub(super) fn batch(&mut self, id: u64, functions: &[&str]) -> &mut Self {
        let header = CallHeader {
            id,
            timeout_ms: None,
            traceparent: None,
            timings: false,
            wait_for_ready: false,
            notices: false,
        };
        let batch = Incoming::Batch(BatchRequest {
            route: ReplyRoute::new(&[Frame::from(&b"c"[..])], &header.encode()),
            header,
            calls: functions
                .iter()
                .map(|f| (Ok((*f).to_owned()), no_args()))
                .collect(),
        });
        self.submit(batch)
    }

    fn submit(&mut self, incoming: Incoming) -> &mut Self {
        let now = self.now;
        self.router.submit(incoming, None, now, &mut self.out);
        self.checked()
    }

    /// A send to worker `name` failed; `undelivered` were on their way to it.
    pub(super) fn unreachable(&mut self, name: &str, undelivered: &[Ticket]) -> &mut Self {
        let now = self.now;
        let undelivered = undelivered.iter().map(|t| (*t, no_args())).collect();
        self.router
            .worker_unreachable(name.as_bytes(), undelivered, now, &mut self.out);
        self.checked()
    }

    /// Moves the clock `ms` milliseconds on and lets the router act on it.
    pub(super) fn advance(&mut self, ms: u64) -> &mut Self {
        self.now += Duration::from_millis(ms);
        let now = self.now;
        self.router.tick(now, &mut self.out);
        self.checked()
    }

    /// Forgets what the outbox holds.
    pub(super) fn clear(&mut self) -> &mut Self {
        self.out.clear();
        self
    }

    /// The worker and ticket of every REQUEST in the outbox.
    pub(super) fn dispatched(&self) -> Vec<(WorkerId, Ticket)> {
        self.out
            .iter()
            .filter_map(|a| match a {
                Action::Run { worker, call } => Some((worker.clone(), call.ticket)),
                _ => None,
            })
            .collect()
    }

    /// The ticket of the only REQUEST in the outbox.
    pub(super) fn the_ticket(&self) -> Ticket {
        let dispatched = self.dispatched();
        assert_eq!(dispatched.len(), 1, "{dispatched:?}");
        dispatched[0].1
    }

    /// The error code of every reply in the outbox (`None` for forwarded results).
    pub(super) fn reply_codes(&self) -> Vec<Option<ErrorCode>> {
        self.replies()
            .iter()
            .map(|body| decode_reply::<Value>(body).unwrap().err().map(|e| e.code))
            .collect()
    }

    /// The body of every reply in the outbox.
    pub(super) fn replies(&self) -> Vec<Vec<u8>> {
        self.out
            .iter()
            .filter_map(|a| match a {
                Action::Reply { body, .. } => Some(body.to_vec()),
                _ => None,
            })
            .collect()
    }
}
