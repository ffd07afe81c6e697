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

With several brokers, `Tier` holds one `Session` per broker and makes the decisions that
span them, as the Rust client's `balance` module does: a new call goes to the one of two
brokers picked at random that holds fewer calls, among those that take calls (connected,
not stopping, not just restarted); a call that never reached a broker — unsent while its
connection is down, or answered SHUTTING_DOWN (it never ran, so whatever its kind) or
UNKNOWN_FUNCTION by a broker that just restarted — moves to one that takes calls.
"""

from __future__ import annotations

import heapq
import logging
import random
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
                 "settle", "queued_at", "function", "refusals")

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
        #: Brokers that answered UNKNOWN_FUNCTION to it.
        self.refusals = 0

    def pipelines(self) -> bool:
        return len(self.frames) == 3 and self.frames[0] != b"system.batch"


class Session:
    """Every call of one client connection, and what the link is doing."""

    def __init__(self, endpoint: str, retry_pause: float = 0.1, restart_window: float = 5.0,
                 max_unsent: int = 10_000) -> None:
        self.endpoint = endpoint
        #: How many other brokers there are (set by `Tier`). With any, every call that never
        #: ran may be retried elsewhere, and one answered UNKNOWN_FUNCTION here tries another,
        #: at most this many times.
        self.other_brokers = 0
        #: The broker said it is stopping: no new calls until a new connection.
        self.draining = False
        #: The broker just restarted and knows no worker yet: no new calls until then.
        self.cold_until: Optional[float] = None
        #: The broker left the client's list (its host name no longer stands for it).
        self.retired = False
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
        #: Calls a broker refused without running them (stopping, or just restarted), sent again.
        self.refused = 0

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
        """A message from the broker: one reply, a group of replies to a pipeline, or a
        NOTICE (a stopping broker gets no new calls)."""
        notice = _wire.notice(frames)
        if notice is not None:
            if notice == "stopping" and not self.draining:
                log.info("the broker at %s says it is stopping: no new calls go to it", self.endpoint)
                self.draining = True
            return
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
                self.refused += 1
                heapq.heappush(self.retries, (now + self.retry_pause, call.id, call))
                continue
            call.settle(result, error, timings)

    def on_link_up(self) -> None:
        self.link_up = True
        self.last_failure = None
        self.draining = False

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
        if self.cold_until is not None and self.cold_until <= now:
            self.cold_until = None
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
        times = [] if self.cold_until is None else [self.cold_until]
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
        """Whether an error means "it never ran: try again shortly" (idempotent calls, and
        every call when other brokers exist). SHUTTING_DOWN also marks the broker draining,
        UNKNOWN_FUNCTION from a just-restarted broker marks it cold for a pause."""
        if not (call.idempotent or self.other_brokers) or now + self.retry_pause >= call.give_up_at:
            return False
        restarting = call.resent or (
            self.last_disconnect is not None and now - self.last_disconnect < self.restart_window
        )
        if error.code == "SHUTTING_DOWN":
            if not self.draining:
                log.info("the broker at %s is stopping: no new calls go to it", self.endpoint)
            self.draining = True
            return True
        # A broker that just restarted and knows no worker yet; or, with other brokers, one
        # that lost its workers: the call never ran, another broker may run it (each once).
        if error.code == "UNKNOWN_FUNCTION" and (restarting or call.refusals < self.other_brokers):
            call.refusals += 1
            self.cold_until = now + self.retry_pause
            return True
        return False

    # ---- several brokers ----

    def load(self) -> int:
        """Calls this session holds, sent or not: what power-of-two-choices compares."""
        return len(self.unsent) + len(self.pending) + len(self.retries)

    def accepting(self) -> bool:
        """Whether new calls should come here: connected, not stopping, not cold, listed."""
        return self.link_up and not self.draining and self.cold_until is None and not self.retired

    def take_movable(self) -> List[Call]:
        """Gives up every call not sent (waiting for the link, or paused before a retry):
        none is at the broker, so another session may send it."""
        moving = list(self.unsent) + [r[2] for r in self.retries]
        self.unsent.clear()
        self.retries = []
        return moving

    def adopt(self, call: Call) -> None:
        """Takes a call another session gave up, to send after the ones waiting here."""
        self.unsent.append(call)
        heapq.heappush(self.timers, (call.deadline, call.id))

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


class Tier:
    """The sessions of a client's brokers (one or more), and the decisions that span them:
    which broker a call goes to, and moving calls stranded on one that takes none."""

    def __init__(self, endpoints: List[str]) -> None:
        if not endpoints:
            raise ValueError("a client needs at least one broker endpoint")
        self.sessions = [Session(endpoint) for endpoint in endpoints]
        self._brokers_changed()
        self._random = random.Random()

    def _brokers_changed(self) -> None:
        """With several brokers, calls that never ran may go to another."""
        listed = sum(not s.retired for s in self.sessions)
        for session in self.sessions:
            session.other_brokers = max(0, listed - 1)

    def choose(self) -> int:
        """Of two brokers picked at random among those that take calls, the one holding
        fewer calls; with none taking calls, the least loaded (the call waits there)."""
        sessions = self.sessions
        if len(sessions) == 1:
            return 0
        accepting = [i for i, s in enumerate(sessions) if s.accepting()]
        if not accepting:
            listed = [i for i, s in enumerate(sessions) if not s.retired] or list(range(len(sessions)))
            return min(listed, key=lambda i: sessions[i].load())
        if len(accepting) == 1:
            return accepting[0]
        a, b = self._random.sample(accepting, 2)
        return b if sessions[b].load() < sessions[a].load() else a

    def follow(self, found: List[str]) -> List[str]:
        """The brokers the list stands for now are `found`: a listed broker that is not
        found is retired (no new calls; its calls end there); returns the endpoints found
        that have no session yet (the driver connects to each and calls `added`)."""
        for session in self.sessions:
            if not session.retired and session.endpoint not in found:
                log.info("broker %s no longer listed; no new calls go to it", session.endpoint)
                session.retired = True
        self._brokers_changed()
        listed = {s.endpoint for s in self.sessions if not s.retired}
        return [endpoint for endpoint in found if endpoint not in listed]

    def added(self, endpoint: str) -> int:
        """A session for a broker that appeared; returns its index."""
        self.sessions.append(Session(endpoint))
        self._brokers_changed()
        return len(self.sessions) - 1

    def finished(self, index: int) -> bool:
        """Whether broker `index` left the list and holds no call any more."""
        session = self.sessions[index]
        return session.retired and session.load() == 0

    def add(self, call: Call) -> None:
        """A new call, to the broker `choose` picks."""
        self.sessions[self.choose()].add(call)

    def forget(self, call_id: int) -> Optional[int]:
        """The caller stopped waiting: forget the call wherever it is. Returns the index of
        the broker it was sent to (which may still hold it), else None."""
        sent_to = None
        for index, session in enumerate(self.sessions):
            if session.forget(call_id) is not None:
                sent_to = index
        return sent_to

    def move_stranded(self) -> None:
        """Moves every call waiting on a broker that takes no calls to one that does."""
        sessions = self.sessions
        if len(sessions) == 1 or not any(s.accepting() for s in sessions):
            return
        for session in sessions:
            if session.accepting() or not (session.unsent or session.retries):
                continue
            for call in session.take_movable():
                sessions[self.choose()].adopt(call)

    def busy(self) -> bool:
        return any(s.busy() for s in self.sessions)

    def on_time(self, now: float) -> None:
        for session in self.sessions:
            session.on_time(now)
        self.move_stranded()

    def next_wakeup(self) -> Optional[float]:
        times = [t for t in (s.next_wakeup() for s in self.sessions) if t is not None]
        return min(times) if times else None

    def fail_all(self, error: RemoteError) -> None:
        for session in self.sessions:
            session.fail_all(error)

    def counters(self) -> dict:
        """Disconnects, calls re-sent and unmatched replies, over every broker."""
        return {
            "disconnects": sum(s.disconnects for s in self.sessions),
            "resent": sum(s.resent for s in self.sessions),
            "unmatched_replies": sum(s.unmatched_replies for s in self.sessions),
            "refused": sum(s.refused for s in self.sessions),
        }

