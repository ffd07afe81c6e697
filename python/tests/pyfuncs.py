"""Functions the Python workers of the tests serve."""

import asyncio
import datetime
import os
import time

from switchboard_rpc import Registry, current_call

registry = Registry()


@registry.function("py.double")
def double(x: float) -> float:
    """Doubles a number."""
    return x * 2


@registry.function("py.concat")
def concat(first: str, second: str, sep: str = " ") -> str:
    """Joins two strings with a separator."""
    return f"{first}{sep}{second}"


@registry.function("py.divide")
def divide(a, b):
    """Divides a by b."""
    return a / b


@registry.function("py.sleep")
def sleep(seconds: float) -> float:
    """Sleeps (waking early if the call is cancelled); returns the seconds asked."""
    current_call().wait_cancelled(seconds)
    return seconds


@registry.function("py.async_sleep")
async def async_sleep(seconds: float) -> float:
    """Sleeps on the event loop."""
    await asyncio.sleep(seconds)
    return seconds


@registry.function("py.async_fail")
async def async_fail(message: str) -> None:
    """Raises from a coroutine."""
    await asyncio.sleep(0)
    raise ValueError(message)


@registry.function("py.echo", inline=True)
def echo(value):
    """Returns its argument (inline)."""
    return value


@registry.function("py.now")
def now() -> datetime.datetime:
    """The worker's time."""
    return datetime.datetime.now(datetime.timezone.utc)


@registry.function("py.unencodable")
def unencodable():
    """Returns a value MessagePack cannot hold."""
    return object()


@registry.function("py.context")
def context() -> dict:
    """What the function sees of its call."""
    call = current_call()
    return {"call_id": call.call_id, "attempt": call.attempt, "traceparent": call.traceparent,
            "time_left": call.time_left(), "caller": call.caller}


@registry.function("py.record", retry_safe=True)
def record(path: str, token: str, seconds: float) -> str:
    """Appends a token to a file after a pause (retry-safe)."""
    time.sleep(seconds)
    with open(path, "a") as f:
        f.write(token + "\n")
    return token


@registry.function
def upper(text: str) -> str:
    """Returns the text in upper case (also hosted by the Rust demo worker)."""
    return text.upper()


@registry.function
def whoami() -> str:
    """The worker's name."""
    return current_call().worker
