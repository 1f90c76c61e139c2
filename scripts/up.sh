#!/usr/bin/env bash
# From a fresh Debian/Ubuntu machine with Rust to a running kinit cluster: installs and
# starts Docker when missing, builds kinit, makes the component images available and runs
# `kinit up` on its defaults.
#
# Images and kubectl: kinit uses images Docker already has and pulls the rest from
# registry.k8s.io, and downloads kubectl from dl.k8s.io. kinit's node image (kubelet,
# cri-dockerd, CNI plugins) is published nowhere yet, so it is always built here from
# upstream sources with Go (the host's, or one fetched from the Go module proxy); on a host
# that cannot reach registry.k8s.io the whole offline bundle is built the same way and kinit
# reads everything from there.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

# Build as the invoking user (their toolchain), then become root for the host changes.
if [ -z "${KINIT_BUILT:-}" ]; then
  ensure_cargo
  say "building kinit (cargo build --release)"
  cargo build --locked --release
  export KINIT_BUILT=1
fi
become_root "$@"

ensure_docker
sources=()
if ! curl -s -o /dev/null --max-time 5 https://registry.k8s.io/v2/; then
  say "registry.k8s.io is not reachable from here; building images and kubectl from source instead"
  ensure_bundle
  sources=(--bundle "$KINIT_BUNDLE_DIR")
else
  ensure_bundle node
fi
exec "${CARGO_TARGET_DIR:-$REPO/target}/release/kinit" up "${sources[@]}" "$@"
