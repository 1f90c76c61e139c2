#!/usr/bin/env bash
# From a fresh Debian/Ubuntu machine with Rust to a running kinit cluster: installs and
# starts Docker when missing, builds kinit, makes the component images available and runs
# `kinit up` on its defaults.
#
# kinit itself pulls the images from registry.k8s.io and downloads the kubelet, kubectl,
# cri-dockerd and the CNI plugins from their release locations. Only on a host that cannot
# reach registry.k8s.io is the offline bundle built from upstream sources with Go (the
# host's, or one fetched from the Go module proxy), and kinit reads everything from there.
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
  ensure_bundle "" --pinned-only
  sources=(--bundle "$KINIT_BUNDLE_DIR")
fi
exec "${CARGO_TARGET_DIR:-$REPO/target}/release/kinit" up "${sources[@]}" "$@"
