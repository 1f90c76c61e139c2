#!/usr/bin/env bash
# Tests scripts/install.sh (issue 6) the way a user meets it: in a clean Debian 12 root
# filesystem (debootstrap, cached as a tarball and unpacked afresh every run), run twice.
# By default install.sh runs as `curl ... | sh` runs it, outside any checkout, and installs
# the static release binary (scripts/release.sh) from a file:// release location. With
# --from-source it runs from this checkout and builds it: the chroot borrows the host's
# Rust toolchain (so install.sh finds one and does not fetch rustup) and this checkout's
# target directory (so the build is an up-to-date check, not a rebuild). Passes when the
# second run changes nothing it should not and `kinit --version` works inside.
#
#   scripts/test-install.sh [--from-source]   (root; run by scripts/test.sh without it)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
become_root "$@"
cd "$REPO"
FROM_SOURCE=
case "${1:-}" in
  --from-source) FROM_SOURCE=1 ;;
  "") ;;
  *) die "usage: scripts/test-install.sh [--from-source]" ;;
esac
apt_ensure debootstrap:debootstrap

SUITE=bookworm
MIRROR=${KINIT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
TARBALL="$KINIT_BUILD_CACHE/rootfs-debian-$SUITE-minbase.tar"
if [ ! -f "$TARBALL" ]; then
  say "building a clean Debian $SUITE root filesystem (debootstrap, cached in $TARBALL)"
  tmp=$(mktemp -d)
  debootstrap --variant=minbase "$SUITE" "$tmp" "$MIRROR" >"$KINIT_BUILD_CACHE/debootstrap.log" 2>&1 ||
    { tail -n 20 "$KINIT_BUILD_CACHE/debootstrap.log" >&2; die "debootstrap failed"; }
  tar -C "$tmp" -cf "$TARBALL.tmp" . && mv "$TARBALL.tmp" "$TARBALL"
  rm -rf "$tmp"
fi

ROOT=$(mktemp -d /tmp/kinit-install-test.XXXXXX)
MOUNTS=()
cleanup() {
  local m
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[$i]}" 2>/dev/null || true; done
  rm -rf --one-file-system "$ROOT"
}
trap cleanup EXIT
tar -C "$ROOT" -xf "$TARBALL"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"

bind() { # bind HOST_PATH [ro]: mounted at the same path inside the chroot
  mkdir -p "$ROOT$1"
  mount --bind "$1" "$ROOT$1"
  MOUNTS+=("$ROOT$1")
  if [ "${2:-}" = ro ]; then mount -o remount,bind,ro "$ROOT$1"; fi
}
for fs in /proc /sys /dev /dev/pts; do bind "$fs"; done
if [ -n "$FROM_SOURCE" ]; then
  CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
  RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}
  TARGET=${CARGO_TARGET_DIR:-$REPO/target}
  bind "$REPO" ro
  bind "$TARGET"
  bind "$CARGO_HOME"
  bind "$RUSTUP_HOME" ro
  # Make sure the release build is current, so the chroot's cargo only checks it.
  cargo build --locked --release -q
  INSTALL_SH=$REPO/scripts/install.sh
  ENV=(PATH="$CARGO_HOME/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    CARGO_HOME="$CARGO_HOME" RUSTUP_HOME="$RUSTUP_HOME" CARGO_TARGET_DIR="$TARGET"
    KINIT_SOURCE="$REPO")
else
  # An up-to-date check when scripts/test.sh built it already.
  "$REPO/scripts/release.sh" --host-only >/dev/null
  RELEASES=$REPO/target/release-artifacts
  bind "$RELEASES" ro
  INSTALL_SH=/root/install.sh
  cp "$REPO/scripts/install.sh" "$ROOT$INSTALL_SH"
  ENV=(PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    KINIT_RELEASE_URL="file://$RELEASES")
fi

in_chroot() {
  chroot "$ROOT" /usr/bin/env -i HOME=/root TERM=dumb "${ENV[@]}" "$@"
}

say "install.sh in a clean Debian $SUITE chroot, first run"
in_chroot sh "$INSTALL_SH" | tee "$ROOT/first.log"
# install.sh names the one command that works next.
grep -q "Next: sudo kinit up" "$ROOT/first.log" || die "install.sh did not finish"
[ -x "$ROOT/usr/bin/docker" ] || die "install.sh did not install Docker's engine"
if [ -z "$FROM_SOURCE" ]; then
  grep -q "installed the release binary from file://$RELEASES/" "$ROOT/first.log" ||
    die "install.sh did not install the release binary"
fi
say "second run (must be safe)"
in_chroot sh "$INSTALL_SH" | tee "$ROOT/second.log"
if grep -q 'installing' "$ROOT/second.log"; then
  die "the second run installed packages again"
fi
version=$(in_chroot /usr/local/bin/kinit --version)
[[ $version == "kinit "* ]] || die "kinit --version printed: $version"
in_chroot man -w kinit >/dev/null 2>&1 || [ -s "$ROOT/usr/local/share/man/man1/kinit.1" ] ||
  die "no man page installed"
say "install.sh works in a clean Debian root filesystem: $version"
