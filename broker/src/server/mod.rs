//! The broker's sockets and poll loop: receive, hand to the router, send what it decides.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};

use crate::auth::{self, AuthCounters, Authenticator, BACKEND_DOMAIN, FRONTEND_DOMAIN};
use crate::background::Background;
use crate::backlog::Backlogs;
use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::handshakes;
use crate::http::{self, MetricsRequest};
use crate::memory;
use crate::metrics::{Metrics, Socket};
use crate::route::PipelinedReplies;
use crate::router::{Action, Router, WorkerId};
use crate::view::{RouterStats, View};
use switchboard_protocol::client::{parse_request, reject_oversized};
use switchboard_protocol::worker::{RequestMessage, WorkerMessage};
use switchboard_protocol::{Frame, ProtocolError};
use switchboard_transport::curve::apply_server;
use switchboard_transport::socket::{recv_frames_bounded, Oversized, Received};
use switchboard_transport::wake::{waker, WakeReceiver};
use switchboard_transport::Shutdown;
use tracing::{debug, info, warn};

mod send;

/// Debug builds check the router's invariants after each round while it holds at most
/// this many calls (the check is linear in what it holds).
const INVARIANT_CHECK_MAX_CALLS: usize = 2_048;
/// Messages taken from one socket before the loop looks at the other.
const READ_BURST: usize = 256;
/// Extra rounds of draining both sockets, without polling, while messages keep coming.
const EAGER_ROUNDS: usize = 4;
/// Longest poll wait, so a shutdown request is noticed promptly.
const MAX_POLL: Duration = Duration::from_millis(100);
/// How often replies waiting for slow clients are offered to the socket again.
const BACKLOG_RETRY: Duration = Duration::from_millis(5);
/// A stopping broker closes its sockets once no request has arrived for this long.
pub(crate) const CLOSE_QUIET: Duration = Duration::from_millis(100);
/// A stopping broker closes its sockets after answering requests this long at most,
/// even if they keep coming.
pub(crate) const CLOSE_LIMIT: Duration = Duration::from_secs(1);

/// Where a stopping broker is.
#[derive(Debug, Clone, Copy)]
enum Stopping {
    /// Refusing new calls, finishing accepted ones until `until`.
    Grace { until: Instant },
    /// No call left: answering late requests until the frontend is quiet.
    Closing {
        quiet_until: Instant,
        until: Instant,
    },
}

/// A bound broker: two ROUTER sockets and the router that decides for them.
pub struct Broker {
    _auth: Option<Authenticator>,
    /// Socket monitors counting refused handshakes (CURVE only).
    _watchers: Vec<Background>,
    _context: zmq::Context,
    frontend: zmq::Socket,
    backend: zmq::Socket,
    router: Router,
    outbox: Vec<Action>,
    /// The outbox's other half: the vector the last flush emptied.
    spare_outbox: Vec<Action>,
    /// Calls decided but not sent yet, gathered per worker so that many calls
    /// travel in one REQUEST. Sent whenever the loop has nothing more to read.
    requests: Vec<(WorkerId, RequestMessage)>,
    /// Replies to callers that pipeline, gathered per caller the same way.
    replies: Vec<PipelinedReplies>,
    /// Replies waiting for clients that are not reading fast enough.
    backlogs: Backlogs,
    /// Frames in the last message from each socket (frontend, backend): the size
    /// the next one is likely to have.
    expected_frames: (usize, usize),
    config: BrokerConfig,
    /// What `/metrics` shows beyond the router's own counters: bytes per socket, and
    /// outcomes and latencies of the calls the router reports ended.
    metrics: Metrics,
    metrics_endpoint: Option<MetricsEndpoint>,
    /// Who sent a client message, under CURVE.
    callers: Callers,
}

/// The identities of CURVE clients, shared by their calls: `curve:<public key>`, one
/// allocation per key rather than one per call.
#[derive(Default)]
struct Callers(HashMap<String, Arc<str>>);

