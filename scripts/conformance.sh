#!/usr/bin/env bash
# conformance.sh — the upstream Kubernetes conformance suite against a kinit cluster.
#
#   scripts/conformance.sh [OPTIONS]
#
# Builds (cached, like the offline bundle: seconds after the first time) upstream e2e.test and
# the ginkgo runner at the pinned Kubernetes release and every test image the suite runs,
# under the exact names `e2e.test --list-images` prints (scripts/bundle/conformance.sh), loads
# the images Docker lacks, then runs against the cluster:
#   1. every [Conformance] test that is neither [Serial] nor [Disruptive], in parallel;
#   2. the [Serial] ones, one at a time.
# Each pass prints its passed/failed/skipped counts and leaves a JUnit report
# (junit_01.xml) and ginkgo's JSON report in REPORT_DIR/<pass>/. Exits non-zero when a test
# failed. See docs/conformance.md for the latest result and what each failure means.
#
# Options:
#   --ci                 only the CI subset (scripts/conformance-ci.txt: a fixed list of
#                        conformance tests across the SIGs), in one parallel pass; fails when
#                        one of them did not run
#   --list FILE          as --ci, with the tests FILE names (scripts/conformance-two-nodes.txt:
#                        those that need a second node, run by scripts/test-two-hosts.sh)
#   --netpol             the NetworkPolicy specs ([Feature:NetworkPolicy], no other feature)
#                        instead of the conformance tests, in the same two passes
#   --focus REGEX        only tests whose name matches REGEX too (repeatable; ORed)
#   --skip REGEX         leave out tests whose name matches REGEX (repeatable)
#   --procs N            parallel ginkgo processes for the first pass (default 4)
#   --no-serial          leave out the [Serial] pass      --serial-only   only that pass
#   --up                 bring up a throwaway cluster for the run (its own state directory,
#                        the offline bundle) and purge it afterwards; default: use the
#                        running cluster (kinit's admin kubeconfig, or --kubeconfig)
#   --kinit PATH         the kinit binary (default: kinit on PATH, else this checkout's build)
#   --kubeconfig FILE    the cluster to test (default: `kinit kubeconfig`)
#   --report-dir DIR     where reports go (default /var/tmp/kinit-conformance/<time>)
#   --keep-failed        leave a failed test's namespaces and pods in place (e2e's
#                        --delete-namespace-on-failure=false), to look at them
#   --build-only         build and load everything, run nothing
#   --dry-run            list the tests a run would run, with ginkgo's --dry-run
#
# Runs as root (re-runs itself with sudo): it loads images into Docker and reads kinit's PKI.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,/^# Runs as root/p' "$0" | sed 's/^# \{0,1\}//'; }

CI_LIST="$REPO/scripts/conformance-ci.txt"
all_args=("$@")
ci=0 procs=4 serial=1 parallel=1 up=0 build_only=0 dry_run=0
# The tests a run picks, by label; --ci and --list name theirs exactly, of any label.
base="Conformance && !Disruptive"
kinit="" kubeconfig="" report_dir="" delete_failed=true
focus=() skip=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --ci) ci=1; shift ;;
    # By name: e2e.test names each of them [Feature:NetworkPolicy]; the SCTP ones also
    # need SCTP between pods, another feature ([Feature:SCTPConnectivity]).
    --netpol) base="!Disruptive"; focus+=('\[Feature:NetworkPolicy\]'); skip+=('SCTPConnectivity'); shift ;;
    --list) ci=1; CI_LIST=$(realpath "$2") || die "no such list: $2"; shift 2 ;;
    --focus) focus+=("$2"); shift 2 ;;
    --skip) skip+=("$2"); shift 2 ;;
    --procs) procs=$2; shift 2 ;;
    --no-serial) serial=0; shift ;;
    --serial-only) parallel=0; shift ;;
    --up) up=1; shift ;;
    --kinit) kinit=$2; shift 2 ;;
    --kubeconfig) kubeconfig=$2; shift 2 ;;
    --report-dir) report_dir=$2; shift 2 ;;
    --keep-failed) delete_failed=false; shift ;;
    --build-only) build_only=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ $procs =~ ^[1-9][0-9]*$ ]] || die "--procs takes a positive number, not $procs"
[[ -f $CI_LIST ]] || die "no such list: $CI_LIST"
become_root ${all_args[@]+"${all_args[@]}"}
cd "$REPO"
t_start=$SECONDS

# ---- build (cached) and images ----------------------------------------------------------
apt_ensure python3:python3
ensure_docker
# A throwaway cluster runs the bundle's Kubernetes (cached after the first build).
[[ $up -eq 0 ]] || ensure_bundle "" --pinned-only
ensure_bundle conformance
CONF="$KINIT_BUNDLE_DIR/conformance"
# shellcheck source=scripts/versions.env disable=SC1091
source "$REPO/scripts/versions.env"
E2E="$CONF/bin/e2e.test" GINKGO="$CONF/bin/ginkgo"

