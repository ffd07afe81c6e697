"""The client's call table as a state machine with no socket in it.

`Session` knows every call between its caller and its outcome: waiting to be sent
(`unsent`), handed to ZeroMQ (`pending`), or paused before an idempotent retry
(`retries`). The socket drivers (the sync client's I/O thread, the asyncio client's
tasks) feed it what happened — a call, a cancellation, a reply message, the link going up
or down, the time — and ask it what to send and when to wake. Both clients share it, so
they keep the same contract as the Rust client:

- nothing is sent while no connection is known to be up (ZeroMQ would queue it into a
  connection that may be dying, where it could be lost with no event to tell);
- calls waiting together leave together, up to 256 in one pipelined message;
- a call still unsent at its deadline fails and says why it never left;
- when the link drops, idempotent calls in flight are sent again on the next connection
  and the others fail at once with BROKER_LOST;
- an idempotent call answered SHUTTING_DOWN, or UNKNOWN_FUNCTION by a broker that just
  restarted, is sent again after a pause;
- a call with no reply by its deadline (plus a short grace for the broker's own TIMEOUT)
  fails with TIMEOUT: every call ends.
"""

from __future__ import annotations

import heapq
import logging
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from . import _wire
from .errors import BrokerLost, Overloaded, RemoteError, Timeout

log = logging.getLogger("switchboard_rpc.client")

#: Called once with a call's outcome: (result, error, timings).
Settle = Callable[[Any, Optional[RemoteError], Optional[dict]], None]

#: How long past a call's deadline the client waits for the broker to report it.
DEADLINE_GRACE = 0.25


class Call:
    """One call, from its caller to its outcome."""

    __slots__ = ("id", "frames", "deadline", "give_up_at", "timeout", "idempotent", "resent",
                 "settle", "queued_at", "function")

    def __init__(self, call_id: int, frames: List[bytes], timeout: float, idempotent: bool,
                 settle: Settle, now: float, function: str) -> None:
        self.id = call_id
        self.frames = frames  # after the signature: name, header, body (or a batch's)
        self.timeout = timeout
        self.deadline = now + timeout
        self.give_up_at = self.deadline + DEADLINE_GRACE
        self.idempotent = idempotent
        self.resent = False
        self.settle = settle
        self.queued_at = now
        self.function = function

    def pipelines(self) -> bool:
        return len(self.frames) == 3 and self.frames[0] != b"system.batch"


