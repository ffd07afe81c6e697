//! Every error code the core can produce, observed through real processes.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use switchboard_broker::BrokerConfig;
use switchboard_client::{CallError, ErrorCode};
use switchboard_tests::{
    cluster, local_cluster, BrokerProcess, ScratchDir, WorkerProcess, WAIT_LIMIT,
};

const TIMEOUT: Duration = Duration::from_secs(10);

fn code(result: Result<serde_bytes::ByteBuf, CallError>) -> (ErrorCode, String) {
    let error = result.expect_err("the call should fail");
    (error.code().expect("a wire error code"), error.to_string())
}

#[test]
fn function_failures_come_back_as_typed_errors_and_the_worker_keeps_serving() {
    let (broker, _workers) = local_cluster(1, BrokerConfig::default(), |w| w.threads = 1);
    let client = broker.client(TIMEOUT);

    let (c, message) = code(client.call("nope", ()));
    assert_eq!(c, ErrorCode::UnknownFunction);
    assert!(message.contains("nope"), "{message}");

    let (c, message) = code(client.call("add", (1,)));
    assert_eq!(c, ErrorCode::BadArguments);
    assert!(
        message.contains("add: takes 2 positional arguments but 1 was given"),
        "{message}"
    );

    let (c, message) = code(client.call("add", ("one", 2)));
    assert_eq!(c, ErrorCode::BadArguments);
    assert!(
        message.contains("argument 1: expected an integer, got a string"),
        "{message}"
    );

    let error = client.call::<()>("fail", ("disk on fire",)).unwrap_err();
    assert!(error.is_function_error());
    assert!(error.to_string().contains("disk on fire"), "{error}");

    let (c, message) = code(client.call("panic", ("boom",)));
    assert_eq!(c, ErrorCode::FunctionError);
    assert!(message.contains("panicked: boom"), "{message}");

    // The single executor survived all of that.
    assert_eq!(client.call::<i64>("add", (1, 2)).unwrap(), 3);
}

#[test]
fn a_call_past_its_deadline_gets_timeout_and_the_slot_frees_later() {
    let (broker, _workers) = local_cluster(1, BrokerConfig::default(), |w| {
        w.threads = 1;
        w.prefetch = 0;
    });
    let client = broker.client(TIMEOUT);
    let result = client
        .request("sleep_ms")
        .args((1500,))
        .timeout(Duration::from_millis(200))
        .call::<u64>();
    let error = result.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::Timeout));
    // The broker answered at the deadline, while the function still ran (not the client
    // library's own fallback, not after the sleep).
    assert!(
        error.to_string().contains("timed out while running"),
        "{error}"
    );
    let running = |client: &switchboard_client::Client| {
        let listing: Vec<switchboard_protocol::FunctionListing> =
            client.call("system.functions", ()).unwrap();
        listing
            .iter()
            .find(|f| f.name == "sleep_ms")
            .unwrap()
            .running
    };
    assert_eq!(running(&client), 1, "the sleeper still holds its slot");
    // A call queued behind the busy slot also times out, while waiting.
    let error = client
        .request("upper")
        .args(("a",))
        .timeout(Duration::from_millis(100))
        .call::<String>()
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::Timeout));
    assert!(
        error.to_string().contains("waiting for a free worker"),
        "{error}"
    );
    // An inline function (add) needs no executor slot: it is served meanwhile.
    assert_eq!(client.call::<i64>("add", (1, 1)).unwrap(), 2);
    assert_eq!(running(&client), 1, "add did not wait for the slot");
    // Once the sleeper finishes, the slot serves again.
    assert_eq!(client.call::<String>("upper", ("a",)).unwrap(), "A");
}

