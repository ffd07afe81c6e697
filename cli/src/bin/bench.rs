//! `bench`: a load generator for Switchboard, with a direct-echo baseline measured in
//! the same run on the same machine.
//!
//! Each connection is one DEALER socket driven by one thread that keeps a window of
//! calls in flight (closed loop), or sends at a fixed rate (open loop: latency is then
//! measured from each call's *intended* send time, so a slow system cannot hide its
//! queueing — no coordinated omission). Latencies go into an HDR histogram.
//!
//! The baseline (`--mode baseline` or `both`) replaces broker, worker and MessagePack by
//! a bare ROUTER echo in a child process, with the same connections, window and payload:
//! the floor every figure is compared with.
//!
//! `both` also measures a second floor, the *relay*: the very frames of a Switchboard
//! request sent through a bare `zmq::proxy` (ROUTER to DEALER, no logic) in one child
//! process to that echo in another. It is what libzmq itself does with two hops and this
//! message shape, and so the most any broker speaking this protocol could reach here.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_protocol::limits::MAX_PIPELINED_CALLS;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use serde::de::IgnoredAny;
use serde_json::json;
use switchboard_cli::json::{parse_arg, to_msgpack};
use switchboard_client::{Client, ClientConfig, PendingCall};
use switchboard_protocol::client::{parse_replies, request_frames, Pipeline};
use switchboard_protocol::codec::{encode_request_body, reply_outcome};
use switchboard_protocol::{owned_frame, CallHeader, Frame, Value};
use switchboard_transport::socket::{recv_frames, send_frames};

/// Switchboard load generator: throughput, latency percentiles, errors, and a direct-echo floor.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "Examples:\n  bench --mode both --in-flight 1000 --calls 200000\n  bench --function sleep_ms --args '[20]' --connections 64 --duration-s 10\n  bench --rate 5000 --duration-s 10 --json"
)]
struct Args {
    /// The broker's frontend endpoint.
    #[arg(
        long,
        env = "SWITCHBOARD_ENDPOINT",
        default_value_t = switchboard_client::ClientConfig::default().endpoint
    )]
    endpoint: String,
    /// Client connections (one socket and one thread each).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Calls in flight per connection.
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// Most calls sent through the broker in one message (pipelining, as the client library
    /// does with calls that wait together); 1 sends every call in a message of its own.
    #[arg(long, default_value_t = MAX_PIPELINED_CALLS as u64, value_parser = clap::value_parser!(u64).range(1..=MAX_PIPELINED_CALLS as u64))]
    pipeline: u64,
    /// Total calls over all connections (ignored with --duration-s).
    #[arg(long, default_value_t = 10_000)]
    calls: u64,
    /// Run for this many seconds instead of a number of calls.
    #[arg(long)]
    duration_s: Option<f64>,
    /// Size in bytes of the binary argument sent to the function.
    #[arg(long, default_value_t = 16)]
    payload: usize,
    /// The function to call (it gets the payload as its one argument unless --args is set).
    #[arg(long, default_value = "echo")]
    function: String,
    /// Positional arguments as a JSON array, instead of the payload (e.g. `[20]`).
    #[arg(long)]
    args: Option<String>,
    /// Fixed total request rate in calls/s (open loop); default: as fast as the window allows.
    #[arg(long)]
    rate: Option<f64>,
    /// Deadline of each call, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// With --via library and a host name in --endpoint: how often the name is looked up
    /// again, in milliseconds (brokers that appear are used, brokers that are gone are not).
    #[arg(long, env = "SWITCHBOARD_RESOLVE_INTERVAL_MS", default_value_t = ClientConfig::default().resolve_interval.as_millis() as u64)]
    resolve_interval_ms: u64,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Broker)]
    mode: Mode,
    /// How calls to the broker are made: `raw` frames on a bare socket (the instrument the
    /// floors are measured with, adding as little as possible), or through the client
    /// `library` (its session, socket thread and per-call channels: what a Rust user gets;
    /// closed loop only).
    #[arg(long, value_enum, default_value_t = Via::Raw)]
    via: Via,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    command: Option<Internal>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Through the broker and a worker.
    Broker,
    /// The direct DEALER-ROUTER echo only.
    Baseline,
    /// The baseline, the relay floor, then the broker, with ratios.
    Both,
    /// The relay floor only: the request frames through a bare zmq proxy to an echo.
    Relay,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Via {
    /// Request frames on a bare DEALER socket per connection.
    Raw,
    /// `switchboard_client::Client`, one per connection.
    Library,
}

