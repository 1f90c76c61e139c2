#!/usr/bin/env bash
# The whole test suite, on a fresh Debian/Ubuntu machine with Rust (Go is fetched when missing): installs and
# starts what the tests need (Docker engine, curl, openssl, dnsmasq, iptables, Vagrant),
# builds the whole offline bundle (the cluster test runs it; the bundle tests check every
# component of it) and the upstream conformance suite with its test images (cached after
# the first run), then runs every test tier: cargo's (unit, CLI, Docker, cluster end to end,
# SOCKS, bundle), a fixed subset of the upstream conformance tests on a cluster of its own
# (scripts/conformance.sh --ci), install.sh in a clean Debian root filesystem,
# `vagrant validate`, and the VM tier: a Debian 12 guest under qemu (systemd, cgroup v2)
# from install.sh through `kinit up`, nginx, a volume and a LoadBalancer, and a real reboot
# to `kinit down --purge` (scripts/test-vm.sh; `scripts/test-vm.sh --full bookworm trixie`
# is the full run, with every walkthrough).
#
#   scripts/test.sh [extra cargo test arguments]
#
# Runs as root (re-runs itself with sudo): the Docker tests start kinit's containers.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
become_root "$@"
cd "$REPO"

test_prerequisites

say "cargo test (unit, CLI, Docker, cluster, SOCKS and bundle tiers)"
cargo test --locked "$@"

say "conformance subset (scripts/conformance-ci.txt) on a cluster of its own"
"$REPO/scripts/conformance.sh" --ci --up --kinit "${CARGO_TARGET_DIR:-$REPO/target}/debug/kinit"

say "install.sh in a clean Debian root filesystem"
"$REPO/scripts/test-install.sh"

say "vagrant validate"
(cd "$REPO/vagrant" && vagrant validate)

say "the VM tier: a Debian 12 guest with systemd and cgroup v2 (scripts/test-vm.sh)"
"$REPO/scripts/test-vm.sh" bookworm
