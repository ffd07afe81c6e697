//! Router tests: each step goes through [`harness::Harness`], which checks the
//! router's invariants after it.

mod harness;

use std::time::Duration;
use switchboard_protocol::limits::{HEARTBEAT_RANGE_MS, MAX_FUNCTIONS, MAX_FUNCTIONS_PER_WORKER};

use switchboard_protocol::codec::{decode_reply, encode_error, encode_result};
use switchboard_protocol::worker::WorkerMessage;
use switchboard_protocol::{ErrorCode, Frame, Value};

use super::{health, Action, RouterConfig, WorkerId};
use crate::view::View;
use harness::{id, ready_info, Harness};
use switchboard_protocol::worker::Ticket;

#[test]
fn unknown_function_is_refused_at_once() {
    let mut h = Harness::new();
    h.call("nope", 1, None);
    assert_eq!(h.reply_codes(), [Some(ErrorCode::UnknownFunction)]);
}

#[test]
fn a_zero_timeout_is_answered_timeout_without_dispatch() {
    let mut h = Harness::new();
    h.ready("w", &["f"], 1).call("f", 1, Some(0));
    assert_eq!(h.reply_codes(), [Some(ErrorCode::Timeout)]);
    assert!(h.dispatched().is_empty());
    // Absent (or nil): the broker's default deadline.
    h.call("f", 2, None);
    assert_eq!(h.dispatched().len(), 1);
}

#[test]
fn calls_go_to_the_worker_with_most_free_slots() {
    let mut h = Harness::new();
    h.ready("small", &["f"], 1).ready("big", &["f"], 3);
    for call in 0..4 {
        h.call("f", call, None);
    }
    let workers: Vec<_> = h.dispatched().into_iter().map(|(w, _)| w).collect();
    assert_eq!(workers, [id("big"), id("big"), id("small"), id("big")]);
}

#[test]
fn inline_functions_have_their_own_budget_beside_the_slots() {
    let mut h = Harness::with(RouterConfig::default());
    let mut info = ready_info(&["slow", "fast"], 1);
    info.functions[1].inline = true;
    info.inline_capacity = 3;
    h.ready_with("w", info);
    for call in 0..2 {
        h.call("slow", call, None);
    }
    for call in 10..14 {
        h.call("fast", call, None);
    }
    // One slow call fills the one slot; three fast ones fill the inline budget.
    let running = h.dispatched();
    assert_eq!(running.len(), 4);
    assert_eq!(h.router.workers()[0].running, 4);
    let queued: Vec<(String, usize)> = h
        .router
        .functions()
        .into_iter()
        .map(|f| (f.info.name, f.queued))
        .collect();
    assert!(queued.contains(&("slow".into(), 1)) && queued.contains(&("fast".into(), 1)));
    // A fast reply frees an inline place, which goes to the waiting fast call only.
    let (_, fast_ticket) = running[1];
    h.clear().reply("w", fast_ticket);
    assert_eq!(h.dispatched().len(), 1);
    let functions = h.router.functions();
    let slow = functions.iter().find(|f| f.info.name == "slow").unwrap();
    assert_eq!((slow.queued, slow.running), (1, 1));
}

#[test]
fn equal_workers_take_turns() {
    let mut h = Harness::new();
    h.ready("a", &["f"], 1).ready("b", &["f"], 1);
    let mut seen = Vec::new();
    for call in 0..4 {
        h.clear().call("f", call, None);
        let (worker, ticket) = h.dispatched().remove(0);
        h.reply(std::str::from_utf8(&worker).unwrap(), ticket);
        seen.push(worker);
    }
    assert_ne!(seen[0], seen[1]);
    assert_eq!((&seen[0], &seen[1]), (&seen[2], &seen[3]));
}

#[test]
fn busy_workers_queue_calls_then_overload() {
    let mut h = Harness::new();
    h.ready("w", &["f"], 1);
    for call in 0..4 {
        h.call("f", call, None);
    }
    // One runs, two wait (queue capacity 2), the fourth is refused.
    let ticket = h.the_ticket();
    assert_eq!(h.reply_codes(), [Some(ErrorCode::Overloaded)]);
    h.clear().reply("w", ticket);
    // The reply goes out and the oldest queued call is dispatched.
    assert_eq!(h.reply_codes(), [None]);
    assert_eq!(h.dispatched().len(), 1);
}

#[test]
fn queued_call_times_out_at_its_deadline() {
    let mut h = Harness::new();
    h.ready("w", &["f"], 1)
        .call("f", 1, Some(10_000))
        .call("f", 2, Some(50))
        .clear()
        .advance(40);
    assert!(h.reply_codes().is_empty());
    h.advance(20);
    assert_eq!(h.reply_codes(), [Some(ErrorCode::Timeout)]);
    assert_eq!(h.router.functions()[0].queued, 0);
}

#[test]
fn calls_that_expire_in_the_middle_of_a_queue_leave_it_in_order() {
    let mut h = Harness::with(RouterConfig::default());
    h.ready("w", &["f"], 1).call("f", 0, None);
    let running = h.the_ticket();
    // Queued: every odd call has a short deadline.
    for call in 1..=40 {
        h.call("f", call, Some(if call % 2 == 1 { 10 } else { 60_000 }));
    }
    h.clear().advance(20);
    assert_eq!(h.reply_codes(), [Some(ErrorCode::Timeout); 20]);
    assert_eq!(h.router.functions()[0].queued, 20);
    // The survivors run in the order they came.
    let mut order = Vec::new();
    let mut ticket = running;
    for _ in 0..20 {
        h.clear().reply("w", ticket);
        ticket = h.the_ticket();
        order.push(ticket);
    }
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert_eq!(h.router.functions()[0].queued, 0);
}

#[test]
fn silent_worker_is_lost_and_its_calls_fail() {
    let mut h = Harness::new();
    h.ready("w", &["f"], 2).call("f", 1, None).clear();
    // Heartbeat 100 ms, liveness 3: lost after 300 ms of silence.
    h.advance(250);
    assert!(h.reply_codes().is_empty());
    h.advance(51);
    assert_eq!(h.reply_codes(), [Some(ErrorCode::WorkerLost)]);
    assert_eq!(h.router.worker_count(), 0);
    assert_eq!(h.router.stats().workers_lost, 1);
}