#[test]
fn full_queue_answers_overloaded_at_once() {
    let mut config = BrokerConfig::default();
    config.router.queue_capacity = 2;
    let (broker, _workers) = local_cluster(1, config, |w| {
        w.threads = 1;
        w.prefetch = 0;
    });
    let client = broker.client(TIMEOUT);
    let pending: Vec<_> = (0..3)
        .map(|_| client.request("sleep_ms").args((300,)).send().unwrap())
        .collect();
    // Once the broker shows two calls waiting, one more is refused.
    broker.wait_for("sleep_ms", "2 queued", |f| f.queued == 2);
    let error = client.call::<u64>("sleep_ms", (1,)).unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::Overloaded));
    // Refused at once: the queue had not moved yet (the first sleep still runs).
    broker.wait_for("sleep_ms", "still 1 running and 2 queued", |f| {
        f.running == 1 && f.queued == 2
    });
    for call in pending {
        assert_eq!(
            call.wait::<u64>().unwrap(),
            300,
            "accepted calls still complete"
        );
    }
}

#[test]
fn killed_worker_fails_its_calls_fast_with_worker_lost() {
    let broker = BrokerProcess::start(&[]);
    let mut worker = WorkerProcess::start(&broker.backend, "doomed", &["--heartbeat-ms", "100"]);
    broker.wait_for_workers("sleep_ms", 1);
    let client = broker.client(TIMEOUT);
    // A deadline far past three heartbeat intervals (300 ms) and far before the sleep ends:
    // WORKER_LOST, not TIMEOUT, means the loss was found before the call's own deadline.
    let pending = client
        .request("sleep_ms")
        .args((5000,))
        .timeout(Duration::from_millis(2500))
        .send()
        .unwrap();
    broker.wait_for("sleep_ms", "1 running", |f| f.running == 1);
    worker.process.kill();
    let started = Instant::now();
    let error = pending.wait::<u64>().unwrap_err();
    eprintln!(
        "kill -9 to WORKER_LOST at the caller (heartbeat 100 ms): {:?}",
        started.elapsed()
    );
    assert_eq!(error.code(), Some(ErrorCode::WorkerLost), "{error}");
    let error = client.call::<i64>("add", (1, 2)).unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::UnknownFunction));
}

#[test]
fn oversized_request_gets_payload_too_large() {
    let mut config = BrokerConfig::default();
    config.router.max_request_bytes = 1024;
    let (broker, _workers) = local_cluster(1, config, |_| {});
    let client = broker.client(TIMEOUT);
    let big = serde_bytes::ByteBuf::from(vec![7u8; 2048]);
    let (c, message) = code(client.call("echo", (big,)));
    assert_eq!(c, ErrorCode::PayloadTooLarge);
    assert!(message.contains("1024"), "{message}");
    let small = serde_bytes::ByteBuf::from(vec![7u8; 100]);
    assert_eq!(
        client
            .call::<serde_bytes::ByteBuf>("echo", (small,))
            .unwrap()
            .len(),
        100
    );
}

#[test]
fn stopping_broker_refuses_new_calls_and_finishes_accepted_ones() {
    let (mut broker, _workers) = cluster(1, &[], &[]);
    let client = broker.client(TIMEOUT);
    let running = client.request("sleep_ms").args((600,)).send().unwrap();
    broker.wait_for("sleep_ms", "1 running", |f| f.running == 1);
    broker.process.signal(Signal::SIGTERM);
    // Poll until the broker reports it is stopping.
    let until = Instant::now() + Duration::from_secs(5);
    let error = loop {
        match client.call::<i64>("add", (1, 1)) {
            Err(e) if e.code() == Some(ErrorCode::ShuttingDown) => break e,
            _ => assert!(
                Instant::now() < until,
                "broker never reported SHUTTING_DOWN"
            ),
        }
    };
    assert!(error.to_string().contains("shutting down"), "{error}");
    assert_eq!(
        running.wait::<u64>().unwrap(),
        600,
        "the accepted call completes"
    );
    let status = broker
        .process
        .wait_exit(Duration::from_secs(5))
        .expect("broker exits");
    assert!(status.success(), "broker exit status {status:?}");
}

