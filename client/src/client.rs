//! [`Client`]: call functions by name; safe to share across threads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use switchboard_protocol::limits::MAX_BATCH_CALLS;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde::de::DeserializeOwned;
use serde::Serialize;
use switchboard_protocol::client::{batch_request_frames, request_frames, CANCEL_FUNCTION};
use switchboard_protocol::codec::{
    decode_batch_reply, decode_reply, decode_timings, encode_args, encode_kwargs,
    encode_request_body, request_body_from_parts, BatchItem,
};
use switchboard_protocol::{CallHeader, CallTimings, CodecError, Frame};
use switchboard_transport::curve::ClientCurve;
use switchboard_transport::resolve::{self, Watcher};
use switchboard_transport::socket::SocketLimits;
use switchboard_transport::wake::{waker, Waker};

use crate::connection::{BrokerLink, Command, Connection, OpenLink, Routed};
use crate::error::{CallError, ConnectError};
use crate::session::{Counters, NewCall, ReplySender, RetryPolicy, Session};

/// What a request may add to its header besides its id and timeout.
#[derive(Debug, Default)]
pub(crate) struct HeaderExtras {
    /// The caller's W3C trace context.
    pub(crate) traceparent: Option<String>,
    /// Ask for the call's timings in the reply.
    pub(crate) timings: bool,
    /// Wait for a worker when none hosts the function.
    pub(crate) wait_for_ready: bool,
}

/// A call handed to the socket thread.
pub(crate) struct Queued {
    /// Its call id.
    pub(crate) id: u64,
    /// Its timeout.
    pub(crate) timeout: Duration,
    /// When its caller gives up: the deadline plus a short grace for the broker's answer.
    pub(crate) give_up_at: Instant,
}

/// The connection events the socket thread watches: drops, and how handshakes end.
const MONITORED_EVENTS: i32 = zmq::SocketEvent::DISCONNECTED as i32
    | zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32
    | zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL as i32
    | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as i32
    | zmq::SocketEvent::HANDSHAKE_FAILED_AUTH as i32;
/// How long past a call's deadline the client waits for the broker to report it.
const DEADLINE_GRACE: Duration = Duration::from_millis(250);

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The broker's frontend endpoint, e.g. `tcp://127.0.0.1:5555`; or several,
    /// comma-separated, for a tier of brokers (each call goes to one of them, see
    /// [`Client::connect`]); a host name that resolves to several addresses, when the
    /// client connects, stands for one broker each.
    pub endpoint: String,
    /// Deadline of calls that do not set one.
    pub default_timeout: Duration,
    /// Socket options (linger, message size, high-water marks).
    pub limits: SocketLimits,
    /// CURVE settings when the broker requires them.
    pub curve: Option<ClientCurve>,
    /// How often the connection to each broker is checked (a ZMTP PING); a broker that
    /// does not answer for three intervals — stopped, hung, or cut off by a silent
    /// partition — counts as lost, as if its connection had closed. Zero turns it off.
    pub heartbeat: Duration,
    /// How often a host name in `endpoint` is looked up again: brokers that appear get a
    /// connection, brokers that are gone get no new calls.
    pub resolve_interval: Duration,
}

impl Default for ClientConfig {
    /// A broker on this machine's default frontend port, calls of 30 s, no CURVE.
    fn default() -> Self {
        ClientConfig {
            endpoint: "tcp://127.0.0.1:5555".into(),
            default_timeout: Duration::from_secs(30),
            limits: SocketLimits::default(),
            curve: None,
            heartbeat: Duration::from_secs(1),
            resolve_interval: Duration::from_secs(5),
        }
    }
}

impl ClientConfig {
    /// The defaults, for a broker at `endpoint`.
    pub fn new(endpoint: &str) -> ClientConfig {
        ClientConfig {
            endpoint: endpoint.to_owned(),
            ..ClientConfig::default()
        }
    }

    /// The configuration with every value brought into its working range (a default
    /// timeout of at least 1 ms: 0 would fail every call before it is sent).
    /// [`Client::with_config`] applies it.
    pub fn validated(mut self) -> ClientConfig {
        self.default_timeout = self.default_timeout.max(Duration::from_millis(1));
        self
    }
}

struct Shared {
    commands: Option<Sender<Command>>,
    waker: Waker,
    next_id: AtomicU64,
    default_timeout: Duration,
    thread: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
    /// The client has several brokers now: calls ask for NOTICEs (a stopping broker is
    /// then avoided at once).
    several: Arc<AtomicBool>,
}