/// A READY of `safe` (retry-safe) and `unsafe`, two slots.
fn safe_and_unsafe() -> switchboard_protocol::ReadyInfo {
    let mut info = ready_info(&["safe", "unsafe"], 2);
    info.functions[0].retry_safe = true;
    info
}

#[test]
fn retry_safe_call_moves_to_another_worker_when_its_worker_is_lost() {
    let mut h = Harness::new();
    h.ready_with("a", safe_and_unsafe())
        .call("safe", 1, None)
        .call("unsafe", 2, None);
    let on_a = h.dispatched();
    assert_eq!(on_a.len(), 2);
    h.ready_with("b", safe_and_unsafe())
        .clear()
        .unreachable("a", &[]);
    assert_eq!(
        h.dispatched(),
        [(id("b"), on_a[0].1)],
        "safe call re-sent to b"
    );
    assert_eq!(
        h.reply_codes(),
        [Some(ErrorCode::WorkerLost)],
        "unsafe call fails"
    );
    assert_eq!(h.router.stats().retries, 1);
}

#[test]
fn retry_safe_call_gives_up_after_max_attempts() {
    let mut h = Harness::with(RouterConfig {
        max_attempts: 2,
        ..RouterConfig::default()
    });
    let mut info = ready_info(&["safe"], 1);
    info.functions[0].retry_safe = true;
    for worker in ["a", "b", "c"] {
        h.ready_with(worker, info.clone());
    }
    h.call("safe", 1, None);
    for attempt in 1..=2 {
        let (worker, _) = h.dispatched().pop().expect("dispatched");
        h.clear()
            .unreachable(std::str::from_utf8(&worker).unwrap(), &[]);
        if attempt == 2 {
            assert_eq!(h.reply_codes(), [Some(ErrorCode::WorkerLost)]);
            assert!(h.dispatched().is_empty());
        }
    }
}

#[test]
fn a_call_whose_send_failed_goes_to_another_worker_not_worker_lost() {
    let mut h = Harness::new();
    h.ready("dead", &["f"], 3).ready("alive", &["f"], 1);
    h.call("f", 0, None).call("f", 1, None);
    let sent = h.dispatched();
    assert!(sent.iter().all(|(w, _)| *w == id("dead")), "{sent:?}");
    let tickets: Vec<_> = sent.iter().map(|(_, t)| *t).collect();
    h.clear().unreachable("dead", &tickets);
    // Neither call ran, so neither fails: the first goes to the one free slot left,
    // in its original order; the second waits for it.
    assert!(h.reply_codes().is_empty(), "{:?}", h.reply_codes());
    assert_eq!(h.dispatched(), [(id("alive"), tickets[0])]);
    assert_eq!(h.router.functions()[0].queued, 1);
    assert_eq!(h.router.stats().workers_lost, 1);
    h.clear().reply("alive", tickets[0]);
    assert_eq!(h.dispatched(), [(id("alive"), tickets[1])]);
}

#[test]
fn a_worker_announcing_a_huge_heartbeat_still_dies() {
    for heartbeat_ms in [1u64 << 32, u64::MAX] {
        let mut h = Harness::new();
        let mut info = ready_info(&["f"], 1);
        info.heartbeat_ms = heartbeat_ms;
        h.ready_with("w", info).call("f", 1, Some(600_000));
        // Clamped to 30 s: lost after 3 silent intervals, long before the call's deadline.
        let limit = HEARTBEAT_RANGE_MS.1 * 3;
        h.advance(limit - 1);
        assert_eq!(h.router.stats().workers_lost, 0);
        h.advance(1);
        assert_eq!(
            h.router.stats().workers_lost,
            1,
            "heartbeat_ms {heartbeat_ms}"
        );
        assert_eq!(h.reply_codes(), [Some(ErrorCode::WorkerLost)]);
        assert_eq!(h.router.stats().ready_corrected, 1);
    }
}

#[test]
fn a_ready_that_cannot_work_is_refused_and_bad_names_are_ignored() {
    let mut h = Harness::new();
    h.ready("a", &["f"], 0);
    let long = "x".repeat(256);
    h.ready("b", &["", &long, "system.ping", "bad\u{7}"], 1);
    assert_eq!(h.router.stats().ready_refused, 2);
    assert_eq!(h.router.worker_count(), 0);
    // Refused: still unknown, so its next message is answered "send READY".
    h.clear().message("a", WorkerMessage::Heartbeat);
    assert!(matches!(h.out[..], [Action::Disconnect { .. }]));
    h.ready("c", &["", "f", "f", "system.x"], 1);
    assert_eq!(h.router.stats().ready_corrected, 1);
    let names: Vec<String> = h
        .router
        .functions()
        .into_iter()
        .map(|f| f.info.name)
        .collect();
    assert_eq!(names, ["f"]);
}

#[test]
fn the_broker_hosts_at_most_max_functions_names_and_hosts_known_ones_beyond() {
    let mut h = Harness::new();
    let names: Vec<String> = (0..MAX_FUNCTIONS).map(|i| format!("f{i}")).collect();
    for (w, chunk) in names.chunks(MAX_FUNCTIONS_PER_WORKER).enumerate() {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        h.ready(&format!("w{w}"), &chunk, 1);
    }
    assert_eq!(h.router.functions().len(), MAX_FUNCTIONS);
    // Full: a known name is still hosted by a new worker, a new one is not.
    h.ready("extra", &["f0", "f1", "new"], 1);
    let hosted: Vec<(String, usize)> = h
        .router
        .functions()
        .into_iter()
        .filter(|f| ["f0", "f1", "new"].contains(&f.info.name.as_str()))
        .map(|f| (f.info.name, f.workers))
        .collect();
    assert_eq!(hosted, [("f0".to_owned(), 2), ("f1".to_owned(), 2)]);
}

