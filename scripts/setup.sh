#!/usr/bin/env bash
# Installs what building and testing Switchboard needs on Debian/Ubuntu:
# libzmq3-dev (ZeroMQ with CURVE, via libsodium) and pkg-config for the zmq crate,
# docker-compose (only to validate docker-compose.yml: no engine needed), iproute2 and
# iptables (the broker-tier tests run brokers in network namespaces they create),
# and pyzmq + msgpack + PyYAML for the Python tests. Safe to run again.
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "setup: need root (or sudo) to run: $*" >&2; exit 1; fi
}

missing=()
for pkg in libzmq3-dev pkg-config docker-compose iproute2 iptables; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

if ! python3 -c 'import zmq, msgpack, yaml' 2>/dev/null; then
  echo "setup: installing pyzmq, msgpack and PyYAML"
  python3 -m pip install --quiet --disable-pip-version-check pyzmq msgpack pyyaml \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages pyzmq msgpack pyyaml
fi
python3 -c 'import zmq, msgpack, yaml' || { echo "setup: pyzmq/msgpack/PyYAML still missing" >&2; exit 1; }
command -v docker-compose >/dev/null || { echo "setup: docker-compose still missing" >&2; exit 1; }
for tool in ip iptables; do
  command -v "$tool" >/dev/null || { echo "setup: $tool still missing" >&2; exit 1; }
done
