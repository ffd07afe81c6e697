"""Clients over a tier of brokers: calls spread over every broker, and a broker that dies
or stops costs no call that could be saved (the same contract as the Rust client)."""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import Proc, binary

from switchboard_rpc import AsyncClient, Client
from switchboard_rpc.errors import BrokerLost


def tier(cluster, brokers=2, workers=2):
    """`brokers` brokers and `workers` Rust demo workers, each serving every broker."""
    started = [cluster.broker() for _ in range(brokers)]
    backends = ",".join(b.backend for b in started)
    for i in range(workers):
        cluster.rust_worker(backends, f"w{i}", "--heartbeat-ms", "100")
    for broker in started:
        broker.wait_for_workers("whoami", workers)
    return started, ",".join(b.frontend for b in started)


def connected(client):
    """Drives the client until it is connected to every broker (bounded)."""
    until = time.monotonic() + 10
    while not all(s.link_up for s in client._tier.sessions):
        assert time.monotonic() < until, "not every broker connection came up"
        client.call("add", 1, 1)
    return client


def test_calls_spread_over_every_broker_and_survive_one_killed(cluster):
    brokers, frontends = tier(cluster, brokers=3)
    with Client(frontends, timeout=10.0) as client:
        connected(client)
        calls = client.with_options(idempotent=True)
        futures = [calls.submit("work.idempotent", f"s{i}", 5) for i in range(300)]
        assert [f.result() for f in futures] == [f"s{i}" for i in range(300)]
        # Every broker took a share (power-of-two-choices on outstanding calls).
        for broker in brokers:
            with broker.client() as one:
                assert one.stats()["requests"] > 10, broker.frontend
        futures = [calls.submit("work.idempotent", f"t{i}", 5) for i in range(300)]
        brokers[1].proc.kill()
        assert [f.result() for f in futures] == [f"t{i}" for i in range(300)]
        # New calls go to the brokers left, not-idempotent ones included.
        for i in range(50):
            assert client.call("add", i, 1) == i + 1
        counters = client.counters
        assert counters["unmatched_replies"] == 0
        assert counters["disconnects"] >= 1


def test_a_non_idempotent_call_in_flight_at_a_killed_broker_fails_broker_lost(cluster):
    brokers, frontends = tier(cluster, brokers=2, workers=1)
    with Client(frontends, timeout=10.0) as client:
        connected(client)
        slow = [client.submit("sleep_ms", 1000) for _ in range(4)]
        time.sleep(0.3)
        brokers[0].proc.kill()
        outcomes = []
        for future in slow:
            try:
                outcomes.append(future.result())
            except BrokerLost:
                outcomes.append("lost")
        assert "lost" in outcomes, "some calls were at the killed broker"
        assert 1000 in outcomes, "some calls were at the other one"


def test_async_client_loses_no_call_when_a_broker_stops_gracefully(cluster):
    brokers, frontends = tier(cluster, brokers=2)

    async def main():
        async with AsyncClient(frontends, timeout=10.0) as client:
            first = [client.call("work.once", f"a{i}", 20) for i in range(200)]
            await asyncio.sleep(0.05)
            brokers[0].proc.signal(signal.SIGTERM)
            # Calls made while it stops: refused SHUTTING_DOWN there (never run), so they
            # move to the other broker, whatever their kind.
            later = [client.call("work.once", f"b{i}", 1) for i in range(200)]
            results = await asyncio.gather(*first, *later)
            assert results == [f"a{i}" for i in range(200)] + [f"b{i}" for i in range(200)]
            assert brokers[0].proc.wait() == 0
            assert client.counters["unmatched_replies"] == 0

    asyncio.run(main())


def test_a_stopping_broker_tells_the_client_so_no_new_call_goes_there(cluster):
    brokers, frontends = tier(cluster, brokers=2, workers=1)
    with Client(frontends, timeout=10.0) as client:
        connected(client)
        slow = [client.submit("sleep_ms", 1500) for _ in range(6)]
        time.sleep(0.2)
        brokers[0].proc.signal(signal.SIGTERM)
        time.sleep(0.3)
        # Calls drive the socket: the NOTICE is read before the first of them is placed.
        client.call("add", 0, 0)
        refused = client.counters["refused"]
        assert [client.call("add", i, 2) for i in range(100)] == [i + 2 for i in range(100)]
        assert client.counters["refused"] == refused, "a call went to the stopping broker"
        assert [f.result() for f in slow] == [1500] * 6
        assert brokers[0].proc.wait() == 0


class NetNs:
    """A network namespace this test creates and deletes, with its own loopback and its own
    /etc/hosts (`ip netns exec` mounts /etc/netns/<name>/hosts over it). Needs root and
    iproute2 (scripts/setup.sh installs it); fails loudly without them."""

    def __init__(self, label):
        self.name = f"sbpy-{label}-{os.getpid()}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.etc = f"/etc/netns/{self.name}"
        os.makedirs(self.etc, exist_ok=True)
        self.hosts([])
        self.run("ip", "link", "set", "lo", "up")

    def hosts(self, entries):
        with open(f"{self.etc}/hosts", "w") as f:  # in place: the file is bind-mounted
            f.write("127.0.0.1 localhost\n" + "".join(f"{a} {n}\n" for a, n in entries))

    def command(self, *args):
        return ["ip", "netns", "exec", self.name, *args]

    def run(self, *args):
        return subprocess.run(self.command(*args), check=True, capture_output=True, text=True).stdout

    def close(self):
        subprocess.run(["ip", "netns", "delete", self.name], check=False)
        shutil.rmtree(self.etc, ignore_errors=True)