#[test]
fn hosts_that_disagree_are_shown_and_a_retry_follows_the_host_that_held_the_call() {
    let mut h = Harness::new();
    let announce = |h: &mut Harness, name: &str, signature: &str, retry_safe: bool| {
        let mut info = ready_info(&["f"], 1);
        info.functions[0].signature = signature.into();
        info.functions[0].retry_safe = retry_safe;
        h.ready_with(name, info);
    };
    // The first host says retry-safe, the second does not.
    announce(&mut h, "old", "f(a)", true);
    announce(&mut h, "new", "f(a, b)", false);
    assert_eq!(h.router.stats().function_conflicts, 1);
    let summary = &h.router.functions()[0];
    assert_eq!(summary.variants.len(), 2);
    let mut signatures: Vec<&str> = summary
        .variants
        .iter()
        .map(|(v, _)| v.signature.as_str())
        .collect();
    signatures.sort();
    assert_eq!(signatures, ["f(a)", "f(a, b)"]);
    // Each host gets one call; both hosts are lost: only the call held by the host
    // that said "retry-safe" is re-dispatched (to the host that is still there).
    h.call("f", 1, None).call("f", 2, None);
    assert_eq!(h.dispatched().len(), 2);
    h.clear().unreachable("new", &[]);
    assert_eq!(
        h.reply_codes(),
        [Some(ErrorCode::WorkerLost)],
        "new said not retry-safe"
    );
    announce(&mut h, "third", "f(a)", false);
    h.clear().unreachable("old", &[]);
    assert!(
        h.reply_codes().is_empty(),
        "old said retry-safe: {:?}",
        h.reply_codes()
    );
    assert_eq!(h.dispatched().len(), 1);
    assert_eq!(*h.dispatched()[0].0, *b"third");
}

#[test]
fn replies_from_a_worker_declared_lost_are_counted_late() {
    let mut h = Harness::new();
    h.ready("w", &["f"], 1).call("f", 1, None);
    let ticket = h.the_ticket();
    h.advance(1000);
    assert_eq!(h.router.stats().workers_lost, 1);
    h.clear().reply("w", ticket);
    assert!(h.reply_codes().is_empty());
    assert_eq!(h.router.stats().late_replies, 1);
}

#[test]
fn reply_after_timeout_or_from_wrong_worker_is_dropped() {
    let mut h = Harness::new();
    h.ready("w", &["f"], 1)
        .ready("x", &["g"], 1)
        .call("f", 1, Some(10));
    let ticket = h.the_ticket();
    h.clear().reply("x", ticket);
    assert!(
        h.reply_codes().is_empty(),
        "a stranger's reply is not forwarded"
    );
    h.advance(20);
    assert_eq!(h.reply_codes(), [Some(ErrorCode::Timeout)]);
    h.clear().reply("w", ticket);
    assert!(h.reply_codes().is_empty(), "a late reply is not forwarded");
    assert_eq!(h.router.stats().late_replies, 2);
    assert_eq!(h.router.calls_in_progress(), 0);
}

#[test]
fn a_timed_out_call_keeps_its_slot_until_the_worker_answers() {
    let mut h = Harness::new();
    h.ready("w", &["f"], 1)
        .call("f", 1, Some(10))
        .call("f", 2, Some(60_000));
    let first = h.the_ticket();
    h.clear().advance(20);
    assert_eq!(h.reply_codes(), [Some(ErrorCode::Timeout)]);
    assert!(h.dispatched().is_empty(), "the slot is still taken");
    assert_eq!(h.router.calls_in_progress(), 2);
    h.clear().reply("w", first);
    assert!(h.reply_codes().is_empty());
    assert_eq!(
        h.dispatched().len(),
        1,
        "the freed slot takes the queued call"
    );
}

#[test]
fn batch_is_answered_once_with_every_reply_in_order() {
    let mut h = Harness::new();
    h.ready("w", &["f"], 2).batch(5, &["f", "nope", "f"]);
    let tickets = h.dispatched();
    assert_eq!(tickets.len(), 2, "both calls to f run in parallel");
    assert!(
        h.reply_codes().is_empty(),
        "no reply before every call is answered"
    );
    for (i, (_, ticket)) in tickets.into_iter().enumerate().rev() {
        h.reply_with("w", ticket, Frame::from(encode_result(&i).unwrap()));
    }
    let replies = h.replies();
    assert_eq!(replies.len(), 1);
    let slots = decode_reply::<Vec<Value>>(&replies[0]).unwrap().unwrap();
    assert_eq!(slots[0]["result"], Value::from(0));
    assert_eq!(slots[1]["error"]["code"].as_str(), Some("UNKNOWN_FUNCTION"));
    assert_eq!(slots[2]["result"], Value::from(1));
}

#[test]
fn a_batch_whose_worker_is_lost_is_still_answered_whole() {
    let mut h = Harness::new();
    h.ready("w", &["f"], 2)
        .batch(5, &["f", "system.ping", "f"])
        .clear()
        .unreachable("w", &[]);
    let replies = h.replies();
    assert_eq!(replies.len(), 1);
    let slots = decode_reply::<Vec<Value>>(&replies[0]).unwrap().unwrap();
    let codes: Vec<Option<&str>> = slots.iter().map(|s| s["error"]["code"].as_str()).collect();
    assert_eq!(codes, [Some("WORKER_LOST"), None, Some("WORKER_LOST")]);
}

#[test]
fn workers_cannot_register_reserved_names() {
    let mut h = Harness::new();
    h.ready("w", &["system.ping", "f"], 1);
    let names: Vec<_> = h
        .router
        .functions()
        .into_iter()
        .map(|f| f.info.name)
        .collect();
    assert_eq!(names, ["f"]);
}

#[test]
fn draining_worker_gets_no_new_calls_and_leaves_when_done() {
    let mut h = Harness::new();
    h.ready("w", &["f"], 2).call("f", 1, None);
    let ticket = h.the_ticket();
    h.message("w", WorkerMessage::Disconnect)
        .clear()
        .call("f", 2, None);
    assert!(
        h.dispatched().is_empty(),
        "no dispatch to a draining worker"
    );
    h.reply("w", ticket);
    assert_eq!(h.router.worker_count(), 0);
    // The result of call 1 went out; queued call 2 lost its only host.
    assert_eq!(h.reply_codes(), [None, Some(ErrorCode::UnknownFunction)]);
}

