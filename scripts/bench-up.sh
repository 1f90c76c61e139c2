#!/usr/bin/env bash
# Benchmark of `kinit up` (issue 4): time from `kinit up` to a Ready node with cluster DNS
# answering, cold (no state at all) and warm (after `kinit down`, data kept), and the
# cluster's idle memory: the resident set of every process in the component containers
# (etcd, kubelet + cri-dockerd, kube-proxy, kube-apiserver, controller-manager, scheduler,
# CoreDNS), summed per component. One command, figures and ratios from one run:
#
#   scripts/bench-up.sh [ROUNDS]      (default 1 round of cold + warm)
#
# Uses the offline bundle (built when missing) and a throwaway state directory; needs root.
# Refuses to run while another kinit cluster is up on this host.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"
ROUNDS=${1:-1}
if [ -z "${KINIT_BUILT:-}" ]; then
  ensure_cargo
  cargo build --locked --release -q
  export KINIT_BUILT=1
fi
become_root "$@"
apt_ensure bc:bc
ensure_docker
ensure_bundle "" --pinned-only >/dev/null
if [ -n "$(docker ps -aq --filter label=io.kinit.managed=true)" ]; then
  die "a kinit cluster exists on this host; run the benchmark on a host without one"
fi

WORK=$(mktemp -d /tmp/kinit-bench.XXXXXX)
KINIT=("$REPO/target/release/kinit" --state-dir "$WORK/state")
UP=(up --bundle "$KINIT_BUNDLE_DIR" --bin-dir "$WORK/bin" --kubeconfig "$WORK/kubeconfig")
cleanup() { "${KINIT[@]}" down --purge >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT


# The resident memory (KiB) of every process of a container.
container_rss_kib() {
  local pid total=0 rss
  for pid in $(docker top "$1" -eo pid 2>/dev/null | tail -n +2); do
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    total=$((total + ${rss:-0}))
  done
  echo "$total"
}

# Component -> its container (kinit's own, or the pod container the kubelet made).
component_container() {
  case $1 in
    etcd|master|proxy) echo "kinit-$1" ;;
    *) docker ps -q --filter "label=io.kubernetes.container.name=$1" \
         --filter label=io.kubernetes.pod.namespace=kube-system | head -n 1 ;;
  esac
}

cold=() warm=()
for round in $(seq "$ROUNDS"); do
  "${KINIT[@]}" down --purge >/dev/null 2>&1 || true
  cold+=("$(timed_up)")
  "${KINIT[@]}" down >/dev/null 2>&1
  warm+=("$(timed_up)")
  say "round $round: cold ${cold[-1]}s, warm ${warm[-1]}s"
done

say "letting the cluster idle for 60s before measuring memory"
sleep 60
declare -A rss
total=0
for c in etcd master proxy kube-apiserver kube-controller-manager kube-scheduler coredns; do
  id=$(component_container "$c")
  [ -n "$id" ] || die "no container for $c"
  rss[$c]=$(container_rss_kib "$id")
  total=$((total + rss[$c]))
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
cold_s=$(median "${cold[@]}")
warm_s=$(median "${warm[@]}")
echo
echo "kinit up benchmark ($(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Docker $(docker version --format '{{.Server.Version}}'), Kubernetes $(grep ^KUBERNETES_VERSION scripts/versions.env | cut -d= -f2); $ROUNDS round(s), median)"
printf '  %-44s %8.1f s\n' "cold up (no state) to Ready node + DNS" "$cold_s"
printf '  %-44s %8.1f s\n' "warm up (after kinit down) to Ready + DNS" "$warm_s"
printf '  %-44s %8.2f\n' "warm / cold" "$(echo "$warm_s / $cold_s" | bc -l)"
echo "  idle memory (RSS of every process, after 60s idle):"
for c in etcd master proxy kube-apiserver kube-controller-manager kube-scheduler coredns; do
  label=$c; [ "$c" = master ] && label="master (kubelet + cri-dockerd)"
  printf '    %-40s %8.1f MiB  %5.1f%%\n' "$label" "$(echo "${rss[$c]} / 1024" | bc -l)" "$(echo "100 * ${rss[$c]} / $total" | bc -l)"
done
printf '    %-40s %8.1f MiB\n' "total" "$(echo "$total / 1024" | bc -l)"
