"""The thread-safe synchronous client.

Whoever holds the client's lock drives the DEALER socket and the shared `Session`: a
thread waiting for its own result does the I/O itself, and a background thread does it
while calls are in flight and nobody waits. Callers, from any thread, hand over calls and
wait on futures; calls that wait together leave together as one pipelined message.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import threading
import time
from typing import Any, Deque, List, Optional, Tuple

import zmq
from zmq.utils.monitor import recv_monitor_message

from . import _wire
from . import curve as _curve
from ._calls import Batch, Options, Outcome, Proxy, SystemFunctions, batch_outcomes, call_frames, next_id
from ._session import Call, Tier
from .errors import BrokerLost

#: The connection events the I/O thread watches: drops, and how handshakes end.
MONITORED_EVENTS = (
    zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)

HANDSHAKE_FAILURES = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "the broker refused this client's CURVE key",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "the handshake with the broker failed (protocol error: CURVE on one side only?)",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "the handshake with the broker failed",
}

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"

#: How often each broker connection is checked (a ZMTP PING), in milliseconds; a broker
#: that does not answer for three intervals (stopped, hung, cut off) counts as lost.
HEARTBEAT_MS = 1000


def open_socket(endpoint: str, keys: "Optional[_curve.Curve]") -> Tuple[zmq.Socket, zmq.Socket]:
    """A DEALER socket connected to one broker, and the monitor socket watching it."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * HEARTBEAT_MS)
    if keys is not None:
        keys.apply(sock)
    monitor = sock.get_monitor_socket(MONITORED_EVENTS)
    sock.connect(endpoint)
    return sock, monitor


def transmit(tier: Tier, sockets: List[zmq.Socket]) -> set:
    """Hands each broker's socket (`sockets[i]` for session i) the messages its session has
    ready, until ZeroMQ refuses one; returns the indexes of the sockets that did."""
    blocked = set()
    for index, session in enumerate(tier.sessions):
        sock = sockets[index]
        if sock is None:  # a broker that left the list, its calls ended
            continue
        while True:
            message = session.next_message()
            if message is None:
                break
            frames, calls = message
            try:
                sock.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                session.not_sent(calls)
                blocked.add(index)
                break
            session.sent(calls)
    return blocked


class Follower:
    """Looks a client's broker list up again every `interval` seconds (and at once when
    asked) on a thread of its own — a lookup can block while DNS is slow — and keeps each
    answer that differs from the last for the driver, calling `notify` to wake it."""

    def __init__(self, setting: str, current: List[str], interval: float, notify: Any) -> None:
        self._setting, self._last, self._interval, self._notify = setting, current, interval, notify
        self._latest: Optional[List[str]] = None
        self._lock = threading.Lock()
        self._nudge = threading.Event()
        self._closed = False
        threading.Thread(target=self._run, name="switchboard-lookup", daemon=True).start()

    def _run(self) -> None:
        while True:
            self._nudge.wait(self._interval)
            self._nudge.clear()
            if self._closed:
                return
            # A name that does not resolve now: keep following the brokers known.
            found = _wire.expand_endpoints_strictly(self._setting)
            if found and found != self._last:
                self._last = found
                with self._lock:
                    self._latest = found
                self._notify()

    def take(self) -> Optional[List[str]]:
        """The newest answer since the last call, if any."""
        with self._lock:
            latest, self._latest = self._latest, None
        return latest

    def look_again(self) -> None:
        """Asks for a lookup now (a connection dropped: the broker may be at a new address)."""
        self._nudge.set()

    def close(self) -> None:
        self._closed = True
        self._nudge.set()


#: How often a host name in a client's endpoint is looked up again, in seconds.
RESOLVE_INTERVAL = float(os.environ.get("SWITCHBOARD_RESOLVE_INTERVAL_MS", "5000")) / 1000


def endpoints_of(endpoint: str) -> List[str]:
    """The brokers a client's endpoint setting names (see `_wire.expand_endpoints`)."""
    endpoints = _wire.expand_endpoints(endpoint)
    if not endpoints:
        raise ValueError(f"no broker endpoint in {endpoint!r}")
    return endpoints