#[test]
fn a_worker_that_registers_again_loses_its_calls_and_keeps_hosting() {
    let mut h = Harness::new();
    h.ready("w", &["f", "g"], 1).call("f", 1, None);
    let old = h.the_ticket();
    h.call("f", 2, None).clear().ready("w", &["f"], 1);
    // The held call is lost (not retry-safe), the queued one goes to the new session.
    assert_eq!(h.reply_codes(), [Some(ErrorCode::WorkerLost)]);
    let new = h.the_ticket();
    assert_ne!(old, new);
    // A reply of the old session is dropped, not taken for the new call.
    h.clear().reply("w", old);
    assert!(h.reply_codes().is_empty());
    assert_eq!(h.router.stats().late_replies, 1);
    let names: Vec<_> = h
        .router
        .functions()
        .into_iter()
        .map(|f| f.info.name)
        .collect();
    assert_eq!(names, ["f"], "g is no longer announced");
}

#[test]
fn abandoning_answers_queued_calls_shutting_down_and_held_ones_worker_lost() {
    let mut h = Harness::new();
    h.ready("w", &["f"], 1)
        .call("f", 1, None)
        .call("f", 2, None);
    h.clear();
    let now = h.now;
    h.router.abandon_all(now, &mut h.out);
    h.router.check_invariants();
    let mut codes = h.reply_codes();
    codes.sort_by_key(|c| c.map(|c| c.as_str()));
    assert_eq!(
        codes,
        [Some(ErrorCode::ShuttingDown), Some(ErrorCode::WorkerLost)]
    );
    assert_eq!(h.router.calls_in_progress(), 0);
    let ended: Vec<_> = h.router.take_ended().map(|e| e.outcome).collect();
    assert_eq!(ended.len(), 2);
}

#[test]
fn every_ended_call_is_reported_once_with_its_latency_on_the_router_clock() {
    let mut h = Harness::new();
    h.ready("w", &["f"], 1).call("f", 1, None);
    let ticket = h.the_ticket();
    h.advance(40).reply("w", ticket).call("nope", 2, None);
    let ended: Vec<_> = h.router.take_ended().collect();
    assert_eq!(ended.len(), 1, "a refused call never started");
    assert_eq!(ended[0].outcome, "ok");
    assert_eq!(ended[0].latency, Duration::from_millis(40));
    assert_eq!(h.router.take_ended().count(), 0);
}

#[test]
fn a_running_call_past_its_deadline_is_cancelled_on_workers_that_understand_cancel() {
    let mut h = Harness::new();
    let mut knows = ready_info(&["f"], 1);
    knows.cancel = true;
    h.ready_with("new", knows)
        .ready("old", &["f"], 1)
        .call("f", 1, Some(10))
        .call("f", 2, Some(10));
    let sent = h.dispatched();
    assert_eq!(sent.len(), 2);
    h.clear().advance(20);
    assert_eq!(h.reply_codes(), [Some(ErrorCode::Timeout); 2]);
    let cancels: Vec<_> = h
        .out
        .iter()
        .filter_map(|a| match a {
            Action::Cancel { worker, ticket } => Some((worker.clone(), *ticket)),
            _ => None,
        })
        .collect();
    let on_new = sent.iter().find(|(w, _)| *w == id("new")).unwrap().1;
    assert_eq!(
        cancels,
        [(id("new"), on_new)],
        "only the worker that announced cancel"
    );
    assert_eq!(h.router.stats().cancels_sent, 1);
    // The place stays taken until the worker answers.
    assert_eq!(h.router.calls_in_progress(), 2);
    h.clear().reply("new", on_new);
    assert_eq!(h.router.calls_in_progress(), 1);
    assert!(
        h.reply_codes().is_empty(),
        "the caller was answered already"
    );
}

/// The `system.cancel` answers in the outbox (true: found and cancelled).
fn cancel_answers(h: &Harness) -> Vec<bool> {
    h.replies()
        .iter()
        .filter_map(|body| decode_reply::<bool>(body).ok()?.ok())
        .collect()
}

#[test]
fn a_caller_cancels_its_queued_and_running_calls_and_nobody_elses() {
    let mut h = Harness::new();
    let mut info = ready_info(&["f"], 1);
    info.cancel = true;
    h.ready_with("w", info)
        .call("f", 1, None)
        .call("f", 2, None);
    let running = h.the_ticket();
    // Another client cannot cancel them; an unknown id is not found.
    h.clear()
        .cancel_from("intruder", 1, 100)
        .cancel_from("c", 77, 101);
    assert_eq!(cancel_answers(&h), [false, false]);
    assert_eq!(h.router.calls_in_progress(), 2);
    // The queued call: answered CANCELLED, out of its queue.
    h.clear().cancel_from("c", 2, 102);
    assert_eq!(
        h.reply_codes(),
        [Some(ErrorCode::Cancelled), None],
        "the call, then the cancel's own answer"
    );
    assert_eq!(cancel_answers(&h), [true]);
    assert_eq!(h.router.functions()[0].queued, 0);
    // The running call: answered CANCELLED, its worker told, its place held until it answers.
    h.clear().cancel_from("c", 1, 103);
    assert_eq!(h.reply_codes(), [Some(ErrorCode::Cancelled), None]);
    assert!(h
        .out
        .iter()
        .any(|a| matches!(a, Action::Cancel { ticket, .. } if *ticket == running)));
    assert_eq!(h.router.calls_in_progress(), 1);
    // A second cancel finds nothing waiting for an answer.
    h.clear().cancel_from("c", 1, 104);
    assert_eq!(cancel_answers(&h), [false]);
    h.clear().reply("w", running);
    assert!(h.reply_codes().is_empty());
    assert_eq!(h.router.calls_in_progress(), 0);
    assert_eq!(h.router.stats().late_replies, 1);
}

