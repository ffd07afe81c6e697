//! Hostile peers against the real broker and worker, while a well-behaved client keeps
//! calling: garbage at both sockets, truncated and deeply nested MessagePack, huge length
//! prefixes, unknown commands, replies for calls never given, raw TCP garbage and many
//! half-open connections. Pass: every good call succeeds and broker memory stays bounded.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use switchboard_tests::{cluster, raw_socket, rss_kib, BrokerProcess, WorkerProcess};

/// A small deterministic generator (xorshift), so failures reproduce.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = (self.next() as usize) % (max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }

    fn frames(&mut self, starts: &[&[u8]]) -> Vec<Vec<u8>> {
        let count = 1 + (self.next() as usize) % 8;
        let mut frames: Vec<Vec<u8>> = (0..count).map(|_| self.bytes(40)).collect();
        // Often start like a real message so parsing gets past the first checks.
        if self.next() % 2 == 0 {
            let start = starts[(self.next() as usize) % starts.len()];
            frames.insert(0, start.to_vec());
        }
        frames
    }
}

fn endpoint_port(endpoint: &str) -> String {
    endpoint.trim_start_matches("tcp://").to_owned()
}

#[test]
fn hostile_peers_change_nothing_for_a_good_client() {
    let (broker, _workers) = cluster(1, &[], &["--threads", "2"]);
    let rss_before = rss_kib(broker.process.pid());
    let stop = Arc::new(AtomicBool::new(false));
    let good_calls = Arc::new(AtomicUsize::new(0));
    let good = {
        let client = broker.client(Duration::from_secs(5));
        let (stop, good_calls) = (Arc::clone(&stop), Arc::clone(&good_calls));
        std::thread::spawn(move || {
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) && i < 5_000 {
                let sum: i64 = client
                    .call("add", (i, 1))
                    .expect("a good call fails under attack");
                assert_eq!(sum, i + 1);
                good_calls.fetch_add(1, Ordering::Relaxed);
                i += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let mut noise = Noise(0x5eed_1234_abcd_0001);

    // Many half-open TCP connections that never finish a handshake.
    let half_open: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(endpoint_port(&broker.frontend)).ok())
        .collect();
    assert!(
        half_open.len() >= 150,
        "could open only {}",
        half_open.len()
    );

    // Raw TCP garbage at both ports, including a plausible ZMTP greeting.
    for endpoint in [&broker.frontend, &broker.backend] {
        for i in 0..50 {
            let mut stream = TcpStream::connect(endpoint_port(endpoint)).unwrap();
            let mut junk = noise.bytes(2000);
            if i % 5 == 0 {
                junk.splice(0..0, [0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 0]);
            }
            let _ = stream.write_all(&junk);
        }
    }

    // Garbage and near-misses at the client socket.
    let (_c1, front) = raw_socket(zmq::DEALER, &broker.frontend);
    let header = b"\x81\xa2id\x01";
    let deep = [
        vec![0x81, 0xa4, b'a', b'r', b'g', b's'],
        vec![0x91; 100_000],
        vec![0x01],
    ]
    .concat();
    let huge_prefix = b"\x81\xa4args\xdd\xff\xff\xff\xff\x01".to_vec();
    let truncated = b"\x82\xa4args\x92\x01".to_vec();
    for body in [&deep, &huge_prefix, &truncated] {
        front
            .send_multipart([&b""[..], b"SBC1", b"add", header, body], 0)
            .unwrap();
        front
            .send_multipart([&b""[..], b"SBC1", b"echo", header, body], 0)
            .unwrap();
        front
            .send_multipart([&b""[..], b"SBC1", b"greet", header, body], 0)
            .unwrap();
        front
            .send_multipart([&b""[..], b"SBC1", b"add", body, body], 0)
            .unwrap();
    }
    let too_many: Vec<Vec<u8>> = std::iter::once(Vec::new())
        .chain((0..3_000).map(|_| b"x".to_vec()))
        .collect();
    front.send_multipart(too_many, 0).unwrap();
    for _ in 0..3_000 {
        front
            .send_multipart(noise.frames(&[b"", b"SBC1"]), 0)
            .unwrap();
    }

    // Garbage, unknown commands and unasked replies at the worker socket.
    let (_c2, back) = raw_socket(zmq::DEALER, &broker.backend);
    for _ in 0..3_000 {
        back.send_multipart(noise.frames(&[b"SBW2\x01", b"SBW2\x03", b"SBC1"]), 0)
            .unwrap();
    }
    for command in 6u8..=255 {
        back.send_multipart([&[&b"SBW2"[..], &[command]].concat()], 0)
            .unwrap();
    }
    // A registered worker that answers calls it was never given: dropped and counted.
    let ready = b"\x83\xa8capacity\x01\xacheartbeat_ms\xcd\x03\xe8\xa9functions\x91\x81\xa4name\xa9rogue.fun";
    back.send_multipart([&b"SBW2\x01"[..], ready], 0).unwrap();
    broker.wait_for_workers("rogue.fun", 1);
    for _ in 0..500 {
        let control = [&b"SBW2\x03"[..], &noise.next().to_be_bytes()].concat();
        back.send_multipart([&control[..], b"\x81\xa6result\x00"], 0)
            .unwrap();
    }
    back.send_multipart([&b"SBW2\x01"[..], &deep], 0).unwrap();

    // The broker answered what it could: the first replies to the near-misses are errors.
    let first = front.recv_multipart(0).expect("a reply to a near-miss");
    assert_eq!(first.len(), 4);
    assert!(
        String::from_utf8_lossy(&first[3]).contains("error"),
        "{first:?}"
    );

    // Let the good client run on for a moment under the open connections, then stop it.
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while good_calls.load(Ordering::Relaxed) < 300 {
        assert!(std::time::Instant::now() < until, "good client stalled");
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    good.join().expect("every good call succeeded");
    drop(half_open);

    // The worker survived the bodies that reached it, and the broker is still sane.
    let client = broker.client(Duration::from_secs(5));
    assert_eq!(client.call::<String>("whoami", ()).unwrap(), "w0");
    let stats: std::collections::HashMap<String, switchboard_protocol::Value> =
        client.call("system.stats", ()).unwrap();
    assert!(
        stats["malformed_worker_messages"].as_u64().unwrap() >= 3_000,
        "{stats:?}"
    );
    assert!(
        stats["late_replies"].as_u64().unwrap() >= 500,
        "unasked replies are counted: {stats:?}"
    );
    let rss_after = rss_kib(broker.process.pid());
    eprintln!(
        "hostile peers: {} good calls ok; broker RSS {rss_before} -> {rss_after} KiB; {stats:?}",
        good_calls.load(Ordering::Relaxed)
    );
    assert!(
        rss_after < rss_before + 48 * 1024,
        "broker RSS {rss_before} -> {rss_after} KiB"
    );
}

/// libzmq's first generated peer id when `rand()` is never seeded: `00` + the first two
/// draws of glibc's generator with seed 1.
const UNSEEDED_FIRST_ID: [u8; 5] = [0x00, 0x6b, 0x8b, 0x45, 0x67];

/// A DEALER that names itself `id`, connected to `endpoint` (not yet known to have connected).
fn dealer_named(endpoint: &str, id: &[u8]) -> (zmq::Context, zmq::Socket) {
    let context = zmq::Context::new();
    let socket = context.socket(zmq::DEALER).unwrap();
    socket.set_linger(0).unwrap();
    socket.set_rcvtimeo(5000).unwrap();
    socket.set_identity(id).unwrap();
    socket.connect(endpoint).unwrap();
    (context, socket)
}

#[test]
fn a_peer_that_claims_the_next_generated_id_cannot_crash_the_broker() {
    let mut broker = BrokerProcess::start(&[]);
    // Claim the id the broker's first anonymous peer would get on each socket, and
    // make sure each claim has connected (a round trip on the client socket; a READY
    // on the worker socket, which the broker accepts).
    let (_c1, squatter) = dealer_named(&broker.frontend, &UNSEEDED_FIRST_ID);
    squatter
        .send_multipart(
            [
                &b""[..],
                b"SBC1",
                b"system.ping",
                b"\x81\xa2id\x01",
                b"\x80",
            ],
            0,
        )
        .unwrap();
    assert_eq!(squatter.recv_multipart(0).expect("pong").len(), 4);
    let (_c2, worker_squatter) = dealer_named(&broker.backend, &UNSEEDED_FIRST_ID);
    let ready =
        b"\x83\xa8capacity\x01\xacheartbeat_ms\xcd\x13\x88\xa9functions\x91\x81\xa4name\xa3sqt";
    worker_squatter
        .send_multipart([&b"SBW2\x01"[..], ready], 0)
        .unwrap();
    broker.wait_for_workers("sqt", 1);
    // Now ordinary, anonymous peers: a real worker and several clients.
    let _worker = WorkerProcess::start(&broker.backend, "real", &[]);
    broker.wait_for_workers("add", 1);
    for i in 0..5 {
        let client = broker.client(Duration::from_secs(5));
        assert_eq!(client.call::<i64>("add", (i, 1)).unwrap(), i + 1);
    }
    assert!(
        broker.process.wait_exit(Duration::ZERO).is_none(),
        "the broker died"
    );
    // No routing identity is ever shown: system.workers lists registration numbers.
    let client = broker.client(Duration::from_secs(5));
    let workers: Vec<switchboard_protocol::WorkerListing> =
        client.call("system.workers", ()).unwrap();
    let ids: Vec<&str> = workers.iter().map(|w| w.id.as_str()).collect();
    assert!(
        ids.iter()
            .all(|id| id.parse::<u64>().is_ok() && id.len() < 10),
        "{ids:?}"
    );
}

#[test]
fn one_huge_ready_neither_stalls_the_broker_nor_grows_it_without_bound() {
    let broker = BrokerProcess::start(&["--heartbeat-liveness", "3"]);
    let _real = WorkerProcess::start(&broker.backend, "real", &["--heartbeat-ms", "250"]);
    broker.wait_for_workers("add", 1);
    // 40 000 functions, the first with a 256 KiB doc and a 64 KiB signature.
    let functions = (0..40_000)
        .map(|i| switchboard_protocol::FunctionInfo {
            name: format!("flood.{i:05}"),
            doc: if i == 0 {
                "d".repeat(256 * 1024)
            } else {
                String::new()
            },
            signature: if i == 0 {
                "s".repeat(64 * 1024)
            } else {
                String::new()
            },
            retry_safe: false,
            inline: false,
            hedge_ms: 0,
        })
        .collect();
    let ready = switchboard_protocol::codec::encode(&switchboard_protocol::ReadyInfo {
        capacity: 1,
        inline_capacity: 0,
        heartbeat_ms: 5_000,
        functions,
        name: String::new(),
        cancel: false,
        drain: false,
        context: false,
        caller: false,
        credit: false,
    })
    .unwrap();
    let (_ctx, flooder) = raw_socket(zmq::DEALER, &broker.backend);
    flooder
        .send_multipart([&b"SBW2\x01"[..], &ready], 0)
        .unwrap();
    broker.wait_for_workers("flood.00000", 1);
    let client = broker.client(Duration::from_secs(5));
    let listing: Vec<switchboard_protocol::FunctionListing> =
        client.call("system.functions", ()).unwrap();
    let flood = listing
        .iter()
        .filter(|f| f.name.starts_with("flood."))
        .count();
    assert_eq!(flood, 1_024, "functions per worker are capped");
    let first = listing.iter().find(|f| f.name == "flood.00000").unwrap();
    assert!(first.doc.len() <= 1_024 && first.signature.len() <= 256);
    // The real worker, heartbeating every 250 ms, was never declared lost.
    let stats: std::collections::HashMap<String, switchboard_protocol::Value> =
        client.call("system.stats", ()).unwrap();
    assert_eq!(stats["workers_lost"].as_u64(), Some(0), "{stats:?}");
    assert_eq!(client.call::<i64>("add", (1, 2)).unwrap(), 3);
}

#[test]
fn a_large_routing_envelope_is_refused_once_not_copied_per_call() {
    let broker = BrokerProcess::start(&[]);
    let (_ctx, dealer) = raw_socket(zmq::DEALER, &broker.frontend);
    let big = vec![7u8; 512 * 1024];
    let header = b"\x81\xa2id\x05";
    let mut message: Vec<&[u8]> = vec![&big, b"", b"SBC1"];
    for _ in 0..256 {
        message.extend_from_slice(&[b"system.ping", header, b"\x80"]);
    }
    dealer.send_multipart(message.iter(), 0).unwrap();
    let reply = dealer.recv_multipart(0).expect("one answer");
    assert_eq!(reply.len(), 4, "one reply, not one per call");
    assert_eq!(reply[2], header.to_vec());
    let body = String::from_utf8_lossy(&reply[3]);
    assert!(
        body.contains("BAD_REQUEST") && body.contains("envelope"),
        "{body}"
    );
    // A small envelope (one proxy hop) is fine.
    dealer
        .send_multipart(
            [&b"hop"[..], b"", b"SBC1", b"system.ping", header, b"\x80"],
            0,
        )
        .unwrap();
    let reply = dealer.recv_multipart(0).expect("pong");
    assert_eq!(reply[0], b"hop".to_vec());
    assert!(String::from_utf8_lossy(&reply[4]).contains("pong"));
}

#[test]
fn a_rogue_workers_oversized_reply_never_reaches_the_caller() {
    let broker = BrokerProcess::start(&["--max-reply-bytes", "1000"]);
    let (_ctx, rogue) = raw_socket(zmq::DEALER, &broker.backend);
    let ready =
        b"\x83\xa8capacity\x01\xacheartbeat_ms\xcd\x13\x88\xa9functions\x91\x81\xa4name\xa3big";
    rogue.send_multipart([&b"SBW2\x01"[..], ready], 0).unwrap();
    broker.wait_for_workers("big", 1);
    let client = broker.client(Duration::from_secs(5));
    let pending = client.request("big").send().unwrap();
    let request = loop {
        let frames = rogue.recv_multipart(0).expect("the call");
        if frames[0].starts_with(b"SBW2\x02") {
            break frames;
        }
    };
    // {"result": <bin 2000>}: over the broker's limit, whatever the worker claims.
    let mut body = b"\x81\xa6result\xc5\x07\xd0".to_vec();
    body.extend(std::iter::repeat_n(0u8, 2000));
    let control = [&b"SBW2\x03"[..], &request[0][5..13]].concat();
    rogue.send_multipart([&control[..], &body], 0).unwrap();
    let error = pending.wait::<serde_bytes::ByteBuf>().unwrap_err();
    assert_eq!(
        error.code(),
        Some(switchboard_client::ErrorCode::PayloadTooLarge),
        "{error}"
    );
}

#[test]
fn one_call_cannot_knock_a_worker_out() {
    let broker = BrokerProcess::start(&[]);
    let worker = WorkerProcess::start(&broker.backend, "w", &["--heartbeat-ms", "100"]);
    broker.wait_for_workers("echo", 1);
    let (_ctx, dealer) = raw_socket(zmq::DEALER, &broker.frontend);
    let rss_before = rss_kib(worker.process.pid());
    // `echo` of one array of `count` one-byte values `element`; returns the reply body.
    let echo_array = |id: u8, count: u32, element: u8| {
        let mut body = b"\x81\xa4args\x91\xdd".to_vec();
        body.extend_from_slice(&count.to_be_bytes());
        body.extend(std::iter::repeat_n(element, count as usize));
        let header = [0x81, 0xa2, b'i', b'd', id];
        dealer
            .send_multipart([&b""[..], b"SBC1", b"echo", &header, &body], 0)
            .unwrap();
        dealer.recv_multipart(0).expect("an answer").remove(3)
    };
    // 4 Mi empty arrays: 4 MiB that would decode into ~160 MiB of values.
    let reply = echo_array(1, 4 << 20, 0x90);
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.contains("BAD_REQUEST") && text.contains("values"),
        "{text}"
    );
    let grown_mib = rss_kib(worker.process.pid()).saturating_sub(rss_before) / 1024;
    assert!(grown_mib < 48, "the worker grew by {grown_mib} MiB");
    // A large body for an inline function (slow to decode, 1 Mi small integers) runs
    // off the socket thread: a 100 ms heartbeat keeps going, no worker is lost.
    let reply = echo_array(2, (1 << 20) - 8, 0x01);
    assert!(reply.starts_with(b"\x81\xa6result"), "the echo came back");
    let client = broker.client(Duration::from_secs(5));
    let stats: std::collections::HashMap<String, switchboard_protocol::Value> =
        client.call("system.stats", ()).unwrap();
    assert_eq!(stats["workers_lost"].as_u64(), Some(0), "{stats:?}");
}

#[test]
fn a_slow_http_client_holds_up_neither_metrics_nor_health() {
    use std::io::Read;
    let broker = BrokerProcess::start(&["--metrics", "127.0.0.1:0"]);
    let url = broker.metrics.clone().expect("metrics URL");
    let address = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned();
    // A client that trickles its request one byte every 300 ms, for up to 9 s.
    let mut slow = TcpStream::connect(&address).unwrap();
    let trickling = Arc::new(AtomicBool::new(true));
    let trickler = {
        let mut slow = slow.try_clone().unwrap();
        let trickling = Arc::clone(&trickling);
        std::thread::spawn(move || {
            for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "
                .iter()
                .cycle()
                .take(30)
            {
                if !trickling.load(Ordering::Relaxed) || slow.write_all(&[*byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    // Meanwhile other scrapes are answered (the harness reads with a 5 s timeout).
    for _ in 0..3 {
        let (status, body) = switchboard_tests::http_get(&url);
        assert_eq!(status, 200);
        assert!(body.contains("switchboard_workers"), "{body}");
        assert_eq!(
            switchboard_tests::http_get(&url.replace("/metrics", "/health")).0,
            200
        );
    }
    // The slow client is cut off once its head has taken too long: the server closes.
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut rest = Vec::new();
    let closed = slow.read_to_end(&mut rest);
    trickling.store(false, Ordering::Relaxed);
    trickler.join().unwrap();
    assert!(
        closed.is_ok()
            || closed
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the server never closed the slow connection: {closed:?}"
    );
}

/// Sends a `system.batch` of `calls` (function, body) on `dealer` and returns each slot's
/// error code (`None` for a result).
fn batch_codes(dealer: &zmq::Socket, calls: &[(&[u8], Vec<u8>)]) -> Vec<Option<String>> {
    let mut frames: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"SBC1".to_vec(),
        b"system.batch".to_vec(),
        b"\x81\xa2id\x09".to_vec(),
    ];
    for (function, body) in calls {
        frames.push(function.to_vec());
        frames.push(body.clone());
    }
    dealer.send_multipart(frames, 0).unwrap();
    let reply = dealer.recv_multipart(0).expect("the batch's reply");
    let items = switchboard_protocol::codec::decode_batch_reply(&reply[3])
        .unwrap()
        .unwrap();
    items
        .iter()
        .map(|item| {
            item.decode::<switchboard_protocol::Value>()
                .unwrap()
                .err()
                .map(|e| e.code.as_str().to_owned())
        })
        .collect()
}

#[test]
fn a_small_batch_cannot_ask_for_a_huge_reply() {
    let broker = BrokerProcess::start(&["--max-reply-bytes", "20000"]);
    let _worker = WorkerProcess::start(&broker.backend, "w", &[]);
    broker.wait_for_workers("echo", 1);
    let (_ctx, dealer) = raw_socket(zmq::DEALER, &broker.frontend);
    // 1 000 system.functions in one 17 KB request: 16 are answered, the rest refused, so
    // the broker neither renders its state 1 000 times nor builds a reply that large.
    let listing: Vec<(&[u8], Vec<u8>)> = (0..1000)
        .map(|_| (&b"system.functions"[..], b"\x80".to_vec()))
        .collect();
    let codes = batch_codes(&dealer, &listing);
    // (Answered: a listing, or PAYLOAD_TOO_LARGE once the 20 000-byte reply is full.)
    assert!(codes[..16]
        .iter()
        .all(|c| c.as_deref() != Some("BAD_REQUEST")));
    assert!(codes[..16].iter().any(|c| c.is_none()));
    assert!(codes[16..]
        .iter()
        .all(|c| c.as_deref() == Some("BAD_REQUEST")));
    // Results that together pass the reply limit: the ones past it become PAYLOAD_TOO_LARGE.
    let mut body = b"\x81\xa4args\x91\xc5\x17\x70".to_vec(); // one 6 000-byte bin
    body.extend(std::iter::repeat_n(1u8, 6000));
    let echoes: Vec<(&[u8], Vec<u8>)> = (0..5).map(|_| (&b"echo"[..], body.clone())).collect();
    let codes = batch_codes(&dealer, &echoes);
    assert_eq!(codes.iter().filter(|c| c.is_none()).count(), 3, "{codes:?}");
    assert_eq!(
        codes
            .iter()
            .filter(|c| c.as_deref() == Some("PAYLOAD_TOO_LARGE"))
            .count(),
        2
    );
}

#[test]
fn a_client_that_never_reads_cannot_make_the_broker_hold_its_replies() {
    // An 8 MiB backlog per client (the default is 48 MiB), so the bound is plain to see.
    let broker = BrokerProcess::start(&["--client-backlog-bytes", "8388608"]);
    let _worker = WorkerProcess::start(&broker.backend, "w", &["--threads", "4"]);
    broker.wait_for_workers("echo", 1);
    let rss_before = rss_kib(broker.process.pid());
    // A DEALER that sends 3 000 echo calls of 64 KiB each and never reads a reply.
    let (_ctx, greedy) = raw_socket(zmq::DEALER, &broker.frontend);
    greedy.set_rcvhwm(1).unwrap();
    let mut body = b"\x81\xa4args\x91\xc6\x00\x01\x00\x00".to_vec();
    body.extend(std::iter::repeat_n(7u8, 65_536));
    let client = broker.client(Duration::from_secs(10));
    let stats = || -> std::collections::HashMap<String, switchboard_protocol::Value> {
        client.call("system.stats", ()).unwrap()
    };
    let count = |stats: &std::collections::HashMap<String, switchboard_protocol::Value>, key| {
        stats[key].as_u64().unwrap_or(0)
    };
    // Sent 16 at a time, each round once the last is answered: what the broker holds is
    // then the replies, not calls queued for the worker.
    let until = std::time::Instant::now() + Duration::from_secs(60);
    for round in 0..(3_000 / 16) {
        for i in 0..16u32 {
            let mut header = b"\x81\xa2id\xce".to_vec();
            header.extend_from_slice(&(round * 16 + i).to_be_bytes());
            greedy
                .send_multipart([&b""[..], b"SBC1", b"echo", &header, &body], 0)
                .unwrap();
        }
        while count(&stats(), "calls_completed") < u64::from(round + 1) * 16 {
            assert!(std::time::Instant::now() < until, "calls never completed");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert!(count(&stats(), "dropped_replies") > 0, "{:?}", stats());
    let grown_mib = rss_kib(broker.process.pid()).saturating_sub(rss_before) / 1024;
    eprintln!("broker RSS grew by {grown_mib} MiB for a client that never reads");
    assert!(
        grown_mib < 64,
        "the broker holds {grown_mib} MiB for a client that never reads"
    );
    // Others are served meanwhile.
    assert_eq!(client.call::<i64>("add", (1, 2)).unwrap(), 3);
}