class CallFuture(concurrent.futures.Future):
    """A call in flight. `result(timeout=None)` returns its result or raises its
    `RemoteError`; it always ends by the call's deadline. `cancel()` tells the broker the
    caller no longer waits (the call is taken off its queue, or its worker is told)."""

    def __init__(self, client: "Client", call_id: int) -> None:
        super().__init__()
        self.call_id = call_id
        #: The broker's timings, when the call asked for them (`timings=True`).
        self.timings: Optional[dict] = None
        self._client = client

    def result(self, timeout: Optional[float] = None) -> Any:
        return super().result(self._lead(timeout))

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        return super().exception(self._lead(timeout))

    def _lead(self, timeout: Optional[float]) -> Optional[float]:
        """Drives the socket for this call if nobody does; returns what is left of `timeout`."""
        if self.done():
            return timeout
        started = time.monotonic()
        self._client._lead_until(self, timeout)
        return None if timeout is None else max(0.0, timeout - (time.monotonic() - started))

    def cancel(self) -> bool:
        if self.done():
            return False
        cancelled = super().cancel()
        if cancelled:
            self._client._command(("cancel", self.call_id))
        return cancelled

    def _settle(self, result: Any, error: Optional[BaseException], timings: Optional[dict]) -> None:
        self.timings = timings
        try:
            if error is not None:
                self.set_exception(error)
            else:
                self.set_result(result)
        except concurrent.futures.InvalidStateError:
            pass  # the caller cancelled it meanwhile


class _Caller(SystemFunctions):
    """Calls with a given set of options over a client's connection."""

    def __init__(self, client: "Client", options: Options) -> None:
        self._client = client
        self._options = options

    def submit(self, function: str, *args: Any, **kwargs: Any) -> CallFuture:
        """Sends a call and returns at once with its future."""
        return self._client._submit(function, args, kwargs, self._options)

    def call(self, function: str, *args: Any, **kwargs: Any) -> Any:
        """Calls `function(*args, **kwargs)` and returns its result, or raises its error."""
        return self._client._submit(function, args, kwargs, self._options, lead=True).result()

    def with_options(self, timeout: Optional[float] = None, idempotent: Optional[bool] = None,
                     traceparent: Optional[str] = None, timings: Optional[bool] = None,
                     wait_for_ready: Optional[bool] = None) -> "_Caller":
        """The same connection, with other call options: `timeout` (seconds), `idempotent`
        (safe to send again after a lost connection), `traceparent` (W3C trace context),
        `timings` (ask the broker for queue and run times: `submit(...).timings`),
        `wait_for_ready` (when no worker hosts the function, wait in the broker's queue for
        one instead of failing UNKNOWN_FUNCTION: for workers scaled from zero)."""
        options = self._options.replace(timeout=timeout, idempotent=idempotent,
                                        traceparent=traceparent, timings=timings,
                                        wait_for_ready=wait_for_ready)
        return _Caller(self._client, options)

    def batch(self, timeout: Optional[float] = None) -> Batch:
        """A batch of calls sent as one request (`run()` returns a list of `Outcome`)."""
        return Batch(self, self._options.replace(timeout=timeout))

    def _run_batch(self, batch: Batch, options: Options) -> List[Outcome]:
        call_id = next_id()
        future = self._client._send(call_id, batch.frames(call_id), options, "system.batch")
        return batch_outcomes(future.result())

    def __getattr__(self, part: str) -> Proxy:
        if part.startswith("_"):
            raise AttributeError(part)
        return Proxy(self, part)


