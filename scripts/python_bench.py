"""The Python package against zerorpc, in one run on this machine.

    python3 scripts/python_bench.py [--bin-dir target/release] [--runs 3] [--quick]
                                    [--venv target/python-bench-venv]

Makes (once) a virtual environment with zerorpc and the switchboard-rpc package from
python/ (reinstalled every run), starts a broker and one Rust demo worker on loopback, and
measures, each figure the median of --runs runs, every client in a fresh process:

- the Python client, sync and asyncio: sequential p50 latency of a 16 B echo (one call at a
  time) and pipelined throughput (1 000 calls in flight) against the Rust demo worker;
- a Python worker's throughput (4 threads; plain and inline functions), driven by the Rust
  `bench` tool through the broker;
- the same figures for zerorpc: its client against a zerorpc server hosting the same echo
  (sequential p50; throughput with 1 000 calls in flight via `async=True`);
- a raw pyzmq + msgpack DEALER loop against the same broker and worker: the floor a Python
  client can reach, showing what the library itself costs.

Prints a Markdown table with the ratios the issue set (pipelined throughput >= 10x
zerorpc's, sequential p50 <= half of zerorpc's). Figures are never asserted.
"""

import argparse
import collections
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_matrix import ROOT, Cluster, bench  # noqa: E402

PAYLOAD = b"x" * 16
WINDOW = 1000

# ---- measurements, each run in a child process by the venv's Python ----


def sequential_p50_us(call, sequential):
    """Median microseconds of `call()` one at a time, after 200 calls of warm-up."""
    for _ in range(200):
        call()
    latencies = []
    for _ in range(sequential):
        started = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - started)
    return statistics.median(latencies) * 1e6


def measure_sync(endpoint, calls, sequential):
    from switchboard_rpc import Client
    with Client(endpoint, timeout=30) as client:
        p50 = sequential_p50_us(lambda: client.echo(PAYLOAD), sequential)
        window = collections.deque()
        started = time.perf_counter()
        for _ in range(calls):
            window.append(client.submit("echo", PAYLOAD))
            if len(window) >= WINDOW:
                window.popleft().result()
        for future in window:
            future.result()
        seconds = time.perf_counter() - started
    return {"p50_us": p50, "calls_per_s": calls / seconds}


def measure_async(endpoint, calls, sequential):
    import asyncio
    from switchboard_rpc import AsyncClient

    async def run():
        async with AsyncClient(endpoint, timeout=30) as client:
            for _ in range(200):
                await client.echo(PAYLOAD)
            latencies = []
            for _ in range(sequential):
                started = time.perf_counter()
                await client.echo(PAYLOAD)
                latencies.append(time.perf_counter() - started)
            started = time.perf_counter()
            done = 0
            while done < calls:
                batch = min(WINDOW, calls - done)
                await asyncio.gather(*[client.echo(PAYLOAD) for _ in range(batch)])
                done += batch
            seconds = time.perf_counter() - started
        return {"p50_us": statistics.median(latencies) * 1e6, "calls_per_s": calls / seconds}

    return asyncio.run(run())


def measure_raw(endpoint, calls, sequential):
    import msgpack
    import zmq
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.connect(endpoint)
    body = msgpack.packb({"args": [PAYLOAD], "kwargs": {}})
    latencies = []
    for i in range(200 + sequential):
        started = time.perf_counter()
        sock.send_multipart([b"", b"SBC1", b"echo", msgpack.packb({"id": i, "timeout_ms": 30000}), body])
        sock.recv_multipart()
        if i >= 200:
            latencies.append(time.perf_counter() - started)
    sock.close(0)
    return {"p50_us": statistics.median(latencies) * 1e6}


ZERORPC_SERVER = textwrap.dedent("""
    import sys, zerorpc
    class Echo:
        def echo(self, value):
            return value
    server = zerorpc.Server(Echo())
    server.bind(sys.argv[1])
    server.run()
""")


def measure_zerorpc(endpoint, calls, sequential):
    import zerorpc
    client = zerorpc.Client(timeout=30, heartbeat=None)
    client.connect(endpoint)
    p50 = sequential_p50_us(lambda: client.echo(PAYLOAD), sequential)
    started = time.perf_counter()
    done = 0
    while done < calls:
        batch = min(WINDOW, calls - done)
        results = [client.echo(PAYLOAD, **{"async": True}) for _ in range(batch)]
        for result in results:
            result.get()
        done += batch
    seconds = time.perf_counter() - started
    client.close()
    return {"p50_us": p50, "calls_per_s": calls / seconds}


PYTHON_FUNCTIONS = textwrap.dedent('''
    from switchboard_rpc import Registry
    registry = Registry()

    @registry.function("py.echo")
    def echo(value):
        """Returns its argument (on the thread pool)."""
        return value

    @registry.function("py.echo_inline", inline=True)
    def echo_inline(value):
        """Returns its argument (inline, on the socket thread)."""
        return value
''')

MEASURES = {"sync": measure_sync, "async": measure_async, "raw": measure_raw, "zerorpc": measure_zerorpc}

# ---- the driver ----


