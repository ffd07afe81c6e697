"""What the sync and asyncio clients share above the session: call options, the frames
of a call, attribute proxies, batches, and the broker's `system.` functions."""

from __future__ import annotations

import itertools
from typing import Any, Dict, List, Optional, Tuple

from . import _wire
from .errors import RemoteError

_ids = itertools.count(1)


def next_id() -> int:
    """A call id unique in this process (ids only need to be unique per connection)."""
    return next(_ids)


class Options:
    """Per-call settings: deadline, whether the call may be re-sent, tracing, timings."""

    __slots__ = ("timeout", "idempotent", "traceparent", "timings", "wait_for_ready", "notices")

    def __init__(self, timeout: float, idempotent: bool = False,
                 traceparent: Optional[str] = None, timings: bool = False,
                 wait_for_ready: bool = False, notices: bool = False) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self.timeout = float(timeout)
        self.idempotent = idempotent
        self.traceparent = traceparent
        self.timings = timings
        self.wait_for_ready = wait_for_ready
        #: Ask brokers for NOTICEs (set by a client of several brokers).
        self.notices = notices

    def replace(self, **changes: Any) -> "Options":
        fields = {name: getattr(self, name) for name in self.__slots__}
        unknown = set(changes) - set(fields)
        if unknown:
            raise TypeError(f"unknown call option(s): {', '.join(sorted(unknown))}")
        fields.update({k: v for k, v in changes.items() if v is not None})
        return Options(**fields)

    def header(self, call_id: int) -> bytes:
        return _wire.header(call_id, max(1, int(self.timeout * 1000)), self.traceparent, self.timings,
                            self.wait_for_ready, self.notices)


def call_frames(function: str, args: Tuple[Any, ...], kwargs: Dict[str, Any],
                options: Options, call_id: int) -> List[bytes]:
    """A call's frames after the signature: name, header, body."""
    return [_wire.check_name(function), options.header(call_id), _wire.request_body(args, kwargs)]


class Outcome:
    """One call's outcome in a batch: a result or an error."""

    __slots__ = ("value", "error")

    def __init__(self, value: Any, error: Optional[RemoteError]) -> None:
        self.value = value
        self.error = error

    @property
    def ok(self) -> bool:
        return self.error is None

    def result(self) -> Any:
        """The result, or raises the call's error."""
        if self.error is not None:
            raise self.error
        return self.value

    def __repr__(self) -> str:
        return f"Outcome(value={self.value!r})" if self.ok else f"Outcome(error={self.error!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Outcome) and (self.value, repr(self.error)) == (other.value, repr(other.error))


def batch_outcomes(result: Any) -> List[Outcome]:
    """The outcomes of a batch reply's result (a list of reply bodies)."""
    if not isinstance(result, list):
        raise RemoteError(f"a batch reply is a list, not {type(result).__name__}", code="BAD_REQUEST")
    outcomes = []
    for reply in result:
        if isinstance(reply, dict):
            outcomes.append(Outcome(*_wire.outcome_of(reply)))
        else:
            outcomes.append(Outcome(None, RemoteError(f"malformed batch slot {reply!r}", code="BAD_REQUEST")))
    return outcomes


class Proxy:
    """`client.math.add(2, 3)`: attribute access builds the dotted function name."""

    __slots__ = ("_owner", "_name")

    def __init__(self, owner: Any, name: str) -> None:
        self._owner = owner
        self._name = name

    def __getattr__(self, part: str) -> "Proxy":
        if part.startswith("_"):
            raise AttributeError(part)
        return Proxy(self._owner, f"{self._name}.{part}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._owner.call(self._name, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<remote function {self._name}>"


class Batch:
    """Many calls in one request, answered together (PROTOCOL.md 4.8). Add calls with
    `call(...)` or attribute proxies, then `run()`; each call's outcome is in its slot."""

    def __init__(self, owner: Any, options: Options) -> None:
        self._owner = owner
        self._options = options
        self._calls: List[bytes] = []

    def call(self, function: str, *args: Any, **kwargs: Any) -> int:
        """Adds a call; returns its slot in the outcomes."""
        if len(self._calls) // 2 >= _wire.MAX_BATCH_CALLS:
            raise ValueError(f"a batch holds at most {_wire.MAX_BATCH_CALLS} calls")
        self._calls += [_wire.check_name(function), _wire.request_body(args, kwargs)]
        return len(self._calls) // 2 - 1

    def __getattr__(self, part: str) -> Proxy:
        if part.startswith("_"):
            raise AttributeError(part)
        return Proxy(self, part)

    def __len__(self) -> int:
        return len(self._calls) // 2

    def frames(self, call_id: int) -> List[bytes]:
        if not self._calls:
            raise ValueError("an empty batch: add calls first")
        return [b"system.batch", self._options.header(call_id), *self._calls]

    def run(self) -> Any:
        """Sends the batch and returns its outcomes (awaitable on the asyncio client)."""
        return self._owner._run_batch(self, self._options)


class SystemFunctions:
    """The broker's own functions, for both clients (each returns what `call` returns: a
    value on the sync client, an awaitable on the asyncio one)."""

    def call(self, function: str, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def ping(self) -> Any:
        """`"pong"` from the broker."""
        return self.call("system.ping")

    def functions(self) -> Any:
        """Every function connected workers host: name, doc, signature, workers, queued…"""
        return self.call("system.functions")

    def describe(self, function: str) -> Any:
        """One function's listing (UnknownFunction if no worker hosts it)."""
        return self.call("system.describe", function)

    def workers(self) -> Any:
        """Every connected worker: name, id, capacity, running, functions, draining."""
        return self.call("system.workers")

    def stats(self) -> Any:
        """The broker's counters."""
        return self.call("system.stats")
