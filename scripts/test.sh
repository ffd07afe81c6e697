#!/usr/bin/env bash
# Runs the whole test suite, in steps:
#   1. cargo test: unit tests, and integration tests with real brokers and workers
#      (in-process, or as processes on loopback where signals and exits matter);
#   2. Python: the switchboard-rpc package's pytest suite (python/tests) and the Rust side
#      of the Python checks (the Rust client calling a Python worker, wire checks), all
#      against the real binaries;
#   3. performance scripts: bench, the matrix and the CPU script on a tiny load, so that
#      they cannot rot (figures are never asserted: see docs/PERFORMANCE.md);
#   4. the docker-compose topology run as plain processes (the file validated with the
#      engine-free docker-compose config), and the Kubernetes manifests validated offline;
#   5. docker compose for real: the image built from the host's binaries on a Debian base
#      made with debootstrap, the stack brought up, loaded, crashed, restarted, scaled and
#      stopped (scripts/compose_e2e.py; scripts/docker_setup.sh installs and starts the
#      engine if needed, and fails when it cannot).
# A failure in any step fails the run. Extra arguments go to step 1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Integration tests start the real binaries: build them first; tests that run Python
# use the package as a user gets it (built as a wheel, installed).
cargo build --workspace --bins
scripts/python_package.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
step() {
    echo "== $1"
    local started=$SECONDS
    shift
    "$@"
    echo "== done in $((SECONDS - started)) s"
}
step "1/5 cargo test" bash -c 'cargo test --workspace "$@" 2>&1 | tee -a "'"$log"'"; exit "${PIPESTATUS[0]}"' _ "$@"
step "2/5 Python" bash -c 'cargo test -p switchboard-tests --test python 2>&1 | tee -a "'"$log"'"; exit "${PIPESTATUS[0]}"'
step "2/5 Python: pytest python/tests" bash -c 'SWITCHBOARD_BIN_DIR=target/debug timeout 600 python3 -m pytest -q -p no:cacheprovider -o faulthandler_timeout=120 python/tests 2>&1 | tee -a "'"$log"'"; exit "${PIPESTATUS[0]}"'
step "3/5 performance scripts" bash -c 'cargo test -p switchboard-tests --test bench 2>&1 | tee -a "'"$log"'"; exit "${PIPESTATUS[0]}"'
step "4/5 compose topology and Kubernetes manifests" bash -c 'python3 scripts/compose_topology.py --bin-dir target/debug --workers 4 && python3 scripts/k8s_validate.py'
# The image is built from release binaries, as users would ship them.
step "5/5 docker compose end to end" bash -c 'scripts/docker_setup.sh && cargo build --release --workspace --bins && timeout 900 python3 scripts/compose_e2e.py --bin-dir target/release'
# One closing line for the whole suite (cargo prints one line per test binary, pytest
# "N passed, M failed in …"; the compose topology and the compose end-to-end run count as
# one test each).
awk '/^test result:/ { passed += $4; failed += $6; next }
     / (passed|failed)(,| in )/ && !/^test / {
       for (i = 2; i <= NF; i++) {
         if ($i ~ /^passed/) passed += $(i - 1)
         if ($i ~ /^failed/) failed += $(i - 1)
       }
     }
     END { printf "tests: %d passed, %d failed\n", passed + 2, failed }' "$log"
