//! Wire-level tests: raw ZeroMQ sockets and hand-written bytes, no client crate.
//! The byte strings are the examples of docs/PROTOCOL.md.

use std::time::Duration;

use switchboard_broker::BrokerConfig;
use switchboard_tests::{local_cluster, raw_socket, LocalBroker};

/// `{"id": 1, "timeout_ms": 5000}`
const HEADER: &[u8] = b"\x82\xa2id\x01\xaatimeout_ms\xcd\x13\x88";
/// `{"args": [2, 3], "kwargs": {}}`
const BODY: &[u8] = b"\x82\xa4args\x92\x02\x03\xa6kwargs\x80";
/// `{"result": 5}`
const RESULT: &[u8] = b"\x81\xa6result\x05";

fn recv(socket: &zmq::Socket) -> Vec<Vec<u8>> {
    socket
        .recv_multipart(0)
        .expect("a reply within the receive timeout")
}

/// Extracts the error code string from a reply body `{"error": {"code": ..., ...}}`.
fn error_code(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    assert!(text.contains("error"), "not an error reply: {body:x?}");
    ["BAD_REQUEST", "UNKNOWN_FUNCTION", "BAD_ARGUMENTS"]
        .into_iter()
        .find(|code| text.contains(code))
        .unwrap_or_else(|| panic!("no known code in {text}"))
        .to_owned()
}

#[test]
fn plain_req_socket_calls_a_function_with_documented_bytes() {
    let (broker, _workers) = local_cluster(1, BrokerConfig::default(), |_| {});
    let (_ctx, req) = raw_socket(zmq::REQ, &broker.frontend);
    for _ in 0..3 {
        req.send_multipart([&b"SBC1"[..], b"add", HEADER, BODY], 0)
            .unwrap();
        let reply = recv(&req);
        assert_eq!(
            reply,
            vec![b"SBC1".to_vec(), HEADER.to_vec(), RESULT.to_vec()]
        );
    }
}

#[test]
fn dealer_socket_matches_replies_by_the_echoed_header() {
    let (broker, _workers) = local_cluster(1, BrokerConfig::default(), |_| {});
    let (_ctx, dealer) = raw_socket(zmq::DEALER, &broker.frontend);
    // Two calls in flight: sleep first, add second; the add reply comes first.
    let sleep_header = b"\x81\xa2id\x07";
    let sleep_body = b"\x82\xa4args\x91\xcc\xc8\xa6kwargs\x80"; // sleep_ms(200)
    dealer
        .send_multipart(
            [&b""[..], b"SBC1", b"sleep_ms", sleep_header, sleep_body],
            0,
        )
        .unwrap();
    dealer
        .send_multipart([&b""[..], b"SBC1", b"add", HEADER, BODY], 0)
        .unwrap();
    let first = recv(&dealer);
    assert_eq!(
        first,
        vec![vec![], b"SBC1".to_vec(), HEADER.to_vec(), RESULT.to_vec()]
    );
    let second = recv(&dealer);
    assert_eq!(second[2], sleep_header.to_vec());
    assert_eq!(second[3], b"\x81\xa6result\xcc\xc8".to_vec());
}

