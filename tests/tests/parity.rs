//! What users of xmlrpc, multiprocessing RPC, JSON-RPC and zerorpc expect: namespaces,
//! keyword arguments, batches, introspection, binary and time values, remote errors.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_bytes::ByteBuf;
use switchboard_broker::BrokerConfig;
use switchboard_client::{CallError, ErrorCode};
use switchboard_protocol::{FunctionListing, Timestamp};
use switchboard_tests::{binary, local_cluster, ScratchDir};

const TIMEOUT: Duration = Duration::from_secs(10);

fn kwargs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn namespaced_functions_are_called_by_dotted_name() {
    let (broker, _workers) = local_cluster(1, BrokerConfig::default(), |_| {});
    let client = broker.client(TIMEOUT);
    let data = ByteBuf::from(vec![0u8, 1, 2, 255]);
    assert_eq!(client.call::<usize>("bytes.len", (&data,)).unwrap(), 4);
    let listing: Vec<FunctionListing> = client.call("system.functions", ()).unwrap();
    let names: Vec<_> = listing.iter().map(|f| f.name.as_str()).collect();
    for expected in ["bytes.len", "bytes.reverse", "time.now", "time.shift"] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
}

#[test]
fn keyword_arguments_mix_with_positional_ones_and_fill_defaults() {
    let (broker, _workers) = local_cluster(1, BrokerConfig::default(), |_| {});
    let client = broker.client(TIMEOUT);
    let only_name: String = client
        .call_kwargs("greet", kwargs(&[("name", "ada")]))
        .unwrap();
    assert_eq!(
        only_name, "hello, ada!",
        "the optional field takes its default"
    );
    let mixed: String = client
        .request("greet")
        .args(("bob",))
        .kwargs(kwargs(&[("greeting", "hey")]))
        .call()
        .unwrap();
    assert_eq!(mixed, "hey, bob!");
    let typo = client
        .call_kwargs::<String>("greet", kwargs(&[("nmae", "ada")]))
        .unwrap_err();
    assert_eq!(typo.code(), Some(ErrorCode::BadArguments));
    assert!(
        typo.message()
            .contains("unexpected keyword argument 'nmae'"),
        "{typo}"
    );
    let twice = client
        .request("greet")
        .args(("bob",))
        .kwargs(kwargs(&[("name", "ada")]))
        .call::<String>()
        .unwrap_err();
    assert!(
        twice
            .message()
            .contains("multiple values for argument 'name'"),
        "{twice}"
    );
    let missing = client.call::<String>("greet", ()).unwrap_err();
    assert!(missing.message().contains("name"), "{missing}");
    let positional_only = client
        .request("add")
        .args((1, 2))
        .kwargs(kwargs(&[("c", "3")]))
        .call::<i64>();
    assert!(positional_only
        .unwrap_err()
        .message()
        .contains("takes no keyword arguments"));
}

#[test]
fn batch_returns_every_outcome_in_order_and_runs_calls_in_parallel() {
    let (broker, _workers) = local_cluster(2, BrokerConfig::default(), |w| w.threads = 2);
    let client = broker.client(TIMEOUT);
    let replies = client
        .batch()
        .call("add", (1, 2))
        .call("nope", ())
        .call("fail", ("boom",))
        .call_kwargs("greet", kwargs(&[("name", "ada")]))
        .call("system.ping", ())
        .wait()
        .unwrap();
    assert_eq!(replies.len(), 5);
    assert_eq!(replies[0].decode::<i64>().unwrap(), 3);
    assert_eq!(
        replies[1].decode::<i64>().unwrap_err().code(),
        Some(ErrorCode::UnknownFunction)
    );
    assert!(replies[2].decode::<()>().unwrap_err().is_function_error());
    assert_eq!(replies[3].decode::<String>().unwrap(), "hello, ada!");
    assert_eq!(replies[4].decode::<String>().unwrap(), "pong");

    // Four slow calls on 2 workers x 2 threads: fanned out, all running at once.
    let mut batch = client.batch();
    for _ in 0..4 {
        batch = batch.call("sleep_ms", (300,));
    }
    let pending = batch.send().unwrap();
    broker.wait_for("sleep_ms", "4 running at once", |f| f.running == 4);
    let replies = pending.wait().unwrap();
    assert!(replies.iter().all(|r| r.decode::<u64>().unwrap() == 300));
}

#[test]
fn broker_describes_functions_and_how_many_workers_host_them() {
    let (broker, _workers) = local_cluster(2, BrokerConfig::default(), |_| {});
    let client = broker.client(TIMEOUT);
    let add: FunctionListing = client.call("system.describe", ("add",)).unwrap();
    assert_eq!(add.signature, "add(i64, i64) -> i64");
    assert_eq!(add.doc, "Adds two integers.");
    assert_eq!(add.workers, 2);
    let error = client
        .call::<FunctionListing>("system.describe", ("nope",))
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::UnknownFunction));
    let error = client.call::<String>("system.nothing", ()).unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::UnknownFunction));
}

