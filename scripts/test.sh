#!/usr/bin/env bash
# Runs the whole test suite: unit tests, integration tests with real broker and
# worker processes on loopback, the Python wire check, and doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Integration tests start the real binaries: build them first.
cargo build --workspace --bins
cargo test --workspace "$@"