#[test]
fn malformed_client_messages_get_bad_request_and_the_broker_keeps_serving() {
    let (broker, _workers) = local_cluster(1, BrokerConfig::default(), |_| {});
    let (_ctx, dealer) = raw_socket(zmq::DEALER, &broker.frontend);
    // Each case with the header frame the reply must echo: the request's own whenever
    // it came, so that a DEALER can match the error to its call.
    let array_header: &[u8] = b"\x92\x05\x64"; // [5, 100]: a header is a map
    let cases: Vec<(Vec<&[u8]>, &[u8])> = vec![
        (vec![b"", b"SBC1", b"add", HEADER], HEADER), // a frame short
        (vec![b"", b"SBC1", b"add", HEADER, BODY, b"extra"], HEADER), // a frame long
        (
            vec![b"", b"SBC1", b"add", HEADER, BODY, b"add", HEADER],
            HEADER,
        ), // a pipeline cut short
        (vec![b"", b"SBC1", b"system.batch", HEADER], HEADER), // a batch of no call
        (vec![b"", b"SBC1", b"system.batch", HEADER, b"add"], HEADER), // a batch call with no body
        (vec![b"SBC1", b"add", HEADER, BODY], b"\xc0"), // no delimiter: nil
        (vec![b"", b"XXXX", b"add", HEADER, BODY], HEADER), // wrong signature
        (vec![b"", b"SBC1", b"", HEADER, BODY], HEADER), // empty function name
        (vec![b"", b"SBC1", b"\xff\xfe", HEADER, BODY], HEADER), // function name not UTF-8
        (vec![b"", b"SBC1", b"add", b"\xc1", BODY], b"\xc1"), // header not MessagePack
        (vec![b"", b"SBC1", b"add", array_header, BODY], array_header), // header not a map
    ];
    for (parts, echoed) in &cases {
        dealer.send_multipart(parts.iter(), 0).unwrap();
        let reply = recv(&dealer);
        assert_eq!(reply.len(), 4, "reply to {parts:x?}: {reply:x?}");
        assert_eq!(reply[2], echoed.to_vec(), "header echoed for {parts:x?}");
        assert_eq!(error_code(&reply[3]), "BAD_REQUEST", "reply to {parts:x?}");
    }
    // A body that is not a request map reaches the worker, which refuses it.
    dealer
        .send_multipart([&b""[..], b"SBC1", b"add", HEADER, b"\xc1\xc1"], 0)
        .unwrap();
    assert_eq!(error_code(&recv(&dealer)[3]), "BAD_REQUEST");
    dealer
        .send_multipart([&b""[..], b"SBC1", b"add", HEADER, b"\x92\x01\x02"], 0)
        .unwrap();
    assert_eq!(error_code(&recv(&dealer)[3]), "BAD_REQUEST");
    // The next good call works.
    dealer
        .send_multipart([&b""[..], b"SBC1", b"add", HEADER, BODY], 0)
        .unwrap();
    assert_eq!(recv(&dealer)[3], RESULT.to_vec());
}

#[test]
fn malformed_worker_messages_are_dropped_and_do_not_disturb_real_workers() {
    let (broker, _workers) = local_cluster(1, BrokerConfig::default(), |_| {});
    let (_ctx, rogue) = raw_socket(zmq::DEALER, &broker.backend);
    let garbage: Vec<Vec<&[u8]>> = vec![
        vec![b"hello"],
        vec![b"SBW2"],
        vec![b"SBW1", b"\x04"],          // the old protocol
        vec![b"SBW2\x09"],               // unknown command
        vec![b"SBW2\x01", b"\xc1"],      // READY with a broken body
        vec![b"SBW2\x01", b"\x80"],      // READY missing fields
        vec![b"SBW2\x03short", b"\x80"], // REPLY with a bad ticket
        vec![b"SBW2\x03\0\0\0\0\0\0\0\x01", b"\x80", b"\x80"], // one ticket, two bodies
        vec![b"SBW2\x03\0\0\0\0\0\0\0\x2a", b"\x80"], // REPLY nobody asked for
        vec![b"SBC1", b"add", HEADER, BODY], // a client message on the worker port
    ];
    for parts in &garbage {
        rogue.send_multipart(parts.iter(), 0).unwrap();
    }
    // A heartbeat from an unregistered peer is answered with DISCONNECT (register first).
    rogue.send_multipart([&b"SBW2\x04"[..]], 0).unwrap();
    let mut answer = recv(&rogue);
    while answer != vec![b"SBW2\x05".to_vec()] {
        answer = recv(&rogue);
    }
    let client = broker.client(Duration::from_secs(5));
    for i in 0..20 {
        assert_eq!(client.call::<i64>("add", (i, 1)).unwrap(), i + 1);
    }
}

