//! Several brokers (the broker tier): workers that serve every broker at once, clients
//! that spread calls over them, and what each sees when one broker dies, pauses or is
//! restarted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use switchboard_broker::BrokerConfig;
use switchboard_client::ErrorCode;
use switchboard_protocol::WorkerListing;
use switchboard_tests::contract::{
    check_contract, executions, start_workers, under_load, wait_until, Outcome, Plan, IDEMPOTENT,
    ONCE,
};
use switchboard_tests::{
    eventually, BrokerProcess, LocalBroker, LocalWorker, NetNs, ScratchDir, WorkerProcess,
};
use switchboard_worker::WorkerConfig;

#[test]
fn a_worker_serves_every_broker_it_is_given_and_splits_its_capacity() {
    let first = LocalBroker::start(BrokerConfig::default());
    let second = LocalBroker::start(BrokerConfig::default());
    let both = format!("{}, {}", first.backend, second.backend);
    let worker = LocalWorker::start(
        &both,
        "shared",
        WorkerConfig {
            threads: 3,
            prefetch: 1,
            ..WorkerConfig::default()
        },
    );
    first.wait_for_workers("whoami", 1);
    second.wait_for_workers("whoami", 1);
    for broker in [&first, &second] {
        let client = broker.client(Duration::from_secs(5));
        let workers: Vec<WorkerListing> = client.call("system.workers", ()).unwrap();
        assert_eq!(workers.len(), 1);
        assert_eq!(
            (workers[0].name.as_str(), workers[0].capacity),
            ("shared", 2),
            "4 slots split over 2 brokers"
        );
        // Calls through either broker run on the one worker, in parallel.
        let calls: Vec<_> = (0..20)
            .map(|i| client.request("add").args((i, 1)).send().unwrap())
            .collect();
        let sums: Vec<i64> = calls.into_iter().map(|c| c.wait().unwrap()).collect();
        assert_eq!(sums, (0..20).map(|i| i + 1).collect::<Vec<_>>());
    }
    // One broker gone: the worker goes on serving the other.
    let second_client = second.client(Duration::from_secs(5));
    first.stop();
    for i in 0..10 {
        assert_eq!(second_client.call::<i64>("add", (i, 2)).unwrap(), i + 2);
    }
    // A stopped worker leaves every broker it still talks to, and returns.
    worker.stop();
    let workers: Vec<WorkerListing> = second_client.call("system.workers", ()).unwrap();
    assert!(workers.is_empty(), "{workers:?}");
}

/// A tier of `n` broker processes (default flags plus `flags`).
fn brokers(n: usize, flags: &[&str]) -> Vec<BrokerProcess> {
    (0..n).map(|_| BrokerProcess::start(flags)).collect()
}

/// The brokers' frontends, or backends, as one comma-separated list.
fn list(brokers: &[BrokerProcess], backend: bool) -> String {
    let endpoints: Vec<&str> = brokers
        .iter()
        .map(|b| {
            if backend {
                b.backend.as_str()
            } else {
                b.frontend.as_str()
            }
        })
        .collect();
    endpoints.join(",")
}

/// Four journaling workers (heartbeat 100 ms, 4 threads) serving every broker of `tier`,
/// registered with each.
fn journaling_workers(tier: &[BrokerProcess], dir: &ScratchDir) -> Vec<WorkerProcess> {
    let workers = start_workers(
        &list(tier, true),
        dir,
        4,
        &["--heartbeat-ms", "100", "--threads", "4"],
    );
    for broker in tier {
        broker.wait_for_workers(ONCE, 4);
    }
    workers
}

/// Failures of calls of `function`.
fn failures(tally: &HashMap<String, usize>, function: &str) -> usize {
    tally
        .iter()
        .filter(|(k, _)| k.ends_with(function) && !k.starts_with("ok"))
        .map(|(_, n)| n)
        .sum()
}