# find_kinit: --kinit, else kinit on PATH, else this checkout's build.
find_kinit() {
  [[ -z $kinit ]] || return 0
  local k
  for k in "$(command -v kinit || true)" "${CARGO_TARGET_DIR:-$REPO/target}"/{release,debug}/kinit; do
    [[ -n $k && -x $k ]] && { kinit=$k; return 0; }
  done
  die "no kinit binary: pass --kinit PATH, or cargo build --release"
}

# The suite's images: the test images, and the bundle's pause and etcd (a test that
# empties Docker's image store may have removed them). `kinit images load` loads only what
# Docker lacks.
load_images() {
  local out
  out=$("$kinit" images load "$1") || die "kinit images load $1 failed"
  say "  $(grep -c '^loaded' <<<"$out" || true) loaded, $(grep -c '^present' <<<"$out" || true) present ($1)"
}
if [[ $dry_run -eq 0 ]]; then
  find_kinit
  say "kinit: $kinit ($("$kinit" --version))"
  say "test images into Docker (those it lacks)"
  load_images "$CONF/images"
  [[ ! -d $KINIT_BUNDLE_DIR/images ]] || load_images "$KINIT_BUNDLE_DIR"
fi
say "$(grep -c '^not built' "$CONF/images-status.txt" || true) listed images not built (no conformance" \
  "test runs them): see $CONF/images-status.txt"
[[ $build_only -eq 0 ]] || { say "built and loaded in $((SECONDS - t_start))s"; exit 0; }

# ---- the cluster ------------------------------------------------------------------------
report_dir=${report_dir:-/var/tmp/kinit-conformance/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$report_dir"
report_dir=$(cd "$report_dir" && pwd)
kubectl="$KINIT_BUNDLE_DIR/release/$KUBERNETES_VERSION/bin/linux/$(go env GOARCH)/kubectl"
[[ -x $kubectl ]] || kubectl=$(command -v kubectl) || die "no kubectl"

# The test images are loaded into Docker by this script, not pulled by the node: the
# kubelet's image GC cannot remove them (kinit's runtime interposer lets it remove only
# images the node pulled itself), so none goes missing between two tests.
state=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  [[ -n $state ]] || return 0
  say "removing the throwaway cluster (kinit down --purge)"
  "$kinit" --state-dir "$state" down --purge >"$report_dir/kinit-down.log" 2>&1 ||
    { cat "$report_dir/kinit-down.log" >&2; echo "error: kinit down --purge failed" >&2; }
  rm -rf "$state"
}
[[ $dry_run -eq 1 ]] || trap cleanup EXIT
if [[ $up -eq 1 && $dry_run -eq 0 ]]; then
  state=$(mktemp -d /var/tmp/kinit-conformance-state.XXXXXX)
  say "bringing up a throwaway cluster (state in $state; log in $report_dir/kinit-up.log)"
  t0=$SECONDS
  "$kinit" --state-dir "$state" up --bundle "$KINIT_BUNDLE_DIR" --bin-dir "$state/bin" \
    --kubeconfig "$state/user-kubeconfig" >"$report_dir/kinit-up.log" 2>&1 ||
    { cat "$report_dir/kinit-up.log" >&2; die "kinit up failed"; }
  say "cluster up in $((SECONDS - t0))s"
  kubeconfig="$state/admin.kubeconfig"
  "$kinit" --state-dir "$state" kubeconfig >"$kubeconfig"
elif [[ -z $kubeconfig && $dry_run -eq 0 ]]; then
  kubeconfig="$report_dir/admin.kubeconfig"
  "$kinit" kubeconfig >"$kubeconfig" 2>"$report_dir/kubeconfig.err" ||
    { cat "$report_dir/kubeconfig.err" >&2; die "no running kinit cluster (sudo kinit up), or pass --kubeconfig / --up"; }
fi
if [[ $dry_run -eq 0 ]]; then
  "$kubectl" --kubeconfig "$kubeconfig" get nodes >/dev/null ||
    die "the cluster in $kubeconfig does not answer"
  say "cluster: $("$kubectl" --kubeconfig "$kubeconfig" version 2>/dev/null | grep Server)"
  nodes=$("$kubectl" --kubeconfig "$kubeconfig" get nodes --no-headers | wc -l)
  say "cluster: $nodes node(s)"
fi

# ---- the runs ---------------------------------------------------------------------------
# ci_focus: one regex matching exactly the names in the CI list (one per line, # comments).
# Ginkgo matches --focus against the suite's description and the test's name ("Kubernetes
# e2e suite [sig-...] ..."), hence the space before a name. Only RE2's metacharacters are
# escaped: Go's regexp refuses Python's re.escape of a space.
ci_focus() {
  python3 - "$CI_LIST" <<'EOF'
import re, sys
names = [l.strip() for l in open(sys.argv[1]) if l.strip() and not l.lstrip().startswith("#")]
quote = lambda n: re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", n)
print("(^| )(" + "|".join(quote(n) for n in names) + ")$")
EOF
}

