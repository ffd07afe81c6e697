"""A worker hosting Python functions, with the switchboard-rpc package (pip install ./python).

    python3 worker.py [BACKEND_ENDPOINT]
    python -m switchboard_rpc worker worker:registry --broker tcp://127.0.0.1:5556   # the same

Plain functions run on a thread pool, `async def` ones on an event loop, while heartbeats go
on; an exception becomes an error reply and the worker keeps serving. SIGTERM or SIGINT:
leave gracefully (no new calls, running ones finish), exit 0. CURVE: set
SWITCHBOARD_CURVE_SERVER_KEY and SWITCHBOARD_CURVE_KEY_FILE.
"""

import asyncio
import datetime
import sys

from switchboard_rpc import Registry, Worker, current_call

registry = Registry()


@registry.function("py.double")
def double(x: float) -> float:
    """Doubles a number."""
    return x * 2


@registry.function("py.concat")
def concat(first: str, second: str, sep: str = " ") -> str:
    """Joins two strings with a separator (keyword arguments welcome)."""
    return f"{first}{sep}{second}"


@registry.function("py.divide")
def divide(a: float, b: float) -> float:
    """Divides a by b; dividing by zero fails."""
    return a / b


@registry.function("py.sleep")
def sleep(seconds: float) -> float:
    """Sleeps (stopping early if the call is cancelled), then returns the seconds asked."""
    current_call().wait_cancelled(seconds)
    return seconds


@registry.function("py.fetch")
async def fetch(delay: float) -> str:
    """An async function: waits on the event loop without holding a thread."""
    await asyncio.sleep(delay)
    return "fetched"


@registry.function("py.now", retry_safe=True)
def now() -> datetime.datetime:
    """The worker's current time, as a MessagePack timestamp."""
    return datetime.datetime.now(datetime.timezone.utc)


if __name__ == "__main__":
    worker = Worker(sys.argv[1] if len(sys.argv) > 1 else None, registry=registry)
    print("python worker: serving", flush=True)
    worker.run()
    print("python worker: stopped", flush=True)