def venv_python(venv):
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    probe = subprocess.run([python, "-c", "import zerorpc"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run([*pip, "zerorpc"], check=True)
    subprocess.run([*pip, "--force-reinstall", "--no-deps", os.path.join(ROOT, "python")], check=True)
    subprocess.run([*pip, "pyzmq", "msgpack"], check=True)
    return python


def child(python, kind, endpoint, calls, sequential):
    out = subprocess.run([python, os.path.abspath(__file__), "--measure", kind, "--endpoint", endpoint,
                          "--calls", str(calls), "--sequential", str(sequential)],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"{kind} measurement failed:\n{out.stderr}")
    return json.loads(out.stdout)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_function(bin_dir, frontend, function):
    until = time.monotonic() + 30
    while time.monotonic() < until:
        out = subprocess.run([os.path.join(bin_dir, "client"), "--endpoint", frontend, "--json", "describe",
                              function], capture_output=True, text=True)
        if out.returncode == 0:
            return
        time.sleep(0.1)
    raise SystemExit(f"no worker ever hosted {function}")


def one_run(python, bin_dir, calls, sequential, workdir):
    figures = {}
    with Cluster(bin_dir, 1, []) as cluster:
        for kind in ("raw", "sync", "async"):
            figures[kind] = child(python, kind, cluster.frontend, calls, sequential)
        env = dict(os.environ, PYTHONPATH=workdir)
        worker = subprocess.Popen([python, "-m", "switchboard_rpc", "worker", "bench_functions:registry",
                                   "--broker", cluster.backend, "--name", "py-bench", "--threads", "4",
                                   "--log-level", "warning"], env=env, cwd=workdir)
        cluster.processes.append(worker)
        wait_for_function(bin_dir, cluster.frontend, "py.echo_inline")
        for function in ("py.echo", "py.echo_inline"):
            report = bench(bin_dir, cluster.frontend, "--function", function, "--calls", str(calls * 2),
                           "--in-flight", str(WINDOW), "--payload", str(len(PAYLOAD)))
            errors = report["broker"]["errors"]
            if errors:
                raise SystemExit(f"bench of {function} had errors: {errors}")
            figures[function] = {"calls_per_s": report["broker"]["calls_per_second"]}
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    server = subprocess.Popen([python, "-c", ZERORPC_SERVER, endpoint])
    try:
        time.sleep(1.0)
        figures["zerorpc"] = child(python, "zerorpc", endpoint, calls, sequential)
    finally:
        server.terminate()
        server.wait(10)
    return figures


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    parser.add_argument("--venv", default=os.path.join(ROOT, "target", "python-bench-venv"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20000, help="calls per throughput figure")
    parser.add_argument("--sequential", type=int, default=3000, help="calls per latency figure")
    parser.add_argument("--quick", action="store_true", help="tiny counts, one run (a smoke test)")
    parser.add_argument("--measure", choices=sorted(MEASURES), help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(MEASURES[args.measure](args.endpoint, args.calls, args.sequential)))
        return
    if args.quick:
        args.runs, args.calls, args.sequential = 1, 500, 100
    python = venv_python(args.venv)
    runs = []
    with tempfile.TemporaryDirectory() as workdir:
        with open(os.path.join(workdir, "bench_functions.py"), "w") as f:
            f.write(PYTHON_FUNCTIONS)
        for _ in range(args.runs):
            runs.append(one_run(python, args.bin_dir, args.calls, args.sequential, workdir))

    def med(kind, key):
        return statistics.median(run[kind][key] for run in runs)

    zero_p50, zero_rate = med("zerorpc", "p50_us"), med("zerorpc", "calls_per_s")
    rows = [
        ("sync client, sequential p50 (µs)", med("sync", "p50_us"), zero_p50, "p50"),
        ("asyncio client, sequential p50 (µs)", med("async", "p50_us"), zero_p50, "p50"),
        ("sync client, 1 000 in flight (calls/s)", med("sync", "calls_per_s"), zero_rate, "rate"),
        ("asyncio client, 1 000 in flight (calls/s)", med("async", "calls_per_s"), zero_rate, "rate"),
        ("Python worker, 4 threads (calls/s)", med("py.echo", "calls_per_s"), zero_rate, "rate"),
        ("Python worker, inline function (calls/s)", med("py.echo_inline", "calls_per_s"), zero_rate, "rate"),
    ]
    print(f"16 B echo; median of {args.runs} run(s); {args.calls} calls per throughput figure, "
          f"{args.sequential} per latency figure; Rust demo worker unless stated")
    print()
    print("| measure | switchboard-rpc | zerorpc | ratio |")
    print("|---|---:|---:|---|")
    for label, ours, theirs, kind in rows:
        if kind == "p50":
            ratio = f"{ours / theirs:.2f} of zerorpc's (target <= 0.5)"
            print(f"| {label} | {ours:,.0f} | {theirs:,.0f} | {ratio} |")
        else:
            ratio = f"{ours / theirs:.1f}x zerorpc's (target >= 10x)" if "client" in label else \
                f"{ours / theirs:.1f}x a zerorpc server"
            print(f"| {label} | {ours:,.0f} | {theirs:,.0f} | {ratio} |")
    print(f"| floor: raw pyzmq + msgpack DEALER, sequential p50 (µs) | {med('raw', 'p50_us'):,.0f} | | |")


if __name__ == "__main__":
    main()