#[test]
fn binary_and_timestamps_travel_as_native_msgpack_types() {
    let (broker, _workers) = local_cluster(1, BrokerConfig::default(), |_| {});
    let client = broker.client(TIMEOUT);
    let data = ByteBuf::from((0..=255u8).collect::<Vec<_>>());
    let reversed: ByteBuf = client.call("bytes.reverse", (&data,)).unwrap();
    assert_eq!(reversed.first(), Some(&255));
    assert_eq!(reversed.len(), 256);
    let start = Timestamp::new(1_767_225_600, 250_000_000).unwrap();
    let later: Timestamp = client.call("time.shift", (start, 90.5)).unwrap();
    assert_eq!(later, Timestamp::new(1_767_225_690, 750_000_000).unwrap());
    let echoed: Timestamp = client.call("echo", (start,)).unwrap();
    assert_eq!(echoed, start, "a timestamp survives an untyped echo");
    let now: Timestamp = client.call("time.now", ()).unwrap();
    assert!((now.seconds() - Timestamp::now().seconds()).abs() < 60);
}

#[test]
fn client_errors_tell_function_failures_from_delivery_failures() {
    let (broker, _workers) = local_cluster(1, BrokerConfig::default(), |w| w.threads = 1);
    let client = broker.client(TIMEOUT);
    let failed = client.call::<()>("fail", ("disk full",)).unwrap_err();
    assert!(
        matches!(&failed, CallError::Function(e) if e.message == "disk full"),
        "{failed:?}"
    );
    let unknown = client.call::<()>("nope", ()).unwrap_err();
    assert!(matches!(unknown, CallError::Broker(_)) && unknown.is_delivery_error());
    let refused = client.call::<i64>("add", ("x", 1)).unwrap_err();
    assert!(matches!(refused, CallError::Rejected(_)), "{refused:?}");
    let slow = client
        .request("sleep_ms")
        .args((500,))
        .timeout(Duration::from_millis(100))
        .call::<u64>();
    assert!(matches!(slow.unwrap_err(), CallError::Broker(e) if e.code == ErrorCode::Timeout));
}

fn cli(endpoint: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(binary("client"))
        .args(["--endpoint", endpoint])
        .args(args)
        .env("SWITCHBOARD_TIMEOUT_MS", "3000")
        .output()
        .expect("run client");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    )
}

#[test]
fn command_line_client_calls_lists_describes_and_batches() {
    let (broker, _workers) = local_cluster(1, BrokerConfig::default(), |_| {});
    let e = broker.frontend.as_str();
    assert_eq!(
        cli(e, &["call", "add", "2", "3"]),
        (0, "5".into(), String::new())
    );
    assert_eq!(
        cli(e, &["call", "greet", "ada", "greeting=hi"]).1,
        "\"hi, ada!\""
    );
    assert_eq!(
        cli(e, &["call", "bytes.reverse", r#"{"$bin": "AAEC"}"#]).1,
        r#"{"$bin":"AgEA"}"#
    );
    assert_eq!(
        cli(
            e,
            &[
                "call",
                "time.shift",
                r#"{"$timestamp": "2026-01-01T00:00:00Z"}"#,
                "1.5"
            ]
        )
        .1,
        r#"{"$timestamp":"2026-01-01T00:00:01.500000000Z"}"#
    );

    let (code, _, stderr) = cli(e, &["call", "fail", "oops"]);
    assert_eq!((code, stderr.as_str()), (1, "error: FUNCTION_ERROR: oops"));
    let (code, _, stderr) = cli(e, &["call", "add", "1"]);
    assert_eq!(code, 3, "{stderr}");
    let (code, _, stderr) = cli(e, &["call", "nope"]);
    assert_eq!(code, 4, "{stderr}");
    let (code, stdout, _) = cli(e, &["--json", "call", "nope"]);
    assert_eq!(code, 4);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["error"]["code"], "UNKNOWN_FUNCTION");
    let (code, _, stderr) = cli(e, &["--timeout-ms", "100", "call", "sleep_ms", "1000"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("TIMEOUT"), "{stderr}");

    let (code, listing, _) = cli(e, &["list"]);
    assert_eq!(code, 0);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("add(i64, i64) -> i64") && l.contains("1 worker(s)")),
        "{listing}"
    );
    let (code, description, _) = cli(e, &["describe", "greet"]);
    assert_eq!(code, 0);
    assert!(
        description.contains("Greets by keyword arguments"),
        "{description}"
    );

    let file = std::env::temp_dir().join(format!("switchboard-batch-{}.json", std::process::id()));
    std::fs::write(&file, r#"[{"function": "add", "args": [1, 2]}, {"function": "nope"}, {"function": "greet", "kwargs": {"name": "bo"}}]"#).unwrap();
    let (code, stdout, _) = cli(e, &["--json", "batch", file.to_str().unwrap()]);
    std::fs::remove_file(&file).ok();
    assert_eq!(code, 5, "a batch with a failed call exits 5");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["result"][0]["result"], 3);
    assert_eq!(json["result"][1]["error"]["code"], "UNKNOWN_FUNCTION");
    assert_eq!(json["result"][2]["result"], "hello, bo!");

    let (code, _, stderr) = cli(e, &["batch", "/nonexistent/calls.json"]);
    assert_eq!(code, 2, "{stderr}");
    let (code, help, _) = cli(e, &["--help"]);
    assert_eq!(code, 0);
    assert!(help.contains("Examples:") && help.contains("Exit codes:"));
}

