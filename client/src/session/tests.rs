//! The session's rules, and the races found by process tests, replayed with a fake
//! clock and hand-built frames: no socket, no thread, no sleep.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use switchboard_protocol::client::{request_frames, Envelope, ReturnAddress};
use switchboard_protocol::codec::{decode_reply, encode_error, encode_result};
use switchboard_protocol::limits::MAX_PIPELINED_CALLS;
use switchboard_protocol::{CallHeader, ErrorCode, Frame, RemoteError};

use super::*;

type Outcome = Receiver<Result<Frame, CallError>>;

/// A session with the default policy, its clock and its counters.
struct Harness {
    session: Session,
    now: Instant,
    counters: Arc<Counters>,
}

impl Harness {
    fn new() -> Harness {
        let now = Instant::now();
        let counters = Arc::new(Counters::default());
        let session = Session::new(
            "tcp://broker:5555",
            RetryPolicy::default(),
            Arc::clone(&counters),
            now,
        );
        Harness {
            session,
            now,
            counters,
        }
    }

    /// A caller makes call `id` with a deadline `timeout_ms` away.
    fn call(&mut self, id: u64, timeout_ms: u64, idempotent: bool) -> Outcome {
        let (reply, outcome) = crossbeam_channel::bounded(1);
        let header = CallHeader {
            id,
            timeout_ms: Some(timeout_ms),
            traceparent: None,
            timings: false,
            wait_for_ready: false,
            notices: false,
        };
        let call = NewCall {
            id,
            frames: request_frames("f", &header, vec![0x80]),
            reply: ReplySender::Blocking(reply),
            deadline: self.now + Duration::from_millis(timeout_ms),
            forget_after: self.now + Duration::from_millis(timeout_ms + 250),
            idempotent,
            timeout: Duration::from_millis(timeout_ms),
        };
        self.session.handle_call(call, self.now);
        outcome
    }

    fn link(&mut self, event: LinkEvent) {
        self.session.handle_link(event, self.now);
    }

    fn down(&mut self) {
        self.link(LinkEvent::Down { failure: None });
    }

    /// Sends everything the session hands out; returns the call ids of each message.
    fn send_all(&mut self) -> Vec<Vec<u64>> {
        let mut messages = Vec::new();
        while let Some(frames) = self.session.poll_transmit() {
            messages.push(call_ids(&frames));
            self.session.transmitted(Transmitted::Sent);
        }
        messages
    }

    /// The broker answers call `id` with `body`.
    fn reply(&mut self, id: u64, body: Vec<u8>) {
        let header = CallHeader {
            id,
            timeout_ms: None,
            traceparent: None,
            timings: false,
            wait_for_ready: false,
            notices: false,
        };
        let route = Envelope::new::<Frame>(&[], &header.encode());
        self.session
            .handle_reply_message(route.reply_frames(Frame::from(body)), self.now);
    }

    fn advance(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
        self.session.handle_timeout(self.now);
    }

