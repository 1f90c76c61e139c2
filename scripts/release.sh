#!/usr/bin/env bash
# release.sh — kinit's release binaries: static Linux executables for x86_64 and aarch64
# (musl targets, no shared library needed at run time), each with a `.sha256` beside it in
# sha256sum's format, named as scripts/install.sh fetches them:
#
#   scripts/release.sh [--host-only] [OUT_DIR]   # default: target/release-artifacts
#
# --host-only builds this machine's architecture alone (the VM tier's guests run it).
#
#   OUT_DIR/kinit-linux-amd64  kinit-linux-amd64.sha256
#   OUT_DIR/kinit-linux-arm64  kinit-linux-arm64.sha256
#
# Needs Rust with rustup (the two musl targets are added when missing) and, from Debian's
# packages, clang and llvm-ar for the C and assembly parts of the TLS library (ring) of the foreign
# target; both binaries are linked by rustc's own lld with musl's self-contained objects,
# so no cross toolchain is needed.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

PAIRS=(x86_64-unknown-linux-musl:amd64 aarch64-unknown-linux-musl:arm64)
if [ "${1:-}" = --host-only ]; then
  shift
  case $(uname -m) in
    x86_64) PAIRS=("${PAIRS[0]}") ;;
    aarch64) PAIRS=("${PAIRS[1]}") ;;
    *) die "no release target for $(uname -m)" ;;
  esac
fi
OUT_DIR=${1:-$REPO/target/release-artifacts}
ensure_cargo
command -v rustup >/dev/null || die "rustup is needed to add the musl targets (https://rustup.rs)"
if ! command -v clang >/dev/null || ! command -v llvm-ar >/dev/null; then
  [ "$(id -u)" -eq 0 ] || die "clang and llvm-ar are needed: sudo apt-get install clang llvm"
  apt_ensure "${RELEASE_TOOLS[@]}"
fi
mkdir -p "$OUT_DIR"

for pair in "${PAIRS[@]}"; do
  target=${pair%%:*} arch=${pair#*:}
  rustup target list --installed | grep -qx "$target" || rustup target add "$target"
  env_target=${target//-/_}
  upper=$(tr '[:lower:]' '[:upper:]' <<<"$env_target")
  say "building kinit for $target"
  t0=$SECONDS
  env "CC_$env_target=clang" "CFLAGS_$env_target=--target=${target/unknown-/}" \
    "AR_$env_target=llvm-ar" \
    "CARGO_TARGET_${upper}_LINKER=rust-lld" \
    "CARGO_TARGET_${upper}_RUSTFLAGS=-C linker-flavor=ld.lld -C target-feature=+crt-static" \
    cargo build --locked --release --target "$target"
  bin="$OUT_DIR/kinit-linux-$arch"
  install -m 0755 "${CARGO_TARGET_DIR:-$REPO/target}/$target/release/kinit" "$bin"
  (cd "$OUT_DIR" && sha256sum "kinit-linux-$arch" >"kinit-linux-$arch.sha256")
  # A static executable has no program interpreter.
  if readelf -l "$bin" | grep -q 'Requesting program interpreter'; then
    die "$bin is not static"
  fi
  say "$bin: $(du -h "$bin" | cut -f1), static, built in $((SECONDS - t0))s"
done
# The host's own architecture must run.
case $(uname -m) in
  x86_64) "$OUT_DIR/kinit-linux-amd64" --version ;;
  aarch64) "$OUT_DIR/kinit-linux-arm64" --version ;;
esac
ls -l "$OUT_DIR"
