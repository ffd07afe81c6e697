//! Calls through real broker and worker processes: arguments, load sharing, concurrency, size.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;
use serde_bytes::ByteBuf;
use switchboard_broker::BrokerConfig;
use switchboard_tests::local_cluster;

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Serialize)]
struct Greeting<'a> {
    name: &'a str,
    greeting: &'a str,
}

#[test]
fn positional_and_keyword_arguments_reach_the_function() {
    let (broker, _workers) = local_cluster(1, BrokerConfig::default(), |_| {});
    let client = broker.client(TIMEOUT);
    assert_eq!(client.call::<i64>("add", (40, 2)).unwrap(), 42);
    assert_eq!(client.call::<String>("upper", ("shout",)).unwrap(), "SHOUT");

    let mut kwargs = BTreeMap::new();
    kwargs.insert("name", "ada");
    assert_eq!(
        client.call_kwargs::<String>("greet", &kwargs).unwrap(),
        "hello, ada!"
    );
    let greeting = Greeting {
        name: "bob",
        greeting: "hi",
    };
    assert_eq!(
        client.call_kwargs::<String>("greet", &greeting).unwrap(),
        "hi, bob!"
    );
    // A struct-taking function also accepts its fields positionally.
    assert_eq!(
        client.call::<String>("greet", ("cy", "hey")).unwrap(),
        "hey, cy!"
    );
}

#[test]
fn two_workers_share_the_load() {
    let (broker, workers) = local_cluster(2, BrokerConfig::default(), |w| w.threads = 2);
    let client = broker.client(TIMEOUT);
    let mut served: HashMap<String, usize> = HashMap::new();
    // Sequential calls alternate between equally free workers.
    for _ in 0..20 {
        *served
            .entry(client.call::<String>("whoami", ()).unwrap())
            .or_default() += 1;
    }
    assert_eq!(served.len(), 2, "both workers served calls: {served:?}");
    for worker in &workers {
        assert!(served[&worker.name] >= 5, "uneven split {served:?}");
    }
    // Concurrent slow calls run on both workers at once: all four slots busy together.
    let pending: Vec<_> = (0..4)
        .map(|_| client.request("sleep_ms").args((300,)).send().unwrap())
        .collect();
    broker.wait_for("sleep_ms", "4 running at once", |f| f.running == 4);
    for call in pending {
        assert_eq!(call.wait::<u64>().unwrap(), 300);
    }
}

#[test]
fn eight_threads_share_one_client() {
    let (broker, _workers) = local_cluster(2, BrokerConfig::default(), |_| {});
    let client = broker.client(TIMEOUT);
    std::thread::scope(|scope| {
        for t in 0..8i64 {
            let client = client.clone();
            scope.spawn(move || {
                for i in 0..200i64 {
                    let sum: i64 = client.call("add", (t * 1000, i)).unwrap();
                    assert_eq!(sum, t * 1000 + i, "thread {t} got another caller's reply");
                }
            });
        }
    });
}

#[test]
fn many_calls_in_flight_on_one_connection_each_get_their_own_reply() {
    let (broker, _workers) = local_cluster(2, BrokerConfig::default(), |_| {});
    let client = broker.client(TIMEOUT);
    let pending: Vec<_> = (0..2000i64)
        .map(|i| (i, client.request("add").args((i, 1)).send().unwrap()))
        .collect();
    for (i, call) in pending {
        assert_eq!(call.wait::<i64>().unwrap(), i + 1);
    }
}

#[test]
fn four_mebibyte_payload_round_trips_as_binary() {
    let (broker, _workers) = local_cluster(1, BrokerConfig::default(), |_| {});
    let client = broker.client(TIMEOUT);
    let payload: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i * 31 % 251) as u8).collect();
    let back: ByteBuf = client
        .call("echo", (ByteBuf::from(payload.clone()),))
        .unwrap();
    assert_eq!(back.len(), payload.len());
    assert!(
        back.as_slice() == payload.as_slice(),
        "payload changed in transit"
    );
}

#[test]
fn broker_lists_hosted_functions() {
    let (broker, _workers) = local_cluster(2, BrokerConfig::default(), |_| {});
    let client = broker.client(TIMEOUT);
    assert_eq!(client.call::<String>("system.ping", ()).unwrap(), "pong");
    let listing: Vec<switchboard_protocol::FunctionListing> =
        client.call("system.functions", ()).unwrap();
    let add = listing
        .iter()
        .find(|f| f.name == "add")
        .expect("add listed");
    assert_eq!(add.workers, 2);
    assert_eq!(add.signature, "add(i64, i64) -> i64");
    assert!(!add.doc.is_empty());
}

#[test]
fn a_function_sees_its_call_id_attempt_trace_and_time_left() {
    let (broker, _workers) = local_cluster(1, BrokerConfig::default(), |_| {});
    let client = broker.client(TIMEOUT);
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let pending = client
        .request("context")
        .traceparent(trace)
        .timeout(Duration::from_secs(5))
        .send()
        .unwrap();
    let id = pending.id();
    let seen: BTreeMap<String, switchboard_protocol::Value> = pending.wait().unwrap();
    assert_eq!(seen["call_id"].as_u64(), Some(id));
    assert_eq!(seen["attempt"].as_u64(), Some(1), "the first dispatch");
    assert_eq!(seen["traceparent"].as_str(), Some(trace));
    let left = seen["time_left_ms"].as_u64().unwrap();
    assert!(left > 0 && left <= 5_000, "{left}");
    // A malformed traceparent is not forwarded; none is none.
    let seen: BTreeMap<String, switchboard_protocol::Value> = client
        .request("context")
        .traceparent("garbage")
        .call()
        .unwrap();
    assert!(seen["traceparent"].is_nil());
    let seen: BTreeMap<String, switchboard_protocol::Value> = client.call("context", ()).unwrap();
    assert!(seen["traceparent"].is_nil());
}

#[test]
fn a_call_made_from_inside_a_function_inherits_its_deadline_and_trace() {
    use switchboard_tests::{LocalBroker, LocalWorker};
    use switchboard_worker::{CallContext, Registry, WorkerConfig};
    let broker = LocalBroker::start(BrokerConfig::default());
    // `outer` calls the demo worker's `context` through a client, from its own context.
    let frontend = broker.frontend.clone();
    let mut registry = Registry::new();
    registry.register_fallible("outer", move || {
        let client = switchboard_client::Client::connect(&frontend).map_err(|e| e.to_string())?;
        let context = CallContext::current().ok_or("no call context")?;
        let outer_left = context.time_left().as_millis() as u64;
        let inner: BTreeMap<String, switchboard_protocol::Value> = context
            .request(&client, "context")
            .call()
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((outer_left, inner))
    });
    let _outer =
        LocalWorker::start_with(&broker.backend, "outer", registry, WorkerConfig::default());
    let _inner = LocalWorker::start(&broker.backend, "inner", WorkerConfig::default());
    broker.wait_for_workers("outer", 1);
    broker.wait_for_workers("context", 1);
    let client = broker.client(TIMEOUT);
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (outer_left, inner): (u64, BTreeMap<String, switchboard_protocol::Value>) = client
        .request("outer")
        .timeout(Duration::from_secs(3))
        .traceparent(trace)
        .call()
        .unwrap();
    assert_eq!(
        inner["traceparent"].as_str(),
        Some(trace),
        "the trace goes on"
    );
    let inner_left = inner["time_left_ms"].as_u64().unwrap();
    assert!(
        outer_left <= 3_000 && inner_left <= outer_left,
        "{inner_left} ms inside {outer_left} ms"
    );
}