#[test]
fn system_cancel_refuses_bad_arguments_and_batches() {
    let mut h = Harness::new();
    h.call_from("c", "system.cancel", 1, None, Frame::from(&b"\x80"[..]));
    assert_eq!(h.reply_codes(), [Some(ErrorCode::BadArguments)]);
    h.clear().batch(2, &["system.cancel"]);
    let replies = h.replies();
    let slots = decode_reply::<Vec<Value>>(&replies[0]).unwrap().unwrap();
    assert_eq!(slots[0]["error"]["code"].as_str(), Some("BAD_REQUEST"));
}

#[test]
fn a_call_that_would_start_after_its_deadline_is_refused_at_admission() {
    let mut h = Harness::with(RouterConfig {
        queue_capacity: 100,
        ..RouterConfig::default()
    });
    h.ready("w", &["f"], 1);
    // Eight calls of 100 ms each: the broker learns how long `f` takes.
    for call in 0..8 {
        h.clear().call("f", call, None);
        let ticket = h.the_ticket();
        h.advance(100).reply("w", ticket);
    }
    // One runs, ten wait: a new call would be answered in about 11 × 100 ms.
    h.call("f", 100, None);
    for call in 101..111 {
        h.call("f", call, Some(60_000));
    }
    h.clear().call("f", 200, Some(1_000));
    assert_eq!(h.reply_codes(), [Some(ErrorCode::Overloaded)]);
    assert_eq!(h.router.stats().refused_late, 1);
    let message = decode_reply::<Value>(&h.replies()[0])
        .unwrap()
        .unwrap_err()
        .message;
    assert!(message.contains("after its 1000 ms deadline"), "{message}");
    // A deadline it can meet is taken.
    h.clear().call("f", 201, Some(2_000));
    assert!(h.reply_codes().is_empty());
    assert_eq!(h.router.functions()[0].queued, 11);
}

#[test]
fn without_enough_measurements_nothing_is_refused_for_lateness() {
    let mut h = Harness::with(RouterConfig {
        queue_capacity: 100,
        ..RouterConfig::default()
    });
    h.ready("w", &["f"], 1).call("f", 0, None);
    for call in 1..20 {
        h.call("f", call, Some(1));
    }
    assert!(h.reply_codes().is_empty(), "{:?}", h.reply_codes());
    assert_eq!(h.router.stats().refused_late, 0);
}

#[test]
fn a_queued_call_with_less_time_left_than_a_run_takes_is_not_sent() {
    let mut h = Harness::with(RouterConfig {
        queue_capacity: 100,
        ..RouterConfig::default()
    });
    h.ready("w", &["f"], 1);
    for call in 0..8 {
        h.clear().call("f", call, None);
        let ticket = h.the_ticket();
        h.advance(100).reply("w", ticket);
    }
    // Running: a 100 ms call. Queued: one with 150 ms left, one with 60 s.
    h.clear().call("f", 10, None);
    let running = h.the_ticket();
    h.call("f", 11, Some(150)).call("f", 12, Some(60_000));
    // 80 ms later the first queued call has 70 ms left: too little for a 100 ms run.
    h.advance(80).clear().reply("w", running);
    assert_eq!(h.reply_codes(), [None, Some(ErrorCode::Timeout)]);
    assert_eq!(h.router.stats().skipped_late, 1);
    assert_eq!(
        h.dispatched().len(),
        1,
        "the place went to the call that can make it"
    );
    assert_eq!(h.router.functions()[0].queued, 0);
}

/// A FUNCTION_ERROR reply body.
fn failed_body() -> Frame {
    Frame::from(encode_error(&switchboard_protocol::RemoteError::new(
        ErrorCode::FunctionError,
        "database unreachable",
    )))
}

/// Runs `calls` sequential calls of `f`, each answered at once (an error from `bad`, a
/// result from the others); returns how many went to `bad`.
fn run_sequential(h: &mut Harness, calls: u64, first_id: u64) -> usize {
    let mut to_bad = 0;
    for id in first_id..first_id + calls {
        h.clear().call("f", id, None);
        let (worker, ticket) = h.dispatched()[0].clone();
        let name = std::str::from_utf8(&worker).unwrap().to_owned();
        if name == "bad" {
            to_bad += 1;
            h.reply_with(&name, ticket, failed_body());
        } else {
            h.reply(&name, ticket);
        }
    }
    to_bad
}

#[test]
fn a_worker_that_fails_every_call_is_ejected_and_probed_back() {
    let mut h = Harness::new();
    for name in ["bad", "good1", "good2", "good3"] {
        h.ready(name, &["f"], 1);
    }
    // Calls take turns; the failing worker is found out within its first calls.
    let early = run_sequential(&mut h, 80, 0);
    assert_eq!(h.router.stats().ejections, 1);
    let listing = h.router.workers();
    let bad = listing.iter().find(|w| w.id == "1").unwrap();
    assert_eq!(bad.ejected, ["f"]);
    assert!(listing
        .iter()
        .filter(|w| w.id != "1")
        .all(|w| w.ejected.is_empty()));
    assert!(
        early <= 12,
        "{early} calls went to the failing worker before it was ejected"
    );
    // While ejected: no call goes there.
    assert_eq!(run_sequential(&mut h, 200, 1_000), 0);
    // After the ejection it is probed again, fails again, and is ejected for longer.
    for _ in 0..health::BASE_EJECTION.as_millis() / 100 {
        h.advance(100);
        for name in ["bad", "good1", "good2", "good3"] {
            h.message(name, WorkerMessage::Heartbeat);
        }
    }
    let probed = run_sequential(&mut h, 200, 2_000);
    assert!((1..=12).contains(&probed), "{probed} probe calls");
    assert_eq!(h.router.stats().ejections, 2);
}

