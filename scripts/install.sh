#!/bin/sh
# Installs kinit and what it needs on a fresh Ubuntu 22.04/24.04 or Debian 12 host:
#
#   curl -fsSL https://raw.githubusercontent.com/kinit-dev/kinit/main/scripts/install.sh | sudo sh
#   sudo scripts/install.sh                      # from a clone: builds that checkout
#
# 1. Docker's engine from the distribution's packages (docker.io) when there is no Docker,
#    started through systemd where it runs.
# 2. kinit into $KINIT_PREFIX/bin (default /usr/local): the release binary when one is
#    published for this machine (checked against its .sha256), else built with cargo from
#    the checkout this script is in, or from a fresh clone; rustup is installed only when
#    there is no Rust toolchain at all.
# 3. Shell completion for bash and the man page.
# Safe to run again: each step checks first and does only what is missing. Environment:
#   KINIT_SOURCE       build this checkout (default: the one holding this script, if any)
#   KINIT_RELEASE_URL  where release binaries live (default: the project's GitHub releases)
#   KINIT_REPO_URL     what to clone (into $KINIT_PREFIX/src/kinit) when there is neither
#                      a release nor a checkout
#   KINIT_PREFIX       install prefix (default /usr/local)
set -eu

KINIT_PREFIX=${KINIT_PREFIX:-/usr/local}
KINIT_REPO_URL=${KINIT_REPO_URL:-https://github.com/kinit-dev/kinit}
KINIT_RELEASE_URL=${KINIT_RELEASE_URL:-$KINIT_REPO_URL/releases/latest/download}

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
  die "run this as root: sudo sh $0 (or curl ... | sudo sh)"
fi

# --- the host ----------------------------------------------------------------------
if [ -r /etc/os-release ]; then
  . /etc/os-release
  case "${ID:-}:${ID_LIKE:-}" in
    debian:*|ubuntu:*|*:*debian*) ;;
    *) die "this installer knows Debian and Ubuntu; on ${PRETTY_NAME:-this system} install Docker and build kinit with cargo yourself" ;;
  esac
else
  die "cannot tell which Linux this is (no /etc/os-release)"
fi
case "$(uname -m)" in
  x86_64) ARCH=amd64 ;;
  aarch64) ARCH=arm64 ;;
  *) die "unsupported machine $(uname -m); kinit runs on amd64 and arm64" ;;
esac

APT_UPDATED=
# apt_update_once: the package lists, fetched at most once per run.
apt_update_once() {
  [ -n "$APT_UPDATED" ] && return 0
  apt-get update -qq
  APT_UPDATED=1
}

