#!/usr/bin/env bash
# image.sh — the recipe of the two-host tier's hosts: a Debian system with Docker from
# Debian's packages, run as a container with its own Docker daemon, network, mounts and
# cgroup namespace (scripts/hosts/hosts.sh), as kind runs its nodes. Built from Debian's
# packages with mmdebstrap; nothing of kinit's is in it (each test mounts the binary).
#
#   scripts/hosts/image.sh SUITE OUT_TAR     # SUITE: bookworm (Debian 12)
#
# OUT_TAR is the root file system as a tar for `docker import`. scripts/hosts/hosts.sh
# caches it by this file's SHA-256: a change here builds a new image.
set -euo pipefail
SUITE=${1:?usage: image.sh SUITE OUT_TAR}
OUT=${2:?usage: image.sh SUITE OUT_TAR}
MIRROR=${KINIT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY=${KINIT_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

# What a server with Docker from the distribution has, less a kernel and an init system:
# the container's first process is tini, which runs scripts/hosts/host-init (mounted by
# scripts/hosts/hosts.sh, so that a change to it needs no new image).
packages=docker.io,iptables,iproute2,kmod,procps,util-linux,ca-certificates,curl,tini,conntrack
tmp=$(mktemp -d "$(dirname "$OUT")/image.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mmdebstrap --mode=root --variant=important --include="$packages" \
  --customize-hook='rm -rf "$1/var/lib/apt/lists"/* "$1/var/cache/apt"/*' \
  "$SUITE" "$tmp/root.tar" \
  "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY $SUITE-security main"
mv "$tmp/root.tar" "$OUT"
echo "host image: Debian $SUITE in $OUT"
