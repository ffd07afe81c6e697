"""The asyncio client: `await client.call(...)`, many concurrent calls on one connection.

Built on the same `Session` as the sync client (so the same reliability contract), driven
by callbacks on the running loop: the loop watches ZeroMQ's file descriptors (the socket
and its monitor) with `add_reader`, calls queued in the same loop iteration leave together
as one pipelined message (a call made while nothing else is in flight leaves at once), and
a timer ends calls at their deadline. No task per call: `call` returns a future.
Cancelling it tells the broker, like `system.cancel`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, List, Optional, Tuple

import zmq
from zmq.utils.monitor import parse_monitor_message

from . import _wire
from . import curve as _curve
from ._calls import Batch, Options, Outcome, Proxy, SystemFunctions, batch_outcomes, call_frames, next_id
from ._session import Call, Tier
from .client import (DEFAULT_ENDPOINT, HANDSHAKE_FAILURES, RESOLVE_INTERVAL, Follower, endpoints_of,
                     open_socket, transmit)
from .errors import BrokerLost


class _AsyncCaller(SystemFunctions):
    """Calls with a given set of options over an asyncio client's connection."""

    def __init__(self, client: "AsyncClient", options: Options) -> None:
        self._client = client
        self._options = options

    def call(self, function: str, *args: Any, **kwargs: Any) -> "asyncio.Future[Any]":
        """Calls `function(*args, **kwargs)`: await the returned future for its result (or
        its error). The call leaves at once; cancelling the future cancels the call."""
        call_id = next_id()
        frames = call_frames(function, args, kwargs, self._options, call_id)
        return self._client._send(call_id, frames, self._options, function, timed=False)

    def call_timed(self, function: str, *args: Any, **kwargs: Any) -> "asyncio.Future[Tuple[Any, Optional[dict]]]":
        """Like `call`, resolving to (result, the broker's timings or None)."""
        call_id = next_id()
        frames = call_frames(function, args, kwargs, self._options, call_id)
        return self._client._send(call_id, frames, self._options, function, timed=True)

    def with_options(self, timeout: Optional[float] = None, idempotent: Optional[bool] = None,
                     traceparent: Optional[str] = None, timings: Optional[bool] = None,
                     wait_for_ready: Optional[bool] = None) -> "_AsyncCaller":
        """The same connection with other call options (see `Client.with_options`)."""
        options = self._options.replace(timeout=timeout, idempotent=idempotent,
                                        traceparent=traceparent, timings=timings,
                                        wait_for_ready=wait_for_ready)
        return _AsyncCaller(self._client, options)

    def batch(self, timeout: Optional[float] = None) -> Batch:
        """A batch of calls sent as one request (`await batch.run()`)."""
        return Batch(self, self._options.replace(timeout=timeout))

    async def _run_batch(self, batch: Batch, options: Options) -> List[Outcome]:
        call_id = next_id()
        result = await self._client._send(call_id, batch.frames(call_id), options, "system.batch", timed=False)
        return batch_outcomes(result)

    def __getattr__(self, part: str) -> Proxy:
        if part.startswith("_"):
            raise AttributeError(part)
        return Proxy(self, part)