/// What a client's connection has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Replies that matched no waiting call (late, duplicated or unknown). Should stay 0
    /// for calls that are not resent.
    pub unmatched_replies: u64,
    /// Times the connection to the broker dropped.
    pub disconnects: u64,
    /// Idempotent calls sent again after a disconnect.
    pub resent_calls: u64,
    /// Calls a broker refused without running them (it was stopping, or had just
    /// restarted and knew no worker yet) and that were sent again (to another broker,
    /// when there is one).
    pub refused_calls: u64,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.commands.take();
        self.waker.wake();
        if let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = thread.join();
        }
    }
}

/// A connection to a broker. Cheap to clone; every clone shares one socket
/// thread that multiplexes calls by id, so many calls can be in flight at once.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

impl Client {
    /// Connects to a broker's frontend with default settings.
    ///
    /// `endpoint` may list several brokers, comma-separated
    /// (`tcp://b1:5555,tcp://b2:5555`): the client keeps a connection to each and sends
    /// each call to one of those that take calls, the one of two picked at random that
    /// holds fewer of this client's calls. A call that never reached a broker (its
    /// connection is down, or it is stopping and answered SHUTTING_DOWN) goes to another
    /// at once; when a connection drops, idempotent calls in flight there are sent again
    /// to another broker and the others fail with BROKER_LOST, as with one broker.
    pub fn connect(endpoint: &str) -> Result<Client, ConnectError> {
        Client::with_config(ClientConfig::new(endpoint))
    }

    /// Connects with explicit settings.
    pub fn with_config(config: ClientConfig) -> Result<Client, ConnectError> {
        let config = config.validated();
        let context = zmq::Context::new();
        // A host name with several addresses (a tier behind one name) is one broker each.
        let endpoints = resolve::expand(&config.endpoint);
        if endpoints.is_empty() {
            return Err(ConnectError::Socket {
                endpoint: config.endpoint.clone(),
                source: zmq::Error::EINVAL,
            });
        }
        let counters = Arc::new(Counters::default());
        // With several brokers, calls keep copies and ask for notices: the connection sets
        // both (`Brokers`) as brokers come and go.
        let several = Arc::new(AtomicBool::new(false));
        let policy = RetryPolicy::default();
        let links = endpoints
            .iter()
            .map(|endpoint| open_link(&context, &config, endpoint, policy, &counters))
            .collect::<Result<Vec<_>, _>>()?;
        let (waker, wake_rx) = waker()?;
        let watcher = Watcher::start(
            &config.endpoint,
            endpoints,
            config.resolve_interval,
            waker.clone(),
        )?;
        let follow = watcher.map(|watcher| {
            let (context, config, counters) =
                (context.clone(), config.clone(), Arc::clone(&counters));
            let open: OpenLink = Box::new(move |endpoint: &str| {
                open_link(&context, &config, endpoint, policy, &counters)
            });
            (watcher, open)
        });
        let (commands, inbox) = crossbeam_channel::unbounded();
        let connection = Connection::new(links, inbox, wake_rx, follow, Arc::clone(&several));
        let thread = std::thread::Builder::new()
            .name("switchboard-client-io".into())
            .spawn(move || {
                let _context = context;
                connection.run();
            })?;
        Ok(Client {
            shared: Arc::new(Shared {
                commands: Some(commands),
                waker,
                next_id: AtomicU64::new(1),
                default_timeout: config.default_timeout,
                thread: Mutex::new(Some(thread)),
                counters,
                several,
            }),
        })
    }

    /// Counters of this connection.
    pub fn stats(&self) -> ClientStats {
        let c = &self.shared.counters;
        ClientStats {
            unmatched_replies: c.unmatched_replies.load(Ordering::Relaxed),
            disconnects: c.disconnects.load(Ordering::Relaxed),
            resent_calls: c.resent_calls.load(Ordering::Relaxed),
            refused_calls: c.refused_calls.load(Ordering::Relaxed),
        }
    }

    /// Calls `function` with positional arguments (a tuple; `()` for none) and waits for the result.
    pub fn call<R: DeserializeOwned>(
        &self,
        function: &str,
        args: impl Serialize,
    ) -> Result<R, CallError> {
        self.request(function).args(args).call()
    }

    /// Calls `function` with keyword arguments (a struct or map) and waits for the result.
    pub fn call_kwargs<R: DeserializeOwned>(
        &self,
        function: &str,
        kwargs: impl Serialize,
    ) -> Result<R, CallError> {
        self.request(function).kwargs(kwargs).call()
    }

