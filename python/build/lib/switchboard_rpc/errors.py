"""Errors a call can end in: one class per protocol error code, under `RemoteError`.

Every class says whether the call may have run (`may_have_run`): a caller that must not
run a call twice retries only errors where it is false.
"""

from __future__ import annotations

from typing import ClassVar, Dict, Type


class SwitchboardError(Exception):
    """Base of every error this package raises."""


class RemoteError(SwitchboardError):
    """A call ended without a result. `code` is from the protocol's vocabulary
    (docs/PROTOCOL.md 4.6), `message` says why in words."""

    code: ClassVar[str] = ""
    #: Whether the function may have run (in part or whole) before the call failed.
    may_have_run: ClassVar[bool] = True

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code  # type: ignore[misc] - an unrecognised code keeps its own

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __reduce__(self):  # picklable, for multiprocessing and concurrent.futures
        return (from_wire, (self.code, self.message))


class FunctionError(RemoteError):
    """The function ran and raised (its message is the function's own)."""

    code = "FUNCTION_ERROR"


class BadArguments(RemoteError):
    """The arguments do not fit the function's parameters; the function did not run."""

    code = "BAD_ARGUMENTS"
    may_have_run = False


class BadRequest(RemoteError):
    """The message did not follow the protocol; nothing ran."""

    code = "BAD_REQUEST"
    may_have_run = False


class PayloadTooLarge(RemoteError):
    """The request or the result is over a size limit (a result: the function ran)."""

    code = "PAYLOAD_TOO_LARGE"


class UnknownFunction(RemoteError):
    """No connected worker hosts the function; nothing ran."""

    code = "UNKNOWN_FUNCTION"
    may_have_run = False


class Overloaded(RemoteError):
    """Every capable worker is busy and the queue is full; nothing ran."""

    code = "OVERLOADED"
    may_have_run = False


class ShuttingDown(RemoteError):
    """The broker is stopping and took no new call; nothing ran."""

    code = "SHUTTING_DOWN"
    may_have_run = False


class Timeout(RemoteError, TimeoutError):
    """The deadline passed (in a queue, while running, or waiting for the reply)."""

    code = "TIMEOUT"


class WorkerLost(RemoteError):
    """The worker running the call was lost; the call may or may not have run."""

    code = "WORKER_LOST"


class BrokerLost(RemoteError, ConnectionError):
    """The connection to the broker dropped with the call in flight (never on the
    wire: the client notices it); the call may or may not have run."""

    code = "BROKER_LOST"


class Cancelled(RemoteError):
    """The caller cancelled the call; it may or may not have run."""

    code = "CANCELLED"


class UnrecognizedError(RemoteError):
    """A code this version does not know (the protocol lets brokers add codes)."""


BY_CODE: Dict[str, Type[RemoteError]] = {
    cls.code: cls
    for cls in (
        FunctionError,
        BadArguments,
        BadRequest,
        PayloadTooLarge,
        UnknownFunction,
        Overloaded,
        ShuttingDown,
        Timeout,
        WorkerLost,
        BrokerLost,
        Cancelled,
    )
}


def from_wire(code: str, message: str) -> RemoteError:
    """The exception for an error reply `{"code": code, "message": message}`."""
    cls = BY_CODE.get(code)
    if cls is None:
        return UnrecognizedError(message, code=str(code))
    return cls(message)
