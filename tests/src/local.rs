//! Brokers and workers on threads of the test process: the libraries themselves, started
//! on ephemeral loopback ports, stopped through their stop flag and joined.

use std::thread::JoinHandle;

use switchboard_broker::{Broker, BrokerConfig, RouterStats, Shutdown};
use switchboard_cli::demo;
use switchboard_worker::{Registry, Worker, WorkerConfig};

use crate::BrokerEndpoints;

/// A broker running on a thread of this process. Dropping it stops it.
pub struct LocalBroker {
    endpoints: BrokerEndpoints,
    shutdown: Shutdown,
    thread: Option<JoinHandle<RouterStats>>,
}

impl std::ops::Deref for LocalBroker {
    type Target = BrokerEndpoints;
    fn deref(&self) -> &BrokerEndpoints {
        &self.endpoints
    }
}

impl LocalBroker {
    /// Starts a broker with `config`, its frontend and backend on ephemeral loopback ports.
    pub fn start(config: BrokerConfig) -> LocalBroker {
        let config = BrokerConfig {
            frontend: "tcp://127.0.0.1:*".into(),
            backend: "tcp://127.0.0.1:*".into(),
            ..config
        };
        let broker = Broker::bind(config).expect("the broker binds loopback ports");
        let (frontend, backend) = broker.endpoints();
        let metrics = broker
            .metrics_address()
            .map(|address| format!("http://{address}/metrics"));
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        let thread = std::thread::Builder::new()
            .name("test-broker".into())
            .spawn(move || broker.run(stop).expect("the broker runs"))
            .expect("spawn the broker thread");
        LocalBroker {
            endpoints: BrokerEndpoints {
                frontend,
                backend,
                metrics,
                curve: None,
            },
            shutdown,
            thread: Some(thread),
        }
    }

    /// Stops the broker (gracefully: see `Broker::run`) and returns its counters.
    pub fn stop(mut self) -> RouterStats {
        self.shutdown.trigger();
        let thread = self.thread.take().expect("running");
        thread.join().expect("the broker thread does not panic")
    }
}

impl Drop for LocalBroker {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.shutdown.trigger();
            let _ = thread.join();
        }
    }
}

/// A demo worker (the `worker` program's functions) on threads of this process.
/// Dropping it stops it.
pub struct LocalWorker {
    /// The name it answers to `whoami`.
    pub name: String,
    shutdown: Shutdown,
    thread: Option<JoinHandle<()>>,
}

impl LocalWorker {
    /// Starts a demo worker named `name` on `backend`, with `config` for the rest.
    pub fn start(backend: &str, name: &str, config: WorkerConfig) -> LocalWorker {
        LocalWorker::start_with(backend, name, demo::registry(name, None), config)
    }

    /// Starts a worker named `name` hosting `registry` on `backend`.
    pub fn start_with(
        backend: &str,
        name: &str,
        registry: Registry,
        config: WorkerConfig,
    ) -> LocalWorker {
        let config = WorkerConfig {
            broker: backend.to_owned(),
            name: name.to_owned(),
            ..config
        };
        let worker = Worker::new(registry, config);
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        let thread = std::thread::Builder::new()
            .name(format!("test-worker-{name}"))
            .spawn(move || worker.run(stop).expect("the worker runs"))
            .expect("spawn the worker thread");
        LocalWorker {
            name: name.to_owned(),
            shutdown,
            thread: Some(thread),
        }
    }

    /// Whether the worker's `run` returned (it left on its own).
    pub fn has_left(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the worker gracefully (it finishes the calls it holds) and waits for it.
    pub fn stop(mut self) {
        self.shutdown.trigger();
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the worker thread does not panic");
        }
    }
}

impl Drop for LocalWorker {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.shutdown.trigger();
            let _ = thread.join();
        }
    }
}

/// A local broker with `workers` local demo workers (`w0`, `w1`, …), all registered.
/// `worker` adjusts each worker's configuration (the defaults of the `worker` program).
pub fn local_cluster(
    workers: usize,
    broker: BrokerConfig,
    worker: impl Fn(&mut WorkerConfig),
) -> (LocalBroker, Vec<LocalWorker>) {
    let broker = LocalBroker::start(broker);
    let workers: Vec<_> = (0..workers)
        .map(|i| {
            let mut config = WorkerConfig::default();
            worker(&mut config);
            LocalWorker::start(&broker.backend, &format!("w{i}"), config)
        })
        .collect();
    broker.wait_for_workers("whoami", workers.len() as u32);
    (broker, workers)
}
