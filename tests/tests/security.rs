//! CURVE: only listed clients and workers get in, each on its own socket; everyone else
//! gets nothing through, and the allowed peers keep working.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use switchboard_client::{Client, ClientConfig, ErrorCode};
use switchboard_protocol::Value;
use switchboard_tests::{binary, run_python_with_env, BrokerProcess, ScratchDir, WorkerProcess};
use switchboard_transport::curve::{read_public_key, ClientCurve, KeyPair};

/// Makes `<name>.key` and `<name>.pub` with the `client keygen` command.
fn keygen(dir: &Path, name: &str) -> KeyPair {
    let output = Command::new(binary("client"))
        .arg("keygen")
        .arg(dir.join(name))
        .output()
        .expect("run keygen");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let pair = KeyPair::read(&dir.join(format!("{name}.key"))).expect("key pair file");
    assert!(stdout.contains(&switchboard_transport::curve::encode_key(&pair.public)));
    assert_eq!(
        read_public_key(&dir.join(format!("{name}.pub"))).unwrap(),
        pair.public
    );
    pair
}

struct Secured {
    dir: ScratchDir,
    broker: BrokerProcess,
    _worker: WorkerProcess,
    keys: HashMap<&'static str, KeyPair>,
}

impl Secured {
    fn start() -> Secured {
        let dir = ScratchDir::new("curve");
        let mut keys = HashMap::new();
        for name in ["broker", "alice", "worker", "mallory", "victim", "stranger"] {
            keys.insert(name, keygen(&dir.path, name));
        }
        std::fs::copy(dir.path.join("alice.pub"), dir.path.join("clients.txt")).unwrap();
        // Three worker keys: the demo worker's, and two for hand-written workers.
        let workers: String = ["worker", "victim", "stranger"]
            .iter()
            .map(|n| std::fs::read_to_string(dir.path.join(format!("{n}.pub"))).unwrap())
            .collect();
        std::fs::write(dir.path.join("workers.txt"), workers).unwrap();
        let path = |f: &str| dir.path.join(f).to_string_lossy().into_owned();
        let mut broker = BrokerProcess::start(&[
            "--curve-key-file",
            &path("broker.key"),
            "--client-keys-file",
            &path("clients.txt"),
            "--worker-keys-file",
            &path("workers.txt"),
        ]);
        let worker = WorkerProcess::start(
            &broker.backend,
            "trusted",
            &[
                "--curve-server-key-file",
                &path("broker.pub"),
                "--curve-key-file",
                &path("worker.key"),
            ],
        );
        broker.curve = Some(ClientCurve {
            server_public: keys["broker"].public,
            keys: keys["alice"].clone(),
        });
        broker.wait_for_workers("add", 1);
        Secured {
            dir,
            broker,
            _worker: worker,
            keys,
        }
    }

    fn client(&self, curve: Option<ClientCurve>) -> Client {
        let mut config = ClientConfig::new(&self.broker.frontend);
        config.default_timeout = Duration::from_millis(700);
        config.curve = curve;
        Client::with_config(config).expect("client")
    }

    fn stats(&self) -> HashMap<String, Value> {
        self.broker
            .client(Duration::from_secs(5))
            .call("system.stats", ())
            .unwrap()
    }

    /// A call from this client gets nothing through: it never leaves, and the error
    /// says so (with `why` in the message) by the call's deadline.
    fn assert_refused(&self, client: &Client, who: &str, why: &str) {
        let error = client.call::<i64>("add", (1, 2)).expect_err(who);
        assert_eq!(error.code(), Some(ErrorCode::BrokerLost), "{who}: {error}");
        let message = error.to_string();
        assert!(
            message.contains("the call was not sent") && message.contains(why),
            "{who}: {message}"
        );
    }
}

