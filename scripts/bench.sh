#!/usr/bin/env bash
# bench.sh — kinit's performance in one command, one run, one table (issue 14):
#
#   scripts/bench.sh [--rounds N] [--skip-socks]
#
#   usable   from `kinit up` until a freshly created Deployment's pod answers through its
#            Service and the Service's name resolves through cluster DNS (the way
#            minikube's time-to-k8s measures): first after `kinit down --purge` (kinit
#            assembles its node image and fills its download cache from the bundle), cold
#            (a new state directory: no cluster, images present, as kind and minikube
#            measure with their node image present) and warm (after `kinit down`);
#            `kinit up` returning is shown too
#   idle     after 60 s idle: the resident memory of every process of each component
#            (etcd, kubelet + cri-dockerd, kube-proxy, the control plane, CoreDNS) and their
#            CPU over the next 30 s, in % of one core; the default addons on their own lines
#   scale    one Deployment of 10, 50 and 100 pods: time from creation to all Ready
#   socks    scripts/bench-socks.sh in the same run: `kinit socks` against a direct
#            connection, microsocks and ssh -D (set-up latency p50/p99, throughput against
#            the bare splice relay)
#
# Each figure is printed beside its target, and ratios against the peers measured in the
# same run. Uses the release build, the offline bundle (built when missing) and a throwaway
# state directory; needs root; refuses to run while another kinit cluster is up.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"
usage() { sed -n '2,/^# same run/p' "$0" | sed 's/^# \{0,1\}//'; }
ROUNDS=1 SOCKS=1
args=("$@")
while [[ $# -gt 0 ]]; do
  case $1 in
    --rounds) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "--rounds needs a positive number"; ROUNDS=$2; shift 2 ;;
    --skip-socks) SOCKS=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
build_for_bench --socks
become_root "${args[@]}"
apt_ensure bc:bc dig:bind9-dnsutils curl:curl python3:python3
ensure_docker
ensure_bundle "" --pinned-only >/dev/null
if [ -n "$(docker ps -aq --filter label=io.kinit.managed=true)" ]; then
  die "a kinit cluster exists on this host; run the benchmark on a host without one"
fi

