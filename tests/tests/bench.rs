//! A short smoke run of the `bench` tool (a few thousand calls) so it cannot rot:
//! both modes, the JSON report, error counting, and the open-loop rate.

use std::process::Command;

use switchboard_tests::{binary, cluster};

fn bench(endpoint: &str, args: &[&str]) -> serde_json::Value {
    let output = Command::new(binary("bench"))
        .args(["--endpoint", endpoint, "--json"])
        .args(args)
        .output()
        .expect("run bench");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON report")
}

#[test]
fn bench_measures_the_broker_against_a_direct_echo() {
    let (broker, _workers) = cluster(1, &[], &[]);
    let report = bench(
        &broker.frontend,
        &["--mode", "both", "--in-flight", "50", "--calls", "3000"],
    );
    for side in ["baseline", "broker"] {
        assert_eq!(report[side]["calls"], 3000, "{side}: {report}");
        assert!(report[side]["calls_per_second"].as_f64().unwrap() > 0.0);
        let latency = &report[side]["latency_us"];
        assert!(latency["p50"].as_u64().unwrap() <= latency["p99"].as_u64().unwrap());
        assert!(latency["p99"].as_u64().unwrap() <= latency["max"].as_u64().unwrap());
    }
    assert_eq!(report["broker"]["errors"], serde_json::json!({}));
    let ratio = report["ratios"]["throughput"].as_f64().unwrap();
    assert!(ratio > 0.0 && ratio < 10.0, "{ratio}");
}

#[test]
fn bench_drives_the_broker_through_the_client_library_too() {
    let (broker, _workers) = cluster(1, &[], &[]);
    let report = bench(
        &broker.frontend,
        &["--via", "library", "--in-flight", "20", "--calls", "2000"],
    );
    assert_eq!(report["config"]["via"], "library", "{report}");
    assert_eq!(report["broker"]["calls"], 2000, "{report}");
    assert_eq!(report["broker"]["errors"], serde_json::json!({}));
    let report = bench(
        &broker.frontend,
        &["--via", "library", "--function", "nope", "--calls", "50"],
    );
    assert_eq!(
        report["broker"]["errors"]["UNKNOWN_FUNCTION"], 50,
        "{report}"
    );
}

#[test]
fn bench_counts_each_error_code_and_paces_an_open_loop() {
    let (broker, _workers) = cluster(1, &[], &[]);
    let report = bench(
        &broker.frontend,
        &["--function", "nope", "--calls", "200", "--in-flight", "20"],
    );
    assert_eq!(
        report["broker"]["errors"]["UNKNOWN_FUNCTION"], 200,
        "{report}"
    );
    let report = bench(
        &broker.frontend,
        &[
            "--function",
            "add",
            "--args",
            "[1, 2]",
            "--rate",
            "500",
            "--duration-s",
            "1",
            "--connections",
            "2",
        ],
    );
    let calls = report["broker"]["calls"].as_u64().unwrap();
    assert!(
        (350..=600).contains(&calls),
        "500/s for 1 s delivered {calls}: {report}"
    );
}

/// Runs one of the performance scripts on the debug binaries; returns what it printed.
fn script(name: &str, args: &[&str]) -> String {
    let bin_dir = binary("bench").parent().expect("bin dir").to_owned();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new("python3")
        .arg(root.join("scripts").join(name))
        .arg("--bin-dir")
        .arg(&bin_dir)
        .args(args)
        .output()
        .expect("run python3 (scripts/setup.sh installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn the_matrix_and_cpu_scripts_run_and_report_every_row() {
    let out = std::env::temp_dir().join(format!("bench-matrix-{}.md", std::process::id()));
    let printed = script(
        "bench_matrix.py",
        &[
            "--quick",
            "--runs",
            "1",
            "--cases",
            "echo,memory,tail",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let table = std::fs::read_to_string(&out).expect("the matrix writes its table");
    let _ = std::fs::remove_file(&out);
    for row in [
        "16 B echo, 1 in flight: p50 latency",
        "16 B echo, 1000 in flight: throughput",
        "64 KiB echo, 1000 in flight: throughput",
        "one call per message",
        "calls queued behind busy workers: broker RSS",
        "one 200 ms host among four, sequential calls: p99 hedged after 50 ms",
        "one host failing every call among four: share of calls it gets once ejected",
    ] {
        assert!(table.contains(row), "no row {row:?} in\n{table}\n{printed}");
    }
    let cpu = script("cpu_per_call.py", &["--calls", "2000"]);
    assert!(cpu.contains("2,000 calls at"), "{cpu}");
    // Threads are listed only when they used a clock tick (10 ms); the broker's loop
    // always does for 2 000 calls on a debug build, a worker thread may not.
    for thread in ["broker broker", "bench (all threads)", "all"] {
        assert!(
            cpu.lines()
                .any(|l| l.trim_start().starts_with(thread) && l.contains("µs/call")),
            "no {thread:?} line in\n{cpu}"
        );
    }
}

#[test]
fn the_overload_script_runs_and_reports_every_line() {
    let out = script("overload.py", &["--seconds", "1", "--rate-factor", "5"]);
    for line in [
        "calls offered",
        "answered by a worker",
        "refused at once (OVERLOADED)",
        "late replies (caller gone)",
        "CANCEL sent",
    ] {
        assert!(out.contains(line), "no {line:?} in\n{out}");
    }
}

#[test]
fn the_python_benchmark_runs_and_reports_every_row() {
    // Makes its own virtual environment with zerorpc and the package from python/.
    let out = script("python_bench.py", &["--quick"]);
    for row in [
        "sync client, sequential p50",
        "asyncio client, sequential p50",
        "sync client, 1 000 in flight",
        "asyncio client, 1 000 in flight",
        "Python worker, 4 threads",
        "Python worker, inline function",
        "floor: raw pyzmq + msgpack DEALER",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("| {row}"))),
            "no row {row:?} in\n{out}"
        );
    }
}
