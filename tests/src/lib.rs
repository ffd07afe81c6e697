//! Test harness: real brokers and workers on ephemeral loopback ports, stopped (only
//! them) when dropped.
//!
//! Most tests run them in this process, on threads ([`local_cluster`], [`LocalBroker`],
//! [`LocalWorker`]): quick to start, stopped through their stop flag and joined. Tests of
//! what needs a process — signals, kill -9, exit codes, logs, memory — start the real
//! `broker` and `worker` binaries ([`cluster`], [`BrokerProcess`], [`WorkerProcess`]),
//! taken from the Cargo target directory next to the test executable (build them first:
//! `cargo build --bins`) or from `SWITCHBOARD_BIN_DIR`, and kill only them, by PID. Set
//! `SWITCHBOARD_TEST_LOGS=1` to see their logs.
//!
//! Both kinds of broker dereference to [`BrokerEndpoints`], which makes clients and
//! waits on observable events with a bound.

pub mod contract;
mod local;
mod netns;

pub use local::{local_cluster, LocalBroker, LocalWorker};
pub use netns::NetNs;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use switchboard_client::{Client, ClientConfig};
use switchboard_protocol::FunctionListing;
use switchboard_transport::curve::ClientCurve;

/// Longest a harness wait may take before the test fails.
pub const WAIT_LIMIT: Duration = Duration::from_secs(15);

/// Observes something every 20 ms until `done` holds of it, at most [`WAIT_LIMIT`]; then
/// fails the test with `what` and the last observation.
pub fn eventually<T: std::fmt::Debug>(
    what: &str,
    mut observe: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let until = Instant::now() + WAIT_LIMIT;
    loop {
        let seen = observe();
        if done(&seen) {
            return seen;
        }
        assert!(Instant::now() < until, "{what}: still {seen:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Path of one of the workspace's binaries.
pub fn binary(name: &str) -> PathBuf {
    let dir = match std::env::var_os("SWITCHBOARD_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().expect("test executable path");
            // target/<profile>/deps/<test> → target/<profile>
            exe.parent()
                .and_then(|p| p.parent())
                .expect("target dir")
                .to_path_buf()
        }
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: run `cargo build --bins` before the tests (or set SWITCHBOARD_BIN_DIR)",
        path.display()
    );
    path
}

fn stderr() -> Stdio {
    if std::env::var_os("SWITCHBOARD_TEST_LOGS").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

/// A child process that is killed (SIGKILL, by PID) when dropped.
pub struct Process {
    child: Child,
}

impl Process {
    /// Starts a command as a test-owned process.
    pub fn spawn(command: &mut Command) -> Process {
        let child = command.stderr(stderr()).spawn().expect("spawn process");
        Process { child }
    }

    /// Takes ownership of a child started elsewhere, so it is killed when dropped.
    pub fn adopt(child: Child) -> Process {
        Process { child }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal to this process only.
    pub fn signal(&self, signal: Signal) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), signal);
    }

    /// Kills the process at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit, at most `limit`; `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where a running broker listens, and what a client needs to talk to it.
#[derive(Debug, Clone)]
pub struct BrokerEndpoints {
    /// Frontend endpoint for clients.
    pub frontend: String,
    /// Backend endpoint for workers.
    pub backend: String,
    /// The `/metrics` URL, when the broker serves metrics.
    pub metrics: Option<String>,
    /// CURVE settings for [`BrokerEndpoints::client`], when the broker requires CURVE.
    pub curve: Option<ClientCurve>,
}

/// A running broker process and the endpoints it bound.
pub struct BrokerProcess {
    /// The process.
    pub process: Process,
    /// Its endpoints (the broker dereferences to them).
    pub endpoints: BrokerEndpoints,
}

impl std::ops::Deref for BrokerProcess {
    type Target = BrokerEndpoints;
    fn deref(&self) -> &BrokerEndpoints {
        &self.endpoints
    }
}

impl std::ops::DerefMut for BrokerProcess {
    fn deref_mut(&mut self) -> &mut BrokerEndpoints {
        &mut self.endpoints
    }
}

impl BrokerProcess {
    /// Starts a broker on ephemeral loopback ports with extra flags.
    pub fn start(extra: &[&str]) -> BrokerProcess {
        BrokerProcess::start_at("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", extra)
    }

    /// Starts a broker on the given endpoints (to restart one where it was).
    pub fn start_at(frontend: &str, backend: &str, extra: &[&str]) -> BrokerProcess {
        BrokerProcess::launch(Command::new(binary("broker")), frontend, backend, extra)
    }

    /// Starts a broker inside the network namespace `ns`, on the given endpoints.
    pub fn start_in(ns: &NetNs, frontend: &str, backend: &str, extra: &[&str]) -> BrokerProcess {
        BrokerProcess::launch(ns.command(&binary("broker")), frontend, backend, extra)
    }

    fn launch(
        mut command: Command,
        frontend: &str,
        backend: &str,
        extra: &[&str],
    ) -> BrokerProcess {
        let mut child = command
            .args(["--frontend", frontend, "--backend", backend])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(stderr())
            .spawn()
            .expect("spawn broker");
        let stdout = child.stdout.take().expect("piped stdout");
        let process = Process { child };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(WAIT_LIMIT)
            .expect("broker announces its endpoints");
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .unwrap_or_else(|| panic!("no {key} in broker line {line:?}"))
                .to_owned()
        };
        let metrics = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("metrics="))
            .map(str::to_owned);
        BrokerProcess {
            endpoints: BrokerEndpoints {
                frontend: field("frontend="),
                backend: field("backend="),
                metrics,
                curve: None,
            },
            process,
        }
    }
}

