//! The worker's socket thread: a thin driver of one [`Link`] per broker, each over its own
//! DEALER socket; it runs quick (inline) calls itself and feeds the one executor pool the
//! others, and sends each reply back to the broker its call came from.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_protocol::codec::encode_error;
use switchboard_protocol::worker::{
    BrokerMessage, CallRecord, WorkerMessage, FLAG_REPORT_RUN_TIME,
};
use switchboard_protocol::{ErrorCode, Frame, ReadyInfo, RemoteError};
use switchboard_transport::resolve::{expand, Watcher, MAX_BROKERS};
use switchboard_transport::socket::{recv_frames, send_frames};
use switchboard_transport::wake::waker;
use switchboard_transport::Shutdown;
use tracing::{debug, info, warn};

use crate::config::WorkerConfig;
use crate::context::CancelToken;
use crate::credit::{self, Demand};
use crate::error::WorkerError;
use crate::executor::{execute, Executor, Job, Registration};
use crate::link::{Link, Next, Timing};
use crate::registry::Registry;

/// Largest request body an inline function runs on the socket thread; larger ones go
/// to the executors (decoding them would hold up heartbeats).
const INLINE_BODY_LIMIT: usize = 64 * 1024;

/// Longest poll wait, so a shutdown request is noticed promptly.
const MAX_POLL: Duration = Duration::from_millis(100);

/// A worker process's connections to its brokers.
pub struct Worker {
    registry: Arc<Registry>,
    config: WorkerConfig,
}

/// The conversation with one broker: its endpoint, its state machine, its socket, and
/// whether it has ended (`Some(out_of_grace)`).
struct Peer {
    endpoint: String,
    link: Link,
    socket: zmq::Socket,
    stopped: Option<bool>,
}

/// How long a retired socket may try to deliver its goodbye.
const RETIRE_LINGER: Duration = Duration::from_millis(200);

/// Closes the socket of a conversation that is over because the broker fell silent. It
/// says "gone now" first (DISCONNECT twice, 5.5): a broker that was only slow (paused,
/// partitioned) then forgets this registration at once instead of sending it calls until
/// its liveness runs out. The linger is short, so that an old READY still queued in the
/// socket cannot register a ghost with a broker that comes back later — and if it is
/// delivered, the goodbye right behind it undoes it.
fn retire(socket: zmq::Socket) {
    for _ in 0..2 {
        let _ = send_frames(
            &socket,
            WorkerMessage::Disconnect.into_frames(),
            zmq::DONTWAIT,
        );
    }
    let _ = socket.set_linger(RETIRE_LINGER.as_millis() as i32);
}

/// What the worker announces to each broker when it serves several: its capacity split
/// evenly (rounded up), so that together the brokers never send much more than the
/// executors can take (a call beyond is answered OVERLOADED by the worker at once).
#[derive(Debug, Clone, Copy)]
struct Share {
    capacity: u32,
    inline_capacity: u32,
}

impl Share {
    fn new(config: &WorkerConfig, brokers: usize) -> Share {
        let split = |total: usize| {
            let each = total.div_ceil(brokers.max(1));
            each.min(u32::MAX as usize) as u32
        };
        Share {
            capacity: split(config.threads.max(1) + config.prefetch).max(1),
            inline_capacity: split(config.inline_capacity),
        }
    }
}

impl Worker {
    /// A worker hosting `registry`, not yet connected (`config` is brought into its
    /// working range: see [`WorkerConfig::validated`]).
    pub fn new(registry: Registry, config: WorkerConfig) -> Worker {
        Worker {
            registry: Arc::new(registry),
            config: config.validated(),
        }
    }

    /// [`Worker::run`] until the process gets SIGTERM or SIGINT (as `docker stop` and
    /// Ctrl-C send), then leaves gracefully as the `worker` binary does.
    #[cfg(feature = "serve")]
    pub fn run_until_signal(self) -> Result<(), WorkerError> {
        let shutdown = switchboard_transport::process::shutdown_on_signals()?;
        self.run(shutdown)
    }

