#!/usr/bin/env bash
# Benchmark of a user's first `kinit up` on a host with internet, with real servers on
# loopback standing in for the internet: an HTTP server serving the offline bundle at the
# upstream release paths, and go-containerregistry's registry holding its images under
# registry.k8s.io's paths. One command, figures from one run:
#
#   scripts/bench-first-run.sh
#
#   cold: empty download cache and no kinit or Kubernetes image in Docker, to a Ready node
#         with cluster DNS (images pulled, binaries downloaded and checked, node image
#         assembled, cluster started); the node image assembly on its own line
#   warm: `kinit down`, then `kinit up` again (everything cached)
#
# Uses the release build of kinit, the bundle (built when missing) and a throwaway state
# directory and cache; needs root. Refuses to run while another kinit cluster is up.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"
build_for_bench --kinit-only
become_root "$@"
apt_ensure bc:bc python3:python3
ensure_docker
ensure_bundle "" --pinned-only >/dev/null
if [ -n "$(docker ps -aq --filter label=io.kinit.managed=true)" ]; then
  die "a kinit cluster exists on this host; run the benchmark on a host without one"
fi

WORK=$(mktemp -d /tmp/kinit-bench.XXXXXX)
export KINIT_CACHE_DIR="$WORK/cache"
KINIT=("${CARGO_TARGET_DIR:-$REPO/target}/release/kinit" --state-dir "$WORK/state")
pids=()
cleanup() {
  "${KINIT[@]}" down --purge >/dev/null 2>&1 || true
  # Leave the engine as the tests expect it: the bundle's images present.
  "${KINIT[@]}" images load "$KINIT_BUNDLE_DIR" >/dev/null 2>&1 || true
  [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT


http_port=$(free_port)
python3 -m http.server --bind 127.0.0.1 --directory "$KINIT_BUNDLE_DIR" "$http_port" >/dev/null 2>&1 &
pids+=($!)
registry_port=$(free_port)
"$KINIT_BUNDLE_DIR/tools/registry" -port "$registry_port" >"$WORK/registry.log" 2>&1 &
pids+=($!)
wait_port "$http_port"
wait_port "$registry_port"
MIRROR="http://127.0.0.1:$http_port"
REPOSITORY="127.0.0.1:$registry_port"

# The registry gets every upstream image kinit lists (the cluster's and the addons'), each
# under its upstream path less the registry host, as an --image-repository mirror holds it.
mapfile -t upstream < <("${KINIT[@]}" images list | awk '{print $2}')
for ref in "${upstream[@]}"; do
  tar="$KINIT_BUNDLE_DIR/images/$(tr '/:' '__' <<<"$ref").tar"
  [ -f "$tar" ] || die "the bundle has no $ref ($tar)"
  "$KINIT_BUNDLE_DIR/tools/crane" push "$tar" "$REPOSITORY/${ref#*/}" >/dev/null 2>&1 ||
    die "cannot push $ref to the registry"
done

# Nothing kinit would find present: no upstream or mirrored image, no node image. By ID,
# so that no other tag (an earlier run's registry port) keeps the layers.
for ref in "${upstream[@]}"; do
  id=$(docker image inspect -f '{{.Id}}' "$ref" 2>/dev/null || true)
  [ -z "$id" ] || docker image rm --force "$id" >/dev/null
done
docker image ls --format '{{.Repository}}:{{.Tag}}' | { grep '^kinit.invalid/node:' || true; } |
  xargs -r docker image rm --force >/dev/null

UP=(up --mirror "$MIRROR" --image-repository "$REPOSITORY" --bin-dir "$WORK/bin" --kubeconfig "$WORK/kubeconfig")
# "... assembled kinit.invalid/node:v1.36.3-abc in 2.1s from ..." -> 2.1
step_seconds() { sed -n "s|.*$1 in \([0-9.]*\)s.*|\1|p" "$WORK/up.log" | head -n 1; }

cold=$(timed_up)
cp "$WORK/up.log" "$WORK/cold.log"
assembly=$(step_seconds "assembled kinit.invalid/node:[^ ]*")
"${KINIT[@]}" down >/dev/null 2>&1
warm=$(timed_up)

echo
echo "kinit up from a stand-in internet ($(nproc) cores, Docker $(docker version --format '{{.Server.Version}}'), Kubernetes $(grep ^KUBERNETES_VERSION scripts/versions.env | cut -d= -f2), one run)"
printf '  %-52s %8.1f s\n' "cold: empty cache and image store to Ready + DNS" "$cold"
printf '  %-52s %8.1f s\n' "  of which node image assembly" "${assembly:-0}"
printf '  %-52s %8.1f s\n' "warm: after kinit down" "$warm"
printf '  %-52s %8.2f\n' "warm / cold" "$(echo "$warm / $cold" | bc -l)"
echo
echo "The cold run printed:"
cat "$WORK/cold.log"