    /// Starts building a call with arguments, keyword arguments and a timeout.
    pub fn request(&self, function: &str) -> RequestBuilder<'_> {
        RequestBuilder {
            client: self,
            function: function.to_owned(),
            args: encode_args(&()),
            kwargs: encode_kwargs(&()),
            timeout: None,
            idempotent: false,
            traceparent: None,
            timings: false,
            wait_for_ready: false,
        }
    }

    /// Starts building a batch: many calls in one request, answered together, in order.
    pub fn batch(&self) -> BatchBuilder<'_> {
        BatchBuilder {
            client: self,
            calls: Ok(Vec::new()),
            timeout: None,
        }
    }

    /// Queues a request built by `frames` for the socket thread and returns its handle.
    fn start(
        &self,
        timeout: Option<Duration>,
        idempotent: bool,
        extras: HeaderExtras,
        frames: impl FnOnce(&CallHeader) -> Vec<Frame>,
    ) -> Result<PendingCall, CallError> {
        let (reply, outcome) = crossbeam_channel::bounded(1);
        let queued = self.submit(
            timeout,
            idempotent,
            extras,
            frames,
            ReplySender::Blocking(reply),
            None,
        )?;
        Ok(PendingCall {
            client: self.clone(),
            id: queued.id,
            outcome,
            timeout: queued.timeout,
            give_up_at: queued.give_up_at,
        })
    }

    /// Hands a request built by `frames` to the socket thread; its outcome goes to `reply`.
    pub(crate) fn submit(
        &self,
        timeout: Option<Duration>,
        idempotent: bool,
        extras: HeaderExtras,
        frames: impl FnOnce(&CallHeader) -> Vec<Frame>,
        reply: ReplySender,
        with_call: Option<u64>,
    ) -> Result<Queued, CallError> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let timeout = timeout.unwrap_or(self.shared.default_timeout);
        let header = CallHeader {
            id,
            timeout_ms: Some(timeout.as_millis().try_into().unwrap_or(u64::MAX)),
            traceparent: extras.traceparent,
            timings: extras.timings,
            wait_for_ready: extras.wait_for_ready,
            notices: self.shared.several.load(Ordering::Relaxed),
        };
        let give_up_at = Instant::now() + timeout + DEADLINE_GRACE;
        let command = Command::Call(Routed {
            call: NewCall {
                id,
                frames: frames(&header),
                reply,
                deadline: Instant::now() + timeout,
                forget_after: give_up_at,
                idempotent,
                timeout,
            },
            with_call,
        });
        let commands = self.shared.commands.as_ref().expect("set until drop");
        commands
            .send(command)
            .map_err(|_| CallError::Transport("the client thread has stopped".into()))?;
        self.shared.waker.wake();
        Ok(Queued {
            id,
            timeout,
            give_up_at,
        })
    }

    /// Asks the broker to cancel call `call_id` of this client, without waiting for the
    /// answer (PROTOCOL.md 4.10).
    pub(crate) fn send_cancel(&self, call_id: u64, timeout: Duration) -> Result<(), CallError> {
        let body = encode_request_body(&(call_id,), &()).map_err(CallError::Encode)?;
        let (reply, _ignored) = crossbeam_channel::bounded(1);
        self.submit(
            Some(timeout),
            false,
            HeaderExtras::default(),
            |header| request_frames(CANCEL_FUNCTION, header, body),
            ReplySender::Blocking(reply),
            Some(call_id),
        )?;
        Ok(())
    }
}

/// Opens the connection to one broker: a DEALER socket with a monitor, and its session.
fn open_link(
    context: &zmq::Context,
    config: &ClientConfig,
    endpoint: &str,
    policy: RetryPolicy,
    counters: &Arc<Counters>,
) -> Result<BrokerLink, ConnectError> {
    let fail = |source| ConnectError::Socket {
        endpoint: endpoint.to_owned(),
        source,
    };
    let socket = context.socket(zmq::DEALER).map_err(fail)?;
    config.limits.apply(&socket).map_err(fail)?;
    if !config.heartbeat.is_zero() {
        let interval = config.heartbeat.as_millis().min(i32::MAX as u128 / 3) as i32;
        socket.set_heartbeat_ivl(interval).map_err(fail)?;
        socket.set_heartbeat_timeout(3 * interval).map_err(fail)?;
    }
    // Not ZMQ_IMMEDIATE: with it, ZeroMQ drops the replies it has received but we have
    // not read yet when the connection closes (a broker that answers and exits). The
    // socket thread itself holds calls back until a handshake is reported.
    if let Some(curve) = &config.curve {
        curve.apply(&socket)?;
    }
    // Watch the connection so calls in flight do not wait for their deadline when it drops.
    static MONITORS: AtomicU64 = AtomicU64::new(0);
    let address = format!(
        "inproc://switchboard-client-monitor-{}",
        MONITORS.fetch_add(1, Ordering::Relaxed)
    );
    socket.monitor(&address, MONITORED_EVENTS).map_err(fail)?;
    let monitor = context.socket(zmq::PAIR).map_err(fail)?;
    monitor.set_linger(0).map_err(fail)?;
    monitor.connect(&address).map_err(fail)?;
    socket.connect(endpoint).map_err(fail)?;
    let session = Session::new(endpoint, policy, Arc::clone(counters), Instant::now());
    Ok(BrokerLink {
        socket,
        monitor,
        session,
    })
}

