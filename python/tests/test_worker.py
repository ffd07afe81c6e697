"""The Python worker, serving real brokers: calls from the Rust CLI, the Python clients,
and (in tests/tests/python.rs) the Rust client library."""

import datetime
import json
import os
import signal
import time

import pytest

from switchboard_rpc import (BadArguments, Cancelled, FunctionError, Registry, Timeout, Worker,
                             WorkerLost, current_call)


@pytest.fixture
def pyworker(cluster):
    """A broker with one Python worker."""
    broker = cluster.broker()
    cluster.python_worker(broker.backend, "py-1")
    broker.wait_for_workers("py.double", 1)
    return broker


def test_the_rust_cli_calls_python_functions(cluster, pyworker):
    def call(*args):
        return cluster.run_rust_client("--endpoint", pyworker.frontend, "call", *args)

    assert json.loads(call("py.double", "21").stdout) == 42
    assert json.loads(call("py.concat", "a", "b", "sep=-").stdout) == "a-b"
    assert json.loads(call("py.echo", '{"$bin": "AAE="}').stdout) == {"$bin": "AAE="}
    assert "$timestamp" in json.loads(call("py.now").stdout)
    refused = call("py.concat", "a")
    assert refused.returncode != 0 and "BAD_ARGUMENTS: py.concat: missing required argument 'second'" in refused.stderr
    failed = call("py.divide", "1", "0")
    assert "FUNCTION_ERROR: ZeroDivisionError: division by zero" in failed.stderr
    listing = cluster.run_rust_client("--endpoint", pyworker.frontend, "describe", "py.concat").stdout
    assert "py.concat(first: str, second: str, sep: str = ' ') -> str" in listing
    assert "Joins two strings with a separator." in listing


def test_binding_follows_the_rust_registry(pyworker):
    with pyworker.client(5) as client:
        assert client.py.double(2.5) == 5.0
        assert client.py.concat("a", "b") == "a b"
        assert client.py.concat("a", second="b", sep="+") == "a+b"
        cases = {
            ("py.concat", ("a", "b", "c", "d"), ()): "py.concat: takes at most 3 positional arguments but 4 were given",
            ("py.concat", ("a",), (("first", "x"),)): "py.concat: got multiple values for argument 'first'",
            ("py.concat", ("a", "b"), (("nope", 1),)): "py.concat: got an unexpected keyword argument 'nope'",
            ("py.double", (), ()): "py.double: missing required argument 'x'",
            ("py.double", ("x",), ()): "py.double: argument 1: expected a number, got a string",
            ("py.concat", (1, "b"), ()): "py.concat: argument 1: expected a string, got 1",
            ("py.concat", ("a",), (("second", None),)): "py.concat: argument 'second': expected a string, got nil",
        }
        for (function, args, kwargs), message in cases.items():
            with pytest.raises(BadArguments) as refused:
                client.call(function, *args, **dict(kwargs))
            assert refused.value.message == message


def test_errors_never_stop_the_worker(pyworker):
    with pyworker.client(5) as client:
        with pytest.raises(FunctionError, match="ZeroDivisionError"):
            client.py.divide(1, 0)
        with pytest.raises(FunctionError, match="ValueError: async boom"):
            client.py.async_fail("async boom")
        with pytest.raises(FunctionError, match="cannot encode the result"):
            client.py.unencodable()
        with pytest.raises(Timeout):
            client.with_options(timeout=0.2).py.async_sleep(2)
        assert client.py.double(1) == 2
        assert client.py.async_sleep(0.01) == 0.01
        moment = client.py.now()
        assert moment.tzinfo is not None
        assert client.py.echo(moment) == moment
        trace = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
        context = client.with_options(traceparent=trace, timeout=3).py.context()
        assert context["traceparent"] == trace and context["attempt"] == 1
        assert 0 < context["time_left"] <= 3
        assert context["caller"] is None  # no CURVE: the broker does not know who called
        timed = client.with_options(timings=True).submit("py.sleep", 0.05)
        assert timed.result() == 0.05
        assert 50_000 <= timed.timings["run_us"] <= timed.timings["running_us"], timed.timings


def test_cancelled_and_timed_out_calls_stop_and_give_their_slot_back(cluster):
    broker = cluster.broker()
    cluster.python_worker(broker.backend, "py-1", "--threads", "1", env={"SWITCHBOARD_PREFETCH": "0"})
    broker.wait_for_workers("py.sleep", 1)
    with broker.client(5) as client:
        long = client.submit("py.sleep", 30)
        time.sleep(0.2)
        long.cancel()
        # The only thread is free again well before the 30 s sleep would end.
        assert client.with_options(timeout=3).py.sleep(0.01) == 0.01
        with pytest.raises(Timeout):
            client.with_options(timeout=0.2).py.sleep(30)
        assert client.with_options(timeout=3).py.sleep(0.01) == 0.01


def test_kill_9_is_worker_lost_and_sigterm_loses_no_call(cluster):
    broker = cluster.broker()
    doomed = cluster.python_worker(broker.backend, "doomed")
    broker.wait_for_workers("py.sleep", 1)
    with broker.client(10) as client:
        running = client.submit("py.sleep", 5)
        time.sleep(0.3)
        doomed.signal(signal.SIGKILL)
        with pytest.raises(WorkerLost):
            running.result()
        graceful = cluster.python_worker(broker.backend, "graceful")
        broker.wait_for_workers("py.sleep", 1)
        calls = [client.submit("py.sleep", 0.5) for _ in range(12)]
        time.sleep(0.2)
        graceful.signal(signal.SIGTERM)
        assert [c.result() for c in calls] == [0.5] * 12
        assert graceful.wait() == 0
        assert client.workers() == []


