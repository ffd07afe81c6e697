//! The worker's side of the protocol replayed with a fake clock: what it sends, when it
//! re-registers, reconnects and stops, and which replies it drops.

use std::time::{Duration, Instant};

use switchboard_protocol::worker::{
    BrokerMessage, CallRecord, RequestMessage, Ticket, WorkerMessage,
};
use switchboard_protocol::{Frame, FunctionInfo, ReadyInfo};

use super::{Link, Next, Timing};
use crate::context::CancelToken;
use crate::credit::Demand;
use crate::executor::{Done, Registration};

const HEARTBEAT: Duration = Duration::from_millis(100);

struct Harness {
    link: Link,
    now: Instant,
}

/// What a sent message was, in short.
#[derive(Debug, PartialEq, Eq)]
enum Said {
    Ready,
    Heartbeat,
    Disconnect,
    Reply(Vec<u64>),
    Capacity(u32),
}

impl Harness {
    fn new() -> Harness {
        let now = Instant::now();
        let registration = Registration::default();
        let timing = Timing {
            heartbeat: HEARTBEAT,
            liveness: 3,
            shutdown_grace: Duration::from_secs(1),
        };
        let ready = ReadyInfo {
            capacity: 2,
            inline_capacity: 0,
            heartbeat_ms: 100,
            functions: vec![FunctionInfo {
                name: "f".into(),
                doc: String::new(),
                signature: String::new(),
                retry_safe: false,
                inline: false,
                hedge_ms: 0,
            }],
            name: "test".into(),
            cancel: false,
            drain: false,
            context: false,
            caller: false,
            credit: false,
        };
        let mut link = Link::new(timing, ready, registration, now);
        link.connected(now);
        Harness { link, now }
    }

    /// Everything the link has to send, in short.
    fn said(&mut self) -> Vec<Said> {
        self.link.flush();
        std::iter::from_fn(|| self.link.poll_transmit())
            .map(|message| match message {
                WorkerMessage::Ready(_) => Said::Ready,
                WorkerMessage::Heartbeat => Said::Heartbeat,
                WorkerMessage::Disconnect => Said::Disconnect,
                WorkerMessage::Capacity { capacity, .. } => Said::Capacity(capacity),
                WorkerMessage::Reply(replies) => {
                    Said::Reply(replies.into_replies().map(|(t, _)| t.0).collect())
                }
            })
            .collect()
    }

    fn advance(&mut self, ms: u64) -> Next {
        self.now += Duration::from_millis(ms);
        self.link.handle_timeout(self.now)
    }

    fn hear(&mut self, message: BrokerMessage) -> Option<RequestMessage> {
        self.link.handle_message(message, self.now)
    }

    /// The broker sends calls with these tickets; the link hands them back to run.
    fn request(&mut self, tickets: &[u64]) -> Vec<u64> {
        let mut request = RequestMessage::new();
        for &ticket in tickets {
            let record = CallRecord {
                ticket: Ticket(ticket),
                call_id: ticket,
                time_left_ms: 1000,
                function: "f",
                attempt: 0,
                traceparent: "",
                caller: "",
                flags: 0,
            };
            request.push(record, Frame::from(&b"\x80"[..]));
        }
        let mut calls = self
            .hear(BrokerMessage::Request(request))
            .expect("calls to run");
        calls.calls().map(|(record, _)| record.ticket.0).collect()
    }

    /// The worker hands call `ticket` to an executor; returns its cancellation token.
    fn hand_off(&mut self, ticket: u64) -> CancelToken {
        let token = CancelToken::default();
        self.link.handed_off(Ticket(ticket), token.clone());
        token
    }

    /// An executor finished `ticket`, a call of registration `registration`.
    fn done(&mut self, ticket: u64, registration: u64) {
        self.link.finished(Done {
            ticket: Ticket(ticket),
            body: b"\x81\xa6result\x01".to_vec(),
            registration,
            link: 0,
        });
    }
}