apt_install() {
  missing=
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
      missing="$missing $pkg"
  done
  [ -z "$missing" ] && return 0
  apt_update_once
  say "installing$missing (distribution packages)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

# apt_has PKG: the distribution has PKG (after one `apt-get update`).
apt_has() {
  apt_update_once
  [ -n "$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p' | grep -v '(none)')" ]
}

# --- Docker ------------------------------------------------------------------------
apt_install ca-certificates curl
if command -v docker >/dev/null 2>&1; then
  say "Docker is installed ($(docker --version 2>/dev/null || echo 'version unknown'))"
else
  apt_install docker.io iptables
  # Debian 13 ships the docker command apart from the engine, only recommended by it.
  if ! command -v docker >/dev/null 2>&1 && apt_has docker-cli; then
    apt_install docker-cli
  fi
fi
# Docker loads its container profile with apparmor_parser where the kernel has AppArmor on
# (Debian's and Ubuntu's do); docker.io only recommends it, and without it no container
# that is not privileged starts.
if grep -qx Y /sys/module/apparmor/parameters/enabled 2>/dev/null; then
  apt_install apparmor
fi
if docker info >/dev/null 2>&1; then
  say "Docker is running"
elif [ -d /run/systemd/system ]; then
  say "starting Docker (systemctl enable --now docker)"
  systemctl enable --now docker >/dev/null 2>&1 || die "Docker did not start: see journalctl -u docker"
else
  say "Docker is installed but not running, and there is no systemd here to start it; start dockerd before kinit up"
fi

# --- kinit -------------------------------------------------------------------------
BIN="$KINIT_PREFIX/bin/kinit"
CLONE="$KINIT_PREFIX/src/kinit"
mkdir -p "$KINIT_PREFIX/bin"

# The checkout this script belongs to, if it was run from one.
if [ -z "${KINIT_SOURCE:-}" ]; then
  here=$(cd "$(dirname "$0")/.." 2>/dev/null && pwd || true)
  if [ -n "$here" ] && [ -f "$here/Cargo.toml" ] && grep -q '^name = "kinit"' "$here/Cargo.toml"; then
    KINIT_SOURCE=$here
  fi
fi

install_release() {
  url="$KINIT_RELEASE_URL/kinit-linux-$ARCH"
  tmp=$(mktemp)
  if curl -fsSL --max-time 60 -o "$tmp" "$url" 2>/dev/null &&
     sum=$(curl -fsSL --max-time 30 "$url.sha256" 2>/dev/null) &&
     [ "$(sha256sum "$tmp" | cut -d' ' -f1)" = "$(echo "$sum" | cut -d' ' -f1)" ]; then
    install -m 0755 "$tmp" "$BIN"
    rm -f "$tmp"
    say "installed the release binary from $url"
    return 0
  fi
  rm -f "$tmp"
  return 1
}

cargo_bin() {
  if command -v cargo >/dev/null 2>&1; then
    command -v cargo
  elif [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
    echo "${CARGO_HOME:-$HOME/.cargo}/bin/cargo"
  else
    return 1
  fi
}

build_from_source() {
  src=$1
  apt_install build-essential pkg-config git
  if ! cargo=$(cargo_bin); then
    say "no Rust toolchain: installing rustup (https://rustup.rs)"
    curl -fsSL https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null
    cargo=$(cargo_bin) || die "rustup did not install cargo"
  fi
  say "building kinit from $src with $($cargo --version)"
  (cd "$src" && "$cargo" build --locked --release -q) || die "cargo build failed"
  target=${CARGO_TARGET_DIR:-$src/target}
  install -m 0755 "$target/release/kinit" "$BIN"
}

if [ -n "${KINIT_SOURCE:-}" ]; then
  build_from_source "$KINIT_SOURCE"
elif [ -x "$BIN" ] && [ -z "${KINIT_REINSTALL:-}" ]; then
  say "kinit is installed already: $("$BIN" --version) (KINIT_REINSTALL=1 replaces it)"
elif ! install_release; then
  say "no release binary for linux-$ARCH at $KINIT_RELEASE_URL; building from source"
  apt_install git
  # Kept, not a temporary directory: scripts/up.sh in it builds kinit's node image.
  if ! git -C "$CLONE" pull -q --ff-only 2>/dev/null; then
    rm -rf "$CLONE"
    git clone -q --depth 1 "$KINIT_REPO_URL" "$CLONE" || die "cannot clone $KINIT_REPO_URL"
  fi
  KINIT_SOURCE=$CLONE
  build_from_source "$CLONE"
fi

# --- completion and man page ----------------------------------------------------
if [ -d /usr/share/bash-completion/completions ]; then
  "$BIN" completions bash >/usr/share/bash-completion/completions/kinit
fi
mkdir -p "$KINIT_PREFIX/share/man/man1"
# (A kinit from before `man --dir` writes only kinit.1.)
"$BIN" man --dir "$KINIT_PREFIX/share/man/man1" 2>/dev/null ||
  "$BIN" man >"$KINIT_PREFIX/share/man/man1/kinit.1"

say "$("$BIN" --version) is installed at $BIN"
echo
echo "Next: sudo kinit up"