/// Checks that every idempotent call succeeded and that at most `in_flight` of the others
/// failed (the calls a lost broker held).
fn check_losses(tally: &HashMap<String, usize>, in_flight: usize) {
    assert_eq!(failures(tally, IDEMPOTENT), 0, "{tally:?}");
    assert!(
        failures(tally, ONCE) <= in_flight,
        "more calls failed than were in flight at the lost broker: {tally:?}"
    );
}

/// Checks that every call ended by its own deadline (plus the client's grace and some
/// scheduling slack).
fn check_deadlines(outcomes: &[Outcome]) {
    for outcome in outcomes {
        assert!(
            outcome.waited <= outcome.timeout + Duration::from_secs(1),
            "{} waited {:?}, past its deadline of {:?}",
            outcome.token,
            outcome.waited,
            outcome.timeout
        );
    }
}

#[test]
fn tier_broker_killed_mid_run_every_call_ends_once_and_every_idempotent_call_succeeds() {
    const CLIENTS: usize = 3;
    const CALLS: usize = 3_334; // 10 002 calls in all
    const WINDOW: usize = 16;
    let dir = ScratchDir::new("tier-kill");
    let mut tier = brokers(3, &[]);
    let _workers = journaling_workers(&tier, &dir);
    let plan = Plan::new(CALLS, WINDOW, true);
    let mut answered_after_kill = 0;
    let (outcomes, unmatched) = under_load(&list(&tier, false), CLIENTS, &plan, |done| {
        wait_until(done, CLIENTS * CALLS / 3);
        tier[1].process.kill();
        let killed_at = done.load(Ordering::Relaxed);
        // Within one heartbeat-liveness period (3 × 100 ms) the tier serves on.
        std::thread::sleep(Duration::from_millis(300));
        answered_after_kill = done.load(Ordering::Relaxed) - killed_at;
    });
    assert_eq!(unmatched, 0, "a reply arrived twice or unasked");
    let tally = check_contract(
        &outcomes,
        CLIENTS * CALLS,
        &executions(&dir),
        &[ErrorCode::BrokerLost],
    );
    eprintln!(
        "tier (broker kill -9): {} calls, {answered_after_kill} answered in the 300 ms after the kill: {tally:?}",
        outcomes.len()
    );
    // Only calls in flight at the killed broker may fail: new calls went to the others.
    check_losses(&tally, CLIENTS * WINDOW);
    assert!(
        answered_after_kill > 0,
        "no call was answered in the liveness period after the kill"
    );
}

