//! Choosing brokers and moving stranded calls, with sessions and no socket.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_protocol::client::{request_frames, Envelope, ReturnAddress};
use switchboard_protocol::codec::encode_error;
use switchboard_protocol::{CallHeader, ErrorCode, Frame, RemoteError};

use serde::de::IgnoredAny;

use super::*;
use crate::session::{Counters, LinkEvent, NewCall, ReplySender, RetryPolicy, Transmitted};

impl HasSession for Session {
    fn session(&self) -> &Session {
        self
    }
    fn session_mut(&mut self) -> &mut Session {
        self
    }
}

fn brokers(n: usize) -> Brokers<Session> {
    let now = Instant::now();
    // `Brokers::new` tells each session how many brokers there are.
    let policy = RetryPolicy::default();
    let counters = Arc::new(Counters::default());
    Brokers::new(
        (0..n)
            .map(|i| {
                Session::new(
                    &format!("tcp://b{i}:5555"),
                    policy,
                    Arc::clone(&counters),
                    now,
                )
            })
            .collect(),
    )
}

fn header(id: u64) -> CallHeader {
    CallHeader {
        id,
        timeout_ms: Some(10_000),
        traceparent: None,
        timings: false,
        wait_for_ready: false,
        notices: false,
    }
}

fn call(id: u64) -> NewCall {
    let now = Instant::now();
    let (reply, _outcome) = crossbeam_channel::bounded(1);
    NewCall {
        id,
        frames: request_frames("f", &header(id), vec![0x80]),
        reply: ReplySender::Blocking(reply),
        deadline: now + Duration::from_secs(10),
        forget_after: now + Duration::from_secs(11),
        idempotent: false,
        timeout: Duration::from_secs(10),
    }
}

fn up(brokers: &mut Brokers<Session>, index: usize) {
    brokers[index].handle_link(LinkEvent::Up, Instant::now());
}

/// Places call `id` on the broker [`Brokers::choose`] picks, and says which.
fn place(brokers: &mut Brokers<Session>, id: u64) -> usize {
    let to = brokers.choose();
    brokers[to].handle_call(call(id), Instant::now());
    to
}

/// Sends everything broker `index` has to send; returns how many messages left.
fn flush(brokers: &mut Brokers<Session>, index: usize) -> usize {
    let mut sent = 0;
    while brokers[index].poll_transmit().is_some() {
        brokers[index].transmitted(Transmitted::Sent);
        sent += 1;
    }
    sent
}

#[test]
fn calls_go_only_to_brokers_that_take_calls() {
    let mut b = brokers(3);
    up(&mut b, 1);
    for id in 0..50 {
        assert_eq!(place(&mut b, id), 1);
    }
}

#[test]
fn power_of_two_choices_keeps_the_brokers_level() {
    let mut b = brokers(3);
    for i in 0..3 {
        up(&mut b, i);
    }
    // Broker 0 already holds many calls: new ones go to the other two.
    for id in 0..100 {
        b[0].handle_call(call(id), Instant::now());
    }
    let mut placed = [0usize; 3];
    for id in 100..400 {
        placed[place(&mut b, id)] += 1;
    }
    assert!(placed[0] < 50, "the loaded broker got {placed:?}");
    let loads: Vec<usize> = b.iter().map(|s| s.load()).collect();
    let (min, max) = (*loads.iter().min().unwrap(), *loads.iter().max().unwrap());
    assert!(max - min <= 3, "loads drifted apart: {loads:?}");
}

#[test]
fn with_no_broker_up_calls_wait_and_move_to_the_first_that_comes_up() {
    let mut b = brokers(3);
    for id in 0..10 {
        place(&mut b, id);
    }
    assert_eq!(b.iter().map(|s| s.load()).sum::<usize>(), 10);
    b.move_stranded_calls();
    assert_eq!(
        b.iter().map(|s| s.load()).sum::<usize>(),
        10,
        "nothing to move to"
    );
    up(&mut b, 2);
    b.move_stranded_calls();
    assert_eq!(b[2].load(), 10);
    assert_eq!(b[0].load() + b[1].load(), 0);
}

