#!/usr/bin/env bash
# Makes sure a Docker engine answers here, for the compose end-to-end test: installs Debian's
# docker.io, docker-compose and debootstrap when missing, starts the daemon when none
# answers, and fails loudly (exit 1, saying why) when it cannot. Safe to run again.
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "docker_setup: need root (or sudo) to run: $*" >&2; exit 1; fi
}

missing=()
command -v docker >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  echo "docker_setup: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

if ! docker info >/dev/null 2>&1; then
  echo "docker_setup: no Docker daemon answers; starting one"
  as_root service docker start >/dev/null 2>&1 \
    || as_root sh -c 'nohup dockerd >/var/log/switchboard-dockerd.log 2>&1 &'
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
fi
if ! docker info >/dev/null 2>&1; then
  echo "docker_setup: the Docker daemon does not answer (see /var/log/switchboard-dockerd.log); the compose test cannot run" >&2
  exit 1
fi
echo "docker_setup: engine $(docker version --format '{{.Server.Version}}'), $(docker-compose version --short)"
