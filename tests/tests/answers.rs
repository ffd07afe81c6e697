//! Every call gets its own answer: a reply completes only the call it was issued for,
//! across broker restarts and worker re-registrations, and a stopping broker answers
//! every request it read.

use std::time::Duration;

use nix::sys::signal::Signal;
use switchboard_client::ErrorCode;
use switchboard_protocol::client::parse_reply;
use switchboard_protocol::{CallHeader, Frame};
use switchboard_tests::{raw_socket, BrokerProcess, WorkerProcess, WAIT_LIMIT};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A broker with one worker that is running `work.once("OLD", 1500)`, and that call.
fn broker_running_an_old_call(
    flags: &[&str],
) -> (
    BrokerProcess,
    WorkerProcess,
    switchboard_client::PendingCall,
) {
    let broker = BrokerProcess::start(flags);
    let worker = WorkerProcess::start(&broker.backend, "w", &["--heartbeat-ms", "100"]);
    broker.wait_for_workers("work.once", 1);
    let old = broker
        .client(TIMEOUT)
        .request("work.once")
        .args(("OLD", 1500))
        .send()
        .expect("send");
    broker.wait_for("work.once", "1 running", |f| f.running == 1);
    (broker, worker, old)
}

/// Starts a broker where `old` was and checks that a new call gets its own answer while
/// the worker finishes the old broker's call: the old reply must not complete it.
fn new_call_gets_its_own_answer(old: &BrokerProcess) {
    let broker = BrokerProcess::start_at(&old.frontend, &old.backend, &[]);
    broker.wait_for_workers("work.once", 1);
    let new: String = broker
        .client(TIMEOUT)
        .call("work.once", ("NEW", 3000))
        .expect("NEW answers");
    assert_eq!(new, "NEW");
}

#[test]
fn a_reply_from_before_a_broker_restart_never_completes_a_new_call() {
    let (mut broker, _worker, _old) = broker_running_an_old_call(&[]);
    broker.process.kill();
    new_call_gets_its_own_answer(&broker);
}

#[test]
fn a_reply_from_before_a_graceful_stop_whose_grace_ran_out_never_completes_a_new_call() {
    let (mut broker, _worker, old) = broker_running_an_old_call(&["--shutdown-grace-ms", "100"]);
    broker.process.signal(Signal::SIGTERM);
    let status = broker.process.wait_exit(WAIT_LIMIT).expect("broker exits");
    assert!(status.success(), "{status}");
    // The call was running: its answer says it may have run, not that it never left.
    let error = old.wait::<String>().expect_err("abandoned");
    assert_eq!(error.code(), Some(ErrorCode::WorkerLost), "{error}");
    new_call_gets_its_own_answer(&broker);
}

#[test]
fn a_stopping_broker_answers_every_request_its_sockets_took_in_its_last_moments() {
    const CALLS: u64 = 200;
    let mut broker = BrokerProcess::start(&[]);
    let (_ctx, client) = raw_socket(zmq::DEALER, &broker.frontend);
    let header = |id: u64| {
        CallHeader {
            id,
            timeout_ms: Some(5000),
            traceparent: None,
            timings: false,
            wait_for_ready: false,
            notices: false,
        }
        .encode()
    };
    // One round trip first, so the connection is up before the broker is frozen.
    client
        .send_multipart([&b""[..], b"SBC1", b"system.ping", &header(0), b"\x80"], 0)
        .unwrap();
    assert_eq!(client.recv_multipart(0).unwrap().len(), 4);
    // Frozen, the broker cannot read: the calls wait in its sockets while it is told to stop.
    broker.process.signal(Signal::SIGSTOP);
    for id in 1..=CALLS {
        client
            .send_multipart([&b""[..], b"SBC1", b"add", &header(id), b"\x80"], 0)
            .unwrap();
    }
    broker.process.signal(Signal::SIGTERM);
    broker.process.signal(Signal::SIGCONT);
    let mut answered = std::collections::BTreeSet::new();
    while answered.len() < CALLS as usize {
        let Ok(frames) = client.recv_multipart(0) else {
            break; // receive timeout: no more replies are coming
        };
        let reply = parse_reply(frames.into_iter().map(Frame::from).collect()).unwrap();
        assert!(answered.insert(reply.header.id), "two replies to one call");
    }
    let status = broker.process.wait_exit(WAIT_LIMIT).expect("broker exits");
    assert!(status.success(), "{status}");
    let missing: Vec<u64> = (1..=CALLS).filter(|id| !answered.contains(id)).collect();
    assert!(missing.is_empty(), "calls never answered: {missing:?}");
}

#[test]
fn a_call_that_never_reached_its_worker_goes_to_another() {
    let broker = BrokerProcess::start(&[]);
    let _real = WorkerProcess::start(&broker.backend, "real", &[]);
    broker.wait_for_workers("sleep_ms", 1);
    // A worker with more free slots than the real one, so calls go to it first; it closes
    // its socket without saying DISCONNECT, well within its heartbeat liveness.
    let (context, ghost) = raw_socket(zmq::DEALER, &broker.backend);
    let ready = b"\x83\xa8capacity\x64\xacheartbeat_ms\xcd\x13\x88\xa9functions\x91\x81\xa4name\xa8sleep_ms";
    ghost.send_multipart([&b"SBW2\x01"[..], ready], 0).unwrap();
    broker.wait_for_workers("sleep_ms", 2);
    drop(ghost);
    drop(context);
    let client = broker.client(TIMEOUT);
    let outcomes: Vec<Result<u64, String>> = (0..4)
        .map(|i| {
            client
                .call::<u64>("sleep_ms", (i,))
                .map_err(|e| e.to_string())
        })
        .collect();
    assert_eq!(outcomes, [Ok(0), Ok(1), Ok(2), Ok(3)]);
}
