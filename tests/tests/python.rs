//! Python as a first-class client and worker: the examples in `examples/python/` (written
//! with the switchboard-rpc package, installed by scripts/test.sh) and an independent
//! pyzmq + msgpack implementation from PROTOCOL.md (`tests/python/wire_check.py`), against
//! the real broker, in both directions. The package's own suite is `python/tests`.

use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::Serialize;
use switchboard_client::{CallError, ErrorCode};
use switchboard_protocol::Timestamp;
use switchboard_tests::{cluster, repo_path, run_python, BrokerProcess, Process};

#[test]
fn python_req_client_and_python_worker_follow_the_document() {
    let (broker, _workers) = cluster(1, &[], &[]);
    let out = run_python(
        "tests/python/wire_check.py",
        &[&broker.frontend, &broker.backend],
    );
    assert!(out.contains("python wire check: ok"), "{out}");
}

#[test]
fn python_client_example_calls_rust_hosted_functions() {
    let (broker, _workers) = cluster(1, &[], &[]);
    let out = run_python("examples/python/client.py", &[&broker.frontend, "--check"]);
    assert!(out.contains("python client: ok"), "{out}");
}

#[derive(Serialize)]
struct Concat<'a> {
    first: &'a str,
    second: &'a str,
    sep: &'a str,
}

#[test]
fn rust_client_calls_functions_hosted_by_the_python_worker() {
    let broker = BrokerProcess::start(&[]);
    let mut worker = Process::spawn(
        Command::new("python3")
            .arg(repo_path("examples/python/worker.py"))
            .arg(&broker.backend),
    );
    broker.wait_for_workers("py.double", 1);
    let client = broker.client(Duration::from_secs(5));
    let workers: Vec<switchboard_protocol::WorkerListing> =
        client.call("system.workers", ()).unwrap();
    assert!(
        !workers[0].name.is_empty(),
        "the Python worker announces a name"
    );

    assert_eq!(client.call::<i64>("py.double", (21,)).unwrap(), 42);
    let repeated = client
        .request("py.concat")
        .args(("a",))
        .kwargs(Concat {
            first: "",
            second: "b",
            sep: "-",
        })
        .call::<String>()
        .unwrap_err();
    assert_eq!(repeated.code(), Some(ErrorCode::BadArguments), "{repeated}");
    let mixed: String = client
        .request("py.concat")
        .args(("a", "b"))
        .kwargs(
            [("sep", "+")]
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
        .call()
        .unwrap();
    assert_eq!(mixed, "a+b");
    let joined: String = client
        .call_kwargs(
            "py.concat",
            Concat {
                first: "a",
                second: "b",
                sep: "-",
            },
        )
        .unwrap();
    assert_eq!(joined, "a-b");

    let error = client.call::<f64>("py.divide", (1, 0)).unwrap_err();
    assert!(matches!(error, CallError::Function(_)), "{error:?}");
    assert!(error.message().contains("division by zero"), "{error}");
    let error = client.call::<i64>("py.double", ()).unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::BadArguments), "{error}");

    let now: Timestamp = client.call("py.now", ()).unwrap();
    let here = Timestamp::now();
    assert!(
        (here.seconds() - now.seconds()).abs() < 60,
        "{now:?} vs {here:?}"
    );

    // A graceful stop finishes the running call first.
    let running = client.request("py.sleep").args((0.3,)).send().unwrap();
    broker.wait_for("py.sleep", "1 running", |f| f.running == 1);
    worker.signal(Signal::SIGTERM);
    assert_eq!(running.wait::<f64>().unwrap(), 0.3);
    let status = worker
        .wait_exit(Duration::from_secs(10))
        .expect("python worker exits");
    assert!(status.success(), "python worker exit status {status:?}");
}
