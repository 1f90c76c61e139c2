# Shared by scripts/test.sh and scripts/up.sh: make a fresh Debian/Ubuntu host ready for
# kinit. Every function checks first and changes only what is missing.
# shellcheck shell=bash

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The offline bundle (scripts/build-bundle.sh) and its build cache live outside the repo.
KINIT_BUILD_CACHE=${KINIT_BUILD_CACHE:-/var/cache/kinit-build}
KINIT_BUNDLE_DIR=${KINIT_BUNDLE_DIR:-$KINIT_BUILD_CACHE/bundle}
export KINIT_BUILD_CACHE KINIT_BUNDLE_DIR

# Under CI (.ci/run sets KINIT_CI_T0), each line also says how far into the run it came,
# so a slow run's log shows where its time went.
say() {
  if [ -n "${KINIT_CI_T0:-}" ]; then
    printf '==> [%ss] %s\n' "$(($(date +%s) - KINIT_CI_T0))" "$*"
  else
    printf '==> %s\n' "$*"
  fi
}
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Re-runs the calling script as root (through sudo when there is one).
become_root() {
  [ "$(id -u)" -eq 0 ] && return 0
  command -v sudo >/dev/null || die "run this as root"
  exec sudo --preserve-env=CI,KINIT_CI_T0,CARGO_TARGET_DIR,KINIT_BUILD_CACHE,KINIT_BUNDLE_DIR,KINIT_BUILT,PATH "$0" "$@"
}

