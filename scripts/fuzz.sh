#!/usr/bin/env bash
# Fuzzes every protocol decoder with libFuzzer for a bounded time (default 20 s).
# Installs cargo-fuzz if needed. Crashing inputs land in fuzz/artifacts/decoders/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-20}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
mkdir -p corpus/decoders
# RUSTC_BOOTSTRAP lets the stable toolchain accept the sanitizer flags cargo-fuzz passes.
RUSTC_BOOTSTRAP=1 cargo fuzz run decoders corpus/decoders seeds/decoders -- \
  -max_total_time="$seconds" -rss_limit_mb=1024 2>&1 | grep -E "^(#[0-9]+ +DONE|Done|INFO: Seed|==[0-9]+==|SUMMARY)" || true
# A finding stops the fuzzer and leaves its input in artifacts/: that is the verdict.
if [ -n "$(ls -A artifacts/decoders 2>/dev/null)" ]; then
  echo "fuzz: crashing inputs in fuzz/artifacts/decoders" >&2
  exit 1
fi
echo "fuzz: no crash in ${seconds} s"