#[derive(Debug, Subcommand)]
enum Internal {
    /// (internal) The echo server of the baseline: a bare ROUTER that returns every message.
    #[command(hide = true)]
    EchoServer,
    /// (internal) The relay of the relay floor: a bare zmq proxy in front of an echo server.
    #[command(hide = true)]
    RelayServer {
        /// The echo server's endpoint.
        echo: String,
    },
}

/// What one run measured.
struct Measured {
    calls: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn percentile_us(&self, q: f64) -> u64 {
        self.latency.value_at_quantile(q)
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "calls": self.calls,
            "seconds": self.elapsed.as_secs_f64(),
            "calls_per_second": self.rate(),
            "latency_us": {
                "p50": self.percentile_us(0.5), "p90": self.percentile_us(0.9),
                "p99": self.percentile_us(0.99), "p99.9": self.percentile_us(0.999),
                "max": self.latency.max(),
            },
            "errors": self.errors,
        })
    }
}

/// What every connection thread needs to know.
#[derive(Clone)]
struct Plan {
    endpoint: String,
    window: usize,
    pipeline: usize,
    quota: u64,
    until: Option<Instant>,
    interval: Option<Duration>,
    timeout: Duration,
    resolve_interval: Duration,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match &args.command {
        Some(Internal::EchoServer) => return echo_server(),
        Some(Internal::RelayServer { echo }) => return relay_server(echo),
        None => {}
    }
    if args.connections == 0 || args.in_flight == 0 {
        bail!("--connections and --in-flight must be at least 1");
    }
    if args.via == Via::Library && args.rate.is_some() {
        bail!("--via library runs a closed loop: --rate needs --via raw");
    }
    let body = request_body(&args)?;
    let baseline = matches!(args.mode, Mode::Baseline | Mode::Both)
        .then(|| run_baseline(&args))
        .transpose()?;
    let relay = matches!(args.mode, Mode::Relay | Mode::Both)
        .then(|| run_relay(&args, &body))
        .transpose()?;
    let broker = matches!(args.mode, Mode::Broker | Mode::Both)
        .then(|| {
            let load = match args.via {
                Via::Raw => Load::Raw(Target::Broker {
                    function: args.function.clone(),
                    body: body.clone(),
                }),
                Via::Library => Load::Library {
                    function: args.function.clone(),
                    args: call_args(&args)?,
                },
            };
            run(&args, &args.endpoint, load)
        })
        .transpose()?;
    report(&args, baseline.as_ref(), relay.as_ref(), broker.as_ref());
    let failed = broker
        .as_ref()
        .map_or(0, |m| m.errors.values().sum::<u64>());
    if failed > 0 && !args.json {
        eprintln!("{failed} calls failed");
    }
    Ok(())
}

/// The request body sent with every call: the payload as one binary argument, or --args.
fn request_body(args: &Args) -> anyhow::Result<Vec<u8>> {
    match &args.args {
        Some(text) => {
            let value = to_msgpack(&parse_arg(text))?;
            let Value::Array(items) = value else {
                bail!("--args must be a JSON array")
            };
            Ok(encode_request_body(&items, &())?)
        }
        None => {
            let payload = serde_bytes::ByteBuf::from(vec![0x5a; args.payload]);
            Ok(encode_request_body(&(payload,), &())?)
        }
    }
}

/// The positional arguments of every call, for the client library to encode.
fn call_args(args: &Args) -> anyhow::Result<Vec<Value>> {
    match &args.args {
        Some(text) => match to_msgpack(&parse_arg(text))? {
            Value::Array(items) => Ok(items),
            _ => bail!("--args must be a JSON array"),
        },
        None => Ok(vec![Value::Binary(vec![0x5a; args.payload])]),
    }
}

