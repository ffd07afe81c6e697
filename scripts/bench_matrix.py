"""Runs the standard performance matrix and prints one table (also written to a file).

    python3 scripts/bench_matrix.py [--runs 3] [--out bench-results.md] [--bin-dir target/release] [--quick]

Each case starts its own broker and workers (release binaries) on loopback ports, runs
`bench --json` (three times by default) and reports medians. Throughput and latency are given
as ratios to a direct DEALER-ROUTER echo measured by the same bench in the same run.
`--quick` shrinks every case (for a smoke run); the figures are then not meaningful.
"""

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Cluster:
    """A broker and workers on ephemeral loopback ports, stopped on exit (by PID). With
    `brokers` > 1, a tier: every worker serves every broker; `frontend` is the first
    broker's, `frontends` and `backend` list them all (comma-separated)."""

    def __init__(self, bin_dir, workers, worker_args, broker_args=(), broker_wrapper=(), brokers=1):
        self.bin_dir = bin_dir
        self.processes = []
        env = {**os.environ, "RUST_LOG": "warn"}
        frontends, backends = [], []
        for _ in range(brokers):
            broker = subprocess.Popen(
                [*broker_wrapper, os.path.join(bin_dir, "broker"), "--frontend", "tcp://127.0.0.1:*",
                 "--backend", "tcp://127.0.0.1:*", *broker_args],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
            self.processes.append(broker)
            line = broker.stdout.readline()
            frontends.append(re.search(r"frontend=(\S+)", line).group(1))
            backends.append(re.search(r"backend=(\S+)", line).group(1))
            if len(frontends) == 1:
                self.broker_pid = broker.pid
        self.frontend = frontends[0]
        self.frontends = ",".join(frontends)
        self.backend = ",".join(backends)
        self.env = env
        for i in range(workers):
            self.add_worker(f"w{i}", worker_args, wait=False)
        self.wait_for_workers(workers)

    def add_worker(self, name, worker_args, wait=True):
        """Starts one more demo worker with its own flags (stopped with the rest)."""
        self.processes.append(subprocess.Popen(
            [os.path.join(self.bin_dir, "worker"), "--broker", self.backend, "--name", name, *worker_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env))
        self.workers = getattr(self, "workers", 0) + 1
        if wait:
            self.wait_for_workers(self.workers)

    def wait_for_workers(self, count):
        """Waits until every broker lists `count` workers."""
        until = time.monotonic() + 20
        pending = self.frontends.split(",")
        while time.monotonic() < until and pending:
            out = subprocess.run([os.path.join(self.bin_dir, "client"), "--endpoint", pending[0],
                                  "--json", "workers"], capture_output=True, text=True)
            if out.returncode == 0 and len(json.loads(out.stdout)["result"]) >= count:
                pending.pop(0)
                continue
            time.sleep(0.1)
        if pending:
            raise SystemExit(f"only some of {count} workers registered")

    def rss_kib(self):
        with open(f"/proc/{self.broker_pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for p in self.processes:
            p.terminate()
        for p in self.processes:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


def tool_args(default_calls):
    """Options of the scripts that run one bench on a Cluster: (calls, bin dir, extra bench args)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=default_calls)
    parser.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    args, bench_args = parser.parse_known_args()
    return args.calls, os.path.abspath(args.bin_dir), bench_args


def bench(bin_dir, endpoint, *args):
    out = subprocess.run([os.path.join(bin_dir, "bench"), "--endpoint", endpoint, "--json", *args],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"bench {' '.join(args)} failed: {out.stderr}")
    return json.loads(out.stdout)


def median(values):
    return statistics.median(values)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench-results.md"))
    parser.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cases", default="echo,sleep,memory", help="which groups to run")
    args = parser.parse_args()
    b = os.path.abspath(args.bin_dir)
    q = args.quick
    rows = []

    def row(case, target, value, ok, detail):
        rows.append((case, target, value, "—" if ok is None else "yes" if ok else "no", detail))
        print(f"  {case}: {value} ({detail})", flush=True)

    # 1-3: one worker, one client connection, echo of a binary payload.
    echo_cases = [
        ("16 B echo, 1 in flight: p50 latency", ["--in-flight", "1", "--payload", "16", "--calls", "300" if q else "20000"], "latency"),
        ("16 B echo, 1000 in flight: throughput", ["--in-flight", "1000", "--payload", "16", "--calls", "3000" if q else "300000"], "throughput"),
        ("64 KiB echo, 1000 in flight: throughput", ["--in-flight", "1000", "--payload", "65536", "--calls", "300" if q else "20000"], "throughput"),
        # Reference, no target: the same load with every call in a message of its own (no pipelining).
        ("16 B echo, 1000 in flight, one call per message: throughput",
         ["--in-flight", "1000", "--payload", "16", "--pipeline", "1", "--calls", "3000" if q else "300000"], "reference"),
    ]

    def echo_group():
        # The worker's defaults: echo is an inline function, so its window is the worker's
        # inline capacity (1024), whatever the prefetch.
        with Cluster(b, 1, []) as cluster:
            for name, bench_args, kind in echo_cases:
                runs = [bench(b, cluster.frontend, "--mode", "both", *bench_args) for _ in range(args.runs)]
                if kind == "latency":
                    ratio = median([r["ratios"]["p50_latency"] for r in runs])
                    p50 = median([r["broker"]["latency_us"]["p50"] for r in runs])
                    base = median([r["baseline"]["latency_us"]["p50"] for r in runs])
                    row(name, "≤ ×2.6", f"×{ratio:.2f}", ratio <= 2.6, f"{p50:.0f} µs vs direct {base:.0f} µs")
                    continue
                ratio = median([r["ratios"]["throughput"] for r in runs])
                rate = median([r["broker"]["calls_per_second"] for r in runs])
                base = median([r["baseline"]["calls_per_second"] for r in runs])
                target = 0.40 if "16 B" in name else 0.50
                floor = median([r["ratios"]["relay_throughput"] for r in runs])
                share = median([r["ratios"]["throughput_vs_relay"] for r in runs])
                spread = f"{min(r['ratios']['throughput'] for r in runs):.1%}–{max(r['ratios']['throughput'] for r in runs):.1%}"
                reference = kind == "reference"
                row(name, "—" if reference else f"≥ {target:.0%}", f"{ratio:.1%}",
                    None if reference else ratio >= target,
                    f"{rate:,.0f} calls/s vs direct {base:,.0f} msg/s; runs {spread}; "
                    f"relay floor {floor:.1%} of direct, switchboard {share:.0%} of the relay")

    # 4: 16 workers hosting a 20 ms sleep, 64 callers. Closed loop (each caller calls again
    # as soon as it has its answer), 64 callers keep 48 calls queued: by Little's law every
    # call then waits about 64 / 800 s = 80 ms, so the latency target is checked open loop,
    # with the same 64 callers offering 95 % of the ideal rate.
    def sleep_group():
        # Prefetch 1: each worker holds its next call while running one, which hides the
        # broker round trip between calls (with prefetch 0 the workers fall behind 760/s).
        with Cluster(b, 16, ["--threads", "1", "--prefetch", "1"]) as cluster:
            seconds = "2" if q else "10"
            runs = [bench(b, cluster.frontend, "--function", "sleep_ms", "--args", "[20]", "--connections", "64",
                          "--duration-s", seconds) for _ in range(args.runs)]
            rate = median([r["broker"]["calls_per_second"] for r in runs])
            p99 = median([r["broker"]["latency_us"]["p99"] for r in runs]) / 1000
            row("16 workers x 20 ms sleep, 64 callers, closed loop: throughput", "≥ 95 % of 800/s",
                f"{rate / 800:.1%}", rate >= 760, f"{rate:,.0f} calls/s; p99 {p99:.1f} ms (queueing, see note)")
            runs = [bench(b, cluster.frontend, "--function", "sleep_ms", "--args", "[20]", "--connections", "64",
                          "--in-flight", "4", "--rate", "760", "--duration-s", seconds) for _ in range(args.runs)]
            rate = median([r["broker"]["calls_per_second"] for r in runs])
            p99 = median([r["broker"]["latency_us"]["p99"] for r in runs]) / 1000
            row("16 workers x 20 ms sleep, 64 callers, open loop at 760/s: p99", "p99 ≤ 30 ms",
                f"p99 {p99:.1f} ms", p99 <= 30, f"{rate:,.0f} calls/s delivered")

    # 5: 100 000 calls queued behind busy workers: broker memory.
    def memory_group():
        queued = 2_000 if q else 100_000
        # Inline capacity 0: echo shares the two slots the sleepers hold, so every call queues.
        worker_args = ["--threads", "2", "--prefetch", "0", "--inline-capacity", "0"]
        with Cluster(b, 1, worker_args, ["--queue-capacity", str(queued + 10)]) as cluster:
            idle = cluster.rss_kib()
            sleepers = [subprocess.Popen([os.path.join(b, "client"), "--endpoint", cluster.frontend, "call",
                                          "sleep_ms", "3000"], stdout=subprocess.DEVNULL) for _ in range(2)]
            time.sleep(0.5)
            peak = [idle]
            done = threading.Event()

            def sample():
                while not done.is_set():
                    peak.append(cluster.rss_kib())
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample)
            sampler.start()
            result = bench(b, cluster.frontend, "--in-flight", str(queued), "--calls", str(queued), "--timeout-ms", "60000")
            done.set()
            sampler.join()
            for s in sleepers:
                s.wait()
            time.sleep(1)
            after = cluster.rss_kib()
            errors = sum(result["broker"]["errors"].values())
            row(f"{queued:,} calls queued behind busy workers: broker RSS", "≤ 64 MiB, back down after",
                f"peak {max(peak) / 1024:.1f} MiB, after {after / 1024:.1f} MiB",
                max(peak) <= 64 * 1024 and after < max(peak), f"idle {idle / 1024:.1f} MiB, {errors} errors")

    # 6: 10x overload with 1.5 s deadlines (scripts/overload.py): how much work goes to
    # callers who already gave up.
    def overload_group():
        from overload import measure
        runs = [measure(b, "sleep_ms", 2 if q else 10) for _ in range(args.runs)]
        share = median([r["late_share"] for r in runs])
        answered = median([r["answered"] for r in runs])
        row("10x overload, 100 ms calls, 1.5 s deadlines: late work", "< 5 % of calls run",
            f"{share:.1%}", share < 0.05, f"{answered:.0f} answered; the rest refused at once")

    # 7-8: one bad host among four: slow (hedged calls route around it) or failing every
    # call at once (outlier ejection keeps calls away from it).
    def tail_group():
        calls = "100" if q else "400"
        with Cluster(b, 3, []) as cluster:
            cluster.add_worker("slow", ["--lookup-delay-ms", "200"])
            plain = [bench(b, cluster.frontend, "--function", "lookup_unhedged", "--args", "[1]",
                           "--calls", calls) for _ in range(args.runs)]
            hedged = [bench(b, cluster.frontend, "--function", "lookup", "--args", "[1]",
                            "--calls", calls) for _ in range(args.runs)]
            p99_plain = median([r["broker"]["latency_us"]["p99"] for r in plain]) / 1000
            p99_hedged = median([r["broker"]["latency_us"]["p99"] for r in hedged]) / 1000
            row("one 200 ms host among four, sequential calls: p99 hedged after 50 ms",
                "≤ half of unhedged", f"{p99_hedged:.1f} ms", p99_hedged * 2 <= p99_plain,
                f"unhedged p99 {p99_plain:.1f} ms")
        shares = []
        for _ in range(args.runs):
            with Cluster(b, 3, []) as cluster:
                cluster.add_worker("broken", ["--lookup-fails"])
                # The first calls find the broken host out; then it is ejected for 5 s.
                first = bench(b, cluster.frontend, "--function", "lookup", "--args", "[1]", "--calls", "100")
                after = bench(b, cluster.frontend, "--function", "lookup", "--args", "[1]", "--calls", calls)
                shares.append((first["broker"]["errors"].get("FUNCTION_ERROR", 0) / 100,
                               after["broker"]["errors"].get("FUNCTION_ERROR", 0) / int(calls)))
        before = median([s[0] for s in shares])
        share = median([s[1] for s in shares])
        row("one host failing every call among four: share of calls it gets once ejected", "< 5 %",
            f"{share:.1%}", share < 0.05, f"{before:.0%} of the first 100 calls, while it was found out")

    # 9: the broker tier. Four workers serve two brokers; every call goes to the first: the
    # workers move their slots to it (LOAD/CAPACITY), so throughput should stay close to
    # the same four workers behind one broker.
    def tier_group():
        seconds = "2" if q else "8"
        load = ["--function", "sleep_ms", "--args", "[5]", "--connections", "32", "--duration-s", seconds]
        worker_args = ["--threads", "2", "--prefetch", "1", "--heartbeat-ms", "200"]
        with Cluster(b, 4, worker_args) as cluster:
            single = [bench(b, cluster.frontend, *load) for _ in range(args.runs)]
        with Cluster(b, 4, worker_args, brokers=2) as cluster:
            tier = [bench(b, cluster.frontend, *load) for _ in range(args.runs)]
        one = median([r["broker"]["calls_per_second"] for r in single])
        two = median([r["broker"]["calls_per_second"] for r in tier])
        row("4 workers x 5 ms sleep serving 2 brokers, every call to one of them: throughput",
            "≥ 90 % of one broker", f"{two / one:.1%}", two >= 0.9 * one,
            f"{two:,.0f} calls/s vs {one:,.0f} calls/s with one broker; ideal 2,400/s")

    groups = {"echo": echo_group, "sleep": sleep_group, "memory": memory_group,
              "overload": overload_group, "tail": tail_group, "tier": tier_group}
    for name in args.cases.split(","):
        groups[name]()

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"model name\s+:\s+(.*)", f.read()).group(1)
    except OSError:
        pass
    header = (f"Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}; "
              f"{args.runs} runs per case, medians; {time.strftime('%Y-%m-%d')}\n\n"
              "| case | target | measured | met | detail |\n|---|---|---|---|---|\n")
    table = header + "".join(f"| {c} | {t} | {v} | {ok} | {d} |\n" for c, t, v, ok, d in rows)
    print()
    print(table)
    with open(args.out, "w") as f:
        f.write(table)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
