"""Instructions the broker's loop executes per call, counted by callgrind (stable on a noisy VM).

    python3 scripts/broker_instructions.py [--calls 50000] [--bin-dir target/release] [bench args...]

Runs the release broker under `valgrind --tool=callgrind`, counting only inside the loop that
drains its sockets, with one worker, and sends `--calls` 16-byte echo calls 1 000 in flight.
Prints instructions per call: compare two builds with it, not with calls/s. Needs valgrind
(`apt-get install valgrind`).
"""

import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_matrix import Cluster, bench, tool_args  # noqa: E402


def main():
    calls, b, bench_args = tool_args(50_000)
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, "callgrind.out")
        wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                   "--toggle-collect=*Broker*drain*"]
        with Cluster(b, 1, [], broker_wrapper=wrapper) as cluster:
            result = bench(b, cluster.frontend, "--in-flight", "1000", "--calls", str(calls),
                           "--timeout-ms", "60000", *bench_args)
        # The broker wrote its profile when it stopped (the cluster stops it with SIGTERM).
        text = subprocess.run(["callgrind_annotate", out], capture_output=True, text=True,
                              check=True).stdout
    total = int(re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", text).group(1).replace(",", ""))
    calls = result["broker"]["calls"]
    errors = sum(result["broker"]["errors"].values())
    print(f"{total / calls:,.0f} instructions per call in the broker loop "
          f"({total:,} for {calls:,} calls, {errors} errors)")


if __name__ == "__main__":
    main()
