#!/usr/bin/env bash
# Runs the whole test suite, in steps:
#   1. cargo test: unit tests, and integration tests with real brokers and workers
#      (in-process, or as processes on loopback where signals and exits matter);
#   2. Python checks: the Python examples and wire checks against the real binaries;
#   3. performance scripts: bench, the matrix and the CPU script on a tiny load, so that
#      they cannot rot (figures are never asserted: see docs/PERFORMANCE.md);
#   4. the docker-compose topology run as plain processes (the file validated with the
#      engine-free docker-compose config).
# A failure in any step fails the run. Extra arguments go to step 1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Integration tests start the real binaries: build them first.
cargo build --workspace --bins
log=$(mktemp)
trap 'rm -f "$log"' EXIT
step() {
    echo "== $1"
    local started=$SECONDS
    shift
    "$@"
    echo "== done in $((SECONDS - started)) s"
}
step "1/4 cargo test" bash -c 'cargo test --workspace "$@" 2>&1 | tee -a "'"$log"'"; exit "${PIPESTATUS[0]}"' _ "$@"
step "2/4 Python checks" bash -c 'cargo test -p switchboard-tests --test python 2>&1 | tee -a "'"$log"'"; exit "${PIPESTATUS[0]}"'
step "3/4 performance scripts" bash -c 'cargo test -p switchboard-tests --test bench 2>&1 | tee -a "'"$log"'"; exit "${PIPESTATUS[0]}"'
step "4/4 compose topology" python3 scripts/compose_topology.py --bin-dir target/debug --workers 4
# One closing line for the whole suite (cargo prints one line per test binary; the
# compose topology counts as one test).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed + 1, failed }' "$log"
