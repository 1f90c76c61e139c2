#!/usr/bin/env bash
# Checks kinit's structure with grep and wc: a module under src/ uses only modules of a
# lower rank, or of its own rank without a cycle, and no file under src/ is over 500 lines.
# docs/architecture.md explains the ranks; a new module gets a rank here or the check fails.
#
#   scripts/check-structure.sh     # prints each violation, exits 1 if there is one
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../src"

declare -A rank=(
  [lib]=5 [main]=5
  [cli]=4 [commands]=4
  [steps]=3 [teardown]=3
  [components]=2 [docker]=2 [kubernetes]=2 [bundle]=2 [download]=2 [node_image]=2
  [socks]=2 [runtime_proxy]=2 [health]=2 [host]=2 [cgroup]=2 [pki]=2 [kubeconfig]=2
  [join]=2
  [cluster]=1 [config]=1 [versions]=1 [release]=1 [manifests]=1 [net]=1 [examples]=1
  [crash]=1 [addons]=1 [service_lb]=1
  [fs]=0 [layout]=0 [progress]=0 [logging]=0 [wait]=0 [tls]=0
)

# The top-level module a file belongs to: src/steps/etcd.rs -> steps, src/fs.rs -> fs.
module_of() { local f=${1#./}; f=${f%.rs}; echo "${f%%/*}"; }

# Every top-level module a file's code names through crate::, including grouped imports
# over several lines (`use crate::{fs, net::Cidr}`). Comments do not count, nor do macros
# (#[macro_export] puts them at the crate root; progress.rs defines kinit's).
uses_of() {
  grep -vE '^[[:space:]]*//' "$1" | tr '\n' ' ' \
    | grep -oE 'crate::(\{[^}]*\}|[a-z_]+!?)' \
    | sed -E 's/^crate:://; s/[{}]//g' | tr ',' '\n' \
    | sed -E 's/^[[:space:]]+//; s/::.*//; s/[[:space:]].*//' | grep -E '^[a-z_]+$' || true
}

fail=0
edges=$(mktemp)
trap 'rm -f "$edges"' EXIT
while IFS= read -r file; do
  from=$(module_of "$file")
  [[ -n ${rank[$from]:-} ]] || { echo "$file: module '$from' has no rank in $0"; fail=1; continue; }
  for to in $(uses_of "$file" | sort -u); do
    [[ $to == "$from" ]] && continue
    [[ -n ${rank[$to]:-} ]] || { echo "$file: uses 'crate::$to', which has no rank"; fail=1; continue; }
    if (( rank[$to] > rank[$from] )); then
      echo "$file: $from (rank ${rank[$from]}) uses $to (rank ${rank[$to]}) — upward"
      fail=1
    fi
    echo "$from $to" >>"$edges"
  done
done < <(find . -name '*.rs' | sort)

# Same-rank uses are allowed one way only.
sort -u "$edges" | while read -r a b; do
  if [[ $a < $b ]] && grep -qx "$b $a" <(sort -u "$edges"); then
    echo "cycle: $a uses $b and $b uses $a"
    echo fail >>"$edges.cycle"
  fi
done
[[ -e $edges.cycle ]] && { rm -f "$edges.cycle"; fail=1; }

while read -r lines file; do
  echo "$file: $lines lines (at most 500: split it by concern)"
  fail=1
done < <(find . -name '*.rs' -exec wc -l {} + | awk '$2 != "total" && $1 > 500')

if (( fail )); then exit 1; fi
echo "structure: every module uses only lower ranks (or its own, without cycles); no file over 500 lines"
