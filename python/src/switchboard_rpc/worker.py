"""The worker: serves a registry's functions to a broker.

One socket thread talks to the broker — READY, heartbeats both ways, REQUESTs in, REPLYs
out, CANCEL, DRAIN, reconnecting when the broker falls silent — while calls run
elsewhere: plain functions on a thread pool, `async def` functions on an event loop
thread, `inline=True` functions right on the socket thread. A long call never delays a
heartbeat. A bad call never stops the worker: every outcome is a reply.

    worker = Worker("tcp://127.0.0.1:5556", name="pricing-1", threads=8)

    @worker.function
    def add(a: int, b: int) -> int:
        "Adds two integers."
        return a + b

    worker.run()   # until SIGTERM/SIGINT: leaves gracefully, finishing its calls
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import logging
import os
import signal
import threading
import time
from typing import Any, Deque, Dict, List, Optional, Tuple

import msgpack
import zmq

from . import _wire
from . import curve as _curve
from .client import RESOLVE_INTERVAL, Follower
from .errors import RemoteError
from .registry import Function, Registry

log = logging.getLogger("switchboard_rpc.worker")

DEFAULT_BROKER = "tcp://127.0.0.1:5556"


class CallContext:
    """What a running function can learn about its call (`current_call()`)."""

    __slots__ = ("function", "call_id", "attempt", "traceparent", "deadline", "worker", "caller",
                 "_cancelled")

    def __init__(self, function: str, call_id: int, attempt: int, traceparent: Optional[str],
                 deadline: float, worker: str = "", caller: Optional[str] = None) -> None:
        self.function = function
        #: Who called, as the broker authenticated it (`curve:<public key>`), or None.
        self.caller = caller
        #: The name of the worker running the call.
        self.worker = worker
        self.call_id = call_id
        self.attempt = attempt
        self.traceparent = traceparent
        #: The call's deadline on this machine's `time.monotonic()` clock.
        self.deadline = deadline
        self._cancelled = threading.Event()

    def time_left(self) -> float:
        """Seconds before the caller stops waiting (0 when past)."""
        return max(0.0, self.deadline - time.monotonic())

    def cancelled(self) -> bool:
        """True once nobody waits for the result (deadline passed, caller cancelled, or
        the other copy of a hedged call answered): stop early if you can."""
        return self._cancelled.is_set()

    def wait_cancelled(self, timeout: Optional[float] = None) -> bool:
        """Sleeps until the call is cancelled or `timeout` passes; True if cancelled."""
        return self._cancelled.wait(timeout)


_current: contextvars.ContextVar[Optional[CallContext]] = contextvars.ContextVar(
    "switchboard_call", default=None)


def current_call() -> Optional[CallContext]:
    """The context of the call the current function runs for (None outside a call)."""
    return _current.get()


def _send(sock: zmq.Socket, frames: List[bytes]) -> None:
    """Sends without waiting: a message the socket cannot take now is dropped and logged, as
    the Rust worker does (the broker's liveness checks and the callers' deadlines cover it);
    the socket thread never blocks, so heartbeats and replies keep flowing."""
    try:
        sock.send_multipart(frames, zmq.NOBLOCK)
    except zmq.Again:
        log.warning("cannot send to the broker now; message dropped")


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not an integer") from None


def default_name() -> str:
    """`$SWITCHBOARD_WORKER_NAME`, else `$HOSTNAME` (a container's or pod's name), else
    `worker-<pid>`, as the Rust worker."""
    return (os.environ.get("SWITCHBOARD_WORKER_NAME") or os.environ.get("HOSTNAME")
            or f"worker-{os.getpid()}")


class _Held:
    """A call the worker holds until it replies."""

    __slots__ = ("context", "task")

    def __init__(self, context: CallContext) -> None:
        self.context = context
        self.task: Optional[concurrent.futures.Future] = None


class Worker:
    """Serves functions to the broker at `broker` (its backend endpoint), or to every broker
    of a comma-separated list (`tcp://b1:5556,tcp://b2:5556`): one connection per broker,
    the capacity split evenly among them, each reply back to the broker its call came from.

    Defaults follow the Rust worker and its `SWITCHBOARD_*` variables: `threads` (4) run
    plain functions and `prefetch` (16) more calls may wait for them; `inline_capacity`
    (1024) calls of inline functions on top; heartbeats every `heartbeat_ms` (1000), the
    broker is declared gone after `liveness` (3) silent intervals; a stop finishes running
    calls for up to `shutdown_grace` (10) seconds. `curve`: a `Curve`, False, or None to
    read the `SWITCHBOARD_CURVE_*` variables.
    """

    def __init__(self, broker: Optional[str] = None, *, registry: Optional[Registry] = None,
                 name: Optional[str] = None, threads: Optional[int] = None,
                 prefetch: Optional[int] = None, inline_capacity: Optional[int] = None,
                 heartbeat_ms: Optional[int] = None, liveness: Optional[int] = None,
                 shutdown_grace: Optional[float] = None,
                 curve: "_curve.Curve | bool | None" = None,
                 max_reply_bytes: int = _wire.MAX_REPLY_BYTES) -> None:
        self.broker = broker or os.environ.get("SWITCHBOARD_BROKER") or DEFAULT_BROKER
        self.registry = registry if registry is not None else Registry()
        self.name = name or default_name()
        self.threads = threads if threads is not None else _env_int("SWITCHBOARD_THREADS", 4)
        self.prefetch = prefetch if prefetch is not None else _env_int("SWITCHBOARD_PREFETCH", 16)
        self.inline_capacity = (inline_capacity if inline_capacity is not None
                                else _env_int("SWITCHBOARD_INLINE_CAPACITY", 1024))
        self.heartbeat = (heartbeat_ms if heartbeat_ms is not None
                          else _env_int("SWITCHBOARD_HEARTBEAT_MS", 1000)) / 1000
        self.liveness = liveness if liveness is not None else _env_int("SWITCHBOARD_HEARTBEAT_LIVENESS", 3)
        self.shutdown_grace = (shutdown_grace if shutdown_grace is not None
                               else _env_int("SWITCHBOARD_SHUTDOWN_GRACE_MS", 10_000) / 1000)
        if self.threads < 1 or self.prefetch < 0 or self.inline_capacity < 0:
            raise ValueError("threads is at least 1; prefetch and inline_capacity at least 0")
        if not 10 <= self.heartbeat * 1000 <= 30_000 or self.liveness < 1:
            raise ValueError("heartbeat_ms is 10-30000 and liveness at least 1")
        self.max_reply_bytes = max_reply_bytes
        self._curve = _curve.resolve(curve)
        self._stop = threading.Event()
        self._done: Deque[Tuple[Tuple[int, int], bytes, bytes]] = collections.deque()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_thread: Optional[threading.Thread] = None
        self._follower: Optional[Follower] = None
        #: What happened so far: calls answered, malformed messages, reconnections.
        self.counters = {"calls": 0, "malformed": 0, "reconnects": 0, "cancelled": 0}

    # ---- registering ----

    def function(self, *args: Any, **kwargs: Any) -> Any:
        """Registers a function (see `Registry.function`): `@worker.function`,
        `@worker.function("math.add", retry_safe=True)`."""
        return self.registry.function(*args, **kwargs)

    # ---- running ----

    def run(self, handle_signals: bool = True) -> None:
        """Serves until stopped (`stop()`, or SIGTERM/SIGINT when `handle_signals` and
        called from the main thread), then leaves gracefully and returns."""
        if handle_signals and threading.current_thread() is threading.main_thread():
            previous = {sig: signal.signal(sig, lambda *_: self.stop()) for sig in (signal.SIGTERM, signal.SIGINT)}
            try:
                self._serve()
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        else:
            self._serve()

    def start(self) -> threading.Thread:
        """Serves on a background thread (stop it with `stop()` and join the thread)."""
        thread = threading.Thread(target=self._serve, name=f"switchboard-worker-{self.name}", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Asks the worker to leave: no new calls, running ones finish (thread-safe, and
        safe in a signal handler)."""
        self._stop.set()
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_write, b"x")
        except OSError:
            pass  # the pipe is full (a wake-up is pending anyway) or closed

    def _ready_body(self, capacity: int, inline_capacity: int) -> bytes:
        functions = [entry.announcement() for entry in self.registry]
        body: Dict[str, Any] = {
            "capacity": capacity,
            "heartbeat_ms": int(self.heartbeat * 1000),
            "functions": functions,
            "name": self.name,
            "cancel": True,
            "drain": True,
            "context": True,
            "caller": True,
            # Its capacity moves to the brokers whose calls wait (LOAD and CAPACITY, 5.8).
            "credit": True,
        }
        if any(entry.inline for entry in self.registry):
            body["inline_capacity"] = inline_capacity
        return _wire.packb(body)

    def _serve(self) -> None:
        if not len(self.registry):
            raise ValueError("the worker has no function to serve: register some first")
        self._pool = concurrent.futures.ThreadPoolExecutor(self.threads, thread_name_prefix="switchboard-call")
        if any(entry.is_async for entry in self.registry):
            self._loop = asyncio.new_event_loop()
            self._loop_thread = threading.Thread(target=self._loop.run_forever, name="switchboard-async", daemon=True)
            self._loop_thread.start()
        endpoints = brokers(self.broker)
        # Each broker is told an even share of the capacity, rounded up.
        share = -(-(self.threads + self.prefetch) // len(endpoints))
        inline_share = -(-self.inline_capacity // len(endpoints))
        context = zmq.Context.instance()
        links = [_BrokerLink(self, index, endpoint, context, share, inline_share)
                 for index, endpoint in enumerate(endpoints)]
        log.info("worker %s serving %d functions to %s", self.name, len(self.registry), ", ".join(endpoints))
        # A host name in the list: looked up again on a thread of its own.
        self._follower = (Follower(self.broker, endpoints, RESOLVE_INTERVAL, self._wake)
                          if _wire.names_a_host(self.broker) else None)
        polled: Tuple[zmq.Socket, ...] = ()
        poller = zmq.Poller()
        try:
            # With a name to follow, brokers may come back: only a stop ends the run.
            while not (all(link.stopped for link in links)
                       and (self._stop.is_set() or self._follower is None)):
                now = time.monotonic()
                found = self._follower.take() if self._follower is not None else None
                if found is not None and not self._stop.is_set():
                    self._follow(links, found, context, share, inline_share, now)
                live = [link for link in links if not link.stopped]
                for link in live:
                    if self._stop.is_set():
                        link.leave(now)
                    link.check_leaving(now)
                sockets = tuple(link.sock for link in live)
                if sockets != polled:  # a link reconnected or ended: poll the new set
                    polled, poller = sockets, zmq.Poller()
                    for sock in sockets:
                        poller.register(sock, zmq.POLLIN)
                    poller.register(self._wake_read, zmq.POLLIN)
                wait = min((link.next_wakeup() for link in live), default=now + 0.1) - now
                events = dict(poller.poll(max(0, int(wait * 1000) + 1)))
                if self._wake_read in events:
                    try:
                        os.read(self._wake_read, 4096)
                    except BlockingIOError:
                        pass
                for link in live:
                    if link.sock in events:
                        link.receive()
                if any(link.take_load_news() for link in live):
                    self._move_capacity(links)
                # Replies of finished calls, each to the broker its call came from.
                while self._done:
                    (index, generation), ticket, body = self._done.popleft()
                    links[index].reply(generation, ticket, body)
                now = time.monotonic()
                for link in live:
                    link.flush(now)
        finally:
            if self._follower is not None:
                self._follower.close()
            for link in links:
                link.close()
            self._pool.shutdown(wait=False, cancel_futures=True)
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
            self._stop.clear()
            log.info("worker %s stopped", self.name)

    def _follow(self, links: List["_BrokerLink"], found: List[str], context: zmq.Context,
                share: int, inline_share: int, now: float) -> None:
        """A broker that appeared in the list gets a link; one that left is left as on a stop."""
        for link in links:
            if not link.stopped and link.leaving_since is None and link.endpoint not in found:
                log.info("worker %s: broker %s no longer listed; leaving it", self.name, link.endpoint)
                link.leave(now)
        served = {link.endpoint for link in links if not link.stopped and link.leaving_since is None}
        for endpoint in found:
            if endpoint not in served:
                log.info("worker %s: broker %s listed; registering", self.name, endpoint)
                links.append(_BrokerLink(self, len(links), endpoint, context, share, inline_share))

    def _move_capacity(self, links: List["_BrokerLink"]) -> None:
        """Splits the slots among the brokers again after one reported its backlog, and
        tells each broker whose share changed (CAPACITY)."""
        serving = [link for link in links if not link.stopped]
        share = -(-(self.threads + self.prefetch) // max(1, len(serving)))
        demands = [link.demand(share) for link in links]
        for link, grant in zip(links, _wire.split_capacity(self.threads + self.prefetch, demands)):
            if grant is not None:
                link.grant(grant)

    # ---- calls ----

    def _dispatch(self, call: _wire.WorkerCall, received: float, origin: Tuple[int, int],
                  held: Dict[bytes, _Held]) -> None:
        """Runs or hands off one call; `origin` is (broker link, its session) for the reply."""
        context = CallContext(call.function, call.call_id, call.attempt, call.traceparent,
                              received + call.time_left_ms / 1000, self.name, call.caller)
        report = bool(call.flags & _wire.FLAG_REPORT_RUN_TIME)
        entry = self.registry.get(call.function)
        slot = _Held(context)
        held[call.ticket] = slot
        if entry is None:
            self._finish(origin, call.ticket, _wire.error_body(
                "UNKNOWN_FUNCTION", f"this worker does not host function '{call.function}'"))
        elif entry.inline:
            started = time.perf_counter()
            reply = self._execute(entry, context, call.body)
            self._finish(origin, call.ticket, reply, started if report else None)
        elif entry.is_async:
            assert self._loop is not None
            slot.task = asyncio.run_coroutine_threadsafe(
                self._execute_async(entry, context, call.body, origin, call.ticket, report), self._loop)
        else:
            assert self._pool is not None
            self._pool.submit(self._run_on_pool, entry, context, call.body, origin, call.ticket, report)

    def _cancel(self, slot: Optional[_Held]) -> None:
        if slot is None:
            return
        self.counters["cancelled"] += 1
        slot.context._cancelled.set()
        if slot.task is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(slot.task.cancel)

    def _abandon(self, held: Dict[bytes, _Held]) -> None:
        """Calls of a session that ended: nobody will take their replies; stop them."""
        for slot in held.values():
            slot.context._cancelled.set()
            if slot.task is not None and self._loop is not None:
                self._loop.call_soon_threadsafe(slot.task.cancel)
        held.clear()

    def _finish(self, origin: Tuple[int, int], ticket: bytes, body: bytes,
                started: Optional[float] = None) -> None:
        """A call's reply is ready; `started` (perf_counter) when its run time is reported."""
        if started is not None:
            body = _wire.append_run_time(body, int((time.perf_counter() - started) * 1e6))
        self.counters["calls"] += 1
        self._done.append((origin, ticket, body))
        self._wake()

    def _run_on_pool(self, entry: Function, context: CallContext, body: bytes, origin: Tuple[int, int],
                     ticket: bytes, report: bool) -> None:
        started = time.perf_counter()
        self._finish(origin, ticket, self._execute(entry, context, body), started if report else None)

    def _prepare(self, entry: Function, context: CallContext, body: bytes) -> Tuple[Optional[bytes], Any, Any]:
        """Checks a call before it runs: (an error reply, or None with its arguments)."""
        if context.cancelled():
            return _wire.error_body("CANCELLED", f"{entry.name}: cancelled before it started"), None, None
        if time.monotonic() >= context.deadline:
            return _wire.error_body("TIMEOUT", f"{entry.name}: the deadline passed before the call could start"), None, None
        try:
            request = _wire.unpackb(body)
        except Exception as error:  # noqa: BLE001 - any decode failure is the caller's
            return _wire.error_body("BAD_REQUEST", f"{entry.name}: malformed request body: {error}"), None, None
        if not isinstance(request, dict):
            return _wire.error_body("BAD_REQUEST", f"{entry.name}: malformed request body: the body is not a map"), None, None
        try:
            args, kwargs = entry.bind(request.get("args"), request.get("kwargs"))
        except RemoteError as error:
            return _wire.error_body(error.code, error.message), None, None
        return None, args, kwargs

    def _execute(self, entry: Function, context: CallContext, body: bytes) -> bytes:
        refusal, args, kwargs = self._prepare(entry, context, body)
        if refusal is not None:
            return refusal
        token = _current.set(context)
        try:
            result = entry.fn(*args, **kwargs)
        except BaseException as error:  # noqa: BLE001 - SystemExit too: the worker keeps serving
            if isinstance(error, KeyboardInterrupt):
                raise
            return self._error_reply(entry, error)
        finally:
            _current.reset(token)
        return self._result_reply(entry, result)

    async def _execute_async(self, entry: Function, context: CallContext, body: bytes,
                             origin: Tuple[int, int], ticket: bytes, report: bool = False) -> None:
        started = time.perf_counter() if report else None
        refusal, args, kwargs = self._prepare(entry, context, body)
        if refusal is not None:
            self._finish(origin, ticket, refusal)
            return
        _current.set(context)  # the task runs in a copy of the context
        try:
            result = await entry.fn(*args, **kwargs)
        except asyncio.CancelledError:
            reply = _wire.error_body("CANCELLED", f"{entry.name}: cancelled while running")
        except BaseException as error:  # noqa: BLE001
            reply = self._error_reply(entry, error)
        else:
            reply = self._result_reply(entry, result)
        self._finish(origin, ticket, reply, started)

    def _error_reply(self, entry: Function, error: BaseException) -> bytes:
        if isinstance(error, RemoteError):  # a function may answer with a code of its own
            return _wire.error_body(error.code, error.message)
        text = str(error)
        message = f"{type(error).__name__}: {text}" if text else type(error).__name__
        return _wire.error_body("FUNCTION_ERROR", message)

    def _result_reply(self, entry: Function, result: Any) -> bytes:
        try:
            reply = _wire.packb({"result": result})
        except (TypeError, ValueError, OverflowError, msgpack.PackException) as error:
            return _wire.error_body("FUNCTION_ERROR", f"{entry.name}: cannot encode the result: {error}")
        if len(reply) > self.max_reply_bytes:
            return _wire.error_body(
                "PAYLOAD_TOO_LARGE",
                f"{entry.name}: the result is {len(reply)} bytes, over the limit of {self.max_reply_bytes}")
        return reply


def brokers(endpoints: str) -> List[str]:
    """The brokers a comma-separated list names, in order, without duplicates; a host name
    with several addresses is one broker each (looked up again while the worker runs)."""
    return _wire.expand_endpoints(endpoints) or [DEFAULT_BROKER]


class _BrokerLink:
    """The conversation with one broker: its socket, its session (a generation: replies of
    an earlier session are never sent), the calls it handed over, heartbeats both ways,
    reconnecting when it falls silent, and the goodbye."""

    def __init__(self, worker: "Worker", index: int, endpoint: str, context: zmq.Context,
                 capacity: int, inline_capacity: int) -> None:
        self.worker = worker
        self.index = index
        self.endpoint = endpoint
        self.context = context
        self.ready = worker._ready_body(capacity, inline_capacity)
        self.capacity, self.inline_capacity = capacity, inline_capacity
        #: Heard from the broker since READY; its last LOAD (backlog, stopping); the
        #: capacity it has for this worker; a LOAD arrived since the last look.
        self.heard = False
        self.load: Optional[Tuple[int, bool]] = None
        self.granted = capacity
        self.load_news = False
        self.generation = 0
        self.held: Dict[bytes, _Held] = {}
        #: Finished calls waiting for the next REPLY.
        self.pending: List[Tuple[bytes, bytes]] = []
        self.leaving_since: Optional[float] = None
        self.acknowledged = False
        self.stopped = False
        self.sock = self._connect()
        self.last_sent = time.monotonic()
        self.broker_expires = self.last_sent + worker.liveness * worker.heartbeat

    def _connect(self) -> zmq.Socket:
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if self.worker._curve is not None:
            self.worker._curve.apply(sock)
        sock.connect(self.endpoint)
        _send(sock, [_wire.READY, self.ready])
        self._registered()
        return sock

    def _heard(self, when: float) -> None:
        self.broker_expires = when + self.worker.liveness * self.worker.heartbeat
        self.heard = True

    def _registered(self) -> None:
        """READY was sent: the broker starts from READY's budgets, maybe without LOAD."""
        self.heard, self.load, self.granted = False, None, self.capacity

    def take_load_news(self) -> bool:
        news, self.load_news = self.load_news, False
        return news

    def demand(self, static_share: int) -> Tuple[str, int, int]:
        """What this broker asks of the capacity split (see `_wire.split_capacity`)."""
        held = len(self.held)
        if self.stopped or self.leaving_since is not None:
            return ("reserved", held, 0)
        if self.load is not None and not self.load[1]:
            return ("active", held, self.load[0])
        if self.load is None and self.heard:
            return ("reserved", static_share, 0)
        return ("reserved", held, 0)

    def grant(self, capacity: int) -> None:
        """Gives the broker `capacity` (CAPACITY), if it moves capacity and that changes it."""
        if self.load is None or capacity == self.granted or self.leaving_since is not None:
            return
        self.granted = capacity
        _send(self.sock, _wire.capacity_message(capacity, self.inline_capacity))

    def _new_session(self) -> None:
        """The broker forgot this worker (restart, or declared it lost): the calls of the
        old session would have their replies dropped, so they are stopped and not sent."""
        self.generation += 1
        self.worker._abandon(self.held)

    def leave(self, now: float) -> None:
        if self.leaving_since is None:
            _send(self.sock, [_wire.DISCONNECT])
            self.leaving_since, self.last_sent = now, now
            log.info("worker %s leaving %s: finishing %d calls", self.worker.name, self.endpoint, len(self.held))

    def check_leaving(self, now: float) -> None:
        if self.leaving_since is None:
            return
        if not self.held and (self.acknowledged or now >= self.broker_expires):
            self.stopped = True
        elif now - self.leaving_since >= self.worker.shutdown_grace:
            log.warning("worker %s: shutdown grace over, abandoning %d calls of %s",
                        self.worker.name, len(self.held), self.endpoint)
            _send(self.sock, [_wire.DISCONNECT])
            self.stopped = True

    def next_wakeup(self) -> float:
        wake = min(self.last_sent + self.worker.heartbeat, self.broker_expires)
        if self.leaving_since is not None:
            wake = min(wake, self.leaving_since + self.worker.shutdown_grace)
        return wake

    def receive(self) -> None:
        worker = self.worker
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            received = time.monotonic()
            command = frames[0][:5]
            if command in (_wire.REQUEST, _wire.REQUEST_WITH_CONTEXT, _wire.REQUEST_WITH_CALLER):
                try:
                    calls = _wire.parse_request(frames[0], frames[1:])
                except ValueError as error:
                    worker.counters["malformed"] += 1
                    log.warning("dropping malformed REQUEST: %s", error)
                    continue
                self._heard(received)
                for call in calls:
                    worker._dispatch(call, received, (self.index, self.generation), self.held)
            elif command == _wire.CANCEL and len(frames) == 1:
                self._heard(received)
                try:
                    tickets = _wire.parse_tickets(frames[0])
                except ValueError as error:
                    worker.counters["malformed"] += 1
                    log.warning("dropping a malformed CANCEL from the broker at %s: %s", self.endpoint, error)
                    continue
                for ticket in tickets:
                    worker._cancel(self.held.get(ticket))
            elif frames == [_wire.HEARTBEAT]:
                self._heard(received)
            elif command == _wire.LOAD and len(frames) == 1:
                try:
                    backlog, stopping = _wire.parse_load(frames[0])
                except ValueError as error:
                    worker.counters["malformed"] += 1
                    log.warning("dropping a malformed LOAD from the broker at %s: %s", self.endpoint, error)
                    continue
                self._heard(received)
                if stopping and not (self.load and self.load[1]):
                    log.info("worker %s: the broker at %s is stopping: its share goes to the others",
                             worker.name, self.endpoint)
                self.load, self.load_news = (backlog, stopping), True
            elif frames == [_wire.DISCONNECT]:
                self._heard(received)
                if self.leaving_since is not None:
                    self.acknowledged = True
                else:
                    log.info("worker %s: the broker at %s asks to register again", worker.name, self.endpoint)
                    self._new_session()
                    _send(self.sock, [_wire.READY, self.ready])
                    self._registered()
                    self.last_sent = received
            elif frames == [_wire.DRAIN]:
                self._heard(received)
                log.warning("worker %s: the broker at %s asks it to leave (hung calls)", worker.name, self.endpoint)
                worker._stop.set()
            else:
                worker.counters["malformed"] += 1
                log.warning("dropping a malformed message from the broker (%d frames)", len(frames))

    def reply(self, generation: int, ticket: bytes, body: bytes) -> None:
        """A finished call of this link: kept for the next REPLY if its session still holds it."""
        if generation == self.generation and self.held.pop(ticket, None) is not None:
            self.pending.append((ticket, body))

    def flush(self, now: float) -> None:
        """Sends the replies gathered (many per REPLY), a heartbeat when due, and reconnects
        when the broker has been silent for its liveness."""
        if self.pending:
            for at in range(0, len(self.pending), _wire.MAX_CALLS_PER_MESSAGE):
                chunk = self.pending[at:at + _wire.MAX_CALLS_PER_MESSAGE]
                _send(self.sock, _wire.reply_message([t for t, _ in chunk], [b for _, b in chunk]))
            self.pending = []
            self.last_sent = now
        if now - self.last_sent >= self.worker.heartbeat:
            _send(self.sock, [_wire.HEARTBEAT])
            self.last_sent = now
        if now >= self.broker_expires and self.leaving_since is None:
            worker = self.worker
            log.warning("worker %s: no word from the broker at %s for %.1f s: reconnecting",
                        worker.name, self.endpoint, worker.liveness * worker.heartbeat)
            worker.counters["reconnects"] += 1
            self._new_session()
            self._retire()
            self.sock = self._connect()
            if worker._follower is not None:
                worker._follower.look_again()  # the broker may be back at a new address
            self.last_sent = now
            # A new clock for the new connection, but nothing heard on it yet.
            self.broker_expires = now + worker.liveness * worker.heartbeat

    def _retire(self) -> None:
        """Closes a socket whose broker fell silent, saying "gone now" (DISCONNECT twice)
        first: a broker that was only paused forgets this registration at once. The short
        linger keeps a READY still queued there from registering a ghost later."""
        for _ in range(2):
            _send(self.sock, [_wire.DISCONNECT])
        self.sock.close(200)

    def close(self) -> None:
        self.sock.close(0)
        self.worker._abandon(self.held)


def serve(target: Any, **options: Any) -> None:
    """Serves a Registry, a Worker, or a module with a `registry` (or `worker`) attribute
    until SIGTERM/SIGINT."""
    worker = as_worker(target, **options)
    worker.run()


def as_worker(target: Any, **options: Any) -> Worker:
    """A Worker for a Registry, a Worker (options override nothing), or a module/object
    holding one as `worker` or `registry`."""
    if isinstance(target, Worker):
        return target
    if isinstance(target, Registry):
        return Worker(registry=target, **options)
    for attr in ("worker", "registry"):
        found = getattr(target, attr, None)
        if isinstance(found, (Worker, Registry)):
            return as_worker(found, **options)
    raise TypeError(f"{target!r} is not a Registry or a Worker (nor holds one as 'registry' or 'worker')")


