"""Calls the demo worker's functions with the switchboard-rpc package (pip install ./python).

    python3 client.py [ENDPOINT]            a few calls against the Rust demo worker
    python3 client.py ENDPOINT --check      the same, asserting every result (run by the tests)

CURVE: set SWITCHBOARD_CURVE_SERVER_KEY and SWITCHBOARD_CURVE_KEY_FILE; the client reads them.
"""

import asyncio
import datetime
import sys

from switchboard_rpc import AsyncClient, BadArguments, Client, UnknownFunction


def main():
    endpoint = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "tcp://127.0.0.1:5555"
    check = "--check" in sys.argv

    def show(label, value, expected):
        print(f"{label} -> {value!r}")
        if check:
            assert value == expected, f"{label}: expected {expected!r}, got {value!r}"

    with Client(endpoint, timeout=5) as client:
        show("add(2, 3)", client.add(2, 3), 5)
        show("greet(name='ada')", client.greet(name="ada"), "hello, ada!")
        show("bytes.reverse(b'\\x00\\x01\\x02')", client.bytes.reverse(b"\x00\x01\x02"), b"\x02\x01\x00")
        start = datetime.datetime(2024, 2, 29, 12, 0, tzinfo=datetime.timezone.utc)
        show("time.shift(start, 1.5)", client.time.shift(start, 1.5), start + datetime.timedelta(seconds=1.5))
        try:
            client.add(1)
        except BadArguments as error:
            show("add(1) raises", error.message, "add: takes 2 positional arguments but 1 was given")

        futures = [client.submit("add", i, i) for i in range(200)]   # 200 calls in flight
        show("200 calls in flight", [f.result() for f in futures], [2 * i for i in range(200)])

        batch = client.batch()
        batch.add(1, 2)
        batch.nope()
        outcomes = batch.run()
        show("batch slot 1", outcomes[0].result(), 3)
        show("batch slot 2", type(outcomes[1].error), UnknownFunction)

    async def concurrently():
        async with AsyncClient(endpoint, timeout=5) as client:
            return await asyncio.gather(*[client.upper(word) for word in ("a", "b", "c")])

    show("asyncio gather of upper()", asyncio.run(concurrently()), ["A", "B", "C"])
    print("python client: ok")


if __name__ == "__main__":
    main()