WORK=$(mktemp -d /tmp/kinit-bench.XXXXXX)
# Each cold round is a new cluster in a state directory of its own; $STATE is the current one.
STATE=$WORK/state-first
run_kinit() { "$TARGET/release/kinit" --state-dir "$STATE" "$@"; }
# `kinit down` (data kept), its report shown only when it fails.
down() { logged "$WORK/down.log" "kinit down" run_kinit down; }
UP=(up --bundle "$KINIT_BUNDLE_DIR" --bin-dir "$WORK/bin" --kubeconfig "$WORK/kubeconfig")
KUBECTL=("$WORK/bin/kubectl" --kubeconfig "$WORK/kubeconfig")
cleanup() {
  local dir
  for dir in "$WORK"/state-*; do
    [ -d "$dir" ] && STATE=$dir run_kinit down --purge >/dev/null 2>&1
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

WEB_IMAGE="kinit-examples/web:$(sed -n 's/^EXAMPLE_IMAGE_TAG=//p' scripts/versions.env)"
DNS_IP=10.96.0.10     # kinit's default Service range: CoreDNS's address
DOMAIN=cluster.local

# deploy NAME REPLICAS: a Deployment of the bundle's web server (busybox httpd on :80),
# exposed as a Service of the same name.
deploy() {
  "${KUBECTL[@]}" create deployment "$1" --image="$WEB_IMAGE" --replicas="$2" --port=80 >/dev/null
  "${KUBECTL[@]}" expose deployment "$1" --port=80 >/dev/null
}
undeploy() {
  "${KUBECTL[@]}" delete deployment,service "$1" --ignore-not-found --wait=true >/dev/null
  "${KUBECTL[@]}" wait --for=delete pod -l "app=$1" --timeout=120s >/dev/null 2>&1 || true
}

# usable: `kinit up` (its output in $WORK/up.log), then a new Deployment and Service, polled
# every 50 ms until the pod answers through the Service and the Service's name resolves
# through cluster DNS. Prints "<seconds to up returning> <seconds to usable>".
usable() {
  local t0 t_up ip _
  t0=$(now)
  logged "$WORK/up.log" "kinit up" run_kinit -v "${UP[@]}"
  t_up=$(now)
  deploy usable 1
  ip=$("${KUBECTL[@]}" get service usable -o jsonpath='{.spec.clusterIP}')
  for _ in $(seq 2400); do
    if curl -fsS --max-time 1 -o /dev/null "http://$ip/hostname" 2>/dev/null &&
       [ "$(dig +short +time=1 +tries=1 "@$DNS_IP" "usable.default.svc.$DOMAIN" 2>/dev/null)" = "$ip" ]; then
      echo "$(echo "$t_up - $t0" | bc -l) $(echo "$(now) - $t0" | bc -l)"
      undeploy usable
      return 0
    fi
    sleep 0.05
  done
  die "the Deployment did not answer through its Service within 2 min"
}

# The processes of a component: kinit's own containers, or the pod container the kubelet made.
component_container() {
  case $1 in
    etcd|master|proxy) echo "kinit-$1" ;;
    *) docker ps -q --filter "label=io.kubernetes.container.name=$1" | head -n 1 ;;
  esac
}
container_pids() { docker top "$1" -eo pid 2>/dev/null | tail -n +2; }
# sum_procs CONTAINER FILE AWK: the sum, over every process of a container, of what AWK
# prints from its /proc/PID/FILE.
sum_procs() {
  local pid total=0 v
  for pid in $(container_pids "$1"); do
    v=$(awk "$3" "/proc/$pid/$2" 2>/dev/null || echo 0)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
# shellcheck disable=SC2016 # awk programs, for awk to expand
rss_kib() { sum_procs "$1" status '/^VmRSS:/ {print $2}'; }
# The part of it that is the programs' own memory: heap, stacks, the Go runtime's. The rest
# of RSS is mostly their binaries' code, mapped from the page cache.
# shellcheck disable=SC2016
anon_kib() { sum_procs "$1" status '/^RssAnon:/ {print $2}'; }
# CPU ticks (user + system) of every process of a container, children that ended included.
# shellcheck disable=SC2016
cpu_ticks() { sum_procs "$1" stat '{print $14 + $15 + $16 + $17}'; }

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
# row LABEL VALUE UNIT TARGET [NOTE]: one line of the table.
row() { printf '  %-46s %9s %-4s %-14s %s\n' "$1" "$2" "$3" "$4" "${5:-}"; }
# meets VALUE OP LIMIT: "met" or "MISSED".
meets() { if [ "$(echo "$1 $2 $3" | bc -l)" = 1 ]; then echo met; else echo MISSED; fi; }

# ---- time to a usable cluster --------------------------------------------------------
# From nothing kinit made: no node image, no download cache.
run_kinit down --purge >/dev/null 2>&1 || true
read -r first_up first < <(usable)
say "after --purge: up ${first_up}s, usable ${first}s"
cold_up=() cold=() warm_up=() warm=()
for r in $(seq "$ROUNDS"); do
  down
  STATE=$WORK/state-$r
  read -r a b < <(usable); cold_up+=("$a"); cold+=("$b")
  cp "$WORK/up.log" "$WORK/up-cold.log"
  down
  read -r a b < <(usable); warm_up+=("$a"); warm+=("$b")
  cp "$WORK/up.log" "$WORK/up-warm.log"
  say "round $r: cold up ${cold_up[-1]}s, usable ${cold[-1]}s; warm up ${warm_up[-1]}s, usable ${warm[-1]}s"
done

# ---- idle footprint -------------------------------------------------------------------
COMPONENTS=(etcd master proxy kube-apiserver kube-controller-manager kube-scheduler coredns)
ADDONS=(metrics-server local-path-provisioner service-lb)
say "idling 60 s, then measuring memory, and CPU over 30 s"
sleep 60
declare -A rss anon cpu0 cpu ids
for c in "${COMPONENTS[@]}" "${ADDONS[@]}"; do
  ids[$c]=$(component_container "$c")
  [ -n "${ids[$c]}" ] || die "no container for $c"
  rss[$c]=$(rss_kib "${ids[$c]}")
  anon[$c]=$(anon_kib "${ids[$c]}")
  cpu0[$c]=$(cpu_ticks "${ids[$c]}")
done
sleep 30
hz=$(getconf CLK_TCK)
for c in "${COMPONENTS[@]}" "${ADDONS[@]}"; do
  cpu[$c]=$(echo "100 * ($(cpu_ticks "${ids[$c]}") - ${cpu0[$c]}) / $hz / 30" | bc -l)
done

# ---- scale ------------------------------------------------------------------------------
declare -A scale
for n in 10 50 100; do
  t0=$(now)
  "${KUBECTL[@]}" create deployment "scale-$n" --image="$WEB_IMAGE" --replicas="$n" >/dev/null
  "${KUBECTL[@]}" rollout status "deployment/scale-$n" --timeout=600s >/dev/null
  scale[$n]=$(echo "$(now) - $t0" | bc -l)
  say "$n pods Ready in ${scale[$n]}s"
  undeploy "scale-$n"
done

# ---- kinit socks against its peers ------------------------------------------------------
if [ "$SOCKS" = 1 ]; then
  # On a quiet host: latencies of tens of microseconds are what a busy cluster disturbs.
  down
  say "kinit socks against direct, microsocks and ssh -D (scripts/bench-socks.sh)"
  KINIT_BUILT=1 "$REPO/scripts/bench-socks.sh" --connects 1000 --bytes $((512 << 20)) \
    --concurrent 200 --tsv "$WORK/socks.tsv" >"$WORK/socks.out"
  cat "$WORK/socks.out"
fi

# ---- the table --------------------------------------------------------------------------
f1() { printf '%.1f' "$1"; }
cold_s=$(median "${cold[@]}") warm_s=$(median "${warm[@]}")
echo
echo "kinit benchmark ($(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Docker $(docker version --format '{{.Server.Version}}'), Kubernetes $(sed -n "s/^KUBERNETES_VERSION=//p" scripts/versions.env), $(git describe --always --dirty 2>/dev/null || echo '?'); $ROUNDS round(s), median)"
row "figure" "value" "" "target" "result"
row "after --purge: kinit up returns" "$(f1 "$first_up")" s "-"
row "after --purge: to a Deployment answering + DNS" "$(f1 "$first")" s "-"
row "cold: kinit up returns" "$(f1 "$(median "${cold_up[@]}")")" s "-"
row "cold: to a Deployment answering + DNS" "$(f1 "$cold_s")" s "<= 10 s" "$(meets "$cold_s" '<=' 10)"
row "warm (after down): kinit up returns" "$(f1 "$(median "${warm_up[@]}")")" s "-"
row "warm: to a Deployment answering + DNS" "$(f1 "$warm_s")" s "<= 6 s" "$(meets "$warm_s" '<=' 6)"
total=0 total_anon=0 total_cpu=0
for c in "${COMPONENTS[@]}"; do
  total=$((total + rss[$c])); total_anon=$((total_anon + anon[$c]))
  total_cpu=$(echo "$total_cpu + ${cpu[$c]}" | bc -l)
done
mib() { echo "$1 / 1024" | bc -l; }
for c in "${COMPONENTS[@]}"; do
  label=$c; [ "$c" = master ] && label="kubelet + cri-dockerd"; [ "$c" = proxy ] && label=kube-proxy
  row "  idle RSS / CPU: $label" "$(f1 "$(mib "${rss[$c]}")")" MiB "" \
    "$(printf '%.1f%% of a core; %.1f MiB anonymous' "${cpu[$c]}" "$(mib "${anon[$c]}")")"
done
row "idle RSS, components summed" "$(f1 "$(mib "$total")")" MiB "<= 550 MiB" "$(meets "$(mib "$total")" '<=' 550)"
row "  of which anonymous (not binaries' code)" "$(f1 "$(mib "$total_anon")")" MiB "-"
row "idle CPU, components summed" "$(f1 "$total_cpu")" "%" "<= 5 %" "$(meets "$total_cpu" '<=' 5)"
for c in "${ADDONS[@]}"; do
  row "  addon $c (not in the sums)" "$(f1 "$(mib "${rss[$c]}")")" MiB "" "$(printf '%.1f%% of a core' "${cpu[$c]}")"
done
for n in 10 50 100; do
  row "$n pods of one Deployment to Ready" "$(f1 "${scale[$n]}")" s "-" "$(printf '%.1f pods/s' "$(echo "$n / ${scale[$n]}" | bc -l)")"
done
if [ "$SOCKS" = 1 ]; then
  # name mib_s p50_ms p99_ms
  get() { awk -v n="$1" -v c="$2" '$1 == n {print $c}' "$WORK/socks.tsv"; }
  us() { echo "1000 * ($1)" | bc -l; }
  d50=$(get direct 3) k50=$(get kinit 3) k99=$(get kinit 4) m99=$(get microsocks 4)
  over=$(us "$k50 - $d50")
  row "socks p50 set-up, kinit over direct" "$(printf '%.0f' "$over")" "µs" "<= 100 µs" "$(meets "$over" '<=' 100)"
  row "socks p99 set-up, kinit / microsocks" "$(printf '%.2f' "$(echo "$k99 / $m99" | bc -l)")" "x" "<= 1.00" \
    "$(meets "$k99" '<=' "$m99") (kinit $(printf '%.0f' "$(us "$k99")") µs, microsocks $(printf '%.0f' "$(us "$m99")") µs)"
  if [ -n "$(get ssh-D 4)" ]; then
    row "socks p99 set-up, kinit / ssh -D" "$(printf '%.2f' "$(echo "$k99 / $(get ssh-D 4)" | bc -l)")" "x" "-"
  fi
  ratio=$(echo "$(get kinit 2) / $(get splice-floor 2)" | bc -l)
  row "socks throughput, kinit / splice floor" "$(printf '%.2f' "$ratio")" "x" ">= 1.00" "$(meets "$ratio" '>=' 1)"
fi
echo
for round in cold warm; do
  echo "Where the $round round's time went (kinit -v up: each step, and the phases of the wait):"
  grep -E '✓|phase:' "$WORK/up-$round.log" | sed -e 's/^ *//' -e 's/^/  /' || true
done
