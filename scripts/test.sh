#!/usr/bin/env bash
# The whole test suite, on a fresh Debian/Ubuntu machine with Rust and Go: installs and
# starts what the tests need (Docker engine, curl, openssl, dnsmasq), builds the whole
# offline bundle (the Docker tests run it; the bundle tests check every component of it;
# cached after the first run), then runs every test tier.
#
#   scripts/test.sh [extra cargo test arguments]
#
# Runs as root (re-runs itself with sudo): the Docker tests start kinit's containers.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
become_root "$@"
cd "$REPO"

apt_ensure curl:curl openssl:openssl setpriv:util-linux dnsmasq:dnsmasq-base
command -v cargo >/dev/null || die "cargo is needed (https://rustup.rs)"
ensure_docker
ensure_bundle ""   # every component

say "cargo test (unit, CLI and Docker tiers)"
cargo test --locked "$@"