class AsyncClient(_AsyncCaller):
    """A connection to a broker's frontend for asyncio programs. Create it anywhere, use
    it from one event loop; `async with AsyncClient(...) as client:` closes it. Same
    arguments and methods as `Client` (several brokers too); `call` returns an
    `asyncio.Future` to await (gather it, or wrap it with `asyncio.ensure_future`)."""

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, timeout: float = 30.0,
                 curve: "_curve.Curve | bool | None" = None) -> None:
        self._endpoints = endpoints_of(endpoint)
        self._named = _wire.names_a_host(endpoint)
        super().__init__(self, Options(timeout, notices=len(self._endpoints) > 1 or self._named))
        self.endpoint = endpoint
        self._keys = _curve.resolve(curve)
        self._tier = Tier(self._endpoints)
        # One per broker, in the tier's order; None once a broker that left is done with.
        self._sockets: List[Optional[zmq.Socket]] = []
        self._monitors: List[Optional[zmq.Socket]] = []
        self._follower: Optional[Follower] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._flush_scheduled = False
        # Brokers whose socket refused a message: flushed again when it has room.
        self._blocked: set = set()
        self._timer: Optional[asyncio.TimerHandle] = None
        self._timer_at: Optional[float] = None
        self._closed = False

    def _start(self) -> None:
        """Opens the socket on first use and watches it from the running loop: ZeroMQ's
        file descriptor tells when the socket's events may have changed (edge-triggered,
        so every pass reads until nothing is left)."""
        self._loop = asyncio.get_running_loop()
        for endpoint in self._endpoints:
            self._open(endpoint)
        if self._named:
            loop = self._loop
            self._follower = Follower(self.endpoint, self._endpoints, RESOLVE_INTERVAL,
                                      lambda: loop.call_soon_threadsafe(self._follow))

    def _open(self, endpoint: str) -> None:
        """Connects to one broker (the next index) and watches its socket and monitor."""
        assert self._loop is not None
        index = len(self._sockets)
        sock, monitor = open_socket(endpoint, self._keys)
        self._sockets.append(sock)
        self._monitors.append(monitor)
        self._loop.add_reader(sock.getsockopt(zmq.FD), self._on_socket, index)
        self._loop.add_reader(monitor.getsockopt(zmq.FD), self._on_monitor, index)
        # Events that happened before the readers were added raise no edge: look now.
        self._loop.call_soon(self._on_monitor, index)
        self._loop.call_soon(self._on_socket, index)

    def _follow(self) -> None:
        """New brokers in the list get a connection (from the lookup thread, via the loop)."""
        if self._closed or self._follower is None:
            return
        found = self._follower.take()
        if found is not None:
            for endpoint in self._tier.follow(found):
                self._tier.added(endpoint)
                self._open(endpoint)
        self._changed()

    def _close_finished(self) -> None:
        """Closes the connection to each broker that left the list once its calls ended."""
        for index, sock in enumerate(self._sockets):
            if sock is not None and self._tier.finished(index):
                self._close_link(index)

    def _close_link(self, index: int) -> None:
        sock, monitor = self._sockets[index], self._monitors[index]
        if sock is None or monitor is None or self._loop is None:
            return
        self._loop.remove_reader(sock.getsockopt(zmq.FD))
        self._loop.remove_reader(monitor.getsockopt(zmq.FD))
        monitor.close(0)
        sock.disable_monitor()
        sock.close(0)
        self._sockets[index] = self._monitors[index] = None
        self._blocked.discard(index)

    def _send(self, call_id: int, frames: List[bytes], options: Options, function: str,
              timed: bool) -> "asyncio.Future[Any]":
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        if self._closed:
            future.set_exception(BrokerLost("the client is closed"))
            return future
        if not self._sockets:
            self._start()

        def settle(result: Any, error: Optional[BaseException], timings: Optional[dict]) -> None:
            if not future.done():
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result((result, timings) if timed else result)

        def cancelled(done: asyncio.Future) -> None:
            if done.cancelled():
                self._cancel(call_id)

        future.add_done_callback(cancelled)
        alone = not self._tier.busy()
        self._tier.add(Call(call_id, frames, options.timeout, options.idempotent, settle,
                               time.monotonic(), function))
        if alone:
            self._flush()  # nothing else in flight: no reason to wait for company
        else:
            self._changed()
        return future

    def _cancel(self, call_id: int) -> None:
        """The caller cancelled the future: forget the call, and tell the broker if it
        was sent."""
        sent_to = None if self._closed else self._tier.forget(call_id)
        if sent_to is None:
            return
        cancel_id = next_id()
        frames = call_frames("system.cancel", (call_id,), {}, Options(5.0), cancel_id)
        # To the broker that holds the call.
        self._tier.sessions[sent_to].add(Call(cancel_id, frames, 5.0, False, lambda *_: None, time.monotonic(),
                               "system.cancel"))
        self._changed()

    def _changed(self) -> None:
        """The session changed: schedule a flush (calls queued in this loop iteration
        leave together) and re-arm the timer."""
        if self._closed or self._loop is None:
            return
        self._close_finished()
        if not self._flush_scheduled and any(
                s.wants_to_send() and i not in self._blocked for i, s in enumerate(self._tier.sessions)):
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        wakeup = self._tier.next_wakeup()
        if wakeup is not None and (self._timer_at is None or wakeup < self._timer_at):
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = wakeup
            self._timer = self._loop.call_later(max(0.0, wakeup - time.monotonic()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, None
        self._tier.on_time(time.monotonic())
        self._changed()

    def _flush(self) -> None:
        """Hands ZeroMQ every message the session has ready, until it refuses one."""
        self._flush_scheduled = False
        if self._closed or not self._sockets:
            return
        # A socket that refused a message is flushed again by _on_socket when it has room.
        self._blocked = transmit(self._tier, self._sockets)
        for index, sock in enumerate(self._sockets):
            # A send may have consumed the edge that announced a reply: look.
            if sock is not None and sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                self._loop.call_soon(self._on_socket, index)  # type: ignore[union-attr]
        self._changed()

    def _on_socket(self, index: int) -> None:
        """A socket's events may have changed: read every reply, send if there is room."""
        if self._closed or not self._sockets:
            return
        sock, session = self._sockets[index], self._tier.sessions[index]
        while sock is not None:
            events = sock.getsockopt(zmq.EVENTS)
            if events & zmq.POLLIN:
                session.on_message(sock.recv_multipart(zmq.NOBLOCK), time.monotonic())
                continue
            if index in self._blocked and events & zmq.POLLOUT:
                self._flush()
            break
        self._tier.move_stranded()
        self._changed()

    def _on_monitor(self, index: int) -> None:
        if self._closed or not self._monitors:
            return
        monitor, session = self._monitors[index], self._tier.sessions[index]
        while monitor is not None and monitor.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                session.on_link_up()
            else:
                # Replies that arrived before the drop are still readable: take them first.
                self._on_socket(index)
                session.on_link_down(HANDSHAKE_FAILURES.get(event), time.monotonic())
                if self._follower is not None:
                    self._follower.look_again()  # the broker may be back at a new address
        self._tier.move_stranded()
        self._changed()

    @property
    def counters(self) -> dict:
        """This connection's own counters: disconnects, calls re-sent, unmatched replies."""
        return self._tier.counters()

    async def close(self) -> None:
        """Closes the connection; calls still in flight fail with BROKER_LOST."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._tier.fail_all(BrokerLost("the client was closed with the call in flight"))
        if self._follower is not None:
            self._follower.close()
        for index in range(len(self._sockets)):
            self._close_link(index)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
