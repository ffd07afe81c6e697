"""Switchboard for Python: a client (sync and asyncio) and a worker for the Switchboard
ZeroMQ RPC broker. See python/README.md, and docs/PROTOCOL.md for the wire protocol."""

from .aio import AsyncClient
from .client import CallFuture, Client
from .curve import Curve, CurveError
from .errors import (
    BadArguments,
    BadRequest,
    BrokerLost,
    Cancelled,
    FunctionError,
    Overloaded,
    PayloadTooLarge,
    RemoteError,
    ShuttingDown,
    SwitchboardError,
    Timeout,
    UnknownFunction,
    UnrecognizedError,
    WorkerLost,
)
from ._calls import Outcome
from .registry import Registry
from .worker import CallContext, Worker, current_call

__all__ = [
    "AsyncClient", "BadArguments", "BadRequest", "BrokerLost", "CallContext", "CallFuture", "Cancelled", "Client", "Curve",
    "CurveError", "FunctionError", "Outcome", "Overloaded", "PayloadTooLarge", "RemoteError",
    "Registry", "ShuttingDown", "SwitchboardError", "Timeout", "UnknownFunction",
    "UnrecognizedError", "Worker", "WorkerLost", "current_call",
]
__version__ = "0.1.0"