impl BrokerEndpoints {
    /// A client connected to this broker with a timeout.
    pub fn client(&self, timeout: Duration) -> Client {
        let mut config = ClientConfig::new(&self.frontend);
        config.default_timeout = timeout;
        config.curve = self.curve.clone();
        Client::with_config(config).expect("client connects")
    }

    /// Waits until at least `count` workers host `function`, as the broker reports it.
    pub fn wait_for_workers(&self, function: &str, count: u32) {
        self.wait_for(function, &format!("{count} workers"), |f| {
            f.workers >= count
        });
    }

    /// Waits until the broker's `system.functions` entry for `function` satisfies `done`.
    pub fn wait_for(&self, function: &str, what: &str, done: impl Fn(&FunctionListing) -> bool) {
        let client = self.client(Duration::from_secs(2));
        let until = Instant::now() + WAIT_LIMIT;
        loop {
            let listing: Vec<FunctionListing> =
                client.call("system.functions", ()).unwrap_or_default();
            if listing.iter().any(|f| f.name == function && done(f)) {
                return;
            }
            assert!(Instant::now() < until, "'{function}' never reached: {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A running demo worker.
pub struct WorkerProcess {
    /// The process.
    pub process: Process,
    /// The name it answers to `whoami`.
    pub name: String,
}

impl WorkerProcess {
    /// Starts a demo worker connected to `backend`, with extra flags.
    pub fn start(backend: &str, name: &str, extra: &[&str]) -> WorkerProcess {
        WorkerProcess::launch(Command::new(binary("worker")), backend, name, extra)
    }

    /// Starts a demo worker inside the network namespace `ns`.
    pub fn start_in(ns: &NetNs, backend: &str, name: &str, extra: &[&str]) -> WorkerProcess {
        WorkerProcess::launch(ns.command(&binary("worker")), backend, name, extra)
    }

    fn launch(mut command: Command, backend: &str, name: &str, extra: &[&str]) -> WorkerProcess {
        let child = command
            .args(["--broker", backend, "--name", name])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(stderr())
            .spawn()
            .expect("spawn worker");
        WorkerProcess {
            process: Process { child },
            name: name.to_owned(),
        }
    }
}

/// A broker with `workers` demo workers, all registered.
pub fn cluster(
    workers: usize,
    broker_flags: &[&str],
    worker_flags: &[&str],
) -> (BrokerProcess, Vec<WorkerProcess>) {
    let broker = BrokerProcess::start(broker_flags);
    let workers: Vec<_> = (0..workers)
        .map(|i| WorkerProcess::start(&broker.backend, &format!("w{i}"), worker_flags))
        .collect();
    broker.wait_for_workers("whoami", workers.len() as u32);
    (broker, workers)
}

/// Fetches an `http://host:port/path` URL on loopback with a plain GET; returns (status, body).
pub fn http_get(url: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, body.to_owned())
}

/// Resident memory of a process in KiB, from `/proc`.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// A fresh scratch directory for one test, removed when dropped.
pub struct ScratchDir {
    /// Its path.
    pub path: PathBuf,
}

impl ScratchDir {
    /// Creates `<tmp>/switchboard-<label>-<pid>-<n>`.
    pub fn new(label: &str) -> ScratchDir {
        static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("switchboard-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("scratch dir");
        ScratchDir { path }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Path of a file in the repository, from the tests crate.
pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// Runs a Python script to completion (bounded by a timeout) and returns its stdout.
/// Fails loudly when Python or pyzmq/msgpack are missing: `scripts/setup.sh` installs them.
pub fn run_python(script: &str, args: &[&str]) -> String {
    run_python_with_env(script, args, &[])
}

/// [`run_python`] with extra environment variables.
pub fn run_python_with_env(script: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new("timeout")
        .arg("60")
        .arg("python3")
        .arg(repo_path(script))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("python3 must be installed (scripts/setup.sh)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{script} failed ({}); pyzmq and msgpack come from scripts/setup.sh\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A plain ZeroMQ socket for wire-level tests, with send and receive timeouts set.
pub fn raw_socket(kind: zmq::SocketType, endpoint: &str) -> (zmq::Context, zmq::Socket) {
    let context = zmq::Context::new();
    let socket = context.socket(kind).expect("socket");
    socket.set_linger(0).expect("linger");
    socket.set_rcvtimeo(5000).expect("rcvtimeo");
    socket.set_sndtimeo(5000).expect("sndtimeo");
    socket.connect(endpoint).expect("connect");
    (context, socket)
}