/// A call being built: see [`Client::request`].
pub struct RequestBuilder<'c> {
    pub(crate) client: &'c Client,
    pub(crate) function: String,
    args: Result<Vec<u8>, CodecError>,
    kwargs: Result<Vec<u8>, CodecError>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) idempotent: bool,
    pub(crate) traceparent: Option<String>,
    pub(crate) timings: bool,
    pub(crate) wait_for_ready: bool,
}

impl RequestBuilder<'_> {
    /// Positional arguments: a tuple, array or `Vec` (`(x,)` for one argument).
    pub fn args(mut self, args: impl Serialize) -> Self {
        self.args = encode_args(&args);
        self
    }

    /// Keyword arguments: a struct or map.
    pub fn kwargs(mut self, kwargs: impl Serialize) -> Self {
        self.kwargs = encode_kwargs(&kwargs);
        self
    }

    /// How long to wait for the result (default: the client's default timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the caller's W3C trace context (`00-<trace id>-<parent id>-<flags>`) with the
    /// call: the broker forwards it to the worker (a worker function reads it from its
    /// `CallContext`). A value that is not a valid traceparent is ignored by the broker.
    pub fn traceparent(mut self, traceparent: &str) -> Self {
        self.traceparent = Some(traceparent.to_owned());
        self
    }

    /// Asks the broker for the call's timings (time queued, time running, attempts, the
    /// worker that answered), read with [`PendingCall::wait_timed`].
    pub fn timings(mut self) -> Self {
        self.timings = true;
        self
    }

    /// When no connected worker hosts the function, the call waits in the broker's queue
    /// for one to register (until its deadline) instead of failing UNKNOWN_FUNCTION at
    /// once: for workers that are scaled from zero on queue depth.
    pub fn wait_for_ready(mut self) -> Self {
        self.wait_for_ready = true;
        self
    }

    /// Marks the call safe to send twice: if the connection to the broker drops
    /// (a broker restart), the client sends it again instead of failing it with
    /// BROKER_LOST. Only for calls whose effect does not double when repeated.
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// Sends the call without waiting: many calls can be in flight at once.
    pub fn send(self) -> Result<PendingCall, CallError> {
        let body = self.body()?;
        let function = self.function;
        let extras = HeaderExtras {
            traceparent: self.traceparent,
            timings: self.timings,
            wait_for_ready: self.wait_for_ready,
        };
        self.client
            .start(self.timeout, self.idempotent, extras, |header| {
                request_frames(&function, header, body)
            })
    }

    /// Sends the call and waits for its result.
    pub fn call<R: DeserializeOwned>(self) -> Result<R, CallError> {
        self.send()?.wait()
    }

    /// The encoded request body, or why the arguments did not encode.
    pub(crate) fn body(&self) -> Result<Vec<u8>, CallError> {
        let args = self
            .args
            .as_ref()
            .map_err(|e| CallError::Encode(e.clone()))?;
        let kwargs = self
            .kwargs
            .as_ref()
            .map_err(|e| CallError::Encode(e.clone()))?;
        Ok(request_body_from_parts(args, kwargs))
    }
}

/// A call in flight. [`PendingCall::wait`] blocks until its outcome.
pub struct PendingCall {
    client: Client,
    id: u64,
    outcome: Receiver<Result<Frame, CallError>>,
    timeout: Duration,
    give_up_at: Instant,
}

impl PendingCall {
    /// The call id carried in the header.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Waits for the result, at most until the call's deadline (plus a short grace).
    pub fn wait<R: DeserializeOwned>(self) -> Result<R, CallError> {
        let body = self.wait_body()?;
        decode_reply::<R>(&body)
            .map_err(CallError::Decode)?
            .map_err(CallError::from)
    }

