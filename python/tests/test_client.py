"""The sync client against the real broker and the Rust demo worker."""

import datetime
import signal
import time

import pytest

from switchboard_rpc import (BadArguments, BadRequest, BrokerLost, Cancelled, Client, FunctionError,
                             Outcome, Overloaded, PayloadTooLarge, RemoteError, ShuttingDown, Timeout,
                             UnknownFunction, WorkerLost)

UTC = datetime.timezone.utc


def test_every_demo_function_answers(client):
    assert client.add(2, 3) == 5
    assert client.call("add", -7, 2) == -5
    assert client.echo({"nested": [1, 2.5, None, True, "s", b"\x00\xff"]}) == \
        {"nested": [1, 2.5, None, True, "s", b"\x00\xff"]}
    assert client.upper("abc") == "ABC"
    assert client.greet(name="ada") == "hello, ada!"
    assert client.greet("ada", greeting="hi") == "hi, ada!"
    assert client.bytes.len(b"\x00" * 1000) == 1000
    assert client.bytes.reverse(b"\x01\x02\x03") == b"\x03\x02\x01"
    start = datetime.datetime(2024, 2, 29, 12, 0, 0, 250000, tzinfo=UTC)
    assert client.time.shift(start, 1.5) == start + datetime.timedelta(seconds=1.5)
    before = datetime.datetime.now(UTC)
    now = client.time.now()
    assert now.tzinfo is not None and abs((now - before).total_seconds()) < 5
    assert client.whoami() == "rust-1"
    assert client.sleep_ms(5) == 5
    assert 0 <= client.work_ms(5)
    assert client.lookup(42) == 42
    assert client.lookup_unhedged(7) == 7
    context = client.with_options(traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01").context()
    assert context["traceparent"] == "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    assert context["attempt"] == 1
    with pytest.raises(FunctionError, match="boom"):
        client.fail("boom")
    with pytest.raises(FunctionError, match="kaboom"):
        client.panic("kaboom")
    assert client.work.idempotent("token-1", 1) == "token-1"
    assert client.work.once("token-2", 1) == "token-2"
    assert client.isolated.pid() != client.isolated.pid()  # a process per call
    with pytest.raises(FunctionError, match="the isolated process died"):
        client.isolated.abort()
    with pytest.raises(Timeout):
        client.with_options(timeout=0.3).isolated.hang("/dev/null")
    called = {"isolated.pid", "isolated.abort", "isolated.hang", "add", "echo", "upper", "greet", "bytes.len", "bytes.reverse", "time.shift", "time.now",
              "whoami", "sleep_ms", "work_ms", "lookup", "lookup_unhedged", "context", "fail", "panic",
              "work.idempotent", "work.once"}
    assert {f["name"] for f in client.functions()} == called, "a demo function this test does not call"


def test_timezone_aware_datetimes_travel_and_naive_ones_are_refused(client):
    moment = datetime.datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert client.echo(moment) == moment
    assert client.echo(moment).tzinfo == UTC
    with pytest.raises(TypeError, match="naive datetime"):
        client.echo(datetime.datetime(2030, 1, 2))
    with pytest.raises(TypeError, match="cannot send a value of type object"):
        client.echo(object())


def test_every_error_class_reaches_the_caller(cluster):
    broker = cluster.broker("--queue-capacity", "1", "--max-request-bytes", "4096")
    cluster.rust_worker(broker.backend, "rust-1", "--threads", "1", "--prefetch", "0")
    broker.wait_for_workers("whoami", 1)
    with broker.client(5.0) as client:
        with pytest.raises(UnknownFunction) as unknown:
            client.nope()
        assert unknown.value.code == "UNKNOWN_FUNCTION" and not unknown.value.may_have_run
        with pytest.raises(BadArguments, match="add: takes 2 positional arguments but 1 was given"):
            client.add(1)
        with pytest.raises(BadArguments, match="unexpected keyword argument 'x'"):
            client.greet(name="a", x=1)
        with pytest.raises(FunctionError) as failed:
            client.fail("no")
        assert failed.value.may_have_run
        with pytest.raises(PayloadTooLarge):
            client.echo(b"x" * 5000)
        with pytest.raises(Timeout) as late:
            client.with_options(timeout=0.2).work_ms(2000)  # stops when the broker cancels it
        assert isinstance(late.value, TimeoutError)
        wait_until_idle(client)
        # One running, one queued: the next is refused.
        running = client.submit("sleep_ms", 500)
        queued = client.submit("sleep_ms", 500)
        time.sleep(0.1)
        with pytest.raises(Overloaded):
            client.sleep_ms(1)
        assert running.result() == 500 and queued.result() == 500
        batch = client.batch()
        batch.call("system.batch")
        assert isinstance(batch.run()[0].error, BadRequest)
        # system.cancel with the id of one of this client's calls: that call ends CANCELLED.
        wait_until_idle(client)
        running = client.submit("work_ms", 5000)
        time.sleep(0.1)
        assert client.call("system.cancel", running.call_id) is True
        with pytest.raises(Cancelled) as cancelled:
            running.result()
        assert cancelled.value.may_have_run
        # A stopping broker refuses what comes too late to run, while its last call finishes.
        wait_until_idle(client)
        last = client.submit("sleep_ms", 1500)
        time.sleep(0.2)
        broker.proc.signal(signal.SIGTERM)
        time.sleep(0.1)
        with pytest.raises(ShuttingDown) as refused:
            client.add(1, 1)
        assert not refused.value.may_have_run
        assert last.result() == 1500
        assert broker.proc.wait() == 0
        assert all(isinstance(e, RemoteError) for e in (unknown.value, failed.value, late.value))


def wait_until_idle(client):
    deadline = time.monotonic() + 10
    while any(w["running"] for w in client.workers()):
        assert time.monotonic() < deadline, "the worker never became idle"
        time.sleep(0.02)


def test_worker_lost_and_broker_lost_end_calls_in_flight(cluster):
    broker = cluster.broker()
    worker = cluster.rust_worker(broker.backend, "doomed")
    broker.wait_for_workers("whoami", 1)
    with broker.client(10.0) as client:
        pending = client.submit("work.once", "t1", 5000)
        time.sleep(0.3)
        worker.kill()
        with pytest.raises(WorkerLost) as lost:
            pending.result()
        assert lost.value.may_have_run
        cluster.rust_worker(broker.backend, "second")
        broker.wait_for_workers("whoami", 1)
        in_flight = client.submit("sleep_ms", 5000)
        time.sleep(0.3)
        broker.proc.kill()
        started = time.monotonic()
        with pytest.raises(BrokerLost) as dropped:
            in_flight.result()
        assert dropped.value.may_have_run
        assert time.monotonic() - started < 4.0, "BROKER_LOST is reported when the link drops, not at the deadline"
        with pytest.raises(BrokerLost, match="no connection to the broker"):
            client.with_options(timeout=0.3).add(1, 2)


def test_many_calls_in_flight_each_get_their_own_answer(client):
    futures = [client.submit("add", i, i) for i in range(3000)]
    assert [f.result() for f in futures] == [2 * i for i in range(3000)]
    assert client.counters["unmatched_replies"] == 0


def test_many_threads_share_one_client(client):
    import concurrent.futures

    def work(base):
        return [client.add(base, i) for i in range(200)]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(0, 8000, 1000)))
    assert results == [[base + i for i in range(200)] for base in range(0, 8000, 1000)]


