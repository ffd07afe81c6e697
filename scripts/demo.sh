#!/usr/bin/env bash
# The main job: a broker and two workers on loopback, a few example calls, a clean shutdown.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --bins --quiet
bin=target/release
export RUST_LOG=${RUST_LOG:-warn}

pids=()
cleanup() { for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# Ephemeral loopback ports; the broker prints the ones it bound.
out=$(mktemp)
"$bin/broker" --frontend 'tcp://127.0.0.1:*' --backend 'tcp://127.0.0.1:*' >"$out" &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
frontend=$(grep -o 'frontend=[^ ]*' "$out" | cut -d= -f2)
backend=$(grep -o 'backend=[^ ]*' "$out" | cut -d= -f2)
echo "broker: clients at $frontend, workers at $backend"

for name in alpha beta; do
  "$bin/worker" --broker "$backend" --name "$name" --threads 2 &
  pids+=($!)
done

client() { "$bin/client" --endpoint "$frontend" "$@"; }
for _ in $(seq 100); do
  client call system.functions 2>/dev/null | grep -q '"name":"whoami"[^}]*"workers":2' && break
  sleep 0.05
done

run() { printf '$ client %s\n' "$*"; client "$@" || true; }
run call system.functions
run call add 2 3
run call upper "hello, switchboard"
run call greet name=ada greeting=welcome
run call echo '{"nested": [1, 2.5, "three", null]}'
run call whoami
run call whoami
run call fail "something broke"
run call add 1
run call nope
run --timeout-ms 200 call sleep_ms 1000

echo "stopping: workers first, then the broker"
for pid in "${pids[@]:1}"; do kill -TERM "$pid"; done
for pid in "${pids[@]:1}"; do wait "$pid"; done
kill -TERM "${pids[0]}"; wait "${pids[0]}"
pids=()
echo "all processes exited cleanly"