#[test]
fn listed_client_and_worker_talk_over_curve() {
    let secured = Secured::start();
    let client = secured.broker.client(Duration::from_secs(5));
    for i in 0..20 {
        assert_eq!(client.call::<i64>("add", (i, 1)).unwrap(), i + 1);
    }
    let workers: Vec<switchboard_protocol::WorkerListing> =
        client.call("system.workers", ()).unwrap();
    assert_eq!(
        workers.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
        ["trusted"]
    );
    // The function sees who called: the key ZAP admitted, not anything the client says.
    let context: std::collections::BTreeMap<String, switchboard_protocol::Value> =
        client.call("context", ()).unwrap();
    let alice = switchboard_transport::curve::encode_key(&secured.keys["alice"].public);
    assert_eq!(
        context["caller"].as_str(),
        Some(format!("curve:{alice}").as_str()),
        "{context:?}"
    );
}

#[test]
fn unlisted_wrong_or_missing_keys_get_nothing_through() {
    let secured = Secured::start();
    let broker_key = secured.keys["broker"].public;
    let unlisted = secured.client(Some(ClientCurve {
        server_public: broker_key,
        keys: secured.keys["mallory"].clone(),
    }));
    secured.assert_refused(&unlisted, "an unlisted client key", "allow-list");
    let stats = secured.stats();
    assert!(
        stats["auth_rejections_frontend"].as_u64().unwrap() >= 1,
        "{stats:?}"
    );

    // Refusals that never reach ZAP are counted too (from the socket's handshake events).
    let refused = || {
        secured.stats()["auth_rejections_frontend"]
            .as_u64()
            .unwrap()
    };
    let wait_for_more_than = |before: u64, who: &str| {
        let until = Instant::now() + Duration::from_secs(10);
        while refused() <= before {
            assert!(Instant::now() < until, "{who} was never counted");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let before = refused();
    let wrong_server = secured.client(Some(ClientCurve {
        server_public: secured.keys["mallory"].public,
        keys: secured.keys["alice"].clone(),
    }));
    secured.assert_refused(&wrong_server, "a wrong server key", "broker at");
    wait_for_more_than(before, "a wrong server key");
    drop(wrong_server);
    let before = refused();
    let plain = secured.client(None);
    secured.assert_refused(&plain, "no CURVE at all", "broker at");
    wait_for_more_than(before, "a client without CURVE");

    // The allowed client still works after all of that.
    let client = secured.broker.client(Duration::from_secs(5));
    assert_eq!(client.call::<i64>("add", (2, 2)).unwrap(), 4);
}

#[test]
fn a_client_key_cannot_pose_as_a_worker() {
    let secured = Secured::start();
    let path = |f: &str| secured.dir.path.join(f).to_string_lossy().into_owned();
    let _impostor = WorkerProcess::start(
        &secured.broker.backend,
        "impostor",
        &[
            "--curve-server-key-file",
            &path("broker.pub"),
            "--curve-key-file",
            &path("alice.key"),
        ],
    );
    let client = secured.broker.client(Duration::from_secs(5));
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while secured.stats()["auth_rejections_backend"].as_u64().unwrap() == 0 {
        assert!(
            std::time::Instant::now() < until,
            "the impostor was never refused"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let workers: Vec<switchboard_protocol::WorkerListing> =
        client.call("system.workers", ()).unwrap();
    assert!(workers.iter().all(|w| w.name != "impostor"), "{workers:?}");
    for i in 0..20 {
        assert_eq!(
            client.call::<String>("whoami", ()).unwrap(),
            "trusted",
            "call {i}"
        );
    }
}

#[test]
fn broker_refuses_to_start_with_half_a_security_setup() {
    let dir = ScratchDir::new("curve-config");
    keygen(&dir.path, "broker");
    let key = dir.path.join("broker.key");
    let empty = dir.path.join("empty.txt");
    std::fs::write(&empty, "# nobody\n").unwrap();
    let cases: Vec<Vec<String>> = vec![
        vec!["--curve-key-file".into(), key.to_string_lossy().into()],
        vec!["--client-keys-file".into(), empty.to_string_lossy().into()],
        vec![
            "--curve-key-file".into(),
            key.to_string_lossy().into(),
            "--client-keys-file".into(),
            empty.to_string_lossy().into(),
            "--worker-keys-file".into(),
            empty.to_string_lossy().into(),
        ],
    ];
    for args in cases {
        let output = Command::new(binary("broker"))
            .args([
                "--frontend",
                "tcp://127.0.0.1:*",
                "--backend",
                "tcp://127.0.0.1:*",
            ])
            .args(&args)
            .output()
            .expect("run broker");
        assert!(!output.status.success(), "{args:?} must be refused");
        assert!(!String::from_utf8_lossy(&output.stderr).is_empty());
    }
}

#[test]
fn python_client_example_speaks_curve() {
    let secured = Secured::start();
    let server_key = switchboard_transport::curve::encode_key(&secured.keys["broker"].public);
    let key_file = secured.dir.path.join("alice.key");
    let out = run_python_with_env(
        "examples/python/client.py",
        &[&secured.broker.frontend, "--check"],
        &[
            ("SWITCHBOARD_CURVE_SERVER_KEY", server_key.as_str()),
            ("SWITCHBOARD_CURVE_KEY_FILE", key_file.to_str().unwrap()),
        ],
    );
    assert!(out.contains("python client: ok"), "{out}");
}

/// A hand-written worker's DEALER that names itself `id`, speaking CURVE with `key`.
fn curve_dealer(secured: &Secured, key: &str, id: &[u8]) -> (zmq::Context, zmq::Socket) {
    let context = zmq::Context::new();
    let socket = context.socket(zmq::DEALER).unwrap();
    socket.set_linger(0).unwrap();
    socket.set_rcvtimeo(5000).unwrap();
    socket.set_identity(id).unwrap();
    ClientCurve {
        server_public: secured.keys["broker"].public,
        keys: secured.keys[key].clone(),
    }
    .apply(&socket)
    .unwrap();
    socket.connect(&secured.broker.backend).unwrap();
    (context, socket)
}

#[test]
fn another_worker_key_cannot_take_over_a_dead_workers_identity() {
    let secured = Secured::start();
    // The victim registers `hijack` and receives a call.
    let (victim_context, victim) = curve_dealer(&secured, "victim", b"victim");
    let ready =
        b"\x83\xa8capacity\x01\xacheartbeat_ms\xcd\x13\x88\xa9functions\x91\x81\xa4name\xa6hijack";
    victim.send_multipart([&b"SBW2\x01"[..], ready], 0).unwrap();
    secured.broker.wait_for_workers("hijack", 1);
    let client = secured.broker.client(Duration::from_secs(10));
    let pending = client.request("hijack").send().unwrap();
    let request = victim
        .recv_multipart(0)
        .expect("the call reaches the victim");
    assert!(request[0].starts_with(b"SBW2\x02"), "{request:x?}");
    let ticket = request[0][5..13].to_vec();
    drop(victim);
    drop(victim_context);
    // A stranger with another allowed worker key connects under the victim's identity and
    // answers the victim's call. (A connection made before libzmq has let go of the
    // victim's is ignored, so try again with a fresh one until the broker hears it.)
    let forged = [&b"SBW2\x03"[..], &ticket].concat();
    let until = Instant::now() + Duration::from_secs(10);
    let _stranger = loop {
        let (context, stranger) = curve_dealer(&secured, "stranger", b"victim");
        stranger
            .send_multipart([&forged[..], b"\x81\xa6result\xa6forged"], 0)
            .unwrap();
        let heard = Instant::now() + Duration::from_millis(500);
        while Instant::now() < heard && secured.stats()["impostor_messages"].as_u64() == Some(0) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if secured.stats()["impostor_messages"].as_u64() != Some(0) {
            break (context, stranger);
        }
        assert!(
            Instant::now() < until,
            "the stranger's message never arrived"
        );
    };
    let error = pending
        .wait::<String>()
        .expect_err("the forged result is not delivered");
    assert_eq!(error.code(), Some(ErrorCode::WorkerLost), "{error}");
    let workers: Vec<switchboard_protocol::WorkerListing> =
        client.call("system.workers", ()).unwrap();
    assert_eq!(
        workers.len(),
        1,
        "only the real worker is left: {workers:?}"
    );
}
