# Shared by scripts/test.sh and scripts/up.sh: make a fresh Debian/Ubuntu host ready for
# kinit. Every function checks first and changes only what is missing.
# shellcheck shell=bash

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The offline bundle (scripts/build-bundle.sh) and its build cache live outside the repo.
KINIT_BUILD_CACHE=${KINIT_BUILD_CACHE:-/var/cache/kinit-build}
KINIT_BUNDLE_DIR=${KINIT_BUNDLE_DIR:-$KINIT_BUILD_CACHE/bundle}
export KINIT_BUILD_CACHE KINIT_BUNDLE_DIR

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Re-runs the calling script as root (through sudo when there is one).
become_root() {
  [ "$(id -u)" -eq 0 ] && return 0
  command -v sudo >/dev/null || die "run this as root"
  exec sudo --preserve-env=CI,KINIT_BUILD_CACHE,KINIT_BUNDLE_DIR,KINIT_BUILT,PATH "$0" "$@"
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

# A running Docker engine: Debian's docker.io when none is installed, started through
# systemd where it runs, else by hand with its log in /var/log/kinit-dockerd.log.
ensure_docker() {
  apt_ensure dockerd:docker.io
  if ! docker info >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
      say "starting Docker (systemctl)"
      systemctl start docker
    else
      say "starting dockerd (no systemd; log in /var/log/kinit-dockerd.log)"
      nohup dockerd >>/var/log/kinit-dockerd.log 2>&1 &
    fi
    local i
    for i in $(seq 60); do
      docker info >/dev/null 2>&1 && break
      [ "$i" -eq 60 ] && die "dockerd did not start; see /var/log/kinit-dockerd.log"
      sleep 1
    done
  fi
  say "Docker $(docker version --format '{{.Server.Version}}') is running"
  # The kubelet's volume mounts need / to propagate mounts (rshared binds).
  mount --make-rshared /
}

# restart_docker: stops the Docker daemon and starts it again, as a host reboot or a
# package upgrade would (used by the end-to-end test).
restart_docker() {
  if [ -d /run/systemd/system ]; then
    systemctl restart docker
  else
    local pid
    pid=$(cat /var/run/docker.pid 2>/dev/null || true)
    [ -n "$pid" ] || die "no /var/run/docker.pid: is dockerd running?"
    kill "$pid"
    local i
    for i in $(seq 60); do
      kill -0 "$pid" 2>/dev/null || break
      [ "$i" -eq 60 ] && die "dockerd (pid $pid) did not stop within 60s"
      sleep 1
    done
    ensure_docker
  fi
}

# ensure_bundle [COMPONENTS]: images and binaries built from upstream sources into the
# offline bundle, all components unless a comma-separated list is given (cached: seconds
# after the first build).
ensure_bundle() {
  command -v go >/dev/null || die "Go is needed to build the offline bundle (https://go.dev/doc/install)"
  apt_ensure gcc:gcc
  # The bundle takes some programs from Debian's packages (apt-get download), which needs
  # package lists; a fresh machine may have none.
  compgen -G '/var/lib/apt/lists/*Packages*' >/dev/null || apt-get update -qq
  say "offline bundle (${1:-all components}) in $KINIT_BUNDLE_DIR"
  "$REPO/scripts/build-bundle.sh" ${1:+--only "$1"} "$KINIT_BUNDLE_DIR"
}