    /// Cancels the call: the broker answers it `CANCELLED` if it still holds it (a queued
    /// call then never runs; a running one's worker is told, so the function can stop
    /// early). Returns at once; the outcome is dropped. Returns an error only when the
    /// cancel could not be sent (the client is closing).
    pub fn cancel(self) -> Result<(), CallError> {
        self.client.send_cancel(self.id, self.timeout)
    }

    /// Waits for the result and the call's timings (present when the request asked for
    /// them with [`RequestBuilder::timings`] and the broker measured them).
    pub fn wait_timed<R: DeserializeOwned>(self) -> Result<(R, Option<CallTimings>), CallError> {
        let body = self.wait_body()?;
        let timings = decode_timings(&body);
        let value = decode_reply::<R>(&body)
            .map_err(CallError::Decode)?
            .map_err(CallError::from)?;
        Ok((value, timings))
    }

    /// Waits for the raw reply body.
    fn wait_body(self) -> Result<Frame, CallError> {
        let left = self.give_up_at.saturating_duration_since(Instant::now());
        match self.outcome.recv_timeout(left) {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(error)) => Err(error),
            Err(RecvTimeoutError::Timeout) => {
                if let Some(commands) = &self.client.shared.commands {
                    let _ = commands.send(Command::Cancel(self.id));
                }
                Err(CallError::Timeout(self.timeout))
            }
            Err(RecvTimeoutError::Disconnected) => Err(CallError::Transport(
                "the client thread stopped before the reply".into(),
            )),
        }
    }
}

/// A batch being built: see [`Client::batch`].
pub struct BatchBuilder<'c> {
    client: &'c Client,
    calls: Result<Vec<(String, Vec<u8>)>, CodecError>,
    timeout: Option<Duration>,
}

impl BatchBuilder<'_> {
    /// Adds a call with positional arguments (a tuple; `()` for none).
    pub fn call(self, function: &str, args: impl Serialize) -> Self {
        self.push(function, encode_args(&args), encode_kwargs(&()))
    }

    /// Adds a call with keyword arguments (a struct or map).
    pub fn call_kwargs(self, function: &str, kwargs: impl Serialize) -> Self {
        self.push(function, encode_args(&()), encode_kwargs(&kwargs))
    }

    /// Adds a call with both positional and keyword arguments.
    pub fn call_with(self, function: &str, args: impl Serialize, kwargs: impl Serialize) -> Self {
        self.push(function, encode_args(&args), encode_kwargs(&kwargs))
    }

    /// How long every call of the batch may take (default: the client's default timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    fn push(
        mut self,
        function: &str,
        args: Result<Vec<u8>, CodecError>,
        kwargs: Result<Vec<u8>, CodecError>,
    ) -> Self {
        self.calls = self.calls.and_then(|mut calls| {
            calls.push((
                function.to_owned(),
                request_body_from_parts(&args?, &kwargs?),
            ));
            Ok(calls)
        });
        self
    }

    /// Sends the batch without waiting.
    pub fn send(self) -> Result<PendingBatch, CallError> {
        let calls = self.calls.map_err(CallError::Encode)?;
        if calls.is_empty() || calls.len() > MAX_BATCH_CALLS {
            return Err(CallError::Encode(CodecError::Rule(format!(
                "a batch carries 1 to {MAX_BATCH_CALLS} calls, not {}",
                calls.len()
            ))));
        }
        let call = self
            .client
            .start(self.timeout, false, HeaderExtras::default(), |header| {
                batch_request_frames(header, calls)
            })?;
        Ok(PendingBatch { call })
    }

    /// Sends the batch and waits for every call's outcome.
    pub fn wait(self) -> Result<Vec<BatchReply>, CallError> {
        self.send()?.wait()
    }
}

/// A batch in flight.
pub struct PendingBatch {
    call: PendingCall,
}

impl PendingBatch {
    /// Waits for the batch reply: one [`BatchReply`] per call, in order. `Err` only
    /// when the batch as a whole failed (rejected, timed out locally, transport).
    pub fn wait(self) -> Result<Vec<BatchReply>, CallError> {
        let body = self.call.wait_body()?;
        let items = decode_batch_reply(&body)
            .map_err(CallError::Decode)?
            .map_err(CallError::from)?;
        Ok(items.into_iter().map(|item| BatchReply { item }).collect())
    }
}

/// The outcome of one call of a batch.
#[derive(Debug, Clone)]
pub struct BatchReply {
    item: BatchItem,
}

impl BatchReply {
    /// This call's result, or why it failed.
    pub fn decode<R: DeserializeOwned>(&self) -> Result<R, CallError> {
        self.item
            .decode::<R>()
            .map_err(CallError::Decode)?
            .map_err(CallError::from)
    }
}