/// How each connection makes its calls.
#[derive(Clone)]
enum Load {
    /// Frames on a bare socket, to this target.
    Raw(Target),
    /// Switchboard calls made through the client library with these arguments.
    Library { function: String, args: Vec<Value> },
}

/// Where raw calls go.
#[derive(Clone)]
enum Target {
    /// Switchboard calls of this function with this request body.
    Broker { function: String, body: Vec<u8> },
    /// Bare echo of these frames (in order: no ids).
    Echo { frames: Vec<Vec<u8>> },
}

fn run_baseline(args: &Args) -> anyhow::Result<Measured> {
    let echo = Server::start(&["echo-server"])?;
    let frames = vec![vec![0x5a; args.payload]];
    run(args, &echo.endpoint, Load::Raw(Target::Echo { frames }))
}

/// The relay floor: a Switchboard request's frames through a bare proxy to an echo.
fn run_relay(args: &Args, body: &[u8]) -> anyhow::Result<Measured> {
    let echo = Server::start(&["echo-server"])?;
    let relay = Server::start(&["relay-server", &echo.endpoint])?;
    let header = CallHeader {
        id: 0,
        timeout_ms: Some(args.timeout_ms),
        traceparent: None,
        timings: false,
        wait_for_ready: false,
        notices: false,
    };
    let frames = request_frames(&args.function, &header, body.to_vec())
        .iter()
        .map(|f| f.to_vec())
        .collect();
    run(args, &relay.endpoint, Load::Raw(Target::Echo { frames }))
}

/// A child process of this binary serving one endpoint, killed (by PID) when dropped.
struct Server {
    child: Child,
    endpoint: String,
}

