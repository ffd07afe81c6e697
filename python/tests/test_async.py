"""The asyncio client against the real broker and the Rust demo worker."""

import asyncio
import datetime
import time

import pytest

from switchboard_rpc import (AsyncClient, BadArguments, BrokerLost, FunctionError, Outcome, Timeout,
                             UnknownFunction)


def run(coroutine):
    return asyncio.run(coroutine)


def test_every_demo_function_answers(demo):
    async def main():
        async with AsyncClient(demo.frontend, timeout=10) as client:
            assert await client.add(2, 3) == 5
            assert await client.call("greet", name="ada") == "hello, ada!"
            assert await client.greet("ada", greeting="hi") == "hi, ada!"
            assert await client.echo([1, "two", b"3", None]) == [1, "two", b"3", None]
            assert await client.upper("x") == "X"
            assert await client.bytes.len(b"abc") == 3
            assert await client.bytes.reverse(b"ab") == b"ba"
            moment = datetime.datetime(2024, 2, 29, 12, tzinfo=datetime.timezone.utc)
            assert await client.time.shift(moment, -1.0) == moment - datetime.timedelta(seconds=1)
            assert (await client.time.now()).tzinfo is not None
            assert await client.whoami() == "rust-1"
            assert await client.sleep_ms(3) == 3
            assert await client.lookup(5) == 5
            assert (await client.context())["attempt"] == 1
            assert await client.lookup_unhedged(6) == 6
            assert await client.work.idempotent("a", 1) == "a"
            assert await client.work.once("b", 1) == "b"
            with pytest.raises(FunctionError, match="bad"):
                await client.fail("bad")
            with pytest.raises(FunctionError, match="oops"):
                await client.panic("oops")
            with pytest.raises(BadArguments, match="takes 2 positional arguments but 3 were given"):
                await client.add(1, 2, 3)
            with pytest.raises(UnknownFunction):
                await client.nope()
            with pytest.raises(Timeout):
                await client.with_options(timeout=0.2).work_ms(3000)
            assert await client.ping() == "pong"
            assert [w["name"] for w in await client.workers()] == ["rust-1"]
            assert (await client.describe("add"))["name"] == "add"
            assert "add" in [f["name"] for f in await client.functions()]
            assert (await client.stats())["workers"] == 1
            result, timings = await client.with_options(timings=True).call_timed("add", 1, 1)
            assert result == 2 and timings["worker"] == "rust-1"
    run(main())


def test_thousands_of_concurrent_calls_on_one_connection(demo):
    async def main():
        async with AsyncClient(demo.frontend, timeout=20) as client:
            results = await asyncio.gather(*[client.add(i, 1) for i in range(5000)])
            assert results == [i + 1 for i in range(5000)]
            assert client.counters["unmatched_replies"] == 0
    run(main())


def test_batch(demo):
    async def main():
        async with AsyncClient(demo.frontend) as client:
            batch = client.batch()
            batch.add(1, 1)
            batch.nope()
            outcomes = await batch.run()
            assert outcomes[0] == Outcome(2, None)
            assert isinstance(outcomes[1].error, UnknownFunction)
    run(main())


def test_cancelling_the_awaiting_task_cancels_the_call(demo):
    async def main():
        async with AsyncClient(demo.frontend, timeout=10) as client:
            before = (await client.stats())["broker_errors"].get("CANCELLED", 0)
            task = asyncio.ensure_future(client.work_ms(5000))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            deadline = time.monotonic() + 5
            while (await client.stats())["broker_errors"].get("CANCELLED", 0) == before:
                assert time.monotonic() < deadline, "the broker never cancelled the call"
                await asyncio.sleep(0.02)
            # wait_for's timeout cancels too.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.work_ms(5000), 0.2)
    run(main())


def test_broker_lost_and_idempotent_resend(cluster):
    broker = cluster.broker()
    cluster.rust_worker(broker.backend, "steady", "--heartbeat-ms", "100")
    broker.wait_for_workers("whoami", 1)

    async def main():
        async with AsyncClient(broker.frontend, timeout=15) as client:
            assert await client.ping() == "pong"
            plain = asyncio.ensure_future(client.sleep_ms(1500))
            # Idempotent (client re-sends) and retry-safe (broker re-dispatches): see test_client.
            again = asyncio.ensure_future(client.with_options(idempotent=True).work.idempotent("again", 1500))
            await asyncio.sleep(0.3)
            broker.proc.kill()
            with pytest.raises(BrokerLost):
                await plain
            cluster.broker(frontend=broker.frontend, backend=broker.backend)
            assert await again == "again"
            assert client.counters["resent"] >= 1
    run(main())


def test_a_closed_client_refuses_calls(demo):
    async def main():
        client = AsyncClient(demo.frontend)
        assert await client.ping() == "pong"
        await client.close()
        with pytest.raises(BrokerLost, match="closed"):
            await client.ping()
    run(main())
