//! Several brokers (the broker tier): workers that serve every broker at once.

use std::time::Duration;

use switchboard_broker::BrokerConfig;
use switchboard_protocol::WorkerListing;
use switchboard_tests::{LocalBroker, LocalWorker};
use switchboard_worker::WorkerConfig;

#[test]
fn a_worker_serves_every_broker_it_is_given_and_splits_its_capacity() {
    let first = LocalBroker::start(BrokerConfig::default());
    let second = LocalBroker::start(BrokerConfig::default());
    let both = format!("{}, {}", first.backend, second.backend);
    let worker = LocalWorker::start(
        &both,
        "shared",
        WorkerConfig {
            threads: 3,
            prefetch: 1,
            ..WorkerConfig::default()
        },
    );
    first.wait_for_workers("whoami", 1);
    second.wait_for_workers("whoami", 1);
    for broker in [&first, &second] {
        let client = broker.client(Duration::from_secs(5));
        let workers: Vec<WorkerListing> = client.call("system.workers", ()).unwrap();
        assert_eq!(workers.len(), 1);
        assert_eq!(
            (workers[0].name.as_str(), workers[0].capacity),
            ("shared", 2),
            "4 slots split over 2 brokers"
        );
        // Calls through either broker run on the one worker, in parallel.
        let calls: Vec<_> = (0..20)
            .map(|i| client.request("add").args((i, 1)).send().unwrap())
            .collect();
        let sums: Vec<i64> = calls.into_iter().map(|c| c.wait().unwrap()).collect();
        assert_eq!(sums, (0..20).map(|i| i + 1).collect::<Vec<_>>());
    }
    // One broker gone: the worker goes on serving the other.
    let second_client = second.client(Duration::from_secs(5));
    first.stop();
    for i in 0..10 {
        assert_eq!(second_client.call::<i64>("add", (i, 2)).unwrap(), i + 2);
    }
    // A stopped worker leaves every broker it still talks to, and returns.
    worker.stop();
    let workers: Vec<WorkerListing> = second_client.call("system.workers", ()).unwrap();
    assert!(workers.is_empty(), "{workers:?}");
}