/// A hand-written worker hosting `double` with room for `capacity` calls, registered.
fn hand_written_worker(
    broker: &switchboard_tests::BrokerEndpoints,
    capacity: u8,
) -> (zmq::Context, zmq::Socket) {
    assert!(capacity < 0x80, "a positive fixint");
    let (context, worker) = raw_socket(zmq::DEALER, &broker.backend);
    // {"capacity": n, "heartbeat_ms": 1000, "functions": [{"name": "double", "doc": "", "signature": ""}]}
    let mut ready = b"\x83\xa8capacity".to_vec();
    ready.push(capacity);
    ready.extend_from_slice(b"\xacheartbeat_ms\xcd\x03\xe8\xa9functions\x91");
    ready.extend_from_slice(b"\x83\xa4name\xa6double\xa3doc\xa0\xa9signature\xa0");
    worker
        .send_multipart([&b"SBW2\x01"[..], &ready], 0)
        .unwrap();
    broker.wait_for_workers("double", 1);
    (context, worker)
}

#[test]
fn a_worker_written_from_the_document_serves_calls() {
    // A hand-rolled worker: READY, then answer a REQUEST by echoing its ticket.
    let broker = LocalBroker::start(BrokerConfig::default());
    let (_ctx, worker) = hand_written_worker(&broker, 1);
    let client = broker.client(Duration::from_secs(5));
    let pending = client
        .request("double")
        .args((21,))
        .timeout(Duration::from_millis(4000))
        .send()
        .unwrap();
    let request = loop {
        let frames = recv(&worker);
        if frames[0].starts_with(b"SBW2\x02") {
            break frames;
        }
    };
    // [SBW2 02 | ticket(8) call id(8) time left ms(4) name length(1) name][body]
    assert_eq!(request.len(), 2);
    let control = &request[0];
    assert_eq!(control.len(), 5 + 21 + 6);
    let ticket = &control[5..13];
    let time_left = u32::from_be_bytes(control[21..25].try_into().unwrap());
    assert!((3000..=4000).contains(&time_left), "time left {time_left}");
    assert_eq!(control[25], 6);
    assert_eq!(&control[26..], b"double");
    assert_eq!(request[1], b"\x82\xa4args\x91\x15\xa6kwargs\x80".to_vec());
    let reply_control = [&b"SBW2\x03"[..], ticket].concat();
    worker
        .send_multipart([&reply_control[..], b"\x81\xa6result\x2a"], 0)
        .unwrap();
    assert_eq!(pending.wait::<i64>().unwrap(), 42);
}

#[test]
fn a_hand_written_worker_may_answer_a_batch_of_calls_in_one_reply_in_any_order() {
    let broker = LocalBroker::start(BrokerConfig::default());
    let (_ctx, worker) = hand_written_worker(&broker, 8);
    let client = broker.client(Duration::from_secs(5));
    let pending: Vec<_> = (0..8i64)
        .map(|i| client.request("double").args((i,)).send().unwrap())
        .collect();
    // Gather the 8 calls, however the broker grouped them into REQUESTs.
    let mut calls: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    while calls.len() < 8 {
        let frames = recv(&worker);
        let control = &frames[0];
        if !control.starts_with(b"SBW2\x02") {
            continue;
        }
        let mut at = 5;
        for body in &frames[1..] {
            let name_len = control[at + 20] as usize;
            assert_eq!(&control[at + 21..at + 21 + name_len], b"double");
            calls.push((control[at..at + 8].to_vec(), body.clone()));
            at += 21 + name_len;
        }
        assert_eq!(at, control.len(), "one record per body");
    }
    // One REPLY for all of them, newest first: {"result": 100 + n} for argument n.
    let mut control = b"SBW2\x03".to_vec();
    let mut bodies = Vec::new();
    for (ticket, body) in calls.iter().rev() {
        // body is {"args": [n], "kwargs": {}} with n a positive fixint
        let n = body[7];
        control.extend_from_slice(ticket);
        bodies.push(vec![
            0x81,
            0xa6,
            b'r',
            b'e',
            b's',
            b'u',
            b'l',
            b't',
            100 + n,
        ]);
    }
    let mut message = vec![control];
    message.extend(bodies);
    worker.send_multipart(message, 0).unwrap();
    for (i, call) in pending.into_iter().enumerate() {
        assert_eq!(call.wait::<i64>().unwrap(), 100 + i as i64);
    }
}