impl Callers {
    /// At most this many keys are remembered (the allow-list bounds them anyway).
    const MAX: usize = 4096;

    /// The identity of the peer that sent `frames` (ZAP admitted its key: every frame
    /// after the routing identity carries it as `User-Id`).
    fn identify(&mut self, frames: &mut [Frame]) -> Option<Arc<str>> {
        let key = frames.get_mut(1)?.gets("User-Id")?;
        if let Some(known) = self.0.get(key) {
            return Some(Arc::clone(known));
        }
        if self.0.len() >= Self::MAX {
            self.0.clear();
        }
        let identity: Arc<str> = Arc::from(format!("curve:{key}"));
        self.0.insert(key.to_owned(), Arc::clone(&identity));
        Some(identity)
    }
}

/// The HTTP endpoint's thread and the channel it asks for metrics on.
struct MetricsEndpoint {
    address: SocketAddr,
    requests: Receiver<MetricsRequest>,
    wake: WakeReceiver,
    _thread: Background,
}

fn start_metrics(address: &str) -> Result<MetricsEndpoint, BrokerError> {
    let fail = |source| BrokerError::Metrics {
        address: address.to_owned(),
        source,
    };
    let (waker, wake) = waker().map_err(fail)?;
    let (sender, requests) = bounded(16);
    let (bound, thread) = http::serve(address, sender, waker).map_err(fail)?;
    Ok(MetricsEndpoint {
        address: bound,
        requests,
        wake,
        _thread: thread,
    })
}

fn router_socket(
    context: &zmq::Context,
    config: &BrokerConfig,
    name: &'static str,
    endpoint: &str,
) -> Result<zmq::Socket, BrokerError> {
    let curve_failed = |source| BrokerError::Curve {
        socket: name,
        source,
    };
    let fail = |source| BrokerError::Bind {
        socket: name,
        endpoint: endpoint.to_owned(),
        source,
    };
    let socket = context.socket(zmq::ROUTER).map_err(fail)?;
    config.limits.apply(&socket).map_err(fail)?;
    if name == FRONTEND_DOMAIN {
        // A short queue per client in libzmq: beyond it, replies wait in the broker's
        // byte-counted backlog (see `backlog`).
        socket.set_sndhwm(config.client_send_hwm).map_err(fail)?;
    }
    socket.set_router_mandatory(true).map_err(fail)?;
    if let Some(security) = &config.security {
        apply_server(&socket, &security.keys, name).map_err(curve_failed)?;
    }
    socket.bind(endpoint).map_err(fail)?;
    Ok(socket)
}

impl Broker {
    /// Creates and binds both sockets.
    pub fn bind(config: BrokerConfig) -> Result<Broker, BrokerError> {
        let config = config.validated();
        // Before any socket: the ROUTERs' generated peer ids must not be guessable.
        crate::libzmq_seed::seed_routing_ids();
        let context = zmq::Context::new();
        let counters = Arc::new(AuthCounters::default());
        // The ZAP handler must exist before any CURVE socket can take a handshake.
        let auth = match &config.security {
            Some(security) => Some(auth::start(&context, security, Arc::clone(&counters))?),
            None => None,
        };
        let frontend = router_socket(&context, &config, FRONTEND_DOMAIN, &config.frontend)?;
        let backend = router_socket(&context, &config, BACKEND_DOMAIN, &config.backend)?;
        // With CURVE, handshakes refused before ZAP is asked are counted and logged too.
        let watchers = match &config.security {
            Some(_) => vec![
                handshakes::watch(
                    &context,
                    &frontend,
                    FRONTEND_DOMAIN,
                    Arc::clone(&counters.frontend),
                )?,
                handshakes::watch(
                    &context,
                    &backend,
                    BACKEND_DOMAIN,
                    Arc::clone(&counters.backend),
                )?,
            ],
            None => Vec::new(),
        };
        let metrics_endpoint = match &config.metrics {
            Some(address) => Some(start_metrics(address)?),
            None => None,
        };
        let mut router = Router::new(config.router.clone());
        router.set_auth_counters(counters);
        Ok(Broker {
            _auth: auth,
            _watchers: watchers,
            _context: context,
            frontend,
            backend,
            router,
            outbox: Vec::with_capacity(READ_BURST),
            spare_outbox: Vec::with_capacity(READ_BURST),
            requests: Vec::new(),
            replies: Vec::new(),
            backlogs: Backlogs::new(config.client_backlog_bytes, config.backlog_bytes),
            expected_frames: (8, 8),
            config,
            metrics: Metrics::default(),
            metrics_endpoint,
            callers: Callers::default(),
        })
    }

