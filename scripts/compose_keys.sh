#!/usr/bin/env bash
# Makes the CURVE keys docker-compose.curve.yml mounts, in DIR (default ./keys): key pairs for
# the broker, the workers, the example client and the health checks, and the two allow-lists.
# Uses the image's own `client keygen` (no Rust needed on the host); the secret key files end up
# owned by uid 10001 (the containers' user) with mode 0600, so only the containers can read
# them; needs root (or sudo) for that. Refuses to overwrite existing keys.
#   scripts/compose_keys.sh [DIR] [IMAGE]
set -euo pipefail
dir=$(mkdir -p "${1:-keys}" && cd "${1:-keys}" && pwd)
image=${2:-${SWITCHBOARD_IMAGE:-switchboard:latest}}
for name in broker worker client health; do
  if [ -e "$dir/$name.key" ]; then
    echo "compose_keys: $dir/$name.key exists; not overwriting" >&2
    exit 1
  fi
done
for name in broker worker client health; do
  docker run --rm --user 0:0 --entrypoint /usr/local/bin/client -v "$dir:/keys" "$image" \
    keygen "/keys/$name" >/dev/null
done
cat "$dir/client.pub" "$dir/health.pub" > "$dir/clients.txt"
cp "$dir/worker.pub" "$dir/workers.txt"
# The containers run as 10001: give them their secrets, readable by no one else.
docker run --rm --user 0:0 --entrypoint /bin/sh -v "$dir:/keys" "$image" \
  -c 'chown 10001:10001 /keys/*.key && chmod 0600 /keys/*.key && chmod 0644 /keys/*.pub /keys/*.txt'
echo "compose_keys: keys in $dir (secret files owned by uid 10001)"