#[test]
fn a_dealer_may_pipeline_calls_in_one_message_and_gets_every_reply() {
    let (broker, _workers) = local_cluster(1, BrokerConfig::default(), |_| {});
    let (_ctx, dealer) = raw_socket(zmq::DEALER, &broker.frontend);
    let header = |id: u8| vec![0x81, 0xa2, b'i', b'd', id]; // {"id": id}
    let (h1, h2, h3) = (header(1), header(2), header(3));
    // add(2, 3), a call with an empty function name, and upper("ab"), in one message.
    let upper_body = b"\x82\xa4args\x91\xa2ab\xa6kwargs\x80";
    dealer
        .send_multipart(
            [
                &b""[..],
                b"SBC1",
                b"add",
                &h1,
                BODY,
                b"",
                &h2,
                BODY,
                b"upper",
                &h3,
                upper_body,
            ],
            0,
        )
        .unwrap();
    // Replies come one per message or grouped: [""]["SBC1"]([header][body])…
    let mut replies = std::collections::BTreeMap::new();
    while replies.len() < 3 {
        let frames = recv(&dealer);
        assert!(frames.len() >= 4 && frames.len() % 2 == 0, "{frames:?}");
        assert_eq!((&frames[0][..], &frames[1][..]), (&b""[..], &b"SBC1"[..]));
        for pair in frames[2..].chunks(2) {
            assert!(replies.insert(pair[0].clone(), pair[1].clone()).is_none());
        }
    }
    assert_eq!(replies[&h1], RESULT.to_vec());
    assert_eq!(error_code(&replies[&h2]), "BAD_REQUEST");
    assert_eq!(replies[&h3], b"\x81\xa6result\xa2AB".to_vec());
    // A message that is not three frames per call is refused as a whole.
    dealer
        .send_multipart([&b""[..], b"SBC1", b"add", &h1, BODY, b"add", &h2], 0)
        .unwrap();
    let refused = recv(&dealer);
    assert_eq!(error_code(&refused[3]), "BAD_REQUEST");
}

#[test]
fn message_limits_count_what_the_client_sent() {
    let mut config = BrokerConfig::default();
    config.limits.max_frames = 64;
    config.limits.max_total_bytes = 65536;
    let broker = LocalBroker::start(config);
    let (_ctx, dealer) = raw_socket(zmq::DEALER, &broker.frontend);
    // A batch of 30 calls is 4 + 2 x 30 = 64 frames: at the limit, not over it.
    let mut batch: Vec<&[u8]> = vec![b"", b"SBC1", b"system.batch", HEADER];
    for _ in 0..30 {
        batch.extend_from_slice(&[b"system.ping", b"\x80"]);
    }
    dealer.send_multipart(batch.iter(), 0).unwrap();
    assert!(String::from_utf8_lossy(&recv(&dealer)[3]).contains("pong"));
    batch.push(b"one frame too many");
    dealer.send_multipart(batch.iter(), 0).unwrap();
    let reply = recv(&dealer);
    assert!(String::from_utf8_lossy(&reply[3]).contains("PAYLOAD_TOO_LARGE"));
    // 65 536 bytes in all, frames as sent: at the limit; one byte more is over it.
    let fixed = 4 + 4 + HEADER.len();
    let body = vec![0xc0u8; 65_536 - fixed];
    let message = |body: &[u8]| {
        vec![
            b"".to_vec(),
            b"SBC1".to_vec(),
            b"nope".to_vec(),
            HEADER.to_vec(),
            body.to_vec(),
        ]
    };
    dealer.send_multipart(message(&body), 0).unwrap();
    assert_eq!(error_code(&recv(&dealer)[3]), "UNKNOWN_FUNCTION");
    dealer
        .send_multipart(message(&[&body[..], b"\xc0"].concat()), 0)
        .unwrap();
    let reply = recv(&dealer);
    assert!(String::from_utf8_lossy(&reply[3]).contains("PAYLOAD_TOO_LARGE"));
}
