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
    """Serves functions to the broker at `broker` (its backend endpoint).

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
        self._done: Deque[Tuple[int, bytes, bytes]] = collections.deque()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_thread: Optional[threading.Thread] = None
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

    def _ready_body(self) -> bytes:
        functions = [entry.announcement() for entry in self.registry]
        body: Dict[str, Any] = {
            "capacity": self.threads + self.prefetch,
            "heartbeat_ms": int(self.heartbeat * 1000),
            "functions": functions,
            "name": self.name,
            "cancel": True,
            "drain": True,
            "context": True,
            "caller": True,
        }
        if any(entry.inline for entry in self.registry):
            body["inline_capacity"] = self.inline_capacity
        return _wire.packb(body)

    def _connect(self, context: zmq.Context) -> zmq.Socket:
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if self._curve is not None:
            self._curve.apply(sock)
        sock.connect(self.broker)
        _send(sock, [_wire.READY, self._ready_body()])
        return sock

    def _serve(self) -> None:
        if not len(self.registry):
            raise ValueError("the worker has no function to serve: register some first")
        self._pool = concurrent.futures.ThreadPoolExecutor(self.threads, thread_name_prefix="switchboard-call")
        if any(entry.is_async for entry in self.registry):
            self._loop = asyncio.new_event_loop()
            self._loop_thread = threading.Thread(target=self._loop.run_forever, name="switchboard-async", daemon=True)
            self._loop_thread.start()
        context = zmq.Context.instance()
        sock = self._connect(context)
        log.info("worker %s serving %d functions to %s", self.name, len(self.registry), self.broker)
        generation = 0  # a new session with the broker drops the replies of the old one
        held: Dict[bytes, _Held] = {}
        leaving_since: Optional[float] = None
        acknowledged = False
        last_sent = time.monotonic()
        broker_expires = last_sent + self.liveness * self.heartbeat
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_read, zmq.POLLIN)
        try:
            while True:
                now = time.monotonic()
                if self._stop.is_set() and leaving_since is None:
                    _send(sock, [_wire.DISCONNECT])
                    leaving_since, last_sent = now, now
                    log.info("worker %s leaving: finishing %d calls", self.name, len(held))
                if leaving_since is not None:
                    if not held and (acknowledged or now >= broker_expires):
                        break
                    if now - leaving_since >= self.shutdown_grace:
                        log.warning("worker %s: shutdown grace over, abandoning %d calls", self.name, len(held))
                        _send(sock, [_wire.DISCONNECT])
                        break
                wait = min(last_sent + self.heartbeat, broker_expires) - now
                if leaving_since is not None:
                    wait = min(wait, leaving_since + self.shutdown_grace - now)
                events = dict(poller.poll(max(0, int(wait * 1000) + 1)))
                if self._wake_read in events:
                    try:
                        os.read(self._wake_read, 4096)
                    except BlockingIOError:
                        pass
                if sock in events:
                    while True:
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        received = time.monotonic()
                        command = frames[0][:5]
                        if command in (_wire.REQUEST, _wire.REQUEST_WITH_CONTEXT, _wire.REQUEST_WITH_CALLER):
                            try:
                                calls = _wire.parse_request(frames[0], frames[1:])
                            except ValueError as error:
                                self.counters["malformed"] += 1
                                log.warning("dropping malformed REQUEST: %s", error)
                                continue
                            broker_expires = received + self.liveness * self.heartbeat
                            for call in calls:
                                self._dispatch(call, received, generation, held)
                        elif command == _wire.CANCEL and len(frames) == 1:
                            broker_expires = received + self.liveness * self.heartbeat
                            try:
                                tickets = _wire.parse_tickets(frames[0])
                            except ValueError:
                                self.counters["malformed"] += 1
                                continue
                            for ticket in tickets:
                                self._cancel(held.get(ticket))
                        elif frames == [_wire.HEARTBEAT]:
                            broker_expires = received + self.liveness * self.heartbeat
                        elif frames == [_wire.DISCONNECT]:
                            broker_expires = received + self.liveness * self.heartbeat
                            if leaving_since is not None:
                                acknowledged = True
                            else:
                                # The broker does not know this worker (it restarted, or
                                # declared it lost): a new session; the old calls' replies
                                # would be dropped, so they are not sent.
                                log.info("worker %s: the broker asks to register again", self.name)
                                generation += 1
                                self._abandon(held)
                                _send(sock, [_wire.READY, self._ready_body()])
                                last_sent = received
                        elif frames == [_wire.DRAIN]:
                            broker_expires = received + self.liveness * self.heartbeat
                            log.warning("worker %s: the broker asks it to leave (hung calls)", self.name)
                            self._stop.set()
                        else:
                            self.counters["malformed"] += 1
                            log.warning("dropping a malformed message from the broker (%d frames)", len(frames))
                # Replies of finished calls, many per message.
                tickets: List[bytes] = []
                bodies: List[bytes] = []
                while self._done:
                    done_generation, ticket, body = self._done.popleft()
                    if done_generation != generation or held.pop(ticket, None) is None:
                        continue
                    tickets.append(ticket)
                    bodies.append(body)
                    if len(tickets) == _wire.MAX_CALLS_PER_MESSAGE:
                        _send(sock, _wire.reply_message(tickets, bodies))
                        tickets, bodies = [], []
                if tickets:
                    _send(sock, _wire.reply_message(tickets, bodies))
                now = time.monotonic()
                if tickets:
                    last_sent = now
                if now - last_sent >= self.heartbeat:
                    _send(sock, [_wire.HEARTBEAT])
                    last_sent = now
                if now >= broker_expires and leaving_since is None:
                    log.warning("worker %s: no word from the broker at %s for %.1f s: reconnecting",
                                self.name, self.broker, self.liveness * self.heartbeat)
                    self.counters["reconnects"] += 1
                    generation += 1
                    self._abandon(held)
                    poller.unregister(sock)
                    sock.close(0)
                    sock = self._connect(context)
                    poller.register(sock, zmq.POLLIN)
                    last_sent = now
                    broker_expires = now + self.liveness * self.heartbeat
        finally:
            sock.close(0)
            self._abandon(held)
            self._pool.shutdown(wait=False, cancel_futures=True)
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
            self._stop.clear()
            log.info("worker %s stopped", self.name)

    # ---- calls ----

    def _dispatch(self, call: _wire.WorkerCall, received: float, generation: int,
                  held: Dict[bytes, _Held]) -> None:
        context = CallContext(call.function, call.call_id, call.attempt, call.traceparent,
                              received + call.time_left_ms / 1000, self.name, call.caller)
        report = bool(call.flags & _wire.FLAG_REPORT_RUN_TIME)
        entry = self.registry.get(call.function)
        slot = _Held(context)
        held[call.ticket] = slot
        if entry is None:
            self._finish(generation, call.ticket, _wire.error_body(
                "UNKNOWN_FUNCTION", f"this worker does not host function '{call.function}'"))
        elif entry.inline:
            started = time.perf_counter()
            reply = self._execute(entry, context, call.body)
            self._finish(generation, call.ticket, reply, started if report else None)
        elif entry.is_async:
            assert self._loop is not None
            slot.task = asyncio.run_coroutine_threadsafe(
                self._execute_async(entry, context, call.body, generation, call.ticket, report), self._loop)
        else:
            assert self._pool is not None
            self._pool.submit(self._run_on_pool, entry, context, call.body, generation, call.ticket, report)

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

    def _finish(self, generation: int, ticket: bytes, body: bytes, started: Optional[float] = None) -> None:
        """A call's reply is ready; `started` (perf_counter) when its run time is reported."""
        if started is not None:
            body = _wire.append_run_time(body, int((time.perf_counter() - started) * 1e6))
        self.counters["calls"] += 1
        self._done.append((generation, ticket, body))
        self._wake()

    def _run_on_pool(self, entry: Function, context: CallContext, body: bytes, generation: int,
                     ticket: bytes, report: bool) -> None:
        started = time.perf_counter()
        self._finish(generation, ticket, self._execute(entry, context, body), started if report else None)

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
                             generation: int, ticket: bytes, report: bool = False) -> None:
        started = time.perf_counter() if report else None
        refusal, args, kwargs = self._prepare(entry, context, body)
        if refusal is not None:
            self._finish(generation, ticket, refusal)
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
        self._finish(generation, ticket, reply, started)

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


