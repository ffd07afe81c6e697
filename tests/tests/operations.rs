//! Operating a deployment: Prometheus metrics, worker listing and health checks, JSON logs.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use switchboard_tests::{binary, cluster, http_get, BrokerProcess, Process, WAIT_LIMIT};

/// The value of one sample line (`name{labels} value`), 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map_or(0.0, |v| v.trim().parse().expect("number"))
}

#[test]
fn metrics_endpoint_counters_move_with_real_calls() {
    let (broker, _workers) = cluster(1, &["--metrics", "127.0.0.1:0"], &[]);
    let url = broker.metrics.clone().expect("metrics URL announced");
    let (status, before) = http_get(&url);
    assert_eq!(status, 200);
    let client = broker.client(Duration::from_secs(5));
    for i in 0..5 {
        assert_eq!(client.call::<i64>("add", (i, 1)).unwrap(), i + 1);
    }
    assert!(client.call::<()>("fail", ("x",)).is_err());
    assert!(client.call::<()>("nope", ()).is_err());
    let (_, after) = http_get(&url);

    let ok = "switchboard_calls_total{function=\"add\",outcome=\"ok\"}";
    assert_eq!(sample(&after, ok) - sample(&before, ok), 5.0, "{after}");
    assert_eq!(
        sample(
            &after,
            "switchboard_calls_total{function=\"fail\",outcome=\"FUNCTION_ERROR\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "switchboard_broker_errors_total{code=\"UNKNOWN_FUNCTION\"}"
        ),
        1.0
    );
    let count = "switchboard_call_duration_seconds_count{function=\"add\"}";
    assert_eq!(sample(&after, count), sample(&before, count) + 5.0);
    assert_eq!(
        sample(
            &after,
            "switchboard_call_duration_seconds_bucket{le=\"+Inf\",function=\"add\"}"
        ),
        sample(&after, count)
    );
    assert_eq!(sample(&after, "switchboard_workers"), 1.0);
    assert_eq!(
        sample(&after, "switchboard_queue_depth{function=\"add\"}"),
        0.0
    );
    for socket in ["frontend", "backend"] {
        let series = format!("switchboard_received_bytes_total{{socket=\"{socket}\"}}");
        assert!(
            sample(&after, &series) > sample(&before, &series),
            "{series}"
        );
    }
    assert!(after.contains("# TYPE switchboard_call_duration_seconds histogram"));
    let health = url.replace("/metrics", "/health");
    assert_eq!(http_get(&health), (200, "ok\n".to_owned()));
    assert_eq!(http_get(&url.replace("/metrics", "/nope")).0, 404);
}

fn client_status(endpoint: &str, args: &[&str]) -> i32 {
    Command::new(binary("client"))
        .args(["--endpoint", endpoint])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run client")
        .code()
        .unwrap_or(-1)
}

#[test]
fn health_checks_ask_the_broker_for_itself_and_for_a_worker() {
    let (broker, workers) = cluster(2, &[], &[]);
    let e = broker.frontend.as_str();
    assert_eq!(client_status(e, &["health"]), 0);
    assert_eq!(
        client_status(e, &["health", "--worker", &workers[1].name]),
        0
    );
    assert_eq!(client_status(e, &["health", "--worker", "ghost"]), 4);
    let output = Command::new(binary("client"))
        .args(["--endpoint", e, "--json", "workers"])
        .output()
        .expect("run client");
    let listing: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let names: Vec<_> = listing["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["w0", "w1"]);
    // No broker at all: the health check fails instead of hanging.
    let dead = "tcp://127.0.0.1:9";
    let status = Command::new(binary("client"))
        .args(["--endpoint", dead, "--timeout-ms", "300", "health"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(4));
}

#[test]
fn json_log_format_writes_one_object_per_line() {
    let mut command = Command::new(binary("broker"));
    command
        .args([
            "--frontend",
            "tcp://127.0.0.1:*",
            "--backend",
            "tcp://127.0.0.1:*",
        ])
        .env("SWITCHBOARD_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn broker");
    let stderr = child.stderr.take().expect("stderr");
    let _guard = Process::adopt(child);
    let mut line = String::new();
    BufReader::new(stderr)
        .read_line(&mut line)
        .expect("a log line");
    let record: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
    assert_eq!(record["level"], "INFO");
    assert_eq!(record["fields"]["message"], "broker listening");
}

#[test]
fn a_worker_built_on_the_library_deploys_like_the_binary() {
    let broker = BrokerProcess::start(&[]);
    let example = binary("examples/own_functions");
    let mut worker = Process::spawn(
        Command::new(example)
            .env("SWITCHBOARD_BROKER", &broker.backend)
            .env("SWITCHBOARD_WORKER_NAME", "library-worker")
            .env("SWITCHBOARD_HEARTBEAT_MS", "200")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null()),
    );
    broker.wait_for_workers("math.add", 1);
    let client = broker.client(Duration::from_secs(5));
    assert_eq!(client.call::<i64>("math.add", (2, 3)).unwrap(), 5);
    let error = client.call::<f64>("math.div", (1.0, 0.0)).unwrap_err();
    assert!(error.is_function_error(), "{error}");
    let workers: Vec<switchboard_protocol::WorkerListing> =
        client.call("system.workers", ()).unwrap();
    assert_eq!(workers[0].name, "library-worker");
    worker.signal(Signal::SIGTERM);
    let status = worker.wait_exit(WAIT_LIMIT).expect("worker exits");
    assert!(status.success(), "{status}");
}

#[test]
fn a_call_that_waits_for_ready_shows_in_the_queue_and_runs_on_the_first_worker() {
    use switchboard_tests::{LocalBroker, LocalWorker};
    let broker = LocalBroker::start(switchboard_broker::BrokerConfig::default());
    let client = broker.client(Duration::from_secs(10));
    // No worker at all: a plain call is refused at once, a waiting one waits.
    let refused = client.call::<u64>("sleep_ms", (1,)).unwrap_err();
    assert_eq!(
        refused.code(),
        Some(switchboard_client::ErrorCode::UnknownFunction)
    );
    let waiting = client
        .request("sleep_ms")
        .args((5,))
        .wait_for_ready()
        .send()
        .unwrap();
    // Its queue depth is visible (what an autoscaler reads to start the first worker).
    broker.wait_for("sleep_ms", "1 call queued, no worker", |f| {
        f.queued == 1 && f.workers == 0
    });
    let _worker = LocalWorker::start(
        &broker.backend,
        "first",
        switchboard_worker::WorkerConfig::default(),
    );
    assert_eq!(waiting.wait::<u64>().unwrap(), 5);
}
