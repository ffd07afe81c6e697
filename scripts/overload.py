"""Overload: how much work goes to callers who already gave up.

    python3 scripts/overload.py [--bin-dir target/release] [--function work_ms] [--seconds 10]
                                [--rate-factor 10]

Starts a broker (queue 1 000) and 2 workers (2 executor threads each, no prefetch) on loopback,
offers `--rate-factor` times their capacity for `--seconds` in an open loop (`bench --rate`),
each call 100 ms of work with a 1.5 s deadline, and reports from the broker's own counters:
calls answered with a result, refused at once (OVERLOADED; `refused_late`: refused because they
would have started after their deadline), TIMEOUT, late replies (work finished for a caller
already answered) as a share of the calls run, and CANCEL messages sent.

`--function sleep_ms` gives a function that ignores cancellation (as every function of an
older worker does); `work_ms` stops when its call is cancelled. `--bin-dir` may point at an
older build to compare (it needs `sleep_ms`).
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_matrix import ROOT, Cluster, bench  # noqa: E402

WORK_MS = 100
THREADS = 2
WORKERS = 2


def stats(bin_dir, endpoint):
    out = subprocess.run([os.path.join(bin_dir, "client"), "--endpoint", endpoint, "--json",
                          "call", "system.stats"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["result"]


def measure(bin_dir, function="work_ms", seconds=10.0, rate_factor=10.0):
    """Runs the overload once; returns the figures as a dict."""
    capacity = WORKERS * THREADS * 1000 / WORK_MS
    rate = capacity * rate_factor
    worker_args = ["--threads", str(THREADS), "--prefetch", "0"]
    with Cluster(bin_dir, WORKERS, worker_args, broker_args=["--queue-capacity", "1000"]) as cluster:
        report = bench(bin_dir, cluster.frontend, "--function", function,
                       "--args", f"[{WORK_MS}]", "--rate", str(rate), "--duration-s",
                       str(seconds), "--connections", "8", "--in-flight", "1000",
                       "--timeout-ms", "1500")
        # Let the calls still running end, so every late reply is counted.
        subprocess.run(["sleep", "2"], check=True)
        counters = stats(bin_dir, cluster.frontend)
    broker_errors = counters.get("broker_errors", {})
    run = counters["calls_completed"] + counters["late_replies"]
    return {
        "function": function, "rate": rate, "capacity": capacity, "seconds": seconds,
        "rate_factor": rate_factor, "offered": report["broker"]["calls"],
        "errors": report["broker"]["errors"], "answered": counters["calls_completed"],
        "overloaded": broker_errors.get("OVERLOADED", 0),
        "refused_late": counters.get("refused_late", 0),
        "timeout": broker_errors.get("TIMEOUT", 0),
        "skipped_late": counters.get("skipped_late", 0), "run": run,
        "late": counters["late_replies"],
        "late_share": counters["late_replies"] / run if run else 0.0,
        "cancels": counters.get("cancels_sent", 0),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    parser.add_argument("--function", default="work_ms")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate-factor", type=float, default=10)
    args = parser.parse_args()
    m = measure(os.path.abspath(args.bin_dir), args.function, args.seconds, args.rate_factor)
    print(f"{m['function']}: {m['rate']:.0f} calls/s offered for {m['seconds']:.0f} s "
          f"({m['rate_factor']:.0f}x the capacity of {m['capacity']:.0f}/s), deadline 1.5 s")
    print(f"  calls offered                 {m['offered']:>7}")
    print(f"  answered by a worker          {m['answered']:>7}  (bench errors by code: {json.dumps(m['errors'])})")
    print(f"  refused at once (OVERLOADED)  {m['overloaded']:>7}  "
          f"of which would start after their deadline: {m['refused_late']}")
    print(f"  TIMEOUT from the broker       {m['timeout']:>7}  "
          f"of which not sent, too late to finish: {m['skipped_late']}")
    print(f"  calls run by workers          {m['run']:>7}")
    print(f"  late replies (caller gone)    {m['late']:>7}  = {m['late_share']:.1%} of calls run")
    print(f"  CANCEL sent                   {m['cancels']:>7}")


if __name__ == "__main__":
    main()
