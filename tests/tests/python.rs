//! The Python snippets of docs/PROTOCOL.md, run against the real broker with pyzmq and msgpack.
//! Fails loudly when Python or its packages are missing (scripts/setup.sh installs them).

use std::path::Path;
use std::process::Command;

use switchboard_tests::cluster;

#[test]
fn python_req_client_and_python_worker_follow_the_document() {
    let (broker, _workers) = cluster(1, &[], &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/wire_check.py");
    let output = Command::new("python3")
        .arg(&script)
        .args([&broker.frontend, &broker.backend])
        .output()
        .expect("python3 must be installed (scripts/setup.sh)");
    assert!(
        output.status.success(),
        "python wire check failed (pyzmq and msgpack are installed by scripts/setup.sh):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("python wire check: ok"));
}
