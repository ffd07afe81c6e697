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