# summarize DIR PASS: counts from ginkgo's JSON report; the failures by name. Specs the
# filters left out are not counted; "skipped" are specs that ran and skipped themselves
# (e.g. needing a second node).
summarize() {
  python3 - "$1/report.json" "$2" "$1/summary.txt" <<'EOF'
import json, sys
path, name, out = sys.argv[1:4]
suites = json.load(open(path))
ran = [s for suite in suites for s in suite.get("SpecReports") or []
       if s.get("LeafNodeType") == "It" and not (s.get("State") == "skipped" and not s.get("Failure"))]
count = lambda *states: sum(1 for s in ran if s.get("State") in states)
passed, skipped = count("passed"), count("skipped")
failed = [s for s in ran if s.get("State") in ("failed", "panicked", "timedout", "aborted", "interrupted")]
secs = sum((s.get("RunTime") or 0) for s in ran) / 1e9
def full(s):
    return " ".join(t for t in (s.get("ContainerHierarchyTexts") or []) + [s.get("LeafNodeText", "")] if t)
lines = [f"{name}: {len(ran)} ran, {passed} passed, {len(failed)} failed, {skipped} skipped"]
lines += [f"  FAILED {full(s)}" for s in sorted(failed, key=full)]
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
with open(out.replace("summary.txt", "failed.txt"), "w") as f:
    f.writelines(full(s) + "\n" for s in sorted(failed, key=full))
with open(out.replace("summary.txt", "ran.txt"), "w") as f:
    f.writelines(f"{s.get('State')}\t{full(s)}\n" for s in sorted(ran, key=full))
EOF
}

# run_pass NAME PROCS LABEL-FILTER: one ginkgo run of e2e.test; reports in REPORT_DIR/NAME.
run_pass() {
  local name=$1 n=$2 labels=$3 dir="$report_dir/$1"
  mkdir -p "$dir"
  local args=(--label-filter="$labels" --timeout=8h --no-color --output-dir="$dir"
    --json-report=report.json --silence-skips)
  local f
  for f in ${focus[@]+"${focus[@]}"}; do args+=(--focus="$f"); done
  for f in ${skip[@]+"${skip[@]}"}; do args+=(--skip="$f"); done
  # Ginkgo lists (--dry-run) only in one process.
  [[ $dry_run -eq 0 ]] || { args+=(--dry-run -v); n=1; }
  [[ $n -le 1 ]] || args+=(--procs="$n")
  say "$name pass: $labels${focus[*]:+, focus ${focus[*]}}, $n process(es); log in $dir/ginkgo.log"
  local t0=$SECONDS rc=0
  # The e2e flags as upstream's hack/ginkgo-e2e.sh passes them for a cluster reached
  # through a kubeconfig (provider "skeleton": no cloud).
  "$GINKGO" "${args[@]}" "$E2E" -- \
    --kubeconfig="$kubeconfig" --provider=skeleton --kubectl-path="$kubectl" \
    --num-nodes="${nodes:-1}" --node-os-distro=debian --report-dir="$dir" \
    --e2e-output-dir="$dir/output" --dump-logs-on-failure=false \
    --delete-namespace-on-failure="$delete_failed" \
    >"$dir/ginkgo.log" 2>&1 || rc=$?
  if [[ $dry_run -eq 1 ]]; then
    grep -E '^\[sig-|^  \[sig-' "$dir/ginkgo.log" | sed 's/^ *//' | sort -u
    summarize "$dir" "$name (dry run)" >/dev/null
    say "$name: $(wc -l <"$dir/ran.txt") tests would run"
    return 0
  fi
  [[ -f $dir/report.json ]] || { tail -n 40 "$dir/ginkgo.log" >&2; die "$name pass: ginkgo wrote no report (exit $rc)"; }
  summarize "$dir" "$name ($((SECONDS - t0))s, $n process(es))" | tee -a "$report_dir/summary.txt"
  return $rc
}

status=0
if [[ $ci -eq 1 ]]; then
  focus=("$(ci_focus)")
  want=$(grep -cv '^\s*\(#\|$\)' "$CI_LIST")
  run_pass ci "$procs" "!Disruptive" || status=1
  if [[ $dry_run -eq 0 ]]; then
    got=$(wc -l <"$report_dir/ci/ran.txt")
    [[ $got -eq $want ]] || { echo "error: the CI list names $want tests, $got ran (a renamed test?)" >&2; status=1; }
  fi
else
  [[ $parallel -eq 0 ]] || run_pass parallel "$procs" "$base && !Serial" || status=1
  [[ $serial -eq 0 ]] || run_pass serial 1 "$base && Serial" || status=1
fi
say "reports in $report_dir (junit_01.xml per pass); total $((SECONDS - t_start))s"
exit $status
