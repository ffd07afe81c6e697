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

from . import curve as _curve
from ._calls import Batch, Options, Outcome, Proxy, SystemFunctions, batch_outcomes, call_frames, next_id
from ._session import Call, Session
from .client import DEFAULT_ENDPOINT, HANDSHAKE_FAILURES, MONITORED_EVENTS
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
    arguments and methods as `Client`; `call` returns an `asyncio.Future` to await
    (gather it, or wrap it with `asyncio.ensure_future`)."""

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, timeout: float = 30.0,
                 curve: "_curve.Curve | bool | None" = None) -> None:
        super().__init__(self, Options(timeout))
        self.endpoint = endpoint
        self._keys = _curve.resolve(curve)
        self._session = Session(endpoint)
        self._socket: Optional[zmq.Socket] = None
        self._monitor: Optional[zmq.Socket] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._flush_scheduled = False
        self._blocked = False
        self._timer: Optional[asyncio.TimerHandle] = None
        self._timer_at: Optional[float] = None
        self._closed = False

    def _start(self) -> None:
        """Opens the socket on first use and watches it from the running loop: ZeroMQ's
        file descriptor tells when the socket's events may have changed (edge-triggered,
        so every pass reads until nothing is left)."""
        self._loop = asyncio.get_running_loop()
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if self._keys is not None:
            self._keys.apply(sock)
        self._monitor = sock.get_monitor_socket(MONITORED_EVENTS)
        sock.connect(self.endpoint)
        self._socket = sock
        self._loop.add_reader(sock.getsockopt(zmq.FD), self._on_socket)
        self._loop.add_reader(self._monitor.getsockopt(zmq.FD), self._on_monitor)
        # Events that happened before the readers were added raise no edge: look now.
        self._loop.call_soon(self._on_monitor)
        self._loop.call_soon(self._on_socket)

    def _send(self, call_id: int, frames: List[bytes], options: Options, function: str,
              timed: bool) -> "asyncio.Future[Any]":
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        if self._closed:
            future.set_exception(BrokerLost("the client is closed"))
            return future
        if self._socket is None:
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
        alone = not self._session.busy()
        self._session.add(Call(call_id, frames, options.timeout, options.idempotent, settle,
                               time.monotonic(), function))
        if alone:
            self._flush()  # nothing else in flight: no reason to wait for company
        else:
            self._changed()
        return future

    def _cancel(self, call_id: int) -> None:
        """The caller cancelled the future: forget the call, and tell the broker if it
        was sent."""
        if self._closed or self._session.forget(call_id) is None:
            return
        cancel_id = next_id()
        frames = call_frames("system.cancel", (call_id,), {}, Options(5.0), cancel_id)
        self._session.add(Call(cancel_id, frames, 5.0, False, lambda *_: None, time.monotonic(),
                               "system.cancel"))
        self._changed()

    def _changed(self) -> None:
        """The session changed: schedule a flush (calls queued in this loop iteration
        leave together) and re-arm the timer."""
        if self._closed or self._loop is None:
            return
        if not self._flush_scheduled and not self._blocked and self._session.wants_to_send():
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        wakeup = self._session.next_wakeup()
        if wakeup is not None and (self._timer_at is None or wakeup < self._timer_at):
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = wakeup
            self._timer = self._loop.call_later(max(0.0, wakeup - time.monotonic()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, None
        self._session.on_time(time.monotonic())
        self._changed()

    def _flush(self) -> None:
        """Hands ZeroMQ every message the session has ready, until it refuses one."""
        self._flush_scheduled = False
        if self._closed or self._socket is None:
            return
        self._blocked = False
        while True:
            message = self._session.next_message()
            if message is None:
                break
            frames, calls = message
            try:
                self._socket.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                self._session.not_sent(calls)
                self._blocked = True  # _on_socket flushes again when there is room
                break
            self._session.sent(calls)
        self._changed()
        # A send may have consumed the edge that announced a reply: look.
        if self._socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            self._loop.call_soon(self._on_socket)  # type: ignore[union-attr]

    def _on_socket(self) -> None:
        """The socket's events may have changed: read every reply, send if there is room."""
        sock = self._socket
        if self._closed or sock is None:
            return
        while True:
            events = sock.getsockopt(zmq.EVENTS)
            if events & zmq.POLLIN:
                self._session.on_message(sock.recv_multipart(zmq.NOBLOCK), time.monotonic())
                continue
            if self._blocked and events & zmq.POLLOUT:
                self._flush()
            break
        self._changed()

    def _on_monitor(self) -> None:
        monitor = self._monitor
        if self._closed or monitor is None:
            return
        while monitor.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._session.on_link_up()
            else:
                # Replies that arrived before the drop are still readable: take them first.
                self._on_socket()
                self._session.on_link_down(HANDSHAKE_FAILURES.get(event), time.monotonic())
        self._changed()

    @property
    def counters(self) -> dict:
        """This connection's own counters: disconnects, calls re-sent, unmatched replies."""
        s = self._session
        return {"disconnects": s.disconnects, "resent": s.resent, "unmatched_replies": s.unmatched_replies}

    async def close(self) -> None:
        """Closes the connection; calls still in flight fail with BROKER_LOST."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._session.fail_all(BrokerLost("the client was closed with the call in flight"))
        if self._socket is not None and self._monitor is not None and self._loop is not None:
            self._loop.remove_reader(self._socket.getsockopt(zmq.FD))
            self._loop.remove_reader(self._monitor.getsockopt(zmq.FD))
            self._monitor.close(0)
            self._socket.disable_monitor()
            self._socket.close(0)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