# apt_ensure COMMAND:PACKAGE ... installs each PACKAGE whose COMMAND is missing.
apt_ensure() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing ${missing[*]} (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# What scripts/release.sh links the static binaries with (as apt_ensure's COMMAND:PACKAGE).
RELEASE_TOOLS=(clang:clang llvm-ar:llvm)

# A running Docker engine: Debian's docker.io when none is installed, started through
# systemd where it runs, else by hand with its log in /var/log/kinit-dockerd.log.
ensure_docker() {
  apt_ensure dockerd:docker.io
  start_docker
  say "Docker $(docker version --format '{{.Server.Version}}') is running"
  # The kubelet's volume mounts need / to propagate mounts (rshared binds).
  mount --make-rshared /
}

# start_docker: starts the installed Docker daemon unless it runs, and waits for it.
start_docker() {
  docker info >/dev/null 2>&1 && return 0
  if [ -d /run/systemd/system ]; then
    say "starting Docker (systemctl)"
    systemctl start docker
  else
    say "starting dockerd (no systemd; log in /var/log/kinit-dockerd.log)"
    # Its own session: the daemon outlives the script (and the terminal) that started it.
    setsid nohup dockerd >>/var/log/kinit-dockerd.log 2>&1 </dev/null &
  fi
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 1
  done
  die "dockerd did not start; see /var/log/kinit-dockerd.log"
}

# stop_docker: stops the Docker daemon as a shutdown does (its containers are stopped by
# the daemon, not by hand, so their restart policies bring them back when it starts).
stop_docker() {
  if [ -d /run/systemd/system ]; then
    systemctl stop docker docker.socket
    return 0
  fi
  local pid
  pid=$(cat /var/run/docker.pid 2>/dev/null || true)
  [ -n "$pid" ] || die "no /var/run/docker.pid: is dockerd running?"
  kill "$pid"
  for _ in $(seq 60); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 1
  done
  die "dockerd (pid $pid) did not stop within 60s"
}

# restart_docker: stops the Docker daemon and starts it again, as a package upgrade would
# (used by the end-to-end test).
restart_docker() {
  stop_docker
  ensure_docker
}

# simulate_reboot STATE_DIR: what a host reboot does to kinit's world, without rebooting:
# the daemon stops as at shutdown; what lives in memory goes (sysctls, the propagation of
# /, /run/xtables.lock, the pod bridge, every iptables rule, the pod volumes mounted
# under STATE_DIR); then the daemon starts, as at boot, and nothing else is run.
simulate_reboot() {
  local state=$1
  stop_docker
  echo 0 >/proc/sys/net/ipv4/ip_forward
  if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
    echo 0 >/proc/sys/net/bridge/bridge-nf-call-iptables
  fi
  local m
  grep -o " ${state}/[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  mount --make-rprivate /
  rm -f /run/xtables.lock
  ip link delete cni0 2>/dev/null || true
  local cmd table
  for cmd in iptables ip6tables; do
    for table in filter nat mangle raw; do
      "$cmd" -w -t "$table" -F
      "$cmd" -w -t "$table" -X
    done
    "$cmd" -w -P FORWARD ACCEPT
  done
  start_docker
}
# ensure_cargo: cargo on PATH, also when rustup put it in ~/.cargo/bin and sudo's PATH
# does not have that (scripts/install.sh installs rustup for root).
ensure_cargo() {
  local d
  for d in "" "${CARGO_HOME:-$HOME/.cargo}/bin" /root/.cargo/bin; do
    [ -z "$d" ] || PATH="$d:$PATH"
    command -v cargo >/dev/null && return 0
  done
  die "cargo is needed (https://rustup.rs, or sudo scripts/install.sh)"
}

# ensure_go: a Go at least as new as versions.env's GO_VERSION on PATH. A host without one
# gets that toolchain from the Go module proxy ($GOPROXY's first URL, else proxy.golang.org:
# the same zip `GOTOOLCHAIN` fetches), checked against its pinned digest and kept in the
# build cache.
ensure_go() {
  # shellcheck source=scripts/versions.env disable=SC1091
  source "$REPO/scripts/versions.env"
  local have
  have=$(go env GOVERSION 2>/dev/null || true)
  if [ -n "$have" ] && [ "$(printf '%s\n' "go$GO_VERSION" "$have" | sort -V | head -n 1)" = "go$GO_VERSION" ]; then
    return 0
  fi
  local arch sum
  case $(uname -m) in
    x86_64) arch=amd64 sum=$GO_TOOLCHAIN_SHA256_AMD64 ;;
    aarch64) arch=arm64 sum=$GO_TOOLCHAIN_SHA256_ARM64 ;;
    *) die "Go $GO_VERSION or newer is needed (https://go.dev/doc/install)" ;;
  esac
  local name="v0.0.1-go$GO_VERSION.linux-$arch"
  local dir="$KINIT_BUILD_CACHE/go/$GO_VERSION-$arch"
  local root="$dir/golang.org/toolchain@$name"
  # The stamp is written last: a cut-off unpack is never taken for a toolchain.
  if [ ! -f "$dir/.complete" ]; then
    apt_ensure curl:curl unzip:unzip
    local proxy=${GOPROXY:-https://proxy.golang.org}
    proxy=${proxy%%[,|]*}
    case $proxy in http://*|https://*) ;; *) proxy=https://proxy.golang.org ;; esac
    say "no Go $GO_VERSION here (found: ${have:-none}); fetching it from $proxy"
    local zip="$dir.zip"
    mkdir -p "$(dirname "$dir")"
    curl -fsSL -o "$zip" "$proxy/golang.org/toolchain/@v/$name.zip" ||
      die "cannot download Go $GO_VERSION from $proxy"
    echo "$sum  $zip" | sha256sum -c --quiet - ||
      { rm -f "$zip"; die "the Go $GO_VERSION download does not match its pinned SHA-256"; }
    rm -rf "$dir" "$dir.tmp"
    mkdir -p "$dir.tmp"
    unzip -q "$zip" -d "$dir.tmp" || die "cannot unpack $zip"
    rm -f "$zip"
    # Module zips keep no file modes.
    chmod +x "$dir.tmp/golang.org/toolchain@$name"/bin/* "$dir.tmp/golang.org/toolchain@$name"/pkg/tool/*/*
    mv "$dir.tmp" "$dir"
    touch "$dir/.complete"
  fi
  export PATH="$root/bin:$PATH" GOTOOLCHAIN=local
  unset GOROOT
  say "using $(go version)"
}

# test_prerequisites: everything scripts/test.sh needs before its first test: the host's
# tools (the release build's clang and llvm and the VM tier's qemu and mmdebstrap among
# them, all in one apt run), a running Docker engine, the whole offline bundle, the
# conformance suite with its images, the VM tier's guest image and the two-host tier's
# host image (built once, then cached). .ci/run also starts it early, beside its Rust
# builds.
test_prerequisites() {
  # shellcheck source=scripts/vm/guest.sh
  source "$REPO/scripts/vm/guest.sh"
  # shellcheck source=scripts/hosts/hosts.sh
  source "$REPO/scripts/hosts/hosts.sh"
  apt_ensure curl:curl openssl:openssl setpriv:util-linux dnsmasq:dnsmasq-base python3:python3 \
    iptables-save:iptables vagrant:vagrant "${RELEASE_TOOLS[@]}" "${VM_TOOLS[@]}" "${HOST_TOOLS[@]}"
  # The VM tier's guest (scripts/test-vm.sh) and the two-host tier's hosts
  # (scripts/test-two-hosts.sh) are Debian's packages unpacked by mmdebstrap in a root of
  # their own: mostly downloads and one core, so they are made beside the bundle's
  # compiles rather than after them.
  local guest_log
  guest_log=$(mktemp /tmp/kinit-guest-image.XXXXXX)
  (guest_image bookworm && host_rootfs) >"$guest_log" 2>&1 &
  local guest=$!
  ensure_cargo
  ensure_docker
  ensure_bundle ""           # every component
  ensure_bundle conformance  # e2e.test, ginkgo and the test images (scripts/conformance.sh)
  if ! wait "$guest"; then
    cat "$guest_log" >&2
    die "building the VM tier's guest image or the two-host tier's host image failed"
  fi
  say "VM tier guest image and two-host tier host image: $(tail -n 2 "$guest_log" | tr '\n' ' ')"
  rm -f "$guest_log"
  free_disk_for_tests
}