def test_batch_answers_each_slot(client):
    batch = client.batch()
    assert batch.call("add", 1, 2) == 0
    batch.nope()
    batch.upper("x")
    batch.greet(name="b")
    outcomes = batch.run()
    assert outcomes[0] == Outcome(3, None)
    assert isinstance(outcomes[1].error, UnknownFunction) and not outcomes[1].ok
    assert outcomes[2].result() == "X" and outcomes[3].result() == "hello, b!"
    with pytest.raises(UnknownFunction):
        outcomes[1].result()


def test_introspection(client):
    assert client.ping() == "pong"
    names = [f["name"] for f in client.functions()]
    assert "add" in names and names == sorted(names)
    assert client.describe("add")["signature"] == "add(i64, i64) -> i64"
    with pytest.raises(UnknownFunction):
        client.describe("nope")
    workers = client.workers()
    assert [w["name"] for w in workers] == ["rust-1"]
    assert client.stats()["workers"] == 1


def test_timings_and_cancel(client):
    future = client.with_options(timings=True).submit("sleep_ms", 20)
    assert future.result() == 20
    assert future.timings["attempts"] == 1 and future.timings["worker"] == "rust-1"
    assert future.timings["running_us"] >= 20_000
    before = client.stats()["broker_errors"].get("CANCELLED", 0)
    long = client.submit("work_ms", 5000)
    time.sleep(0.2)
    assert long.cancel() and long.cancelled()
    deadline = time.monotonic() + 5
    while client.stats()["broker_errors"].get("CANCELLED", 0) == before:
        assert time.monotonic() < deadline, "the broker never cancelled the call"
        time.sleep(0.02)
    # The worker's slot comes back: a short call runs at once.
    assert client.with_options(timeout=2).sleep_ms(1) == 1


def test_idempotent_calls_survive_a_broker_restart(cluster):
    broker = cluster.broker()
    cluster.rust_worker(broker.backend, "steady", "--heartbeat-ms", "100")
    broker.wait_for_workers("whoami", 1)
    with broker.client(15.0) as client:
        plain = client.submit("sleep_ms", 1500)
        # Idempotent at the client (re-sent after the lost connection) and retry-safe at the
        # worker (re-dispatched by the broker if the worker it landed on is lost while the
        # workers re-register): the pair the contract promises a result for.
        again = client.with_options(idempotent=True).submit("work.idempotent", "again", 1500)
        time.sleep(0.3)
        broker.proc.kill()
        with pytest.raises(BrokerLost):
            plain.result()
        restarted = cluster.broker(frontend=broker.frontend, backend=broker.backend)
        assert again.result() == "again"
        assert client.counters["resent"] >= 1 and client.counters["disconnects"] >= 1
        restarted.wait_for_workers("whoami", 1)


def test_bad_names_and_options_are_refused_before_sending(client):
    with pytest.raises(ValueError, match="invalid function name"):
        client.call("")
    with pytest.raises(ValueError, match="invalid function name"):
        client.call("a\nb")
    with pytest.raises(ValueError, match="timeout"):
        client.with_options(timeout=0)
    with pytest.raises(TypeError, match="unknown call option"):
        client._options.replace(nonsense=1)


def test_a_closed_client_refuses_calls(demo):
    client = Client(demo.frontend, timeout=2)
    assert client.ping() == "pong"
    client.close()
    with pytest.raises(BrokerLost, match="closed"):
        client.ping()


def test_a_call_can_wait_for_its_first_worker(cluster):
    broker = cluster.broker()
    with broker.client(10) as client:
        with pytest.raises(UnknownFunction):
            client.whoami()
        waiting = client.with_options(wait_for_ready=True).submit("whoami")
        deadline = time.monotonic() + 5
        while not any(f["name"] == "whoami" and f["queued"] == 1 for f in client.functions()):
            assert time.monotonic() < deadline, "the waiting call never showed in the queue"
            time.sleep(0.02)
        cluster.rust_worker(broker.backend, "first")
        assert waiting.result() == "first"
