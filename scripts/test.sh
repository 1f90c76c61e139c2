#!/usr/bin/env bash
# The whole test suite, on a fresh Debian/Ubuntu machine with Rust (Go is fetched when missing): installs and
# starts what the tests need (Docker engine, curl, openssl, dnsmasq, iptables, Vagrant),
# builds the whole offline bundle (the cluster test runs it; the bundle tests check every
# component of it) and the upstream conformance suite with its test images (cached after
# the first run), then runs every test tier: cargo's (unit, CLI, Docker, cluster end to end,
# SOCKS, bundle), every fuzz target for 30 s (scripts/fuzz.sh), a fixed subset of the
# upstream conformance tests on a cluster of its own
# (scripts/conformance.sh --ci), install.sh in a clean Debian root filesystem (the
# release binary; `scripts/test-install.sh --from-source` builds the checkout instead),
# `vagrant validate`, the VM tier: a Debian 12 guest under qemu (systemd, cgroup v2)
# from install.sh through `kinit up`, nginx and a LoadBalancer, and a real reboot
# to `kinit down --purge` (scripts/test-vm.sh; `scripts/test-vm.sh --full bookworm trixie`
# is the full run, with every walkthrough and a volume), and beside it the two-host tier: a second host
# joins, pods talk across the hosts, drain, a cut link, reboots, leaving and purging
# (scripts/test-two-hosts.sh).
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

# The static release binary that install.sh downloads, for the install.sh and VM tiers,
# then the fuzz targets' bounded run (scripts/fuzz.sh). cargo's tests and the conformance
# run spend most of their time waiting on clusters; built and run beside them at the
# lowest priority, these take only the time they leave idle. Their own session, so that a
# failure below stops them as a group.
release_log=$(mktemp /tmp/kinit-release.XXXXXX)
say "the static release binary, then fuzzing, in the background (scripts/release.sh --host-only, scripts/fuzz.sh; log: $release_log)"
setsid -w nice -n 19 bash -c '"$1/scripts/release.sh" --host-only && "$1/scripts/fuzz.sh"' _ "$REPO" \
  >"$release_log" 2>&1 &
release=$!
stop_release() { kill -- "-$release" 2>/dev/null || true; }
trap stop_release EXIT

say "cargo test (unit, CLI, Docker, cluster, SOCKS and bundle tiers)"
cargo test --locked "$@"

say "conformance subset (scripts/conformance-ci.txt) on a cluster of its own"
"$REPO/scripts/conformance.sh" --ci --up --kinit "${CARGO_TARGET_DIR:-$REPO/target}/debug/kinit"

say "waiting for the release binary and fuzzing"
if ! wait "$release"; then
  cat "$release_log"
  die "building the release binary or fuzzing failed (log: $release_log)"
fi
trap - EXIT
grep -E '^(==>|  )' "$release_log" | tail -n 8

say "install.sh in a clean Debian root filesystem"
"$REPO/scripts/test-install.sh"

say "vagrant validate"
(cd "$REPO/vagrant" && vagrant validate)

# The two-host tier mostly waits (on node heartbeats, evictions, reboots) while the VM tier
# keeps both cores busy emulating its guest, so they run at the same time; neither shares
# a network, a Docker object or a route with the other.
two_hosts_log=$(mktemp /tmp/kinit-two-hosts.XXXXXX)
say "the two-host tier, in the background (scripts/test-two-hosts.sh; log: $two_hosts_log)"
"$REPO/scripts/test-two-hosts.sh" >"$two_hosts_log" 2>&1 &
two_hosts=$!
say "the VM tier: a Debian 12 guest with systemd and cgroup v2 (scripts/test-vm.sh)"
"$REPO/scripts/test-vm.sh" bookworm
say "waiting for the two-host tier"
if ! wait "$two_hosts"; then
  cat "$two_hosts_log"
  die "the two-host tier failed (log: $two_hosts_log)"
fi
cat "$two_hosts_log"
