#!/usr/bin/env bash
# fuzz.sh — every cargo fuzz target in fuzz/ (what kinit parses from outside: the config
# file, cluster.yaml, a mirror's .sha256, the container-create bodies the runtime proxy
# rewrites, the SOCKS5 handshake) run for a bounded time from the seeds in
# fuzz/seeds/<target>, with libFuzzer and AddressSanitizer. A crash, a failed check or a
# hang fails it and keeps the input (printed at the end). New inputs found go to a
# throwaway corpus, not into the checkout.
#
#   scripts/fuzz.sh [--seconds N] [TARGET...]    # default: every target, 30 s each
#
# Needs Rust nightly (rustup's, as the machine has it); installs cargo fuzz at the version
# versions.env pins into the build cache, and builds into it too.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/versions.env disable=SC1091
source "$REPO/scripts/versions.env"
cd "$REPO/fuzz"

seconds=30
if [ "${1:-}" = --seconds ]; then
  seconds=${2:?--seconds needs a number}
  shift 2
fi

rustup run nightly rustc --version >/dev/null 2>&1 ||
  die "cargo fuzz needs Rust nightly: rustup toolchain install nightly"
tool="$KINIT_BUILD_CACHE/cargo-fuzz-$CARGO_FUZZ_VERSION"
if [ ! -x "$tool/bin/cargo-fuzz" ]; then
  say "cargo fuzz $CARGO_FUZZ_VERSION (cargo install, into $tool)"
  cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION" --root "$tool.part"
  rm -rf "$tool" && mv "$tool.part" "$tool"
fi
export PATH="$tool/bin:$PATH" CARGO_TARGET_DIR="$KINIT_BUILD_CACHE/fuzz-target"

mapfile -t targets < <(if [ $# -gt 0 ]; then printf '%s\n' "$@"; else cargo +nightly fuzz list; fi)
say "building ${#targets[@]} fuzz targets"
cargo +nightly fuzz build

work=$(mktemp -d /tmp/kinit-fuzz.XXXXXX)
failed=()
for target in "${targets[@]}"; do
  mkdir -p "$work/$target/corpus" "$work/$target/artifacts"
  if cargo +nightly fuzz run "$target" "$work/$target/corpus" "seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$work/$target/artifacts/" >"$work/$target/log" 2>&1; then
    say "$target: $(grep -o '#[0-9]*.*DONE.*' "$work/$target/log" | tail -n 1 || echo done)"
  else
    tail -n 30 "$work/$target/log" >&2
    failed+=("$target")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  ls -l "$work"/*/artifacts/ >&2
  die "fuzzing found failures in: ${failed[*]} (inputs in $work/<target>/artifacts/; replay with \`cargo +nightly fuzz run TARGET FILE\` in fuzz/)"
fi
rm -rf "$work"
say "fuzzing passed: ${targets[*]}, ${seconds}s each"
