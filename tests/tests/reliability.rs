//! The reliability contract (docs/RELIABILITY.md), checked with real processes:
//! every call ends in exactly one outcome, non-retry-safe work never runs twice,
//! every failure carries a documented code, and overload stays bounded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use switchboard_broker::BrokerConfig;
use switchboard_client::{Client, ErrorCode};
use switchboard_tests::contract::{
    check_contract, executions, start_workers, under_load, wait_until, Plan, IDEMPOTENT, ONCE,
};
use switchboard_tests::{cluster, local_cluster, rss_kib, BrokerProcess, ScratchDir};

#[test]
fn chaos_worker_killed_mid_run_every_call_ends_once_and_none_runs_twice() {
    const CLIENTS: usize = 4;
    const CALLS: usize = 2_500;
    let dir = ScratchDir::new("chaos-worker");
    let broker = BrokerProcess::start(&[]);
    let mut workers = start_workers(
        &broker.backend,
        &dir,
        3,
        &["--heartbeat-ms", "100", "--threads", "4"],
    );
    broker.wait_for_workers(ONCE, 3);
    let started = Instant::now();
    let plan = Plan::new(CALLS, 32, false);
    let (outcomes, unmatched) = under_load(&broker.frontend, CLIENTS, &plan, |done| {
        wait_until(done, CLIENTS * CALLS / 3);
        workers[0].process.kill();
    });
    assert_eq!(unmatched, 0, "a reply arrived twice or unasked");
    let tally = check_contract(
        &outcomes,
        CLIENTS * CALLS,
        &executions(&dir),
        &[ErrorCode::WorkerLost],
    );
    eprintln!(
        "chaos (worker kill -9): {} calls in {:?}: {tally:?}",
        outcomes.len(),
        started.elapsed()
    );
    assert_eq!(
        tally.get("WORKER_LOST work.idempotent"),
        None,
        "retry-safe calls were re-dispatched"
    );
}