# free_disk_for_tests: on a disk with little room (CI's is shared with other machines, and
# `kinit up` refuses less than 3 GiB), Go's build cache goes once the bundle is built. It
# only speeds up a rebuild after a recipe changes: the bundle's outputs are cached by recipe.
free_disk_for_tests() {
  local free_gib cache
  free_gib=$(($(df --output=avail -k /var/lib | tail -n 1) / 1048576))
  ((free_gib < 20)) || return 0
  cache=$(go env GOCACHE)
  say "only $free_gib GiB free: removing Go's build cache ($(du -sh "$cache" | cut -f1), $cache)"
  go clean -cache
  say "now $(($(df --output=avail -k /var/lib | tail -n 1) / 1048576)) GiB free"
}

# ensure_bundle [COMPONENTS [BUILD-BUNDLE OPTIONS...]]: images and binaries built from
# upstream sources into the offline bundle, all components unless a comma-separated list
# is given (cached: seconds after the first build).
ensure_bundle() {
  ensure_go
  apt_ensure gcc:gcc
  # The bundle takes some programs from Debian's packages (apt-get download), which needs
  # package lists; a fresh machine may have none.
  compgen -G '/var/lib/apt/lists/*Packages*' >/dev/null || apt-get update -qq
  say "offline bundle (${1:-all components}) in $KINIT_BUNDLE_DIR"
  "$REPO/scripts/build-bundle.sh" ${1:+--only "$1"} "${@:2}" "$KINIT_BUNDLE_DIR"
}

# ---- benchmark helpers ------------------------------------------------------------------

# free_port: a TCP port nothing listens on at the moment, on loopback.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_port PORT [WHAT] [ADDRESS]: until something accepts connections on ADDRESS:PORT
# (default 127.0.0.1; 10 s).
wait_port() {
  local addr=${3:-127.0.0.1}
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/$addr/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  die "nothing listens on $addr:$1${2:+ ($2)}"
}

now() { date +%s.%N; }

# indent: a command's output under the step that ran it.
indent() { sed -u 's/^/  /'; }

# iptables_tables: the tables of an iptables-save listing on stdin without comments and
# counters, for comparing two hosts' states. A table the kernel loaded when a rule first
# named it stays listed once empty: a table with only its built-in chains, at ACCEPT and
# without rules, is as good as none.
iptables_tables() {
  python3 -c '
import sys, re
table = []
for line in sys.stdin.read().splitlines() + ["*"]:
    if line.startswith("#"):
        continue
    if line.startswith("*") and table:
        body = table[1:-1]
        if not all(re.match(r":[A-Z]+ ACCEPT", l) for l in body):
            print("\n".join(table))
        table = []
    if line != "*":
        table.append(re.sub(r" \[[0-9]+:[0-9]+\]", "", line))
'
}

# logged LOG WHAT CMD...: runs CMD with its output in LOG; when it fails, shows LOG and dies
# with "WHAT failed".
logged() {
  local log=$1 what=$2
  shift 2
  "$@" >"$log" 2>&1 || { cat "$log" >&2; die "$what failed"; }
}

# build_for_bench --kinit-only|--socks: the release build of kinit (and with --socks the SOCKS
# benchmark's binary), as the user who runs the script and before it becomes root; once
# for a benchmark and the benchmark scripts it runs (KINIT_BUILT).
build_for_bench() {
  [ -z "${KINIT_BUILT:-}" ] || return 0
  ensure_cargo
  cargo build --locked --release -q
  if [ "$1" = --socks ]; then
    cargo bench --locked --bench socks --no-run -q 2>/dev/null
  fi
  export KINIT_BUILT=1
}

# timed_up: runs "${KINIT[@]}" "${UP[@]}" with its output in $WORK/up.log and prints how
# many seconds it took; the caller sets KINIT, UP and WORK.
timed_up() {
  local t0 t1
  t0=$(now)
  logged "$WORK/up.log" "kinit up" "${KINIT[@]}" "${UP[@]}"
  t1=$(now)
  echo "$t1 - $t0" | bc -l
}