#[test]
fn terminated_worker_finishes_its_call_and_exits_cleanly() {
    let (broker, mut workers) = cluster(1, &[], &[]);
    let client = broker.client(TIMEOUT);
    let running = client.request("sleep_ms").args((400,)).send().unwrap();
    broker.wait_for("sleep_ms", "1 running", |f| f.running == 1);
    workers[0].process.signal(Signal::SIGTERM);
    assert_eq!(running.wait::<u64>().unwrap(), 400);
    let status = workers[0]
        .process
        .wait_exit(Duration::from_secs(5))
        .expect("worker exits");
    assert!(status.success(), "worker exit status {status:?}");
}

#[test]
fn a_worker_whose_grace_runs_out_exits_at_once_and_its_call_ends_worker_lost() {
    let dir = ScratchDir::new("grace");
    let journal = dir.path.join("w.log");
    let broker = BrokerProcess::start(&[]);
    let mut worker = WorkerProcess::start(
        &broker.backend,
        "w",
        &[
            "--shutdown-grace-ms",
            "100",
            "--record-file",
            journal.to_str().unwrap(),
        ],
    );
    broker.wait_for_workers("work.once", 1);
    let client = broker.client(Duration::from_secs(30));
    let running = client
        .request("work.once")
        .args(("long", 5_000))
        .send()
        .unwrap();
    broker.wait_for("work.once", "1 running", |f| f.running == 1);
    worker.process.signal(Signal::SIGTERM);
    let status = worker.process.wait_exit(WAIT_LIMIT).expect("worker exits");
    assert!(status.success(), "worker exit status {status:?}");
    // It exited while the function was still running: nothing journaled yet.
    let journaled = std::fs::read_to_string(&journal).unwrap_or_default();
    assert!(journaled.is_empty(), "the call finished first: {journaled}");
    // The caller learns at once that the call may have run.
    let error = running.wait::<String>().expect_err("abandoned");
    assert_eq!(error.code(), Some(ErrorCode::WorkerLost), "{error}");
}

#[test]
fn a_call_past_its_deadline_is_cancelled_in_the_worker_and_frees_its_place() {
    // One executor, no prefetch: a call that kept running would hold the only place.
    let (broker, _workers) = local_cluster(1, BrokerConfig::default(), |w| {
        w.threads = 1;
        w.prefetch = 0;
        w.heartbeat = Duration::from_millis(100);
    });
    let client = broker.client(TIMEOUT);
    // 20 s of work that checks its cancellation token, given 300 ms.
    let error = client
        .request("work_ms")
        .args((20_000,))
        .timeout(Duration::from_millis(300))
        .call::<u64>()
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::Timeout), "{error}");
    // The broker sent CANCEL; the function stopped and the place came back: a call that
    // needs the same executor, with a deadline far shorter than the 20 s of work, is
    // answered before its deadline.
    let next = client
        .request("sleep_ms")
        .args((1,))
        .timeout(Duration::from_secs(3))
        .call::<u64>();
    assert_eq!(next.unwrap(), 1);
    let stats: std::collections::HashMap<String, switchboard_protocol::Value> =
        client.call("system.stats", ()).unwrap();
    assert_eq!(stats["cancels_sent"].as_u64(), Some(1), "{stats:?}");
    assert_eq!(
        stats["late_replies"].as_u64(),
        Some(1),
        "the cancelled call still answered"
    );
}

#[test]
fn a_caller_that_cancels_a_running_call_gets_the_place_back_at_once() {
    let (broker, _workers) = local_cluster(1, BrokerConfig::default(), |w| {
        w.threads = 1;
        w.prefetch = 0;
    });
    let client = broker.client(TIMEOUT);
    let long = client.request("work_ms").args((20_000,)).send().unwrap();
    broker.wait_for("work_ms", "1 running", |f| f.running == 1);
    // Waiting behind it: would run only after 20 s of work.
    let queued = client
        .request("sleep_ms")
        .args((1,))
        .timeout(Duration::from_secs(3))
        .send()
        .unwrap();
    broker.wait_for("sleep_ms", "1 queued", |f| f.queued == 1);
    long.cancel().unwrap();
    // The worker stopped the work: the queued call runs before its own 3 s deadline.
    assert_eq!(queued.wait::<u64>().unwrap(), 1);
    let stats: std::collections::HashMap<String, switchboard_protocol::Value> =
        client.call("system.stats", ()).unwrap();
    assert_eq!(stats["cancels_sent"].as_u64(), Some(1), "{stats:?}");
    let errors = &stats["broker_errors"];
    assert_eq!(
        errors["CANCELLED"].as_u64(),
        Some(1),
        "the cancelled call was answered CANCELLED: {stats:?}"
    );
}

