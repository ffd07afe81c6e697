//! Rough throughput check, until the `bench` tool exists: echo calls through a
//! running broker, one at a time and pipelined, next to a direct DEALER→ROUTER
//! echo over TCP loopback measured in the same run (the floor).
//!
//! `cargo run --release -p switchboard-client --example pipeline -- tcp://127.0.0.1:5555 20000`

use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;
use switchboard_client::Client;

const WINDOW: usize = 100;
const PAYLOAD: usize = 16;

fn main() {
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().unwrap_or_else(|| "tcp://127.0.0.1:5555".into());
    let calls: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let payload = ByteBuf::from(vec![0x5a; PAYLOAD]);

    let (direct_seq, direct_pipe) = direct_echo(calls, payload.len());
    let client = Client::connect(&endpoint).expect("connect");
    let started = Instant::now();
    for _ in 0..calls / 10 {
        let _: ByteBuf = client.call("echo", (&payload,)).expect("echo");
    }
    let seq = started.elapsed() / (calls / 10) as u32;
    let started = Instant::now();
    let mut window = std::collections::VecDeque::new();
    for _ in 0..calls {
        if window.len() == WINDOW {
            let call: switchboard_client::PendingCall = window.pop_front().expect("full window");
            let _: ByteBuf = call.wait().expect("echo");
        }
        window.push_back(
            client
                .request("echo")
                .args((&payload,))
                .send()
                .expect("send"),
        );
    }
    for call in window {
        let _: ByteBuf = call.wait().expect("echo");
    }
    let rate = calls as f64 / started.elapsed().as_secs_f64();
    println!("payload {PAYLOAD} B, {calls} calls, window {WINDOW}");
    println!(
        "direct echo:  one at a time {:>8.1} us/call   pipelined {:>9.0} msg/s",
        micros(direct_seq),
        direct_pipe
    );
    println!(
        "switchboard:  one at a time {:>8.1} us/call   pipelined {:>9.0} calls/s",
        micros(seq),
        rate
    );
    println!(
        "ratio:        latency x{:.2}   throughput {:.0} %",
        micros(seq) / micros(direct_seq),
        100.0 * rate / direct_pipe
    );
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Direct DEALER → ROUTER echo between two threads over TCP loopback.
fn direct_echo(calls: usize, size: usize) -> (Duration, f64) {
    let context = zmq::Context::new();
    let router = context.socket(zmq::ROUTER).expect("router");
    router.bind("tcp://127.0.0.1:*").expect("bind");
    let endpoint = router
        .get_last_endpoint()
        .expect("endpoint")
        .expect("utf-8");
    let total = calls / 10 + calls;
    let echo = std::thread::spawn(move || {
        for _ in 0..total {
            let frames = router.recv_multipart(0).expect("recv");
            router.send_multipart(frames, 0).expect("send");
        }
    });
    let dealer = context.socket(zmq::DEALER).expect("dealer");
    dealer.connect(&endpoint).expect("connect");
    let message = vec![0x5a; size];
    let started = Instant::now();
    for _ in 0..calls / 10 {
        dealer.send(&message, 0).expect("send");
        dealer.recv_bytes(0).expect("recv");
    }
    let seq = started.elapsed() / (calls / 10) as u32;
    let started = Instant::now();
    let mut in_flight = 0;
    for _ in 0..calls {
        if in_flight == WINDOW {
            dealer.recv_bytes(0).expect("recv");
            in_flight -= 1;
        }
        dealer.send(&message, 0).expect("send");
        in_flight += 1;
    }
    for _ in 0..in_flight {
        dealer.recv_bytes(0).expect("recv");
    }
    let rate = calls as f64 / started.elapsed().as_secs_f64();
    echo.join().expect("echo thread");
    (seq, rate)
}