    /// Connects, registers and serves calls until `shutdown` is triggered; then
    /// leaves gracefully: tells the broker, finishes held calls (bounded), returns.
    ///
    /// In the child process of an isolated call ([`Registration::isolated`]) it runs that
    /// call and exits the process instead.
    ///
    /// [`Registration::isolated`]: crate::Registration::isolated
    pub fn run(self, shutdown: Shutdown) -> Result<(), WorkerError> {
        crate::isolation::serve_child_if_asked(&self.registry);
        if self.registry.functions().is_empty() {
            return Err(WorkerError::EmptyRegistry);
        }
        let invalid = self.registry.invalid_names();
        if !invalid.is_empty() {
            let list: Vec<String> = invalid
                .into_iter()
                .map(|(name, why)| format!("'{name}' ({why})"))
                .collect();
            return Err(WorkerError::InvalidNames(list.join(", ")));
        }
        let context = zmq::Context::new();
        let (wake, wake_rx) = waker()?;
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let threads = self.config.threads.max(1);
        // A programmatic stop wakes the poll at once (a signal is noticed within MAX_POLL).
        shutdown.wake_on_trigger(wake.clone());
        let wake_on_lookup = wake.clone();
        // Room for every call the brokers may send at once: inline calls can land here too
        // (a large body, or a function demoted for being slow).
        // Serving several brokers, the capacity moves between them (see `credit`): while a
        // move is under way the brokers together may send up to twice the slots, plus the
        // one slot each keeps; the queue has room for that, so no call is refused here.
        let slack = threads + self.config.prefetch + MAX_BROKERS;
        let executor = Executor::start(
            threads,
            self.config.prefetch + self.config.inline_capacity + slack,
            self.config.max_reply_bytes,
            done_tx,
            wake,
        )?;
        let timing = Timing {
            heartbeat: self.config.heartbeat,
            liveness: self.config.heartbeat_liveness,
            shutdown_grace: self.config.shutdown_grace,
        };
        let now = Instant::now();
        let list = self.config.brokers().join(",");
        let mut peers: Vec<Peer> = Vec::new();
        let found = expand(&list);
        self.follow_brokers(&context, &mut peers, found.clone(), timing, now)?;
        // A host name in the list: looked up again on a thread of its own.
        let watcher = Watcher::start(&list, found, self.config.resolve_interval, wake_on_lookup)?;
        loop {
            let now = Instant::now();
            if let Some(found) = watcher.as_ref().and_then(Watcher::latest) {
                if !shutdown.is_triggered() {
                    self.follow_brokers(&context, &mut peers, found, timing, now)?;
                }
            }
            for peer in peers.iter_mut().filter(|p| p.stopped.is_none()) {
                if shutdown.is_triggered() {
                    peer.link.begin_shutdown(now);
                }
                match peer.link.handle_timeout(now) {
                    Next::Continue => {}
                    Next::Reconnect => {
                        let old = std::mem::replace(
                            &mut peer.socket,
                            self.connect(&context, &peer.endpoint)?,
                        );
                        retire(old);
                        peer.link.connected(now);
                        // Its address may have changed (a restarted container): look soon.
                        if let Some(watcher) = &watcher {
                            watcher.look_again();
                        }
                    }
                    // Stopping, or a broker that left the list or asked this worker to
                    // leave: calls still held past the grace are abandoned at the end.
                    Next::Stop { out_of_grace } => peer.stopped = Some(out_of_grace),
                }
                self.transmit(&peer.socket, &mut peer.link);
            }
            // With a host name to follow, brokers may come back: only a stop ends the run.
            let all_stopped = peers.iter().all(|p| p.stopped.is_some());
            if all_stopped && (shutdown.is_triggered() || watcher.is_none()) {
                break;
            }
            let wait = peers
                .iter()
                .filter(|p| p.stopped.is_none())
                .map(|p| p.link.poll_timeout().saturating_duration_since(now))
                .min()
                .unwrap_or(MAX_POLL)
                .min(MAX_POLL);
            // A broker whose conversation ended is not watched: a message still arriving
            // there would wake every poll without ever being read.
            let mut items: Vec<zmq::PollItem<'_>> = peers
                .iter()
                .map(|p| match p.stopped {
                    None => p.socket.as_poll_item(zmq::POLLIN),
                    Some(_) => p.socket.as_poll_item(zmq::PollEvents::empty()),
                })
                .collect();
            items.push(wake_rx.poll_item());
            match zmq::poll(&mut items, wait.as_millis() as i64) {
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            let readable: Vec<bool> = items.iter().map(|i| i.is_readable()).collect();
            drop(items);
            if readable[peers.len()] {
                wake_rx.drain();
                for done in done_rx.try_iter() {
                    if let Some(peer) = peers.get_mut(done.link) {
                        peer.link.finished(done);
                    }
                }
            }
            for (index, peer) in peers.iter_mut().enumerate() {
                if readable[index] && peer.stopped.is_none() {
                    self.receive(index, peer, &executor)?;
                }
            }
            self.move_capacity(&mut peers);
            for peer in &mut peers {
                peer.link.flush();
                self.transmit(&peer.socket, &mut peer.link);
            }
        }
        wake_rx.drain();
        for done in done_rx.try_iter() {
            if let Some(peer) = peers.get_mut(done.link) {
                peer.link.finished(done);
            }
        }
        let mut abandoned = 0;
        for peer in &mut peers {
            peer.link.flush();
            self.transmit(&peer.socket, &mut peer.link);
            if peer.stopped == Some(true) {
                // Calls still waiting for an executor are not started; the ones running
                // are left to finish on their own (their replies go nowhere).
                abandoned += peer.link.held();
                peer.link.abandon();
                self.transmit(&peer.socket, &mut peer.link);
            }
        }
        if peers.iter().any(|p| p.stopped == Some(true)) {
            executor.detach();
            warn!(
                abandoned,
                "shutdown grace period over; left the calls still running"
            );
        } else {
            drop(executor);
            info!("worker stopped");
        }
        Ok(())
    }

    /// Splits the capacity among the brokers again when one of them reported its
    /// backlog (LOAD), and tells each broker whose share changed.
    fn move_capacity(&self, peers: &mut [Peer]) {
        let mut news = false;
        for peer in peers.iter_mut() {
            news |= peer.link.take_load_news();
        }
        if !news {
            return;
        }
        let serving = peers.iter().filter(|p| p.stopped.is_none()).count();
        let share = Share::new(&self.config, serving);
        let demands: Vec<Demand> = peers
            .iter()
            .map(|p| match p.stopped {
                None => p.link.demand(share.capacity),
                Some(_) => Demand::Reserved(p.link.held().min(u32::MAX as usize) as u32),
            })
            .collect();
        let total = (self.config.threads.max(1) + self.config.prefetch).min(u32::MAX as usize);
        for (peer, grant) in peers.iter_mut().zip(credit::split(total as u32, &demands)) {
            if let Some(capacity) = grant {
                peer.link.grant(capacity);
            }
        }
    }

    /// Follows the brokers a lookup `found`: a broker that appeared gets a conversation
    /// (in the slot of one that ended and holds no call, else a new one), and one that is
    /// gone is left as on a stop (DISCONNECT, its calls finished within the grace).
    fn follow_brokers(
        &self,
        context: &zmq::Context,
        peers: &mut Vec<Peer>,
        found: Vec<String>,
        timing: Timing,
        now: Instant,
    ) -> Result<(), WorkerError> {
        for peer in peers.iter_mut().filter(|p| p.stopped.is_none()) {
            if !found.contains(&peer.endpoint) && !peer.link.is_leaving() {
                info!(broker = %peer.endpoint, "broker no longer listed; leaving it");
                peer.link.begin_shutdown(now);
            }
        }
        let share = Share::new(&self.config, found.len());
        for endpoint in found {
            let served = peers
                .iter()
                .any(|p| p.stopped.is_none() && !p.link.is_leaving() && p.endpoint == endpoint);
            if served {
                continue;
            }
            let mut link = Link::new(timing, self.ready_info(share), Registration::default(), now);
            let socket = self.connect(context, &endpoint)?;
            link.connected(now);
            let peer = Peer {
                endpoint,
                link,
                socket,
                stopped: None,
            };
            // A slot whose calls are all answered: no executor reply can still name it.
            match peers
                .iter_mut()
                .find(|p| p.stopped.is_some() && p.link.held() == 0)
            {
                Some(slot) => *slot = peer,
                None => peers.push(peer),
            }
        }
        Ok(())
    }

    /// Opens a fresh DEALER socket to the broker at `endpoint`.
    fn connect(&self, context: &zmq::Context, endpoint: &str) -> Result<zmq::Socket, WorkerError> {
        let socket = context.socket(zmq::DEALER)?;
        self.config.limits.apply(&socket)?;
        if let Some(curve) = &self.config.curve {
            curve.apply(&socket)?;
        }
        socket.connect(endpoint)?;
        info!(broker = %endpoint, functions = self.registry.functions().len(), "registering with broker");
        Ok(socket)
    }

    fn ready_info(&self, share: Share) -> ReadyInfo {
        ReadyInfo {
            capacity: share.capacity,
            inline_capacity: share.inline_capacity,
            heartbeat_ms: self.config.heartbeat.as_millis() as u64,
            functions: self.registry.functions(),
            name: self.config.name.clone(),
            cancel: true,
            drain: true,
            context: true,
            caller: true,
            // Always: a host name may come to stand for several brokers.
            credit: true,
        }
    }

    /// Sends every message the link has ready. A message the socket cannot take now is
    /// dropped (the broker's liveness checks and the callers' deadlines cover it).
    fn transmit(&self, socket: &zmq::Socket, link: &mut Link) {
        while let Some(message) = link.poll_transmit() {
            if let Err(e) = send_frames(socket, message.into_frames(), zmq::DONTWAIT) {
                warn!(error = %e, "cannot send to broker; message dropped");
            }
        }
    }

    /// Handles every message waiting on the socket, running or handing off the calls.
    fn receive(
        &self,
        index: usize,
        peer: &mut Peer,
        executor: &Executor,
    ) -> Result<(), WorkerError> {
        let Peer { socket, link, .. } = peer;
        loop {
            let frames = match recv_frames(socket, zmq::DONTWAIT) {
                Ok(frames) => frames,
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let now = Instant::now();
            match BrokerMessage::parse(frames) {
                Ok(message) => {
                    if let Some(mut calls) = link.handle_message(message, now) {
                        for (record, body) in calls.calls() {
                            self.start(index, link, executor, record, body, now);
                        }
                    }
                }
                Err(error) => {
                    let error = switchboard_protocol::error::with_causes(&error);
                    warn!(%error, "dropping malformed message from broker")
                }
            }
        }
    }

    /// Starts one call: runs it here if it is inline, else hands it to an executor.
    /// Returns 1 if an executor took it (a reply will come back through `done`).
    fn start(
        &self,
        index: usize,
        link: &mut Link,
        executor: &Executor,
        record: CallRecord<'_>,
        body: Frame,
        now: Instant,
    ) {
        let CallRecord {
            ticket,
            call_id,
            time_left_ms,
            function,
            attempt,
            traceparent,
            caller,
            flags,
        } = record;
        debug!(call_id, %function, "request");
        let Some(found) = self.registry.get(function) else {
            let error = RemoteError::new(
                ErrorCode::UnknownFunction,
                format!("this worker does not host '{function}'"),
            );
            link.reply(ticket, encode_error(&error));
            return;
        };
        let cancel = CancelToken::default();
        let job = Job {
            ticket,
            call_id,
            function: found.clone(),
            body,
            deadline: now + Duration::from_millis(time_left_ms.into()),
            registration: link.registration(),
            current: link.registration_handle(),
            link: index,
            cancel: cancel.clone(),
            attempt: u32::from(attempt),
            traceparent: (!traceparent.is_empty()).then(|| traceparent.to_owned()),
            caller: (!caller.is_empty()).then(|| caller.to_owned()),
            report_run_time: flags & FLAG_REPORT_RUN_TIME != 0,
        };
        if found.is_inline() && job.body.len() <= INLINE_BODY_LIMIT {
            // Quick functions run right here: no hand-off to an executor. A large body
            // (slow to decode) goes to the executors instead, and a function whose call
            // held this thread too long is sent there from then on: heartbeats must not
            // wait for calls.
            let started = Instant::now();
            let reply = execute(&job, self.config.max_reply_bytes);
            let took = started.elapsed();
            if took > self.config.heartbeat / 4 {
                warn!(%function, ?took, "an inline call held the socket thread too long; running this function on the executor threads from now on");
                found.demote();
            }
            link.reply(ticket, reply);
            return;
        }
        match executor.submit(job) {
            Ok(()) => link.handed_off(ticket, cancel),
            Err(ticket) => {
                let error = RemoteError::new(
                    ErrorCode::Overloaded,
                    "every executor thread of this worker is busy",
                );
                link.reply(ticket, encode_error(&error));
            }
        }
    }
}