#[test]
fn when_every_host_fails_nobody_is_ejected() {
    let mut h = Harness::new();
    for name in ["a", "b"] {
        h.ready(name, &["f"], 1);
    }
    for id in 0..100 {
        h.clear().call("f", id, None);
        let (worker, ticket) = h.dispatched()[0].clone();
        let name = std::str::from_utf8(&worker).unwrap().to_owned();
        h.reply_with(&name, ticket, failed_body());
    }
    assert_eq!(
        h.router.stats().ejections,
        0,
        "the function fails, not a host"
    );
}

#[test]
fn a_worker_running_a_call_long_past_its_deadline_gets_no_calls_and_is_asked_to_drain() {
    let mut h = Harness::with(RouterConfig {
        hung_after: Duration::from_millis(100),
        ..RouterConfig::default()
    });
    let mut modern = ready_info(&["f"], 2);
    modern.drain = true;
    h.ready_with("modern", modern).ready("old", &["f"], 2);
    h.call("f", 1, Some(10)).call("f", 2, Some(10));
    let sent = h.dispatched();
    let ticket_of = |name: &str| sent.iter().find(|(w, _)| *w == id(name)).unwrap().1;
    h.clear().advance(20);
    assert_eq!(h.reply_codes(), [Some(ErrorCode::Timeout); 2]);
    // Keep both alive with heartbeats while their stuck calls run on.
    for _ in 0..2 {
        h.advance(50);
        h.message("modern", WorkerMessage::Heartbeat)
            .message("old", WorkerMessage::Heartbeat);
    }
    assert_eq!(h.router.stats().hung_workers, 2);
    let drains: Vec<_> = h
        .out
        .iter()
        .filter_map(|a| match a {
            Action::Drain { worker } => Some(worker.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        drains,
        [id("modern")],
        "only a worker that understands DRAIN is asked"
    );
    // Neither gets new calls: they wait.
    h.clear().call("f", 3, Some(60_000));
    assert!(h.dispatched().is_empty());
    assert!(h.router.workers().iter().all(|w| w.draining));
    // The old worker's stuck call ends: it takes calls again.
    h.reply("old", ticket_of("old"));
    assert_eq!(h.dispatched(), [(id("old"), h.dispatched()[0].1)]);
    assert_eq!(h.router.stats().late_replies, 1);
}

#[test]
fn a_call_cancelled_then_answered_soon_does_not_make_its_worker_hung() {
    let mut h = Harness::with(RouterConfig {
        hung_after: Duration::from_millis(100),
        ..RouterConfig::default()
    });
    h.ready("w", &["f"], 1).call("f", 1, Some(1_000));
    let ticket = h.the_ticket();
    h.cancel_from("c", 1, 2);
    // The call's own deadline passes while the worker still runs it, within hung_after.
    h.advance(50).message("w", WorkerMessage::Heartbeat);
    h.reply("w", ticket);
    for _ in 0..30 {
        h.advance(50).message("w", WorkerMessage::Heartbeat);
    }
    assert_eq!(h.router.stats().hung_workers, 0);
}

#[test]
fn a_retried_call_tells_its_attempt_and_keeps_its_trace() {
    let mut h = Harness::new();
    let mut info = ready_info(&["safe"], 1);
    info.functions[0].retry_safe = true;
    h.ready_with("a", info.clone()).ready_with("b", info);
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let header = switchboard_protocol::CallHeader {
        id: 1,
        timeout_ms: None,
        traceparent: Some(trace.into()),
        timings: false,
        wait_for_ready: false,
        notices: false,
    };
    let request = crate::route::Incoming::Call(crate::route::Request {
        route: crate::route::ReplyRoute::new(&[Frame::from(&b"c"[..])], &header.encode()),
        function: "safe".into(),
        header,
        body: Frame::from(&b"\x80"[..]),
    });
    let now = h.now;
    h.router.submit(request, None, now, &mut h.out);
    let runs = |h: &Harness| -> Vec<(String, u8, Option<String>)> {
        h.out
            .iter()
            .filter_map(|a| match a {
                Action::Run { worker, call } => Some((
                    String::from_utf8_lossy(worker).into_owned(),
                    call.attempt,
                    h.router
                        .traceparent(call.ticket)
                        .filter(|_| call.shape.traced())
                        .map(|t| t.to_string()),
                )),
                _ => None,
            })
            .collect()
    };
    let first = runs(&h);
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].1, first[0].2.as_deref()), (1, Some(trace)));
    let lost = first[0].0.clone();
    h.clear().unreachable(&lost, &[]);
    let second = runs(&h);
    assert_eq!(second.len(), 1);
    assert_ne!(second[0].0, lost);
    assert_eq!((second[0].1, second[0].2.as_deref()), (2, Some(trace)));
}

/// Two workers hosting retry-safe `f`, hedged after 50 ms; both understand CANCEL.
fn hedged_pair() -> Harness {
    let mut h = Harness::new();
    let mut info = ready_info(&["f"], 1);
    info.functions[0].retry_safe = true;
    info.functions[0].hedge_ms = 50;
    info.cancel = true;
    h.ready_with("x", info.clone()).ready_with("y", info);
    h
}

/// The workers and attempts of the REQUESTs in the outbox.
fn runs(h: &Harness) -> Vec<(WorkerId, Ticket, u8)> {
    h.out
        .iter()
        .filter_map(|a| match a {
            Action::Run { worker, call } => Some((worker.clone(), call.ticket, call.attempt)),
            _ => None,
        })
        .collect()
}

/// The tickets cancelled in the outbox.
fn cancelled(h: &Harness) -> Vec<Ticket> {
    h.out
        .iter()
        .filter_map(|a| match a {
            Action::Cancel { ticket, .. } => Some(*ticket),
            _ => None,
        })
        .collect()
}

fn name(worker: &WorkerId) -> String {
    String::from_utf8_lossy(worker).into_owned()
}

