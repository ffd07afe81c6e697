#!/usr/bin/env bash
# Runs the whole test suite: unit tests, integration tests with real broker and
# worker processes on loopback, the Python tests, doc tests, and the docker-compose
# topology run as plain processes (validated with the engine-free docker-compose config).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Integration tests start the real binaries: build them first.
cargo build --workspace --bins
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace "$@" 2>&1 | tee "$log"
python3 scripts/compose_topology.py --bin-dir target/debug --workers 4
# One closing line for the whole suite (cargo prints one line per test binary).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed + 1, failed }' "$log"