#[test]
fn a_worker_stuck_in_a_call_long_past_its_deadline_is_asked_to_leave() {
    use std::time::Instant;
    use switchboard_tests::{LocalBroker, LocalWorker};
    let mut config = BrokerConfig::default();
    config.router.hung_after = Duration::from_millis(300);
    let broker = LocalBroker::start(config);
    let worker = LocalWorker::start(
        &broker.backend,
        "stuck",
        switchboard_worker::WorkerConfig {
            threads: 1,
            prefetch: 0,
            shutdown_grace: Duration::from_millis(300),
            ..switchboard_worker::WorkerConfig::default()
        },
    );
    broker.wait_for_workers("sleep_ms", 1);
    let client = broker.client(TIMEOUT);
    // sleep_ms ignores cancellation: the call holds the worker's only thread for 20 s.
    let error = client
        .request("sleep_ms")
        .args((20_000,))
        .timeout(Duration::from_millis(100))
        .call::<u64>()
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::Timeout));
    // 300 ms later it is hung: asked to DRAIN, it leaves (abandoning the stuck call after
    // its 300 ms grace) long before the 20 s of sleep end.
    let until = Instant::now() + WAIT_LIMIT;
    while !worker.has_left() {
        assert!(Instant::now() < until, "the hung worker never left");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats: std::collections::HashMap<String, switchboard_protocol::Value> =
        client.call("system.stats", ()).unwrap();
    assert_eq!(stats["hung_workers"].as_u64(), Some(1), "{stats:?}");
}

#[test]
fn an_isolated_call_that_hangs_is_killed_and_its_slot_comes_back_at_once() {
    // One thread, no prefetch, and a hung-after far away: only the kill can free the slot.
    let (broker, workers) = cluster(
        1,
        &["--hung-after-ms", "600000"],
        &["--threads", "1", "--prefetch", "0"],
    );
    let client = broker.client(TIMEOUT);
    let worker_pid = workers[0].process.pid();
    let child_pid: u32 = client.call("isolated.pid", ()).unwrap();
    assert_ne!(
        child_pid, worker_pid,
        "an isolated call runs in a process of its own"
    );

    let dir = ScratchDir::new("isolated");
    let pid_file = dir.path.join("hang.pid");
    let (late, _) = code(
        client
            .request("isolated.hang")
            .args((pid_file.to_str().unwrap(),))
            .timeout(Duration::from_millis(300))
            .call(),
    );
    assert_eq!(late, ErrorCode::Timeout);
    let hung: u32 = std::fs::read_to_string(&pid_file)
        .expect("the hung call wrote its pid")
        .trim()
        .parse()
        .unwrap();
    // The broker's CANCEL at the deadline makes the worker kill the child...
    let until = Instant::now() + WAIT_LIMIT;
    while std::path::Path::new(&format!("/proc/{hung}")).exists() {
        assert!(
            Instant::now() < until,
            "the hung isolated process {hung} was never killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // ...so the worker's only slot serves the next call, and nobody asked it to leave.
    let next: u64 = client
        .request("sleep_ms")
        .args((1,))
        .timeout(Duration::from_secs(5))
        .call()
        .unwrap();
    assert_eq!(next, 1);
    let listing: Vec<switchboard_protocol::WorkerListing> =
        client.call("system.workers", ()).unwrap();
    assert!(!listing[0].draining, "{listing:?}");

    // A child that aborts fails its call; the worker goes on.
    let (aborted, message) = code(client.call("isolated.abort", ()));
    assert_eq!(aborted, ErrorCode::FunctionError);
    assert!(message.contains("the isolated process died"), "{message}");
    assert_eq!(client.call::<u64>("sleep_ms", (2,)).unwrap(), 2);
}
