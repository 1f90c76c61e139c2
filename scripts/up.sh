#!/usr/bin/env bash
# From a fresh Debian/Ubuntu machine with Rust to a running kinit cluster: installs and
# starts Docker when missing, builds kinit, makes the component images available and runs
# `kinit up` on its defaults.
#
# Images and kubectl: kinit uses images Docker already has and pulls the rest from
# registry.k8s.io, and downloads kubectl from dl.k8s.io. On a host that cannot reach
# registry.k8s.io, both are built from upstream sources into the offline bundle first
# (needs Go) and kinit reads them from there.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

# Build as the invoking user (their toolchain), then become root for the host changes.
if [ -z "${KINIT_BUILT:-}" ]; then
  command -v cargo >/dev/null || die "cargo is needed (https://rustup.rs)"
  say "building kinit (cargo build --release)"
  cargo build --locked --release
  export KINIT_BUILT=1
fi
become_root "$@"

ensure_docker
sources=()
if ! curl -s -o /dev/null --max-time 5 https://registry.k8s.io/v2/; then
  say "registry.k8s.io is not reachable from here; building images and kubectl from source instead"
  ensure_bundle "$KINIT_COMPONENTS"
  sources=(--bundle "$KINIT_BUNDLE_DIR")
fi
exec "$REPO/target/release/kinit" up "${sources[@]}" "$@"