class Client(_Caller):
    """A connection to a broker's frontend, safe to share between threads.

    `timeout` is the default deadline of a call, in seconds; `curve` a `Curve`, `False`
    for none, or `None` to take it from the `SWITCHBOARD_CURVE_*` variables.
    `client.call("add", 2, 3)`, `client.add(2, 3)` and `client.math.add(2, 3)` call
    functions; `submit` returns a future; `batch()` groups calls; `with_options` sets
    per-call options.

    `endpoint` may list several brokers, comma-separated: each call goes to one of them
    (the one of two picked at random that holds fewer of this client's calls, among those
    connected and not stopping); a call that never reached a broker moves to another,
    and when a connection drops, idempotent calls in flight there are sent to another.

    Whoever holds the lock drives the socket: a thread waiting for its own result does
    the I/O itself (no hand-off between threads on the sequential path), and a background
    thread drives it whenever calls are in flight and no caller is waiting in `result()`.
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, timeout: float = 30.0,
                 curve: "_curve.Curve | bool | None" = None) -> None:
        endpoints = endpoints_of(endpoint)
        named = _wire.names_a_host(endpoint)
        # Several brokers, or a name that may come to stand for several: ask for notices.
        super().__init__(self, Options(timeout, notices=len(endpoints) > 1 or named))
        self.endpoint = endpoint
        keys = self._keys = _curve.resolve(curve)
        self._tier = Tier(endpoints)
        # One per broker, in the tier's order; None once a broker that left is done with.
        self._sockets: List[Optional[zmq.Socket]] = []
        self._monitors: List[Optional[zmq.Socket]] = []
        for each in endpoints:
            sock, monitor = open_socket(each, keys)
            self._sockets.append(sock)
            self._monitors.append(monitor)
        # Commands from threads that found the socket busy; the driver takes them.
        self._commands: Deque[Tuple[Any, ...]] = collections.deque()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._wake_pending = False
        self._poller = zmq.Poller()
        for sock, monitor in zip(self._sockets, self._monitors):
            self._poller.register(sock, zmq.POLLIN)
            self._poller.register(monitor, zmq.POLLIN)
        self._poller.register(self._wake_read, zmq.POLLIN)
        # Brokers whose socket refused a message (polled for room), and those polled so.
        self._blocked: set = set()
        self._polling_out: set = set()
        self._lock = threading.Lock()
        self._work = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._background, name="switchboard-client-io", daemon=True)
        self._follower = Follower(endpoint, endpoints, RESOLVE_INTERVAL, self._wake_driver) if named else None
        self._thread.start()

    # ---- the caller side ----

    def _submit(self, function: str, args: Tuple[Any, ...], kwargs: Any, options: Options,
                lead: bool = False) -> CallFuture:
        call_id = next_id()
        frames = call_frames(function, args, kwargs, options, call_id)
        return self._send(call_id, frames, options, function, lead)

    def _send(self, call_id: int, frames: List[bytes], options: Options, function: str,
              lead: bool = False) -> CallFuture:
        """Queues a call. With `lead`, the caller waits for it right away: if the socket is
        free, this thread sends the call and drives the socket until its reply is in."""
        if self._closed:
            raise BrokerLost("the client is closed")
        future = CallFuture(self, call_id)
        call = Call(call_id, frames, options.timeout, options.idempotent, future._settle,
                    time.monotonic(), function)
        self._command(("call", call), future if lead else None)
        return future

    def _command(self, command: Tuple[Any, ...], lead: Optional[CallFuture] = None) -> None:
        """Hands a command to the socket: at once when it is free (and with `lead`, drives
        it until that future is done), else to whoever drives it."""
        if self._lock.acquire(blocking=False):
            try:
                self._commands.append(command)
                if lead is not None:
                    self._drive(lead.done, None)
                elif not self._closed:
                    self._take_commands()
                    self._transmit()
            finally:
                self._lock.release()
            self._wake_background()
        else:
            self._commands.append(command)
            if not self._wake_pending:
                self._wake_pending = True
                try:
                    os.write(self._wake_write, b"x")
                except OSError:
                    pass  # closed, or already full of wake-ups
            self._work.set()

    def _wake_driver(self) -> None:
        """From another thread: whoever drives the socket should look (new brokers)."""
        try:
            os.write(self._wake_write, b"x")
        except OSError:
            pass
        self._work.set()

    def _wake_background(self) -> None:
        """After a caller let go of the socket: the background thread drives it if calls
        are still in flight."""
        if self._commands or self._tier.busy():
            self._work.set()

    def _lead_until(self, future: CallFuture, timeout: Optional[float]) -> None:
        """Drives the socket in the caller's thread until `future` is done (or `timeout`
        passes), if nobody else drives it; else returns and the caller waits."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            until = None if timeout is None else time.monotonic() + timeout
            self._drive(future.done, until)
        finally:
            self._lock.release()
        self._wake_background()

    @property
    def counters(self) -> dict:
        """This connection's own counters: disconnects, calls re-sent, unmatched replies."""
        return self._tier.counters()

    def close(self) -> None:
        """Closes the connection; calls still in flight fail with BROKER_LOST."""
        if self._closed:
            return
        self._closed = True
        if self._follower is not None:
            self._follower.close()
        self._work.set()
        try:
            os.write(self._wake_write, b"x")
        except OSError:
            pass
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- driving the socket (only with the lock held) ----

    def _background(self) -> None:
        """Drives the socket while calls are in flight and no caller does."""
        while not self._closed:
            self._work.wait(1.0)
            self._work.clear()
            with self._lock:
                self._drive(lambda: not self._commands and not self._tier.busy(), None)
        with self._lock:
            self._tier.fail_all(BrokerLost("the client was closed with the call in flight"))
            self._commands.clear()
            for index in range(len(self._sockets)):
                self._close_link(index)
            os.close(self._wake_read)
            os.close(self._wake_write)

    def _drive(self, done: Any, until: Optional[float]) -> None:
        tier = self._tier
        while not self._closed:
            self._follow()
            self._take_commands()
            now = time.monotonic()
            tier.on_time(now)
            self._transmit()
            if done() or (until is not None and now >= until):
                return
            wakeup = tier.next_wakeup()
            if until is not None:
                wakeup = until if wakeup is None else min(wakeup, until)
            timeout = None if wakeup is None else max(0, int((wakeup - now) * 1000) + 1)
            if self._blocked != self._polling_out:
                for index in self._blocked ^ self._polling_out:
                    out = zmq.POLLOUT if index in self._blocked else 0
                    if self._sockets[index] is not None:
                        self._poller.modify(self._sockets[index], zmq.POLLIN | out)
                self._polling_out = set(self._blocked)
            events = dict(self._poller.poll(timeout))
            if self._wake_read in events:
                try:
                    os.read(self._wake_read, 4096)
                except BlockingIOError:
                    pass
            for index, (sock, monitor) in enumerate(zip(self._sockets, self._monitors)):
                if monitor is not None and monitor in events:
                    self._watch_link(index)
                if sock is not None and sock in events:
                    self._receive(index)

    def _follow(self) -> None:
        """Connects to brokers that appeared in the list, and closes the connection to each
        that left it once its calls have ended."""
        if self._follower is not None:
            found = self._follower.take()
            if found is not None:
                for endpoint in self._tier.follow(found):
                    sock, monitor = open_socket(endpoint, self._keys)
                    self._tier.added(endpoint)
                    self._sockets.append(sock)
                    self._monitors.append(monitor)
                    self._poller.register(sock, zmq.POLLIN)
                    self._poller.register(monitor, zmq.POLLIN)
        for index, sock in enumerate(self._sockets):
            if sock is not None and self._tier.finished(index):
                self._poller.unregister(sock)
                self._poller.unregister(self._monitors[index])
                self._close_link(index)
                self._blocked.discard(index)
                self._polling_out.discard(index)

    def _close_link(self, index: int) -> None:
        sock, monitor = self._sockets[index], self._monitors[index]
        if sock is None or monitor is None:
            return
        monitor.close(0)
        sock.disable_monitor()
        sock.close(0)
        self._sockets[index] = self._monitors[index] = None

    def _take_commands(self) -> None:
        """Hands callers' commands to the session."""
        self._wake_pending = False
        tier, commands = self._tier, self._commands
        while commands:
            command = commands.popleft()
            if command[0] == "call":
                tier.add(command[1])
                continue
            sent_to = tier.forget(command[1])
            if sent_to is not None:
                # A cancelled call that was sent: tell the broker that holds it, so it
                # leaves its queue or its worker stops.
                call_id = next_id()
                frames = call_frames("system.cancel", (command[1],), {}, Options(5.0), call_id)
                tier.sessions[sent_to].add(
                    Call(call_id, frames, 5.0, False, _ignore, time.monotonic(), "system.cancel"))

    def _receive(self, index: int) -> None:
        sock, session = self._sockets[index], self._tier.sessions[index]
        while sock is not None and sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            session.on_message(sock.recv_multipart(zmq.NOBLOCK), time.monotonic())
        self._tier.move_stranded()

    def _watch_link(self, index: int) -> None:
        session = self._tier.sessions[index]
        while True:
            try:
                event = recv_monitor_message(self._monitors[index], zmq.NOBLOCK)["event"]
            except zmq.Again:
                break
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                session.on_link_up()
            else:
                # Replies that arrived before the drop are still readable: take them first.
                self._receive(index)
                session.on_link_down(HANDSHAKE_FAILURES.get(event), time.monotonic())
                if self._follower is not None:
                    self._follower.look_again()  # the broker may be back at a new address
        self._tier.move_stranded()

    def _transmit(self) -> None:
        """Sends what each broker's session has ready until ZeroMQ refuses to take more."""
        self._blocked = transmit(self._tier, self._sockets)


def _ignore(result: Any, error: Any, timings: Any) -> None:
    """The outcome of a fire-and-forget `system.cancel`."""