#[test]
fn a_slow_hedged_call_is_answered_by_its_hedge_and_the_slow_copy_cancelled() {
    let mut h = hedged_pair();
    h.call("f", 1, Some(5_000));
    let first = runs(&h);
    let (slow, slow_ticket, _) = first[0].clone();
    h.clear().advance(49);
    assert!(runs(&h).is_empty(), "not before its hedge time");
    h.clear().advance(1);
    let hedge = runs(&h);
    assert_eq!(hedge.len(), 1);
    let (fast, hedge_ticket, attempt) = hedge[0].clone();
    assert_ne!(fast, slow, "the hedge goes to another worker");
    assert_eq!(attempt, 2);
    h.clear().reply(&name(&fast), hedge_ticket);
    assert_eq!(
        h.reply_codes(),
        [None],
        "the hedge's answer reaches the caller"
    );
    assert_eq!(cancelled(&h), [slow_ticket], "the slow copy is cancelled");
    assert_eq!(
        (h.router.stats().hedges, h.router.stats().hedges_won),
        (1, 1)
    );
    h.clear().reply(&name(&slow), slow_ticket);
    assert!(h.reply_codes().is_empty(), "one answer per call");
    assert_eq!(h.router.stats().late_replies, 1);
    assert_eq!(h.router.calls_in_progress(), 0);
}

#[test]
fn when_the_first_copy_answers_first_the_hedge_is_cancelled() {
    let mut h = hedged_pair();
    h.call("f", 1, Some(5_000));
    let (first, first_ticket, _) = runs(&h)[0].clone();
    h.clear().advance(50);
    let (second, hedge_ticket, _) = runs(&h)[0].clone();
    h.clear().reply(&name(&first), first_ticket);
    assert_eq!(h.reply_codes(), [None]);
    assert_eq!(cancelled(&h), [hedge_ticket]);
    assert_eq!(h.router.stats().hedges_won, 0);
    h.clear().reply(&name(&second), hedge_ticket);
    assert!(h.reply_codes().is_empty());
    assert_eq!(h.router.calls_in_progress(), 0);
}

#[test]
fn a_hedged_call_whose_first_worker_is_lost_is_answered_by_its_hedge() {
    let mut h = hedged_pair();
    h.call("f", 1, Some(5_000));
    let (first, _, _) = runs(&h)[0].clone();
    h.clear().advance(50);
    let (second, hedge_ticket, _) = runs(&h)[0].clone();
    h.clear().unreachable(&name(&first), &[]);
    assert!(
        h.reply_codes().is_empty(),
        "no WORKER_LOST: the hedge goes on"
    );
    h.clear().reply(&name(&second), hedge_ticket);
    assert_eq!(h.reply_codes(), [None]);
    assert_eq!(h.router.calls_in_progress(), 0);
}

#[test]
fn calls_are_not_hedged_unless_retry_safe_and_hedges_are_throttled() {
    // Announced with hedge_ms but not retry-safe: never hedged.
    let mut h = Harness::new();
    let mut info = ready_info(&["f"], 100);
    info.functions[0].hedge_ms = 10;
    h.ready_with("x", info.clone()).ready_with("y", info);
    h.call("f", 1, Some(5_000)).clear().advance(20);
    assert!(runs(&h).is_empty());
    assert_eq!(h.router.stats().hedges, 0);
    // Retry-safe, many calls at once: about three in ten at most (plus a burst of 10).
    let mut h = Harness::with(RouterConfig {
        queue_capacity: 1_000,
        ..RouterConfig::default()
    });
    let mut info = ready_info(&["f"], 1_000);
    info.functions[0].retry_safe = true;
    info.functions[0].hedge_ms = 10;
    h.ready_with("x", info.clone()).ready_with("y", info);
    for id in 0..100 {
        h.call("f", id, Some(5_000));
    }
    h.clear().advance(10);
    let stats = h.router.stats();
    assert!(stats.hedges <= 40, "{} hedges for 100 calls", stats.hedges);
    assert!(stats.hedges_throttled > 0);
}

#[test]
fn an_action_stays_small_enough_to_move_without_a_memcpy_call() {
    // Larger than 128 bytes, every push and drain of the outbox became a libc memcpy
    // (+100 instructions per call in callgrind): keep it within.
    assert!(
        std::mem::size_of::<Action>() <= 128,
        "{}",
        std::mem::size_of::<Action>()
    );
}

#[test]
fn a_hedged_call_whose_hedge_worker_is_lost_goes_on_and_a_timeout_releases_both() {
    let mut h = hedged_pair();
    h.call("f", 1, Some(1_000));
    let (first, first_ticket, _) = runs(&h)[0].clone();
    h.clear().advance(50);
    let (second, _, _) = runs(&h)[0].clone();
    // The hedge's worker is lost: no answer yet, the first copy goes on and answers.
    h.clear().unreachable(&name(&second), &[]);
    assert!(h.reply_codes().is_empty());
    h.clear().reply(&name(&first), first_ticket);
    assert_eq!(h.reply_codes(), [None]);
    assert_eq!(h.router.calls_in_progress(), 0);

    // Both copies still running at the deadline: one TIMEOUT, both workers told.
    let mut h = hedged_pair();
    h.call("f", 2, Some(200));
    h.clear().advance(50);
    assert_eq!(runs(&h).len(), 1, "hedged");
    for _ in 0..2 {
        h.advance(50);
        h.message("x", WorkerMessage::Heartbeat)
            .message("y", WorkerMessage::Heartbeat);
    }
    h.clear();
    for _ in 0..2 {
        h.advance(50);
        h.message("x", WorkerMessage::Heartbeat)
            .message("y", WorkerMessage::Heartbeat);
    }
    assert_eq!(
        h.reply_codes(),
        [Some(ErrorCode::Timeout)],
        "exactly one answer"
    );
    assert_eq!(cancelled(&h).len(), 2, "both copies released");
}

#[test]
fn a_huge_hedge_delay_is_clamped_not_a_clock_overflow() {
    let mut h = Harness::new();
    let mut info = ready_info(&["f"], 1);
    info.functions[0].retry_safe = true;
    info.functions[0].hedge_ms = u64::MAX;
    h.ready_with("x", info.clone()).ready_with("y", info);
    assert_eq!(h.router.stats().ready_corrected, 2);
    h.call("f", 1, Some(60_000));
    assert_eq!(h.dispatched().len(), 1, "dispatched, no panic");
}