    fn count(&self, counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The call ids in a request message (one call or a pipeline).
fn call_ids(frames: &[Frame]) -> Vec<u64> {
    Pipeline::split(frames.iter().map(|f| Frame::from(&f[..])).collect())
        .iter()
        .map(|call| CallHeader::decode(&call[3]).unwrap().id)
        .collect()
}

fn ok(value: i64) -> Vec<u8> {
    encode_result(&value).unwrap()
}

fn error(code: ErrorCode) -> Vec<u8> {
    encode_error(&RemoteError::new(code, "from the broker"))
}

/// The outcome delivered so far: `Ok(result)` or `Err(code)`.
fn outcome(receiver: &Outcome) -> Option<Result<i64, ErrorCode>> {
    match receiver.try_recv() {
        Ok(Ok(body)) => match decode_reply::<i64>(&body).unwrap() {
            Ok(value) => Some(Ok(value)),
            Err(remote) => Some(Err(remote.code)),
        },
        Ok(Err(error)) => Some(Err(error.code().expect("a coded error"))),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Disconnected) => panic!("the session dropped the call"),
    }
}

#[test]
fn nothing_leaves_before_the_link_is_up_then_calls_made_together_leave_together() {
    let mut h = Harness::new();
    let _a = h.call(1, 1000, false);
    let _b = h.call(2, 1000, false);
    assert!(h.send_all().is_empty(), "no handshake yet");
    assert!(!h.session.wants_to_send());
    h.link(LinkEvent::Up);
    assert!(h.session.wants_to_send());
    assert_eq!(
        h.send_all(),
        [vec![1, 2]],
        "one pipelined message, in order"
    );
}

#[test]
fn a_pipeline_is_cut_at_its_limit() {
    let mut h = Harness::new();
    h.link(LinkEvent::Up);
    let _outcomes: Vec<_> = (0..MAX_PIPELINED_CALLS as u64 + 1)
        .map(|id| h.call(id, 1000, false))
        .collect();
    let sizes: Vec<usize> = h.send_all().iter().map(Vec::len).collect();
    assert_eq!(sizes, [MAX_PIPELINED_CALLS, 1]);
}

#[test]
fn a_message_the_socket_refuses_waits_again_in_order() {
    let mut h = Harness::new();
    h.link(LinkEvent::Up);
    let _a = h.call(1, 1000, false);
    let _b = h.call(2, 1000, false);
    let frames = h.session.poll_transmit().unwrap();
    h.session.transmitted(Transmitted::WouldBlock(frames));
    let _c = h.call(3, 1000, false);
    assert_eq!(h.send_all(), [vec![1, 2, 3]]);
}

#[test]
fn a_failed_send_fails_its_calls_with_the_reason() {
    let mut h = Harness::new();
    h.link(LinkEvent::Up);
    let a = h.call(1, 1000, false);
    h.session.poll_transmit().unwrap();
    h.session
        .transmitted(Transmitted::Failed("socket closed".into()));
    let error = a.try_recv().unwrap().unwrap_err();
    assert!(matches!(error, CallError::Transport(ref m) if m == "socket closed"));
}

#[test]
fn an_unsent_call_fails_at_its_deadline_saying_why_it_never_left() {
    let mut h = Harness::new();
    let refused = Some("the broker refused this client's CURVE key");
    h.link(LinkEvent::Down { failure: refused });
    let a = h.call(1, 100, false);
    assert_eq!(h.session.poll_timeout(), h.now + Duration::from_millis(100));
    h.advance(99);
    assert_eq!(outcome(&a), None);
    h.advance(1);
    let error = a.try_recv().unwrap().unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::BrokerLost));
    assert!(
        error.message().contains("refused this client's CURVE key"),
        "{error}"
    );
}

#[test]
fn a_reply_that_came_before_the_disconnect_is_delivered_not_lost() {
    // The broker answers and exits: the driver hands over the queued reply first.
    let mut h = Harness::new();
    h.link(LinkEvent::Up);
    let a = h.call(1, 1000, false);
    h.send_all();
    h.reply(1, ok(5));
    h.down();
    assert_eq!(outcome(&a), Some(Ok(5)));
    assert_eq!(h.count(&h.counters.disconnects), 1);
}

#[test]
fn a_disconnect_fails_calls_in_flight_at_once_and_resends_idempotent_ones() {
    let mut h = Harness::new();
    h.link(LinkEvent::Up);
    let plain = h.call(1, 1000, false);
    let safe = h.call(2, 1000, true);
    h.send_all();
    h.down();
    assert_eq!(outcome(&plain), Some(Err(ErrorCode::BrokerLost)));
    assert_eq!(outcome(&safe), None, "waits for the next connection");
    assert!(h.send_all().is_empty(), "not into the dying connection");
    h.link(LinkEvent::Up);
    assert_eq!(h.send_all(), [vec![2]], "the same call id again");
    assert_eq!(h.count(&h.counters.resent_calls), 1);
    h.reply(2, ok(7));
    assert_eq!(outcome(&safe), Some(Ok(7)));
}

#[test]
fn a_reply_after_the_disconnect_that_failed_its_call_is_counted_not_delivered_twice() {
    let mut h = Harness::new();
    h.link(LinkEvent::Up);
    let a = h.call(1, 1000, false);
    h.send_all();
    h.down();
    assert_eq!(outcome(&a), Some(Err(ErrorCode::BrokerLost)));
    h.reply(1, ok(1));
    assert_eq!(h.count(&h.counters.unmatched_replies), 1);
}

#[test]
fn an_idempotent_call_answered_shutting_down_is_sent_again_after_the_pause() {
    let mut h = Harness::new();
    h.link(LinkEvent::Up);
    let safe = h.call(1, 1000, true);
    let plain = h.call(2, 1000, false);
    h.send_all();
    h.reply(1, error(ErrorCode::ShuttingDown));
    h.reply(2, error(ErrorCode::ShuttingDown));
    assert_eq!(outcome(&plain), Some(Err(ErrorCode::ShuttingDown)));
    assert_eq!(outcome(&safe), None);
    let pause = RetryPolicy::default().retry_pause;
    assert_eq!(h.session.poll_timeout(), h.now + pause);
    h.advance(pause.as_millis() as u64);
    assert_eq!(h.send_all(), [vec![1]]);
    h.reply(1, ok(3));
    assert_eq!(outcome(&safe), Some(Ok(3)));
}