#[test]
fn chaos_broker_restart_mid_run_every_call_ends_once_and_service_recovers() {
    const CLIENTS: usize = 3;
    const CALLS: usize = 1_500;
    let dir = ScratchDir::new("chaos-broker");
    let mut broker = BrokerProcess::start(&[]);
    let (frontend, backend) = (broker.frontend.clone(), broker.backend.clone());
    let _workers = start_workers(
        &broker.backend,
        &dir,
        3,
        &["--heartbeat-ms", "100", "--threads", "4"],
    );
    broker.wait_for_workers(ONCE, 3);
    let mut recovery = Duration::ZERO;
    let plan = Plan::new(CALLS, 16, true);
    let (outcomes, _) = under_load(&frontend, CLIENTS, &plan, |done| {
        wait_until(done, CLIENTS * CALLS / 3);
        broker.process.kill();
        let restarted_at = Instant::now();
        broker = BrokerProcess::start_at(&frontend, &backend, &[]);
        // Recovery: a fresh client's call succeeds, with no manual action.
        let probe = broker.client(Duration::from_millis(500));
        loop {
            if probe.call::<i64>("add", (1, 1)).is_ok() {
                recovery = restarted_at.elapsed();
                break;
            }
            assert!(
                restarted_at.elapsed() < Duration::from_secs(10),
                "no recovery in 10 s"
            );
        }
    });
    let allowed = [
        ErrorCode::BrokerLost,
        ErrorCode::Timeout,
        ErrorCode::UnknownFunction,
    ];
    let tally = check_contract(&outcomes, CLIENTS * CALLS, &executions(&dir), &allowed);
    eprintln!("chaos (broker kill -9 + restart): recovery {recovery:?}; {tally:?}");
    let idempotent_failures: usize = tally
        .iter()
        .filter(|(k, _)| k.ends_with(IDEMPOTENT) && !k.starts_with("ok"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        idempotent_failures, 0,
        "idempotent calls are resent by the client: {tally:?}"
    );
}

#[test]
fn flood_beyond_capacity_is_refused_with_overloaded_and_memory_stays_bounded() {
    // Capacity: 1 worker x 2 threads + 500 queued. The flood: 10x that, four times.
    let (broker, _workers) = cluster(1, &["--queue-capacity", "500"], &["--threads", "2"]);
    let client = broker.client(Duration::from_secs(20));
    let payload = serde_bytes::ByteBuf::from(vec![7u8; 1024]);
    let mut rss = vec![rss_kib(broker.process.pid())];
    for round in 0..4 {
        let pending: Vec<_> = (0..5_000)
            .map(|_| {
                client
                    .request("bytes.len")
                    .args((&payload,))
                    .send()
                    .unwrap()
            })
            .collect();
        let (mut ok, mut overloaded) = (0, 0);
        for call in pending {
            match call.wait::<usize>() {
                Ok(len) => {
                    assert_eq!(len, 1024);
                    ok += 1;
                }
                Err(e) if e.code() == Some(ErrorCode::Overloaded) => overloaded += 1,
                Err(e) => panic!("round {round}: unexpected {e}"),
            }
        }
        rss.push(rss_kib(broker.process.pid()));
        eprintln!("flood round {round}: {ok} ok, {overloaded} OVERLOADED, broker RSS {rss:?} KiB");
        assert!(
            overloaded > 0,
            "a flood 10x beyond capacity must be refused in part"
        );
        assert!(ok >= 502, "accepted calls complete");
    }
    // Bounded: later floods do not keep adding what the first ones did (allocator noise
    // aside), and the broker stays far below the 64 MiB budget. Nothing stays in flight.
    assert!(
        rss[4] <= rss[2] + 8 * 1024,
        "broker RSS kept growing: {rss:?} KiB"
    );
    assert!(rss.iter().all(|r| *r < 64 * 1024), "broker RSS {rss:?} KiB");
    let stats: HashMap<String, switchboard_protocol::Value> =
        client.call("system.stats", ()).unwrap();
    assert_eq!(stats["calls_in_progress"].as_u64(), Some(0), "{stats:?}");
}

#[test]
fn long_call_outlives_many_heartbeats_without_its_worker_being_declared_dead() {
    let (broker, _workers) = local_cluster(1, BrokerConfig::default(), |w| {
        w.heartbeat = Duration::from_millis(50);
        w.threads = 1;
    });
    let client = broker.client(Duration::from_secs(5));
    // 600 ms is 12 heartbeat intervals: the socket thread keeps beating while the call runs.
    assert_eq!(client.call::<u64>("sleep_ms", (600,)).unwrap(), 600);
    assert_eq!(client.call::<String>("whoami", ()).unwrap(), "w0");
}

#[test]
fn graceful_scale_down_under_load_fails_no_call() {
    let dir = ScratchDir::new("scale-down");
    let broker = BrokerProcess::start(&[]);
    let mut workers = start_workers(&broker.backend, &dir, 3, &["--threads", "4"]);
    broker.wait_for_workers(ONCE, 3);
    let plan = Plan::new(1_500, 24, false);
    let (outcomes, _) = under_load(&broker.frontend, 2, &plan, |done| {
        wait_until(done, 1_000);
        workers[0].process.signal(Signal::SIGTERM);
        let status = workers[0]
            .process
            .wait_exit(Duration::from_secs(10))
            .expect("worker exits");
        assert!(status.success(), "worker exit status {status:?}");
    });
    let tally = check_contract(&outcomes, 3_000, &executions(&dir), &[]);
    eprintln!("scale-down under load: {tally:?}");
}

#[test]
fn a_client_that_stops_reading_does_not_block_others() {
    let config = BrokerConfig {
        client_send_hwm: 100,
        client_backlog_bytes: 4 * 1024 * 1024,
        ..BrokerConfig::default()
    };
    let (broker, _workers) = local_cluster(1, config, |w| w.threads = 4);
    // Every call of the other client must be answered within its own 1 s deadline.
    let client = broker.client(Duration::from_secs(1));
    let timed = |label: &str| {
        let started = Instant::now();
        for i in 0..200i64 {
            assert_eq!(client.call::<i64>("add", (i, 1)).unwrap(), i + 1);
        }
        let took = started.elapsed();
        eprintln!("200 sequential calls {label}: {took:?}");
        took
    };
    let before = timed("before");
    // A raw client sends 400 echo calls of 128 KiB and never reads a reply: once its
    // socket buffers, libzmq's 100 messages for it and the broker's 4 MiB backlog for it
    // are full, the broker drops its replies instead of waiting.
    let context = zmq::Context::new();
    let greedy = context.socket(zmq::DEALER).unwrap();
    greedy.set_linger(0).unwrap();
    greedy.set_rcvhwm(1).unwrap();
    greedy.set_rcvbuf(64 * 1024).unwrap();
    greedy.connect(&broker.frontend).unwrap();
    let header = b"\x81\xa2id\x01";
    let mut body = b"\x82\xa4args\x91\xc6\x00\x02\x00\x00".to_vec(); // [bin32 of 128 KiB]
    body.extend(std::iter::repeat_n(7u8, 128 * 1024));
    body.extend_from_slice(b"\xa6kwargs\x80");
    for _ in 0..400 {
        greedy
            .send_multipart([&b""[..], b"SBC1", b"echo", header, &body], 0)
            .unwrap();
    }
    broker.wait_for("echo", "the greedy calls done", |f| {
        f.queued == 0 && f.running == 0
    });
    let stats: HashMap<String, switchboard_protocol::Value> =
        client.call("system.stats", ()).unwrap();
    let dropped = stats["dropped_replies"].as_u64().unwrap();
    eprintln!("replies dropped for the client that does not read: {dropped}");
    assert!(
        dropped >= 100,
        "replies to a full client are dropped and counted: {stats:?}"
    );
    let after = timed("after");
    eprintln!("the other client's 200 calls: {before:?} before, {after:?} after");
}

#[test]
fn calls_wait_for_a_broker_that_is_not_up_and_say_so_if_none_comes() {
    // Free two ports the way a crashed broker would.
    let mut gone = BrokerProcess::start(&[]);
    let (frontend, backend) = (gone.frontend.clone(), gone.backend.clone());
    gone.process.kill();
    let client = Client::connect(&frontend).expect("client");

    let error = client
        .request("system.ping")
        .timeout(Duration::from_millis(300))
        .call::<String>()
        .expect_err("nobody listens");
    assert_eq!(error.code(), Some(ErrorCode::BrokerLost), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("the call was not sent") && message.contains(&frontend),
        "{message}"
    );
    // "not sent" is the client's answer at the call's own deadline (a call that had left
    // would end later, with TIMEOUT, after the grace for the broker's reply).

    // A call made while the broker is down leaves as soon as it is up again.
    let waiting = client
        .request("system.ping")
        .timeout(Duration::from_secs(10))
        .send()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _broker = BrokerProcess::start_at(&frontend, &backend, &[]);
    assert_eq!(waiting.wait::<String>().unwrap(), "pong");
    assert_eq!(client.stats().disconnects, 0, "no connection was ever up");
}

#[test]
fn a_worker_whose_every_call_fails_gets_almost_no_traffic_once_found_out() {
    use switchboard_tests::{LocalBroker, LocalWorker};
    use switchboard_worker::{Registry, WorkerConfig};
    let broker = LocalBroker::start(BrokerConfig::default());
    let lookup = |broken: bool| {
        let mut registry = Registry::new();
        registry.register_fallible("lookup", move |key: u64| {
            if broken {
                Err("database unreachable".to_owned())
            } else {
                Ok(key)
            }
        });
        registry
    };
    let config = || WorkerConfig {
        threads: 1,
        prefetch: 0,
        ..WorkerConfig::default()
    };
    let _workers: Vec<LocalWorker> = [("broken", true), ("a", false), ("b", false), ("c", false)]
        .into_iter()
        .map(|(name, broken)| {
            LocalWorker::start_with(&broker.backend, name, lookup(broken), config())
        })
        .collect();
    broker.wait_for_workers("lookup", 4);
    let client = broker.client(Duration::from_secs(5));
    let calls = 400u64;
    let failed = (0..calls)
        .filter(|&key| client.call::<u64>("lookup", (key,)).is_err())
        .count() as u64;
    eprintln!("black hole: {failed} of {calls} calls went to the failing worker");
    // Without ejection a quarter would (the failing worker is always the freest).
    assert!(failed * 20 < calls, "{failed} of {calls} calls failed");
    let workers: Vec<switchboard_protocol::WorkerListing> =
        client.call("system.workers", ()).unwrap();
    let ejected: Vec<&str> = workers
        .iter()
        .filter(|w| !w.ejected.is_empty())
        .map(|w| w.name.as_str())
        .collect();
    assert_eq!(ejected, ["broken"], "no healthy worker ejected");
}

#[test]
fn hedged_calls_route_around_a_slow_worker() {
    use std::time::Instant;
    use switchboard_tests::{LocalBroker, LocalWorker};
    use switchboard_worker::{CallContext, Registry, WorkerConfig};
    let broker = LocalBroker::start(BrokerConfig::default());
    // The same function twice: `lookup` hedged after 50 ms, `lookup_plain` not. One host
    // takes 300 ms (stopping when cancelled), three answer at once.
    let registry = |slow: bool| {
        let run = move |key: u64| {
            if slow {
                let context = CallContext::current();
                for _ in 0..60 {
                    if context.as_ref().is_some_and(CallContext::is_cancelled) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            key
        };
        let mut registry = Registry::new();
        registry
            .register("lookup", run)
            .retry_safe()
            .hedge_after(Duration::from_millis(50));
        registry.register("lookup_plain", run).retry_safe();
        registry
    };
    let config = || WorkerConfig {
        threads: 4,
        ..WorkerConfig::default()
    };
    let _workers: Vec<LocalWorker> = [("slow", true), ("a", false), ("b", false), ("c", false)]
        .into_iter()
        .map(|(name, slow)| {
            LocalWorker::start_with(&broker.backend, name, registry(slow), config())
        })
        .collect();
    broker.wait_for_workers("lookup", 4);
    let client = broker.client(Duration::from_secs(5));
    let p99 = |function: &str, timeout: Duration| {
        let mut took: Vec<Duration> = (0..60u64)
            .map(|key| {
                let started = Instant::now();
                let result = client
                    .request(function)
                    .args((key,))
                    .timeout(timeout)
                    .call::<u64>();
                if function == "lookup" {
                    // Every hedged call is answered within its own 250 ms deadline.
                    assert_eq!(result.unwrap(), key);
                }
                started.elapsed()
            })
            .collect();
        took.sort();
        took[58]
    };
    let plain = p99("lookup_plain", Duration::from_secs(5));
    let hedged = p99("lookup", Duration::from_millis(250));
    eprintln!("one slow worker among four, 60 sequential calls: p99 {plain:?} unhedged, {hedged:?} hedged after 50 ms");
    let stats: std::collections::HashMap<String, switchboard_protocol::Value> =
        client.call("system.stats", ()).unwrap();
    assert!(stats["hedges_won"].as_u64().unwrap() >= 1, "{stats:?}");
}