impl Server {
    /// Starts `bench ARGS…` and reads the endpoint it prints first.
    fn start(args: &[&str]) -> anyhow::Result<Server> {
        let exe = std::env::current_exe().context("locating the bench binary")?;
        let mut child = Command::new(exe)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting bench {}", args.join(" ")))?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut server = Server {
            child,
            endpoint: String::new(),
        };
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        server.endpoint = line.trim().to_owned();
        if !server.endpoint.starts_with("tcp://") {
            bail!("bench {} did not start: {line:?}", args.join(" "));
        }
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Binds a socket with no high-water marks on an ephemeral loopback port and prints it.
fn bind_announced(context: &zmq::Context, kind: zmq::SocketType) -> anyhow::Result<zmq::Socket> {
    let socket = context.socket(kind)?;
    socket.set_sndhwm(0)?;
    socket.set_rcvhwm(0)?;
    socket.bind("tcp://127.0.0.1:*")?;
    let endpoint = socket
        .get_last_endpoint()?
        .map_err(|_| anyhow::anyhow!("endpoint"))?;
    println!("{endpoint}");
    std::io::stdout().flush()?;
    Ok(socket)
}

fn echo_server() -> anyhow::Result<()> {
    let context = zmq::Context::new();
    let router = bind_announced(&context, zmq::ROUTER)?;
    loop {
        let frames = recv_frames(&router, 0)?;
        send_frames(&router, frames, 0)?;
    }
}

fn relay_server(echo: &str) -> anyhow::Result<()> {
    let context = zmq::Context::new();
    let frontend = bind_announced(&context, zmq::ROUTER)?;
    let backend = context.socket(zmq::DEALER)?;
    backend.set_sndhwm(0)?;
    backend.set_rcvhwm(0)?;
    backend.connect(echo)?;
    zmq::proxy(&frontend, &backend)?;
    Ok(())
}

fn run(args: &Args, endpoint: &str, load: Load) -> anyhow::Result<Measured> {
    let connections = args.connections;
    let until = args
        .duration_s
        .map(|s| Instant::now() + Duration::from_secs_f64(s));
    let quota = if until.is_some() {
        u64::MAX
    } else {
        args.calls.div_ceil(connections as u64)
    };
    let interval = args
        .rate
        .map(|rate| Duration::from_secs_f64(connections as f64 / rate.max(1e-3)));
    let plan = Plan {
        endpoint: endpoint.to_owned(),
        window: args.in_flight,
        pipeline: args.pipeline as usize,
        quota,
        until,
        interval,
        timeout: Duration::from_millis(args.timeout_ms),
        resolve_interval: Duration::from_millis(args.resolve_interval_ms),
    };
    let done = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let progress = (!args.json && std::io::stderr().is_terminal()).then(|| {
        let (done, finished) = (Arc::clone(&done), Arc::clone(&finished));
        let total = args
            .duration_s
            .map_or(format!("{}", args.calls), |s| format!("{s} s"));
        std::thread::spawn(move || {
            let started = Instant::now();
            while !finished.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                let n = done.load(Ordering::Relaxed);
                let rate = n as f64 / started.elapsed().as_secs_f64();
                eprint!("\r  {n} calls of {total}, {rate:.0}/s   ");
            }
            eprint!("\r{:60}\r", "");
        })
    });
    let started = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|index| {
            let (plan, load, done) = (plan.clone(), load.clone(), Arc::clone(&done));
            // Spread the connections' send times evenly over one interval, so an open
            // loop offers a steady stream rather than bursts of one call per connection.
            let phase = plan
                .interval
                .map_or(Duration::ZERO, |i| i * index as u32 / connections as u32);
            std::thread::Builder::new()
                .name("bench-connection".into())
                .spawn(move || match &load {
                    Load::Raw(target) => drive(&plan, target, phase, &done),
                    Load::Library { function, args } => drive_library(&plan, function, args, &done),
                })
        })
        .collect::<Result<_, _>>()?;
    let mut total = Measured {
        calls: 0,
        elapsed: Duration::ZERO,
        latency: new_histogram(),
        errors: BTreeMap::new(),
    };
    for thread in threads {
        let part = thread
            .join()
            .map_err(|_| anyhow::anyhow!("a connection thread panicked"))??;
        total.calls += part.calls;
        total.latency.add(&part.latency)?;
        for (code, n) in part.errors {
            *total.errors.entry(code).or_default() += n;
        }
    }
    total.elapsed = started.elapsed();
    finished.store(true, Ordering::Relaxed);
    if let Some(progress) = progress {
        let _ = progress.join();
    }
    Ok(total)
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

