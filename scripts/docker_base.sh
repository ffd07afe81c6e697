#!/usr/bin/env bash
# Makes the Debian base image the Dockerfile's runtime stage builds on, for machines that
# cannot pull images (no registry): `debootstrap --variant=minbase bookworm` from Debian's
# package mirror, imported with `docker import`. Prints the image's name. Idempotent: an
# image already there is kept.
#   scripts/docker_base.sh [IMAGE]      (default switchboard-debian:bookworm)
set -euo pipefail
image=${1:-switchboard-debian:bookworm}
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "docker_base: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
root=$(mktemp -d /tmp/switchboard-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "docker_base: debootstrap bookworm into $root (about a minute)" >&2
debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
# Keep the image small and apt usable inside `docker build`.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
tar -C "$root" -c . | docker import --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
echo "$image"