#[test]
fn a_call_refused_shutting_down_moves_to_another_broker_and_no_new_call_follows_it() {
    let mut b = brokers(2);
    up(&mut b, 0);
    up(&mut b, 1);
    // A call that is not idempotent lands on broker 0, which is stopping.
    b[0].handle_call(call(7), Instant::now());
    assert_eq!(flush(&mut b, 0), 1);
    let refusal = RemoteError::new(ErrorCode::ShuttingDown, "the broker is shutting down");
    let reply = Envelope::new::<Frame>(&[], &header(7).encode())
        .reply_frames(Frame::from(encode_error(&refusal)));
    b[0].handle_reply_message(reply, Instant::now());
    assert!(!b[0].accepting(), "a stopping broker takes no new calls");
    b.move_stranded_calls();
    assert_eq!(b[0].load(), 0);
    assert_eq!(b[1].load(), 1, "the refused call (it never ran) moved on");
    for id in 8..20 {
        assert_eq!(place(&mut b, id), 1);
    }
    // A new connection (the broker restarted) takes calls again.
    b[0].handle_link(LinkEvent::Down { failure: None }, Instant::now());
    up(&mut b, 0);
    assert!(b[0].accepting());
}

#[test]
fn one_broker_is_always_chosen_even_when_down() {
    let mut b = brokers(1);
    assert_eq!(place(&mut b, 1), 0);
    b.move_stranded_calls();
    assert_eq!(b[0].load(), 1);
}

#[test]
fn a_notice_that_a_broker_stops_sends_new_calls_elsewhere_at_once() {
    let mut b = brokers(2);
    up(&mut b, 0);
    up(&mut b, 1);
    let body =
        switchboard_protocol::client::notice_body(&switchboard_protocol::client::Notice::Stopping);
    let notice = vec![
        Frame::new(),
        Frame::from(&b"SBC1"[..]),
        Frame::new(),
        Frame::from(&body[..]),
    ];
    b[0].handle_reply_message(notice, Instant::now());
    assert!(!b[0].accepting());
    for id in 0..20 {
        assert_eq!(place(&mut b, id), 1);
    }
}

#[test]
fn unknown_function_from_one_broker_tries_the_other_once_then_fails() {
    let mut b = brokers(2);
    up(&mut b, 0);
    up(&mut b, 1);
    let (reply, outcome) = crossbeam_channel::bounded(1);
    let mut lost = call(9);
    lost.reply = ReplySender::Blocking(reply);
    b[0].handle_call(lost, Instant::now());
    assert_eq!(flush(&mut b, 0), 1);
    let unknown = |id: u64| {
        let error = RemoteError::new(ErrorCode::UnknownFunction, "no worker hosts 'f'");
        Envelope::new::<Frame>(&[], &header(id).encode())
            .reply_frames(Frame::from(encode_error(&error)))
    };
    // The first broker lost its workers: the call never ran there, the other one may run it.
    b[0].handle_reply_message(unknown(9), Instant::now());
    assert!(
        !b[0].accepting(),
        "a broker that answered UNKNOWN_FUNCTION rests a moment"
    );
    b.move_stranded_calls();
    assert_eq!((b[0].load(), b[1].load()), (0, 1));
    assert!(outcome.try_recv().is_err(), "not answered yet");
    assert_eq!(flush(&mut b, 1), 1);
    // No broker hosts it: the caller hears UNKNOWN_FUNCTION, after each broker said so.
    b[1].handle_reply_message(unknown(9), Instant::now());
    let body = outcome.try_recv().expect("answered").expect("a reply");
    let error = switchboard_protocol::codec::decode_reply::<IgnoredAny>(&body)
        .unwrap()
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::UnknownFunction);
}