#[test]
fn it_registers_on_connect_and_heartbeats_every_interval() {
    let mut h = Harness::new();
    assert_eq!(h.said(), [Said::Ready]);
    assert_eq!(h.link.poll_timeout(), h.now + HEARTBEAT);
    assert_eq!(h.advance(99), Next::Continue);
    assert!(h.said().is_empty());
    assert_eq!(h.advance(1), Next::Continue);
    assert_eq!(h.said(), [Said::Heartbeat]);
}

#[test]
fn replies_gathered_together_leave_in_one_reply_message() {
    let mut h = Harness::new();
    h.said();
    assert_eq!(h.request(&[1, 2, 3]), [1, 2, 3]);
    let now = h.link.registration();
    h.link.reply(Ticket(1), b"\x80".to_vec());
    h.hand_off(2);
    h.hand_off(3);
    h.done(3, now);
    h.done(2, now);
    assert_eq!(h.said(), [Said::Reply(vec![1, 3, 2])]);
    assert_eq!(h.link.held(), 0);
}

#[test]
fn a_silent_broker_is_left_for_a_fresh_connection_and_a_new_registration() {
    let mut h = Harness::new();
    h.said();
    let first = h.link.registration();
    // Heartbeats go out, but nothing comes back for 3 intervals.
    for _ in 0..2 {
        assert_eq!(h.advance(100), Next::Continue);
    }
    assert_eq!(h.advance(100), Next::Reconnect);
    h.link.connected(h.now);
    assert_eq!(h.said(), [Said::Ready]);
    assert_ne!(h.link.registration(), first);
}

#[test]
fn a_word_from_the_broker_keeps_it_alive() {
    let mut h = Harness::new();
    h.said();
    for _ in 0..10 {
        assert_eq!(h.advance(100), Next::Continue);
        h.hear(BrokerMessage::Heartbeat);
    }
}

#[test]
fn a_broker_that_does_not_know_the_worker_gets_a_new_ready_and_no_old_replies() {
    let mut h = Harness::new();
    h.said();
    h.request(&[1, 2]);
    let before = h.link.registration();
    let old = h.hand_off(2);
    h.link.reply(Ticket(1), b"\x80".to_vec()); // gathered, not flushed yet
    assert!(h.hear(BrokerMessage::Disconnect).is_none());
    // The gathered reply answered a call that broker does not know: dropped.
    assert_eq!(h.said(), [Said::Ready]);
    assert_ne!(h.link.registration(), before);
    assert!(
        old.is_cancelled(),
        "its function may stop: nobody will hear its answer"
    );
    // The executor's reply to a call of the old registration is dropped too.
    h.done(2, before);
    assert!(h.said().is_empty());
    assert_eq!(h.link.held(), 0);
}

#[test]
fn stopping_sends_gathered_replies_then_disconnect_and_waits_for_held_calls_and_the_ack() {
    let mut h = Harness::new();
    h.said();
    h.request(&[1, 2]);
    let now = h.link.registration();
    h.hand_off(2);
    h.link.reply(Ticket(1), b"\x80".to_vec());
    h.link.begin_shutdown(h.now);
    h.link.begin_shutdown(h.now); // once only
    assert_eq!(h.said(), [Said::Reply(vec![1]), Said::Disconnect]);
    assert_eq!(h.advance(10), Next::Continue, "a call is still held");
    h.done(2, now);
    assert_eq!(h.advance(10), Next::Continue, "no acknowledgement yet");
    h.hear(BrokerMessage::Disconnect);
    assert_eq!(
        h.said(),
        [Said::Reply(vec![2])],
        "no new READY while leaving"
    );
    assert_eq!(
        h.advance(0),
        Next::Stop {
            out_of_grace: false
        }
    );
}