#[test]
fn a_call_that_waits_for_ready_queues_until_a_first_host_registers() {
    let mut h = Harness::new();
    h.call_waiting("f", 1, 5_000).call_waiting("f", 2, 5_000);
    assert!(h.out.is_empty(), "no answer: the calls wait");
    let listing = h.router.functions();
    assert_eq!(
        (
            listing[0].info.name.as_str(),
            listing[0].workers,
            listing[0].queued
        ),
        ("f", 0, 2),
        "its queue depth shows before any worker hosts it"
    );
    // A plain call still learns at once that nobody hosts it.
    h.call("f", 3, None);
    assert_eq!(h.reply_codes(), [Some(ErrorCode::UnknownFunction)]);
    h.clear();
    h.ready("w", &["f"], 4);
    assert_eq!(
        h.dispatched().len(),
        2,
        "the waiting calls go to the first host"
    );
}

#[test]
fn waiting_calls_outlive_their_last_host_and_end_at_their_deadline() {
    let mut h = Harness::new();
    h.ready("w", &["f"], 1);
    h.call("f", 1, None); // runs
    let ticket = h.the_ticket();
    h.call("f", 2, Some(5_000)).call_waiting("f", 3, 1_000); // queued
    h.clear();
    h.message("w", WorkerMessage::Disconnect);
    h.reply("w", ticket); // the running call ends; the worker is gone
    assert_eq!(
        h.reply_codes(),
        [None, Some(ErrorCode::UnknownFunction)],
        "the plain queued call fails with its last host; the waiting one stays"
    );
    assert_eq!(h.router.functions()[0].queued, 1);
    h.clear();
    h.advance(1_001);
    assert_eq!(h.reply_codes(), [Some(ErrorCode::Timeout)]);
    assert!(
        h.router.functions().is_empty(),
        "a function nobody hosts and nobody waits for is forgotten"
    );
}

#[test]
fn functions_waiting_for_a_first_host_are_bounded() {
    use switchboard_protocol::limits::MAX_UNHOSTED_FUNCTIONS;
    let mut h = Harness::new();
    for i in 0..MAX_UNHOSTED_FUNCTIONS {
        h.call_waiting(&format!("f{i}"), i as u64, 60_000);
    }
    assert!(h.out.is_empty());
    h.call_waiting("one-too-many", 0, 60_000);
    assert_eq!(h.reply_codes(), [Some(ErrorCode::Overloaded)]);
    // A worker still registers new names: waiting functions do not count as hosted.
    h.clear();
    h.ready("w", &["f0", "fresh"], 1);
    assert_eq!(h.dispatched().len(), 1);
}

/// The LOADs in the outbox: (worker, backlog, stopping).
fn loads(h: &Harness) -> Vec<(WorkerId, u32, bool)> {
    h.out
        .iter()
        .filter_map(|a| match a {
            Action::Load {
                worker,
                backlog,
                stopping,
            } => Some((worker.clone(), *backlog, *stopping)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_credit_worker_hears_the_backlog_and_its_new_capacity_takes_queued_calls() {
    let mut h = Harness::new();
    let mut info = ready_info(&["f"], 1);
    info.credit = true;
    h.ready_with("a", info).ready("old", &["f"], 1);
    // The old worker takes one call, "a" one; two wait (the harness queues at most 2).
    for call in 1..=4 {
        h.call("f", call, None);
    }
    assert_eq!(h.dispatched().len(), 2, "{:?}", h.reply_codes());
    assert!(h.replies().is_empty(), "{:?}", h.reply_codes());
    h.clear().advance(100);
    assert_eq!(
        loads(&h),
        vec![(id("a"), 2, false)],
        "only the credit worker gets LOAD"
    );
    assert!(h
        .out
        .iter()
        .any(|a| matches!(a, Action::Heartbeat { worker } if *worker == id("old"))));
    h.clear().message(
        "a",
        WorkerMessage::Capacity {
            capacity: 4,
            inline_capacity: 0,
        },
    );
    assert_eq!(
        h.dispatched().len(),
        2,
        "the new room takes the waiting calls"
    );
    // A CAPACITY from a worker that did not announce credit changes nothing.
    h.call("f", 6, None).call("f", 7, None).clear().message(
        "old",
        WorkerMessage::Capacity {
            capacity: 9,
            inline_capacity: 0,
        },
    );
    assert!(h.dispatched().is_empty());
    // A stopping broker tells credit workers at once.
    let now = h.now;
    h.clear();
    h.router.begin_shutdown(now, &mut h.out);
    h.advance(0);
    assert_eq!(loads(&h), vec![(id("a"), 1, true)]);
}

#[test]
fn a_stopping_broker_sends_a_notice_to_each_client_that_asked_once() {
    let mut h = Harness::new();
    h.ready("a", &["f"], 4);
    let mut call = |client: &[u8], id: u64, notices: bool| {
        let header = switchboard_protocol::CallHeader {
            id,
            timeout_ms: None,
            traceparent: None,
            timings: false,
            wait_for_ready: false,
            notices,
        };
        let request = crate::route::Incoming::Call(crate::route::Request {
            route: crate::route::ReplyRoute::new(&[Frame::from(client)], &header.encode()),
            function: "f".into(),
            header,
            body: Frame::from(&b"\x80"[..]),
        });
        let now = h.now;
        h.router.submit(request, None, now, &mut h.out);
    };
    call(b"listener", 1, true);
    call(b"listener", 2, true);
    call(b"deaf", 3, false);
    h.out.clear();
    let now = h.now;
    h.router.begin_shutdown(now, &mut h.out);
    let notices: Vec<Vec<Frame>> = h
        .out
        .drain(..)
        .filter_map(|a| match a {
            Action::Notice { route } => Some(route.into_frames(Frame::from(&b"n"[..]))),
            _ => None,
        })
        .collect();
    assert_eq!(notices.len(), 1, "one notice, to the client that asked");
    let frames: Vec<&[u8]> = notices[0].iter().map(|f| &f[..]).collect();
    assert_eq!(frames, vec![&b"listener"[..], b"", b"SBC1", b"", b"n"]);
}