/// One connection: keeps up to `window` calls in flight until its quota or time is up.
fn drive(
    plan: &Plan,
    target: &Target,
    phase: Duration,
    done: &AtomicU64,
) -> anyhow::Result<Measured> {
    let context = zmq::Context::new();
    let socket = context.socket(zmq::DEALER)?;
    socket.set_linger(0)?;
    socket.set_sndhwm(0)?;
    socket.set_rcvhwm(0)?;
    socket.connect(&plan.endpoint)?;
    let mut latency = new_histogram();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    // Broker calls are matched by id; echoes come back in order.
    let mut by_id: HashMap<u64, Instant> = HashMap::with_capacity(plan.window);
    let mut in_order: VecDeque<Instant> = VecDeque::with_capacity(plan.window);
    let (mut sent, mut received) = (0u64, 0u64);
    let started = Instant::now();
    let header_timeout = plan.timeout.as_millis() as u64;
    loop {
        let now = Instant::now();
        let time_up = plan.until.is_some_and(|until| now >= until);
        let mut next_due: Option<Instant> = None;
        let mut pipeline = Pipeline::new();
        while sent < plan.quota && !time_up && (by_id.len() + in_order.len()) < plan.window {
            let intended = plan.interval.map(|i| started + phase + i * sent as u32);
            if let Some(at) = intended.filter(|at| *at > Instant::now()) {
                next_due = Some(at);
                break;
            }
            let stamp = intended.unwrap_or_else(Instant::now);
            match target {
                Target::Broker { function, body } => {
                    let header = CallHeader {
                        id: sent,
                        timeout_ms: Some(header_timeout),
                        traceparent: None,
                        timings: false,
                        wait_for_ready: false,
                        notices: false,
                    };
                    pipeline.push_call(function, &header, owned_frame(body.clone()));
                    if pipeline.len() >= plan.pipeline {
                        send_frames(&socket, std::mem::take(&mut pipeline).into_frames(), 0)?;
                    }
                    by_id.insert(sent, stamp);
                }
                Target::Echo { frames } => {
                    let frames = frames.iter().map(|f| Frame::from(&f[..])).collect();
                    send_frames(&socket, frames, 0)?;
                    in_order.push_back(stamp);
                }
            }
            sent += 1;
        }
        if !pipeline.is_empty() {
            send_frames(&socket, pipeline.into_frames(), 0)?;
        }
        if by_id.is_empty() && in_order.is_empty() && (sent >= plan.quota || time_up) {
            break;
        }
        let wait = match next_due {
            None => 100,
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left < Duration::from_millis(1) && socket.poll(zmq::POLLIN, 0)? == 0 {
                    // ZeroMQ's poll counts whole milliseconds: sleep the last fraction
                    // rather than spin (64 spinning connections take a core from the system).
                    std::thread::sleep(left);
                    continue;
                }
                left.as_millis() as i64
            }
        };
        if socket.poll(zmq::POLLIN, wait)? == 0 {
            expire(&mut by_id, plan.timeout, &mut errors, &mut received);
            continue;
        }
        loop {
            let frames = match recv_frames(&socket, zmq::DONTWAIT) {
                Ok(frames) => frames,
                Err(zmq::Error::EAGAIN) => break,
                Err(e) => return Err(e.into()),
            };
            let at = Instant::now();
            let mut record = |start: Instant| {
                let micros = at.saturating_duration_since(start).as_micros() as u64;
                latency.saturating_record(micros.max(1));
                received += 1;
                done.fetch_add(1, Ordering::Relaxed);
            };
            match target {
                Target::Broker { .. } => {
                    let Ok(replies) = parse_replies(frames) else {
                        *errors.entry("MALFORMED_REPLY".into()).or_default() += 1;
                        continue;
                    };
                    for reply in replies {
                        let Some(start) = by_id.remove(&reply.header.id) else {
                            continue;
                        };
                        if let Some(code) = reply_outcome(&reply.body) {
                            *errors.entry(code.as_str().into()).or_default() += 1;
                        }
                        record(start);
                    }
                }
                Target::Echo { .. } => record(in_order.pop_front().unwrap_or(at)),
            }
        }
    }
    Ok(Measured {
        calls: received,
        elapsed: started.elapsed(),
        latency,
        errors,
    })
}