#[test]
fn stopping_ends_at_the_grace_period_and_abandons_what_is_held() {
    let mut h = Harness::new();
    h.said();
    h.request(&[1]);
    let now = h.link.registration();
    let held = h.hand_off(1);
    h.link.begin_shutdown(h.now);
    h.said();
    h.hear(BrokerMessage::Disconnect);
    assert_eq!(h.advance(999), Next::Continue);
    assert_eq!(
        h.said(),
        [Said::Heartbeat],
        "heartbeats go on while leaving"
    );
    assert_eq!(h.advance(1), Next::Stop { out_of_grace: true });
    h.link.abandon();
    assert!(held.is_cancelled(), "abandoned calls are cancelled");
    assert_eq!(
        h.said(),
        [Said::Disconnect],
        "the second DISCONNECT: gone now"
    );
    // A reply that comes after is not sent.
    h.done(1, now);
    assert!(h.said().is_empty());
}

#[test]
fn a_stopping_worker_whose_broker_is_gone_stops_once_its_calls_are_done() {
    let mut h = Harness::new();
    h.said();
    h.link.begin_shutdown(h.now);
    h.said();
    assert_eq!(h.advance(200), Next::Continue, "no reconnect while leaving");
    assert_eq!(
        h.advance(100),
        Next::Stop {
            out_of_grace: false
        }
    );
}

#[test]
fn a_cancel_from_the_broker_reaches_the_calls_it_names_only() {
    let mut h = Harness::new();
    h.said();
    h.request(&[1, 2, 3]);
    let tokens: Vec<CancelToken> = [1, 2, 3].iter().map(|&t| h.hand_off(t)).collect();
    assert!(h
        .hear(BrokerMessage::Cancel(vec![
            Ticket(1),
            Ticket(3),
            Ticket(99)
        ]))
        .is_none());
    let cancelled: Vec<bool> = tokens.iter().map(CancelToken::is_cancelled).collect();
    assert_eq!(cancelled, [true, false, true]);
    // The slot stays counted until the worker answers.
    assert_eq!(h.link.held(), 3);
    let now = h.link.registration();
    h.done(1, now);
    assert_eq!(h.link.held(), 2);
    assert_eq!(
        h.said(),
        [Said::Reply(vec![1])],
        "a cancelled call is still answered"
    );
}

#[test]
fn capacity_moves_only_with_a_broker_that_sent_load_and_a_new_connection_starts_over() {
    let mut h = Harness::new();
    h.said();
    let capacity = h.link.ready.capacity;
    // Not heard from yet: it keeps only what it holds; heard, but no LOAD: its READY share.
    assert_eq!(h.link.demand(capacity), Demand::Reserved(0));
    h.hear(BrokerMessage::Heartbeat);
    assert_eq!(h.link.demand(capacity), Demand::Reserved(capacity));
    h.link.grant(capacity + 5);
    assert_eq!(
        h.said(),
        vec![],
        "a broker that never sent LOAD gets no CAPACITY"
    );
    h.hear(BrokerMessage::Load {
        backlog: 7,
        flags: 0,
    });
    assert!(h.link.take_load_news());
    assert!(!h.link.take_load_news());
    assert_eq!(
        h.link.demand(capacity),
        Demand::Active {
            held: 0,
            backlog: 7
        }
    );
    h.link.grant(capacity + 5);
    h.link.grant(capacity + 5);
    assert_eq!(h.said(), vec![Said::Capacity(capacity + 5)], "said once");
    // Stopping: it keeps what it holds.
    h.hand_off(1);
    h.hear(BrokerMessage::Load {
        backlog: 0,
        flags: switchboard_protocol::worker::LOAD_STOPPING,
    });
    assert_eq!(h.link.demand(capacity), Demand::Reserved(1));
    // The broker forgets the worker: READY again, from READY's capacity, no LOAD known.
    h.hear(BrokerMessage::Disconnect);
    assert_eq!(h.said(), vec![Said::Ready]);
    assert_eq!(h.link.demand(capacity), Demand::Reserved(1));
}