def test_broker_restart_the_worker_registers_again(cluster, tmp_path):
    broker = cluster.broker()
    cluster.python_worker(broker.backend, "py-1", env={"SWITCHBOARD_HEARTBEAT_MS": "100"})
    broker.wait_for_workers("py.record", 1)
    broker.proc.kill()
    restarted = cluster.broker(frontend=broker.frontend, backend=broker.backend)
    restarted.wait_for_workers("py.record", 1)
    path = tmp_path / "record"
    with restarted.client(10) as client:
        assert client.with_options(idempotent=True).py.record(str(path), "after", 0.01) == "after"
    assert path.read_text() == "after\n"


def test_mixed_pool_of_rust_and_python_workers(cluster):
    broker = cluster.broker()
    cluster.rust_worker(broker.backend, "rust-1")
    cluster.python_worker(broker.backend, "py-1")
    broker.wait_for_workers("upper", 2)
    with broker.client(10) as client:
        assert [f["workers"] for f in client.functions() if f["name"] == "upper"] == [2]
        answers = [client.submit("upper", f"x{i}") for i in range(400)]
        assert [a.result() for a in answers] == [f"X{i}" for i in range(400)]
        who = {client.submit("whoami").result() for _ in range(1)}
        names = set()
        for _ in range(20):
            names |= {f.result() for f in [client.submit("whoami") for _ in range(50)]}
            if names == {"rust-1", "py-1"}:
                break
        assert names == {"rust-1", "py-1"}, names
        assert who <= names


def test_worker_in_process_with_a_registry(cluster):
    broker = cluster.broker()
    registry = Registry()

    @registry.function
    def add(a: int, b: int) -> int:
        """Adds two integers."""
        return a + b

    math = Registry()

    @math.function("mul", retry_safe=True, hedge_ms=50)
    def multiply(a: float, b: float) -> float:
        return a * b

    registry.mount("math", math)
    worker = Worker(broker.backend, registry=registry, name="inproc", threads=2, curve=False)

    @worker.function(inline=True)
    def context_name() -> str:
        return current_call().worker

    thread = worker.start()
    try:
        broker.wait_for_workers("math.mul", 1)
        with broker.client(5) as client:
            assert client.add(2, 3) == 5
            assert client.math.mul(2, 2.5) == 5.0
            assert client.context_name() == "inproc"
            listing = {f["name"]: f for f in client.functions()}
            assert listing["math.mul"]["retry_safe"] is True
            assert listing["math.mul"]["signature"] == "math.mul(a: float, b: float) -> float"
            assert listing["add"]["doc"] == "Adds two integers."
    finally:
        worker.stop()
        thread.join(15)
    assert not thread.is_alive()


def test_registry_refuses_what_the_broker_would():
    registry = Registry()
    with pytest.raises(ValueError, match="reserved"):
        registry.add("system.x", lambda: 1)
    with pytest.raises(ValueError, match="at most 255 bytes"):
        registry.add("x" * 256, lambda: 1)
    registry.add("f", lambda: 1)
    with pytest.raises(ValueError, match="already registered"):
        registry.add("f", lambda: 2)
    with pytest.raises(ValueError, match="retry_safe"):
        registry.add("g", lambda: 1, hedge_ms=10)

    async def coroutine():
        return 1

    with pytest.raises(ValueError, match="async function cannot be inline"):
        registry.add("h", coroutine, inline=True)


def test_a_python_worker_serves_several_brokers(cluster):
    first, second = cluster.broker(), cluster.broker()
    worker = cluster.python_worker(f"{first.backend},{second.backend}", "both",
                                   env={"SWITCHBOARD_HEARTBEAT_MS": "100"})
    first.wait_for_workers("py.double", 1)
    second.wait_for_workers("py.double", 1)
    for broker in (first, second):
        with broker.client(5) as client:
            assert [(w["name"], w["capacity"]) for w in client.workers()] == [("both", 10)], \
                "4 threads + 16 prefetch split over 2 brokers"
            assert [f.result() for f in [client.submit("py.double", i) for i in range(50)]] == \
                [2 * i for i in range(50)]
    first.proc.kill()
    with second.client(5) as client:
        assert client.py.double(21) == 42
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0
        assert client.workers() == []


def test_a_python_worker_moves_its_capacity_to_the_broker_whose_calls_wait(cluster):
    first, second = cluster.broker(), cluster.broker()
    cluster.python_worker(f"{first.backend},{second.backend}", "mover",
                          env={"SWITCHBOARD_HEARTBEAT_MS": "50", "SWITCHBOARD_THREADS": "6",
                               "SWITCHBOARD_PREFETCH": "0"})
    first.wait_for_workers("py.sleep", 1)
    second.wait_for_workers("py.sleep", 1)

    def capacities():
        with first.client(5) as a, second.client(5) as b:
            return a.workers()[0]["capacity"], b.workers()[0]["capacity"]

    def wait_for(expected, what):
        until = time.monotonic() + 15
        while (found := capacities()) != expected:
            assert time.monotonic() < until, f"{what}: capacities stayed {found}"
            time.sleep(0.02)

    assert capacities() == (3, 3), "an even split to start"
    with first.client(10) as client:
        # More calls than slots, all through the first broker: they wait there.
        calls = [client.submit("py.sleep", 0.1) for _ in range(40)]
        wait_for((5, 1), "the slots follow the waiting calls")
        assert [c.result() for c in calls] == [0.1] * 40
    wait_for((3, 3), "idle again: an even split")