FOLLOWER_ASYNC = """
import asyncio, json, sys, time
from switchboard_rpc import AsyncClient
async def main():
    errors, calls = 0, 0
    async with AsyncClient("tcp://brokers:7400", timeout=5.0) as client:
        until = time.monotonic() + float(sys.argv[1])
        while time.monotonic() < until:
            try:
                assert await client.call("add", 1, 2) == 3
            except Exception as error:
                errors += 1
                print(repr(error), file=sys.stderr)
            calls += 1
    print(json.dumps({"calls": calls, "errors": errors}))
asyncio.run(main())
"""

FOLLOWER = """
import json, sys, time
from switchboard_rpc import Client
errors, calls = 0, 0
with Client("tcp://brokers:7400", timeout=5.0) as client:
    until = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < until:
        try:
            assert client.call("add", 1, 2) == 3
        except Exception as error:
            errors += 1
            print(repr(error), file=sys.stderr)
        calls += 1
print(json.dumps({"calls": calls, "errors": errors}))
"""


@pytest.mark.parametrize("script", [FOLLOWER, FOLLOWER_ASYNC], ids=["sync", "asyncio"])
def test_a_python_client_follows_brokers_as_their_host_name_changes(cluster, tmp_path, script):
    ns = NetNs("follow")
    try:
        ns.hosts([("127.0.0.1", "brokers")])
        a, b = "tcp://127.0.0.1:7400", "tcp://127.0.0.2:7400"
        for frontend, backend in ((a, "tcp://127.0.0.1:7401"), (b, "tcp://127.0.0.2:7401")):
            cluster.procs.append(Proc(ns.command(binary("broker"), "--frontend", frontend, "--backend", backend)))
        cluster.procs.append(Proc(ns.command(binary("worker"), "--broker", "tcp://127.0.0.1:7401,tcp://127.0.0.2:7401",
                                             "--heartbeat-ms", "100")))

        def requests(frontend):
            out = ns.run(binary("client"), "--endpoint", frontend, "--timeout-ms", "2000", "--json",
                         "call", "system.stats")
            return json.loads(out)["result"]["requests"]

        until = time.monotonic() + 15
        while True:
            try:
                if requests(a) and requests(b):
                    break
            except subprocess.CalledProcessError:
                pass
            assert time.monotonic() < until, "the brokers never answered"
            time.sleep(0.1)
        path = tmp_path / "follower.py"
        path.write_text(script)
        env = dict(os.environ, SWITCHBOARD_RESOLVE_INTERVAL_MS="200")
        load = subprocess.Popen(ns.command(sys.executable, str(path), "4"), env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.8)
        before = requests(b)
        ns.hosts([("127.0.0.1", "brokers"), ("127.0.0.2", "brokers")])
        time.sleep(1.2)
        after = requests(b)
        assert after > before + 10, f"the client never used the broker added to its name ({before} -> {after})"
        ns.hosts([("127.0.0.2", "brokers")])
        time.sleep(0.8)
        left = requests(a)
        time.sleep(0.8)
        assert requests(a) <= left + 1, "calls still went to the broker removed from the name"
        out, err = load.communicate(timeout=30)
        assert load.returncode == 0, err
        report = json.loads(out)
        assert report["errors"] == 0 and report["calls"] > 100, (report, err)
    finally:
        ns.close()


def test_a_python_worker_follows_brokers_as_their_host_name_changes(cluster):
    ns = NetNs("pyworker")
    try:
        ns.hosts([("127.0.0.1", "brokers")])
        a, b = "tcp://127.0.0.1:7500", "tcp://127.0.0.2:7500"
        for frontend, backend in ((a, "tcp://127.0.0.1:7501"), (b, "tcp://127.0.0.2:7501")):
            cluster.procs.append(Proc(ns.command(binary("broker"), "--frontend", frontend, "--backend", backend)))
        cluster.procs.append(Proc(
            ns.command(sys.executable, "-m", "switchboard_rpc", "worker", "pyfuncs:registry",
                       "--broker", "tcp://brokers:7501", "--name", "follower", "--log-level", "warning"),
            env={"SWITCHBOARD_RESOLVE_INTERVAL_MS": "200", "SWITCHBOARD_HEARTBEAT_MS": "100"}))

        def listed(frontend):
            try:
                out = ns.run(binary("client"), "--endpoint", frontend, "--timeout-ms", "2000", "--json", "workers")
            except subprocess.CalledProcessError:
                return None
            return len(json.loads(out)["result"])

        def wait_for(expected, what):
            until = time.monotonic() + 15
            while (found := (listed(a), listed(b))) != expected:
                assert time.monotonic() < until, f"{what}: workers listed {found}"
                time.sleep(0.05)

        wait_for((1, 0), "the name stands for the first broker")
        ns.hosts([("127.0.0.1", "brokers"), ("127.0.0.2", "brokers")])
        wait_for((1, 1), "a broker added to the name")
        # The name stops resolving for a while (a DNS outage): the worker keeps the brokers.
        ns.hosts([])
        time.sleep(1.0)
        wait_for((1, 1), "a name that does not resolve for a while")
        ns.hosts([("127.0.0.2", "brokers")])
        wait_for((0, 1), "a broker removed from the name")
    finally:
        ns.close()