    /// The bound address of the `/metrics` endpoint, if one was asked for.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_endpoint.as_ref().map(|m| m.address)
    }

    /// The endpoints actually bound (with real ports when `*` or `0` was asked for).
    pub fn endpoints(&self) -> (String, String) {
        let endpoint = |s: &zmq::Socket| {
            s.get_last_endpoint()
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default()
        };
        (endpoint(&self.frontend), endpoint(&self.backend))
    }

    /// Runs until `shutdown` is triggered, then stops in two steps and returns its counters.
    ///
    /// 1. Grace: new calls are answered SHUTTING_DOWN while accepted calls finish, until
    ///    none is left or `shutdown_grace` is over (then the rest is abandoned: calls
    ///    never sent get SHUTTING_DOWN, calls a worker holds WORKER_LOST).
    /// 2. Closing: requests still arriving are read and answered until the frontend has
    ///    been quiet for 100 ms (at most 1 s), so that a request the
    ///    broker's sockets took in its last moments is answered too; then the sockets close.
    pub fn run(mut self, shutdown: Shutdown) -> Result<RouterStats, BrokerError> {
        let (frontend, backend) = self.endpoints();
        info!(%frontend, %backend, "broker listening");
        let mut stopping: Option<Stopping> = None;
        // A programmatic stop wakes the poll at once (a signal is noticed within MAX_POLL).
        let (stop_waker, stop_wake) = waker().map_err(|source| BrokerError::Thread {
            name: "stop waker",
            source,
        })?;
        shutdown.wake_on_trigger(stop_waker);
        // Largest number of calls held since memory was last given back.
        let mut high_water = 0usize;
        loop {
            let now = Instant::now();
            if shutdown.is_triggered() && stopping.is_none() {
                info!(
                    in_progress = self.router.calls_in_progress(),
                    "shutting down"
                );
                self.router.begin_shutdown(now, &mut self.outbox);
                stopping = Some(Stopping::Grace {
                    until: now + self.config.shutdown_grace,
                });
            }
            match stopping {
                Some(Stopping::Grace { until })
                    if self.router.calls_in_progress() == 0 || now >= until =>
                {
                    let abandoned = self.router.calls_in_progress();
                    if abandoned > 0 {
                        warn!(abandoned, "shutdown grace period over");
                        self.router.abandon_all(now, &mut self.outbox);
                        self.flush_all(now);
                    }
                    stopping = Some(Stopping::Closing {
                        quiet_until: now + CLOSE_QUIET,
                        until: now + CLOSE_LIMIT,
                    });
                }
                // Quiet, and every slow client's replies handed to libzmq (or out of time).
                Some(Stopping::Closing { quiet_until, until })
                    if (now >= quiet_until && self.backlogs.is_empty()) || now >= until =>
                {
                    break;
                }
                _ => {}
            }
            let mut wait = self
                .router
                .next_wakeup()
                .map_or(MAX_POLL, |at| at.saturating_duration_since(now))
                .min(MAX_POLL);
            if let Some(Stopping::Closing { quiet_until, .. }) = stopping {
                wait = wait.min(quiet_until.saturating_duration_since(now));
            }
            if !self.backlogs.is_empty() {
                // libzmq does not say when a slow client's queue drains: look again soon.
                wait = wait.min(BACKLOG_RETRY);
            }
            let mut items = [
                self.frontend.as_poll_item(zmq::POLLIN),
                self.backend.as_poll_item(zmq::POLLIN),
                match &self.metrics_endpoint {
                    Some(metrics) => metrics.wake.poll_item(),
                    None => zmq::PollItem::from_fd(-1, zmq::POLLIN),
                },
                stop_wake.poll_item(),
            ];
            match zmq::poll(&mut items, wait.as_millis() as i64) {
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            let (front_ready, back_ready) = (items[0].is_readable(), items[1].is_readable());
            let (metrics_asked, stop_asked) = (items[2].is_readable(), items[3].is_readable());
            if metrics_asked {
                self.serve_metrics();
            }
            if stop_asked {
                stop_wake.drain();
            }
            let mut received = 0;
            let mut from_clients = 0;
            if back_ready {
                received += self.drain_backend()?;
            }
            if front_ready {
                from_clients += self.drain_frontend()?;
            }
            received += from_clients;
            // Under load, more messages usually arrive while a burst is handled: take
            // them before paying for another poll (and its wake-up).
            let mut rounds = 0;
            while received > 0 && rounds < EAGER_ROUNDS {
                let clients = self.drain_frontend()?;
                received = self.drain_backend()? + clients;
                from_clients += clients;
                rounds += 1;
            }
            let now = Instant::now();
            if let Some(Stopping::Closing { quiet_until, .. }) = &mut stopping {
                if from_clients > 0 {
                    *quiet_until = now + CLOSE_QUIET;
                }
            }
            self.router.tick(now, &mut self.outbox);
            self.flush_all(now);
            let held = self.router.calls_in_progress();
            // Debug builds (the test suite's broker) check the router after every round,
            // while the check stays cheap.
            if cfg!(debug_assertions) && held <= INVARIANT_CHECK_MAX_CALLS {
                self.router.check_invariants();
            }
            high_water = high_water.max(held);
            if high_water >= 10_000 && held <= high_water / 16 {
                debug!(high_water, held, "flood drained; returning memory");
                memory::trim_heap();
                high_water = held;
            }
        }
        // A last read right before the sockets close (bounded: a client may never stop).
        for _ in 0..EAGER_ROUNDS {
            if self.drain_frontend()? < READ_BURST {
                break;
            }
        }
        self.flush_all(Instant::now());
        let unsent = self.backlogs.clear();
        if unsent > 0 {
            warn!(
                replies = unsent,
                "closing with replies a slow client never took"
            );
            self.router.replies_dropped(unsent);
        }
        let stats = self.router.stats().clone();
        info!(
            requests = stats.requests,
            answers = stats.answers,
            calls_accepted = stats.calls_accepted,
            calls_completed = stats.calls_completed,
            late_replies = stats.late_replies,
            workers_lost = stats.workers_lost,
            retries = stats.retries,
            dropped_replies = stats.dropped_replies,
            "broker stopped"
        );
        Ok(stats)
    }

    /// Answers every pending `/metrics` request with the current text.
    fn serve_metrics(&mut self) {
        let Some(endpoint) = &self.metrics_endpoint else {
            return;
        };
        endpoint.wake.drain();
        for ended in self.router.take_ended() {
            self.metrics.call_ended(&ended);
        }
        while let Ok(reply) = endpoint.requests.try_recv() {
            let _ = reply.try_send(self.metrics.render(&self.router));
        }
    }

    /// Takes one message from a socket if one is waiting, within the size limits, and
    /// counts its bytes. `None` when nothing is waiting.
    fn receive(
        &mut self,
        which: Socket,
    ) -> Result<Option<Result<Vec<Frame>, Oversized>>, BrokerError> {
        let (socket, expected) = match which {
            Socket::Frontend => (&self.frontend, &mut self.expected_frames.0),
            Socket::Backend => (&self.backend, &mut self.expected_frames.1),
        };
        let limits = &self.config.limits;
        let received = match recv_frames_bounded(
            socket,
            zmq::DONTWAIT,
            limits.max_frames,
            limits.max_total_bytes,
            *expected,
        ) {
            Ok(received) => received,
            Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let (received, size) = match received {
            Ok(Received { frames, bytes }) => {
                *expected = frames.len();
                (Ok(frames), bytes)
            }
            Err(oversized) => {
                let bytes = oversized.bytes;
                (Err(oversized), bytes)
            }
        };
        self.metrics.received(which, size);
        Ok(Some(received))
    }

    /// Handles up to a burst of client messages; returns how many there were.
    fn drain_frontend(&mut self) -> Result<usize, BrokerError> {
        for count in 0..READ_BURST {
            let Some(received) = self.receive(Socket::Frontend)? else {
                self.flush_all(Instant::now());
                return Ok(count);
            };
            let now = Instant::now();
            let mut received = received;
            let caller = match (&self.config.security, &mut received) {
                (Some(_), Ok(frames)) => self.callers.identify(frames),
                _ => None,
            };
            match received.map(parse_request) {
                Ok(Ok(incoming)) => self.router.submit(incoming, caller, now, &mut self.outbox),
                Ok(Err(rejected)) => self.router.reject(*rejected, &mut self.outbox),
                Err(oversized) => self.router.reject(
                    reject_oversized(oversized.head, oversized.frames, oversized.bytes),
                    &mut self.outbox,
                ),
            }
            self.flush(now);
        }
        self.flush_all(Instant::now());
        Ok(READ_BURST)
    }

    /// Handles up to a burst of worker messages; returns how many there were.
    fn drain_backend(&mut self) -> Result<usize, BrokerError> {
        for count in 0..READ_BURST {
            let Some(received) = self.receive(Socket::Backend)? else {
                self.flush_all(Instant::now());
                return Ok(count);
            };
            let now = Instant::now();
            let frames = match received {
                Ok(frames) => frames,
                Err(Oversized {
                    head,
                    frames,
                    bytes,
                }) => {
                    let worker = head.first().map(|f| f.to_vec()).unwrap_or_default();
                    let error = ProtocolError::TooLarge { frames, bytes };
                    self.router.worker_malformed(&worker, &error);
                    continue;
                }
            };
            let mut frames = frames;
            // Under CURVE every frame after the identity carries the key ZAP admitted.
            let key = match (&self.config.security, frames.get_mut(1)) {
                (Some(_), Some(control)) => control.gets("User-Id").map(str::to_owned),
                _ => None,
            };
            let mut frames = frames.into_iter();
            let identity: WorkerId = match frames.next() {
                Some(frame) => Arc::from(&frame[..]),
                None => Arc::from(&[][..]),
            };
            match WorkerMessage::parse(frames) {
                Ok(message) => {
                    let is_ready = matches!(message, WorkerMessage::Ready(_));
                    let admitted = key.as_deref().is_none_or(|key| {
                        self.router.authenticate_worker(
                            &identity,
                            key,
                            is_ready,
                            now,
                            &mut self.outbox,
                        )
                    });
                    if admitted {
                        let bind = key.filter(|_| is_ready).map(|k| (identity.clone(), k));
                        self.router
                            .worker_message(identity, message, now, &mut self.outbox);
                        if let Some((identity, key)) = bind {
                            self.router.bind_worker_key(&identity, &key);
                        }
                    }
                }
                Err(error) => self.router.worker_malformed(&identity, &error),
            }
            self.flush(now);
        }
        self.flush_all(Instant::now());
        Ok(READ_BURST)
    }
}