#[test]
fn command_line_mistakes_get_clear_messages_and_input_errors_exit_2() {
    let (broker, _workers) = local_cluster(1, BrokerConfig::default(), |_| {});
    let e = broker.frontend.as_str();
    // Negative numbers are arguments; flags may follow the subcommand.
    assert_eq!(cli(e, &["call", "add", "-1", "2"]).1, "1");
    assert_eq!(
        cli(e, &["call", "upper", "hi", "--json"]).1,
        r#"{"result":"HI"}"#
    );
    let (code, _, err) = cli(e, &["call", "add", "x", "y"]);
    assert_eq!(code, 3);
    assert!(
        err.contains("argument 1: expected an integer, got a string"),
        "{err}"
    );
    let (_, _, err) = cli(e, &["call", "add", "1"]);
    assert!(err.contains("but 1 was given"), "{err}");
    // No float the user did not type, and input errors are exit 2.
    let (code, _, err) = cli(e, &["call", "add", "99999999999999999999", "1"]);
    assert_eq!(code, 2, "{err}");
    assert!(!err.contains(".0") && err.contains("64-bit"), "{err}");
    let (code, _, err) = cli(e, &["--timeout-ms", "0", "call", "add", "1", "2"]);
    assert_eq!(code, 2);
    assert!(!err.contains("broker"), "{err}");
    let dir = ScratchDir::new("cli");
    let empty = dir.path.join("empty.json");
    std::fs::write(&empty, "[]").unwrap();
    let (code, _, err) = cli(e, &["batch", empty.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("0 calls"), "{err}");
    let (code, _, err) = cli(e, &["keygen", dir.path.join("missing/k").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot write"), "{err}");
    // Logs and errors carry no colour codes when stderr is not a terminal.
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

#[test]
fn command_line_output_into_a_closed_pipe_is_not_a_crash() {
    let (broker, _workers) = local_cluster(1, BrokerConfig::default(), |_| {});
    let mut child = Command::new(binary("client"))
        .args([
            "--endpoint",
            &broker.frontend,
            "--json",
            "call",
            "system.functions",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run client");
    // Read nothing and close the pipe, like `| head -c 0`.
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("client exits");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
}

#[test]
fn timings_come_back_when_asked_for_and_the_cli_prints_them() {
    let (broker, _workers) = local_cluster(1, BrokerConfig::default(), |_| {});
    let client = broker.client(Duration::from_secs(5));
    let pending = client
        .request("sleep_ms")
        .args((20,))
        .timings()
        .send()
        .unwrap();
    let (slept, timings): (u64, _) = pending.wait_timed().unwrap();
    assert_eq!(slept, 20);
    let timings = timings.expect("asked for");
    assert!(timings.running_us >= 20_000, "{timings:?}");
    assert_eq!((timings.attempts, timings.worker.as_str()), (1, "w0"));
    // The worker's own measure of the function: within what the broker saw.
    let run_us = timings
        .run_us
        .expect("the worker reports its run time when asked");
    assert!(
        (20_000..=timings.running_us).contains(&run_us),
        "{timings:?}"
    );
    // Not asked: none, and the reply is the plain one.
    let (_, none): (u64, _) = client
        .request("sleep_ms")
        .args((1,))
        .send()
        .unwrap()
        .wait_timed()
        .unwrap();
    assert_eq!(none, None);
    let output = Command::new(binary("client"))
        .args([
            "--endpoint",
            &broker.frontend,
            "call",
            "--verbose",
            "add",
            "2",
            "3",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "5");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("attempts 1, worker w0"), "{stderr}");
    assert!(stderr.contains("(the function itself: "), "{stderr}");
}
