//! The async client API against a real broker and worker: the calls and errors of the
//! blocking API, many concurrent calls from one task, deadlines without a runtime timer,
//! and cancellation by dropping a call.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::executor::block_on;
use futures::future::join_all;
use switchboard_broker::BrokerConfig;
use switchboard_client::{CallError, ErrorCode};
use switchboard_tests::local_cluster;

const TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn async_calls_return_what_blocking_calls_return() {
    let (broker, _workers) = local_cluster(1, BrokerConfig::default(), |_| {});
    let client = broker.client(TIMEOUT);
    block_on(async {
        assert_eq!(client.call_async::<i64>("add", (40, 2)).await.unwrap(), 42);
        assert_eq!(
            client
                .call_async::<String>("upper", ("shout",))
                .await
                .unwrap(),
            "SHOUT"
        );
        let mut kwargs = BTreeMap::new();
        kwargs.insert("name", "ada");
        let greeting: String = client
            .request("greet")
            .kwargs(&kwargs)
            .call_async()
            .await
            .unwrap();
        assert_eq!(greeting, "hello, ada!");
        let bytes = serde_bytes::ByteBuf::from(vec![1u8, 2, 3]);
        let echoed: serde_bytes::ByteBuf =
            client.call_async("echo", (bytes.clone(),)).await.unwrap();
        assert_eq!(echoed, bytes);
    });
}

#[test]
fn async_errors_are_the_same_typed_errors() {
    let (broker, _workers) = local_cluster(1, BrokerConfig::default(), |_| {});
    let client = broker.client(TIMEOUT);
    block_on(async {
        let error = client
            .call_async::<()>("fail", ("boom",))
            .await
            .unwrap_err();
        assert!(matches!(error, CallError::Function(_)), "{error:?}");
        let error = client.call_async::<i64>("nope", ()).await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::UnknownFunction));
        let error = client.call_async::<i64>("add", ("x", 1)).await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::BadArguments));
        let error = client
            .request("sleep_ms")
            .args((2_000,))
            .timeout(Duration::from_millis(100))
            .call_async::<u64>()
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::Timeout), "{error}");
    });
}

#[test]
fn ten_thousand_concurrent_calls_from_one_task() {
    let (broker, _workers) = local_cluster(2, BrokerConfig::default(), |_| {});
    let client = broker.client(Duration::from_secs(30));
    let results = block_on(async {
        let calls: Vec<_> = (0..10_000i64)
            .map(|i| {
                client
                    .request("add")
                    .args((i, 1))
                    .send_async::<i64>()
                    .unwrap()
            })
            .collect();
        join_all(calls).await
    });
    assert_eq!(results.len(), 10_000);
    for (i, result) in results.into_iter().enumerate() {
        assert_eq!(result.unwrap(), i as i64 + 1);
    }
    assert_eq!(client.stats().unmatched_replies, 0);
}

#[test]
fn an_async_call_that_is_never_answered_ends_when_its_caller_gives_up() {
    // A ROUTER that takes requests and never answers: no runtime timer is involved, the
    // client's session answers TIMEOUT itself when the caller's time is up.
    let context = zmq::Context::new();
    let silent = context.socket(zmq::ROUTER).unwrap();
    silent.set_linger(0).unwrap();
    silent.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = silent.get_last_endpoint().unwrap().unwrap();
    let client = switchboard_client::Client::connect(&endpoint).unwrap();
    let error = block_on(
        client
            .request("system.ping")
            .timeout(Duration::from_millis(200))
            .call_async::<String>(),
    )
    .unwrap_err();
    assert!(
        matches!(error, CallError::Timeout(t) if t == Duration::from_millis(200)),
        "{error:?}"
    );
    let request = silent
        .recv_multipart(zmq::DONTWAIT)
        .expect("the call was sent");
    assert_eq!(request[3], b"system.ping".to_vec());
}

#[test]
fn dropping_an_async_call_cancels_it_at_the_broker() {
    let (broker, _workers) = local_cluster(1, BrokerConfig::default(), |w| {
        w.threads = 1;
        w.prefetch = 0;
    });
    let client = broker.client(TIMEOUT);
    let long = client
        .request("work_ms")
        .args((20_000,))
        .send_async::<u64>()
        .unwrap();
    broker.wait_for("work_ms", "1 running", |f| f.running == 1);
    drop(long);
    // The worker stopped the work: a call needing the same executor is answered before
    // its own 3 s deadline.
    let next: u64 = block_on(
        client
            .request("sleep_ms")
            .args((1,))
            .timeout(Duration::from_secs(3))
            .call_async(),
    )
    .unwrap();
    assert_eq!(next, 1);
    let stats: std::collections::HashMap<String, switchboard_protocol::Value> =
        client.call("system.stats", ()).unwrap();
    assert_eq!(
        stats["broker_errors"]["CANCELLED"].as_u64(),
        Some(1),
        "{stats:?}"
    );
}
