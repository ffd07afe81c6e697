"""Where the time goes: CPU time per call of every thread of the broker, the worker and bench.

    python3 scripts/cpu_per_call.py [--calls 1000000] [--bin-dir target/release] [bench args...]

Starts a release broker and one worker on loopback (like bench_matrix.py), reads each thread's
user + system time from /proc before and after one bench run (16-byte echo, 1000 in flight by
default), and prints microseconds of CPU per call for each thread, and in all.
"""

import os
import resource
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_matrix import Cluster, bench, tool_args  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def thread_times(pid):
    """{thread name: CPU seconds} for every thread of a process (names made unique)."""
    times = {}
    for tid in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            name = f.read().strip()
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / TICK
        key, n = name, 2
        while key in times:
            key, n = f"{name}#{n}", n + 1
        times[key] = seconds
    return times


def main():
    calls, b, bench_args = tool_args(1_000_000)
    with Cluster(b, 1, []) as cluster:
        pids = {"broker": cluster.processes[0].pid, "worker": cluster.processes[1].pid}
        before = {role: thread_times(pid) for role, pid in pids.items()}
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = bench(b, cluster.frontend, "--in-flight", "1000", "--calls", str(calls), *bench_args)
        after = {role: thread_times(pid) for role, pid in pids.items()}
        spent = resource.getrusage(resource.RUSAGE_CHILDREN)
    calls = result["broker"]["calls"]
    rows = []
    for role in pids:
        for name, seconds in after[role].items():
            used = seconds - before[role].get(name, 0.0)
            if used > 0:
                rows.append((f"{role} {name}", used))
    # bench is a child of this script: its whole CPU time (all its threads).
    bench_cpu = (spent.ru_utime - children.ru_utime) + (spent.ru_stime - children.ru_stime)
    rows.append(("bench (all threads)", bench_cpu))
    print(f"{calls:,} calls at {result['broker']['calls_per_second']:,.0f} calls/s")
    for name, used in rows:
        print(f"  {name:28} {used * 1e6 / calls:5.2f} µs/call")
    total = sum(used for _, used in rows)
    print(f"  {'all':28} {total * 1e6 / calls:5.2f} µs/call "
          f"({total / (calls / result['broker']['calls_per_second']):.2f} cores busy)")


if __name__ == "__main__":
    main()