#[test]
fn tier_broker_paused_5s_no_call_outlives_its_deadline_and_new_calls_move_away() {
    const CLIENTS: usize = 3;
    const WINDOW: usize = 8;
    let dir = ScratchDir::new("tier-pause");
    let tier = brokers(3, &[]);
    let _workers = journaling_workers(&tier, &dir);
    let stop = Arc::new(AtomicBool::new(false));
    let plan = Plan {
        timeout: Duration::from_secs(4),
        stop: Some(Arc::clone(&stop)),
        ..Plan::new(60_000, WINDOW, true)
    };
    let mut during_pause = 0;
    let (outcomes, unmatched) = under_load(&list(&tier, false), CLIENTS, &plan, |done| {
        wait_until(done, 600);
        tier[0].process.signal(Signal::SIGSTOP);
        let paused_at = done.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs(5));
        during_pause = done.load(Ordering::Relaxed) - paused_at;
        tier[0].process.signal(Signal::SIGCONT);
        let resumed_at = done.load(Ordering::Relaxed);
        wait_until(done, resumed_at + 600);
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(unmatched, 0, "a reply arrived twice or unasked");
    check_deadlines(&outcomes);
    let calls = outcomes.len();
    let tally = check_contract(
        &outcomes,
        calls,
        &executions(&dir),
        &[ErrorCode::BrokerLost, ErrorCode::Timeout],
    );
    eprintln!("tier (broker SIGSTOP 5 s): {calls} calls, {during_pause} ended during the pause: {tally:?}");
    check_losses(&tally, CLIENTS * WINDOW);
    assert!(
        during_pause > 1_000,
        "the other brokers served only {during_pause} calls during the pause"
    );
}

#[test]
fn tier_rolling_restart_under_load_fails_no_call() {
    const CLIENTS: usize = 3;
    let dir = ScratchDir::new("tier-rolling");
    let mut tier = brokers(3, &[]);
    let _workers = journaling_workers(&tier, &dir);
    let stop = Arc::new(AtomicBool::new(false));
    let plan = Plan {
        stop: Some(Arc::clone(&stop)),
        ..Plan::new(100_000, 8, true)
    };
    let frontends = list(&tier, false);
    let (outcomes, unmatched) = under_load(&frontends, CLIENTS, &plan, |done| {
        wait_until(done, 300);
        for broker in tier.iter_mut() {
            broker.process.signal(Signal::SIGTERM);
            let status = broker
                .process
                .wait_exit(Duration::from_secs(15))
                .expect("a stopped broker exits");
            assert!(status.success(), "graceful stop: {status:?}");
            let (frontend, backend) = (broker.frontend.clone(), broker.backend.clone());
            *broker = BrokerProcess::start_at(&frontend, &backend, &[]);
            broker.wait_for_workers(ONCE, 4);
            let before = done.load(Ordering::Relaxed);
            wait_until(done, before + 200);
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(unmatched, 0, "a reply arrived twice or unasked");
    let calls = outcomes.len();
    let tally = check_contract(&outcomes, calls, &executions(&dir), &[]);
    eprintln!("tier (rolling restart of 3 brokers): {calls} calls: {tally:?}");
}

/// The capacity `broker` lists for its only worker.
fn listed_capacity(client: &switchboard_client::Client) -> u32 {
    let workers: Vec<WorkerListing> = client.call("system.workers", ()).unwrap();
    assert_eq!(workers.len(), 1, "{workers:?}");
    workers[0].capacity
}

/// Waits (bounded) until the two brokers list the capacities `expected`.
fn wait_for_capacities(
    first: &switchboard_client::Client,
    second: &switchboard_client::Client,
    what: &str,
    expected: (u32, u32),
) {
    eventually(
        what,
        || (listed_capacity(first), listed_capacity(second)),
        |seen| *seen == expected,
    );
}

#[test]
fn a_worker_moves_its_capacity_to_the_broker_whose_calls_wait_and_back_when_idle() {
    let first = LocalBroker::start(BrokerConfig::default());
    let second = LocalBroker::start(BrokerConfig::default());
    let _worker = LocalWorker::start(
        &format!("{},{}", first.backend, second.backend),
        "mover",
        WorkerConfig {
            threads: 6,
            prefetch: 0,
            heartbeat: Duration::from_millis(50),
            ..WorkerConfig::default()
        },
    );
    first.wait_for_workers("sleep_ms", 1);
    second.wait_for_workers("sleep_ms", 1);
    let (a, b) = (
        first.client(Duration::from_secs(10)),
        second.client(Duration::from_secs(10)),
    );
    assert_eq!(
        (listed_capacity(&a), listed_capacity(&b)),
        (3, 3),
        "an even split to start"
    );
    // Only the first broker gets calls, more than the worker has slots: they wait there.
    let calls: Vec<_> = (0..40)
        .map(|_| a.request("sleep_ms").args((100,)).send().unwrap())
        .collect();
    wait_for_capacities(&a, &b, "the slots follow the waiting calls", (5, 1));
    for call in calls {
        assert_eq!(call.wait::<u64>().unwrap(), 100);
    }
    wait_for_capacities(&a, &b, "idle again: an even split", (3, 3));
    // The second broker stops: its share comes to the first.
    drop(b);
    second.stop();
    eventually(
        "the stopped broker's share moves to the other",
        || listed_capacity(&a),
        |capacity| *capacity == 6,
    );
}

/// Starts `bench --json` with `args` inside `ns`.
fn bench_in(ns: &NetNs, args: &[&str]) -> std::process::Child {
    let mut load = ns.command(&switchboard_tests::binary("bench"));
    load.args(args)
        .arg("--json")
        .stdout(std::process::Stdio::piped());
    load.spawn().expect("start bench")
}

/// What a bench started with [`bench_in`] measured through the broker, once it ends.
fn bench_report(bench: std::process::Child) -> serde_json::Value {
    let out = bench.wait_with_output().expect("bench ends");
    assert!(out.status.success(), "bench failed");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bench JSON");
    report["broker"].clone()
}

/// Two brokers inside `ns` on the same ports, one on 127.0.0.1 and one on 127.0.0.2:
/// frontend `tcp://127.0.0.N:port`, backend `port + 1`.
fn two_brokers_in(ns: &NetNs, port: u16) -> [BrokerProcess; 2] {
    [1, 2].map(|n| {
        let endpoint = |port: u16| format!("tcp://127.0.0.{n}:{port}");
        BrokerProcess::start_in(ns, &endpoint(port), &endpoint(port + 1), &[])
    })
}

/// How many workers the broker at `frontend`, inside `ns`, lists (asked with the CLI).
fn workers_listed(ns: &NetNs, frontend: &str) -> usize {
    let client = switchboard_tests::binary("client");
    let out = ns.run(&[
        client.to_str().expect("utf-8 path"),
        "--endpoint",
        frontend,
        "--timeout-ms",
        "2000",
        "--json",
        "workers",
    ]);
    let reply: serde_json::Value = serde_json::from_str(&out).expect("JSON from the client");
    reply["result"].as_array().expect("a list of workers").len()
}

/// Waits (bounded) until the brokers at `frontends` list `counts` workers.
fn wait_for_listing(ns: &NetNs, frontends: &[&str], counts: &[usize], what: &str) {
    eventually(
        what,
        || {
            frontends
                .iter()
                .map(|f| workers_listed(ns, f))
                .collect::<Vec<_>>()
        },
        |listed| listed == counts,
    );
}

#[test]
fn a_worker_follows_brokers_as_their_host_name_gains_and_loses_addresses() {
    let ns = NetNs::new("dns");
    ns.set_hosts(&[("127.0.0.1", "brokers")]);
    let _brokers = two_brokers_in(&ns, 7100);
    let (a, b) = ("tcp://127.0.0.1:7100", "tcp://127.0.0.2:7100");
    let _worker = WorkerProcess::start_in(
        &ns,
        "tcp://brokers:7101",
        "follower",
        &["--resolve-interval-ms", "200", "--heartbeat-ms", "100"],
    );
    wait_for_listing(
        &ns,
        &[a, b],
        &[1, 0],
        "the name stands for the first broker",
    );
    ns.set_hosts(&[("127.0.0.1", "brokers"), ("127.0.0.2", "brokers")]);
    wait_for_listing(&ns, &[a, b], &[1, 1], "a broker added to the name");
    // The name stops resolving for a while (a DNS outage): the worker keeps the brokers it
    // knows.
    ns.set_hosts(&[]);
    std::thread::sleep(Duration::from_millis(1_000));
    wait_for_listing(
        &ns,
        &[a, b],
        &[1, 1],
        "a name that does not resolve for a while",
    );
    ns.set_hosts(&[("127.0.0.2", "brokers")]);
    wait_for_listing(&ns, &[a, b], &[0, 1], "a broker removed from the name");
}

#[test]
fn a_silent_partition_between_a_broker_and_its_workers_loses_no_call_silently() {
    let ns = NetNs::new("cut");
    let _brokers = two_brokers_in(&ns, 7200);
    let (a, b) = ("tcp://127.0.0.1:7200", "tcp://127.0.0.2:7200");
    let backends = "tcp://127.0.0.1:7201,tcp://127.0.0.2:7201";
    let _workers: Vec<_> = (0..2)
        .map(|i| {
            WorkerProcess::start_in(
                &ns,
                backends,
                &format!("w{i}"),
                &["--heartbeat-ms", "100", "--threads", "4"],
            )
        })
        .collect();
    wait_for_listing(&ns, &[a, b], &[2, 2], "both workers on both brokers");
    // Calls through the second broker, 100 ms each, 8 at a time, for 3 s.
    let load = bench_in(
        &ns,
        &[
            "--endpoint",
            b,
            "--function",
            "sleep_ms",
            "--args",
            "[100]",
            "--connections",
            "4",
            "--in-flight",
            "2",
            "--duration-s",
            "3",
            "--timeout-ms",
            "4000",
        ],
    );
    // And a client of both brokers, through the client library.
    let tier_load = bench_in(
        &ns,
        &[
            "--via",
            "library",
            "--endpoint",
            &format!("{a},{b}"),
            "--function",
            "sleep_ms",
            "--args",
            "[20]",
            "--in-flight",
            "8",
            "--duration-s",
            "3",
            "--timeout-ms",
            "4000",
        ],
    );
    std::thread::sleep(Duration::from_millis(700));
    // The cut: packets between that broker's backend and the workers vanish, both ways,
    // with no reset (a switch that drops them).
    ns.run(&[
        "iptables",
        "-A",
        "INPUT",
        "-d",
        "127.0.0.2",
        "-p",
        "tcp",
        "--dport",
        "7201",
        "-j",
        "DROP",
    ]);
    ns.run(&[
        "iptables",
        "-A",
        "OUTPUT",
        "-s",
        "127.0.0.2",
        "-p",
        "tcp",
        "--sport",
        "7201",
        "-j",
        "DROP",
    ]);
    let measured = bench_report(load);
    let errors = measured["errors"].as_object().expect("error counts");
    eprintln!("partition: {measured}");
    for code in errors.keys() {
        assert!(
            ["WORKER_LOST", "UNKNOWN_FUNCTION"].contains(&code.as_str()),
            "calls through the cut-off broker ended {code}, not with a prompt error: {errors:?}"
        );
    }
    assert!(
        errors.contains_key("WORKER_LOST"),
        "the calls running when the cut came were answered WORKER_LOST: {errors:?}"
    );
    let max_ms = measured["latency_us"]["max"].as_u64().expect("max latency") / 1000;
    assert!(
        max_ms < 4000,
        "a call waited {max_ms} ms, up to its deadline"
    );
    // The other broker still serves, with both workers.
    assert_eq!(workers_listed(&ns, a), 2);
    // The client of both brokers: calls the cut-off broker refused unrun (UNKNOWN_FUNCTION)
    // went to the other; only calls running at the cut were lost (WORKER_LOST).
    let measured = bench_report(tier_load);
    eprintln!("partition, client of both brokers: {measured}");
    let errors = measured["errors"].as_object().expect("error counts");
    assert!(
        errors.keys().all(|code| code == "WORKER_LOST"),
        "calls a broker refused unrun should have gone to the other: {errors:?}"
    );
    let lost = errors
        .get("WORKER_LOST")
        .and_then(|n| n.as_u64())
        .unwrap_or(0);
    assert!(lost <= 8, "more calls lost than were in flight: {errors:?}");
}

#[test]
fn a_stopping_broker_tells_its_clients_so_no_new_call_is_sent_there() {
    let mut tier = brokers(2, &[]);
    let _worker = WorkerProcess::start(&list(&tier, true), "w", &["--threads", "8"]);
    for broker in &tier {
        broker.wait_for_workers("sleep_ms", 1);
    }
    let mut config = switchboard_client::ClientConfig::new(&list(&tier, false));
    config.default_timeout = Duration::from_secs(10);
    let client = switchboard_client::Client::with_config(config).expect("client");
    for i in 0..20 {
        assert_eq!(client.call::<i64>("add", (i, 1)).unwrap(), i + 1);
    }
    // Slow calls on both brokers: the first one's stop lasts until its call ends.
    let slow: Vec<_> = (0..6)
        .map(|_| client.request("sleep_ms").args((1500,)).send().unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    tier[0].process.signal(Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    let refused = client.stats().refused_calls;
    for i in 0..100 {
        assert_eq!(client.call::<i64>("add", (i, 2)).unwrap(), i + 2);
    }
    assert_eq!(
        client.stats().refused_calls,
        refused,
        "a call went to the stopping broker after its notice"
    );
    for call in slow {
        assert_eq!(
            call.wait::<u64>().unwrap(),
            1500,
            "calls it held still end there"
        );
    }
    let status = tier[0].process.wait_exit(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

/// How many requests the broker at `frontend`, inside `ns`, has read (asked with the CLI;
/// the asking counts).
fn requests_at(ns: &NetNs, frontend: &str) -> u64 {
    let client = switchboard_tests::binary("client");
    let out = ns.run(&[
        client.to_str().expect("utf-8 path"),
        "--endpoint",
        frontend,
        "--timeout-ms",
        "2000",
        "--json",
        "call",
        "system.stats",
    ]);
    let reply: serde_json::Value = serde_json::from_str(&out).expect("JSON from the client");
    reply["result"]["requests"]
        .as_u64()
        .expect("a request count")
}

#[test]
fn a_client_follows_brokers_as_their_host_name_gains_and_loses_addresses() {
    let ns = NetNs::new("cdns");
    ns.set_hosts(&[("127.0.0.1", "brokers")]);
    let _brokers = two_brokers_in(&ns, 7300);
    let (a, b) = ("tcp://127.0.0.1:7300", "tcp://127.0.0.2:7300");
    let _worker = WorkerProcess::start_in(
        &ns,
        "tcp://127.0.0.1:7301,tcp://127.0.0.2:7301",
        "w",
        &["--heartbeat-ms", "100"],
    );
    wait_for_listing(&ns, &[a, b], &[1, 1], "the worker on both brokers");
    let load = bench_in(
        &ns,
        &[
            "--via",
            "library",
            "--endpoint",
            "tcp://brokers:7300",
            "--function",
            "add",
            "--args",
            "[1, 2]",
            "--in-flight",
            "4",
            "--duration-s",
            "4",
            "--resolve-interval-ms",
            "200",
        ],
    );
    std::thread::sleep(Duration::from_millis(800));
    let second_before = requests_at(&ns, b);
    ns.set_hosts(&[("127.0.0.1", "brokers"), ("127.0.0.2", "brokers")]);
    std::thread::sleep(Duration::from_millis(1200));
    let second_after = requests_at(&ns, b);
    assert!(
        second_after > second_before + 10,
        "the client never used the broker added to its name ({second_before} -> {second_after} requests)"
    );
    ns.set_hosts(&[("127.0.0.2", "brokers")]);
    std::thread::sleep(Duration::from_millis(800));
    let first_left = requests_at(&ns, a);
    std::thread::sleep(Duration::from_millis(800));
    let first_later = requests_at(&ns, a);
    assert!(
        first_later <= first_left + 1,
        "calls still went to the broker removed from the name ({first_left} -> {first_later})"
    );
    let out = load.wait_with_output().expect("bench ends");
    assert!(out.status.success(), "bench failed");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bench JSON");
    let errors = report["broker"]["errors"]
        .as_object()
        .expect("error counts");
    assert!(
        errors.is_empty(),
        "calls failed while brokers came and went: {errors:?}"
    );
}