class Session:
    """Every call of one client connection, and what the link is doing."""

    def __init__(self, endpoint: str, retry_pause: float = 0.1, restart_window: float = 5.0,
                 max_unsent: int = 10_000) -> None:
        self.endpoint = endpoint
        self.retry_pause = retry_pause
        self.restart_window = restart_window
        self.max_unsent = max_unsent
        self.unsent: Deque[Call] = deque()
        self.pending: Dict[int, Call] = {}
        self.retries: List[Tuple[float, int, Call]] = []
        # (when, id) of every call held: its deadline while unsent, then its give-up time;
        # entries of calls that ended are skipped when they come up.
        self.timers: List[Tuple[float, int]] = []
        self.link_up = False
        self.last_failure: Optional[str] = None
        self.last_disconnect: Optional[float] = None
        #: Counters: connections lost, idempotent calls sent again, replies nobody waited for.
        self.disconnects = 0
        self.resent = 0
        self.unmatched_replies = 0

    # ---- from callers ----

    def add(self, call: Call) -> None:
        """A new call, queued to be sent (OVERLOADED at once when the queue is full)."""
        if len(self.unsent) >= self.max_unsent:
            call.settle(None, Overloaded(
                f"{self.max_unsent} calls are already waiting to be sent to the broker at {self.endpoint}"
            ), None)
            return
        self.unsent.append(call)
        heapq.heappush(self.timers, (call.deadline, call.id))
        if len(self.timers) > 2 * (len(self.pending) + len(self.unsent)) + 1024:
            self._compact_timers()

    def forget(self, call_id: int) -> Optional[Call]:
        """The caller stopped waiting for this call: forget it wherever it is. Returns it
        if it was sent (the broker may still hold it), else None."""
        call = self.pending.pop(call_id, None)
        if call is not None:
            return call
        for at, waiting in enumerate(self.unsent):
            if waiting.id == call_id:
                del self.unsent[at]
                return None
        self.retries = [r for r in self.retries if r[1] != call_id]
        return None

    # ---- to the socket ----

    def busy(self) -> bool:
        """Whether any call waits for something (to be sent, a reply, a retry)."""
        return bool(self.unsent or self.pending or self.retries)

    def wants_to_send(self) -> bool:
        return self.link_up and bool(self.unsent)

    def next_message(self) -> Optional[Tuple[List[bytes], List[Call]]]:
        """The next message to hand to ZeroMQ (DEALER form) and its calls, taken off the
        queue; None while the link is down or nothing waits. The driver answers with
        `sent` or `not_sent`."""
        if not self.wants_to_send():
            return None
        first = self.unsent.popleft()
        if not first.pipelines() or not self.unsent or not self.unsent[0].pipelines():
            return [b"", _wire.CLIENT_SIGNATURE, *first.frames], [first]
        calls = [first]
        frames = [b"", _wire.CLIENT_SIGNATURE, *first.frames]
        while self.unsent and len(calls) < _wire.MAX_CALLS_PER_MESSAGE and self.unsent[0].pipelines():
            call = self.unsent.popleft()
            calls.append(call)
            frames += call.frames
        return frames, calls

    def sent(self, calls: List[Call]) -> None:
        """ZeroMQ took the message of these calls."""
        for call in calls:
            self.pending[call.id] = call

    def not_sent(self, calls: List[Call]) -> None:
        """ZeroMQ could not take the message now: its calls wait again, first in line."""
        self.unsent.extendleft(reversed(calls))

    # ---- from the socket ----

    def on_message(self, frames: List[bytes], now: float) -> None:
        """A message from the broker: one reply, or a group of replies to a pipeline."""
        try:
            replies = list(_wire.split_replies(frames))
        except ValueError as error:
            self.unmatched_replies += 1
            log.warning("dropping a malformed message from the broker at %s: %s", self.endpoint, error)
            return
        for header, body in replies:
            call_id = _wire.reply_id(header)
            call = self.pending.pop(call_id, None) if call_id is not None else None
            if call is None:
                self.unmatched_replies += 1
                continue
            result, error, timings = _wire.reply_outcome(body)
            if error is not None and self._worth_retrying(call, error, now):
                heapq.heappush(self.retries, (now + self.retry_pause, call.id, call))
                continue
            call.settle(result, error, timings)

    def on_link_up(self) -> None:
        self.link_up = True
        self.last_failure = None

    def on_link_down(self, failure: Optional[str], now: float) -> None:
        """The connection closed or a handshake failed. The driver first hands over every
        reply the socket still holds: a broker that answers and then exits loses none."""
        was_up, self.link_up = self.link_up, False
        if failure is not None:
            self.last_failure = failure
        if not was_up:
            return
        self.disconnects += 1
        self.last_disconnect = now
        lost, self.pending = self.pending, {}
        for call in lost.values():
            if call.idempotent:
                self._again(call)
            else:
                call.settle(None, BrokerLost(
                    "the connection to the broker dropped; the call may or may not have run"
                ), None)

    # ---- time ----

    def on_time(self, now: float) -> None:
        """Retries whose pause ended are queued; unsent calls past their deadline fail;
        sent calls past their deadline and grace fail with TIMEOUT."""
        while self.retries and self.retries[0][0] <= now:
            _, _, call = heapq.heappop(self.retries)
            self._again(call)
        unsent_expired = False
        while self.timers and self.timers[0][0] <= now:
            _, call_id = heapq.heappop(self.timers)
            call = self.pending.get(call_id)
            if call is None:
                unsent_expired = True  # unsent, or ended: looked for below
            elif call.give_up_at <= now:
                del self.pending[call_id]
                call.settle(None, Timeout(f"no reply to {call.function} within {call.timeout:g} s"), None)
            else:
                heapq.heappush(self.timers, (call.give_up_at, call_id))
        if unsent_expired and any(call.deadline <= now for call in self.unsent):
            keep: Deque[Call] = deque()
            for call in self.unsent:
                if call.deadline <= now:
                    call.settle(None, self._unsent_error(now - call.queued_at), None)
                else:
                    keep.append(call)
            self.unsent = keep

    def next_wakeup(self) -> Optional[float]:
        """The earliest time `on_time` has something to do, or None."""
        times = []
        if self.retries:
            times.append(self.retries[0][0])
        if self.timers:
            times.append(self.timers[0][0])
        return min(times) if times else None

    def _compact_timers(self) -> None:
        held = [*self.unsent, *self.pending.values()]
        self.timers = [(call.deadline, call.id) for call in held]
        heapq.heapify(self.timers)

    def fail_all(self, error: RemoteError) -> None:
        """The client is closing: every call still held ends with `error`."""
        calls = [*self.unsent, *self.pending.values(), *(r[2] for r in self.retries)]
        self.unsent.clear()
        self.pending.clear()
        self.retries.clear()
        for call in calls:
            call.settle(None, error, None)

    # ---- rules ----

    def _again(self, call: Call) -> None:
        call.resent = True
        self.resent += 1
        self.unsent.append(call)
        heapq.heappush(self.timers, (call.deadline, call.id))

    def _worth_retrying(self, call: Call, error: RemoteError, now: float) -> bool:
        if not call.idempotent or now + self.retry_pause >= call.give_up_at:
            return False
        restarting = call.resent or (
            self.last_disconnect is not None and now - self.last_disconnect < self.restart_window
        )
        return error.code == "SHUTTING_DOWN" or (restarting and error.code == "UNKNOWN_FUNCTION")

    def _unsent_error(self, waited: float) -> RemoteError:
        waited_ms = int(waited * 1000)
        if self.link_up:
            return Overloaded(
                f"the call was not sent: the send queue to the broker at {self.endpoint} "
                f"stayed full for {waited_ms} ms"
            )
        why = f": {self.last_failure}" if self.last_failure else " (is the broker running and reachable?)"
        return BrokerLost(
            f"the call was not sent: no connection to the broker at {self.endpoint} "
            f"came up in {waited_ms} ms{why}"
        )