/// One connection through the client library: keeps up to `window` calls in flight,
/// waiting for the oldest before sending the next (a call is timed when its reply is
/// taken, so a later call answered first is timed a little late, never early).
fn drive_library(
    plan: &Plan,
    function: &str,
    args: &[Value],
    done: &AtomicU64,
) -> anyhow::Result<Measured> {
    let mut config = ClientConfig::new(&plan.endpoint);
    config.default_timeout = plan.timeout;
    config.resolve_interval = plan.resolve_interval;
    let client = Client::with_config(config)?;
    let mut latency = new_histogram();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut in_flight: VecDeque<(Instant, PendingCall)> = VecDeque::with_capacity(plan.window);
    let (mut sent, mut received) = (0u64, 0u64);
    let started = Instant::now();
    loop {
        let time_up = plan.until.is_some_and(|until| Instant::now() >= until);
        while sent < plan.quota && !time_up && in_flight.len() < plan.window {
            let call = client.request(function).args(args).send()?;
            in_flight.push_back((Instant::now(), call));
            sent += 1;
        }
        let Some((start, call)) = in_flight.pop_front() else {
            break;
        };
        if let Err(error) = call.wait::<IgnoredAny>() {
            let code = error.code().map_or("CLIENT", |c| c.as_str());
            *errors.entry(code.into()).or_default() += 1;
        }
        let micros = start.elapsed().as_micros() as u64;
        latency.saturating_record(micros.max(1));
        received += 1;
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(Measured {
        calls: received,
        elapsed: started.elapsed(),
        latency,
        errors,
    })
}

/// Gives up on calls older than their timeout plus a second (the broker should have answered).
fn expire(
    by_id: &mut HashMap<u64, Instant>,
    timeout: Duration,
    errors: &mut BTreeMap<String, u64>,
    received: &mut u64,
) {
    let limit = timeout + Duration::from_secs(1);
    let before = by_id.len();
    by_id.retain(|_, start| start.elapsed() < limit);
    let lost = (before - by_id.len()) as u64;
    if lost > 0 {
        *errors.entry("NO_REPLY".into()).or_default() += lost;
        *received += lost;
    }
}

fn report(
    args: &Args,
    baseline: Option<&Measured>,
    relay: Option<&Measured>,
    broker: Option<&Measured>,
) {
    let ratios = baseline.zip(broker).map(|(b, s)| {
        json!({
            "throughput": s.rate() / b.rate(),
            "p50_latency": s.percentile_us(0.5) as f64 / b.percentile_us(0.5).max(1) as f64,
            "p99_latency": s.percentile_us(0.99) as f64 / b.percentile_us(0.99).max(1) as f64,
            "relay_throughput": relay.map(|r| r.rate() / b.rate()),
            "throughput_vs_relay": relay.map(|r| s.rate() / r.rate()),
        })
    });
    if args.json {
        let document = json!({
            "config": {
                "function": args.function, "payload_bytes": args.payload, "args": args.args,
                "connections": args.connections, "in_flight": args.in_flight, "pipeline": args.pipeline,
                "calls": args.calls, "duration_s": args.duration_s, "rate": args.rate,
                "via": format!("{:?}", args.via).to_lowercase(),
            },
            "baseline": baseline.map(Measured::to_json),
            "relay": relay.map(Measured::to_json),
            "broker": broker.map(Measured::to_json),
            "ratios": ratios,
        });
        println!("{document}");
        return;
    }
    let what = args
        .args
        .as_deref()
        .map_or(format!("{} B payload", args.payload), |a| {
            format!("args {a}")
        });
    println!(
        "bench: {} ({what}), {} connection(s) x {} in flight{}{}",
        args.function,
        args.connections,
        args.in_flight,
        args.rate
            .map(|r| format!(", {r:.0} calls/s offered"))
            .unwrap_or_default(),
        if args.via == Via::Library {
            ", broker calls through the client library"
        } else {
            ""
        }
    );
    println!(
        "{:<12} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "", "calls", "calls/s", "p50 us", "p90 us", "p99 us", "p99.9 us", "max us"
    );
    for (name, m) in [
        ("direct echo", baseline),
        ("relay floor", relay),
        ("switchboard", broker),
    ] {
        if let Some(m) = m {
            println!(
                "{name:<12} {:>9} {:>11.0} {:>9} {:>9} {:>9} {:>9} {:>9}",
                m.calls,
                m.rate(),
                m.percentile_us(0.5),
                m.percentile_us(0.9),
                m.percentile_us(0.99),
                m.percentile_us(0.999),
                m.latency.max()
            );
        }
    }
    if let Some(r) = ratios {
        println!(
            "ratio        throughput {:.1} % of direct echo; p50 latency x{:.2}; p99 latency x{:.2}",
            r["throughput"].as_f64().unwrap_or(0.0) * 100.0,
            r["p50_latency"].as_f64().unwrap_or(0.0),
            r["p99_latency"].as_f64().unwrap_or(0.0)
        );
        if let (Some(floor), Some(share)) = (
            r["relay_throughput"].as_f64(),
            r["throughput_vs_relay"].as_f64(),
        ) {
            println!(
                "relay floor  {:.1} % of direct echo; switchboard reaches {:.1} % of it",
                floor * 100.0,
                share * 100.0
            );
        }
    }
    if let Some(m) = broker {
        if !m.errors.is_empty() {
            let list: Vec<String> = m.errors.iter().map(|(c, n)| format!("{c} {n}")).collect();
            println!("errors: {}", list.join(", "));
        }
    }
}