#[test]
fn unknown_function_right_after_a_reconnect_is_retried_for_idempotent_calls_only_then() {
    let mut h = Harness::new();
    h.link(LinkEvent::Up);
    // Long before any disconnect: UNKNOWN_FUNCTION is final.
    let early = h.call(1, 10_000, true);
    h.send_all();
    h.reply(1, error(ErrorCode::UnknownFunction));
    assert_eq!(outcome(&early), Some(Err(ErrorCode::UnknownFunction)));
    // A restarted broker whose workers have not registered yet.
    h.down();
    h.link(LinkEvent::Up);
    let fresh = h.call(2, 10_000, true);
    h.send_all();
    h.reply(2, error(ErrorCode::UnknownFunction));
    assert_eq!(outcome(&fresh), None, "retried within the restart window");
    h.advance(100);
    assert_eq!(h.send_all(), [vec![2]]);
    h.reply(2, ok(9));
    assert_eq!(outcome(&fresh), Some(Ok(9)));
}

#[test]
fn a_cancelled_call_is_forgotten_wherever_it_is() {
    let mut h = Harness::new();
    let unsent = h.call(1, 1000, false);
    h.session.handle_cancel(1);
    h.link(LinkEvent::Up);
    assert!(h.send_all().is_empty());
    drop(unsent);
    let sent = h.call(2, 1000, false);
    h.send_all();
    h.session.handle_cancel(2);
    h.reply(2, ok(1));
    assert!(
        matches!(sent.try_recv(), Err(TryRecvError::Disconnected)),
        "nothing delivered"
    );
    assert_eq!(h.count(&h.counters.unmatched_replies), 1);
}

#[test]
fn the_unsent_queue_is_bounded() {
    let mut h = Harness::new();
    let policy = RetryPolicy {
        max_unsent: 2,
        ..RetryPolicy::default()
    };
    h.session = Session::new("tcp://broker:5555", policy, Arc::clone(&h.counters), h.now);
    let _a = h.call(1, 1000, false);
    let _b = h.call(2, 1000, false);
    let c = h.call(3, 1000, false);
    assert_eq!(outcome(&c), Some(Err(ErrorCode::Overloaded)));
}

#[test]
fn calls_whose_callers_gave_up_are_swept() {
    let mut h = Harness::new();
    h.link(LinkEvent::Up);
    let _a = h.call(1, 10, false);
    h.send_all();
    // Past forget_after (deadline + 250 ms) and past a sweep: the entry is gone, so
    // a reply that finally comes is unmatched.
    h.advance(600);
    h.reply(1, ok(1));
    assert_eq!(h.count(&h.counters.unmatched_replies), 1);
}

#[test]
fn an_async_call_is_answered_timeout_when_its_caller_gives_up() {
    let mut h = Harness::new();
    h.link(LinkEvent::Up);
    let (reply, mut outcome) = futures_channel::oneshot::channel();
    let header = CallHeader {
        id: 9,
        timeout_ms: Some(100),
        traceparent: None,
        timings: false,
        wait_for_ready: false,
        notices: false,
    };
    h.session.handle_call(
        NewCall {
            id: 9,
            frames: request_frames("f", &header, vec![0x80]),
            reply: ReplySender::Async(reply),
            deadline: h.now + Duration::from_millis(100),
            forget_after: h.now + Duration::from_millis(350),
            idempotent: false,
            timeout: Duration::from_millis(100),
        },
        h.now,
    );
    assert_eq!(h.send_all(), [vec![9]]);
    // No runtime timer: the session itself wakes at the caller's give-up instant.
    assert_eq!(h.session.poll_timeout(), h.now + Duration::from_millis(350));
    h.advance(349);
    assert!(matches!(outcome.try_recv(), Ok(None)));
    h.advance(1);
    match outcome.try_recv() {
        Ok(Some(Err(CallError::Timeout(timeout)))) => {
            assert_eq!(timeout, Duration::from_millis(100))
        }
        other => panic!("{other:?}"),
    }
    // A reply that comes after is unmatched, not delivered twice.
    h.reply(9, ok(1));
    assert_eq!(h.count(&h.counters.unmatched_replies), 1);
}
