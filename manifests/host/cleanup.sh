#!/bin/sh
# Host clean-up run by `kinit down` in a throwaway container of kinit's node image, which
# has the iptables and ip tools the host may lack (rendered by src/components/cleanup.rs).
#   down:  pods were removed without the kubelet, so CNI never tore them down; delete the
#          per-pod masquerade chains of kinit's network so they do not pile up.
#   purge: also every chain kube-proxy, the CNI plugins and kinit made, and the pod bridge.
set -u
mode={{ mode | sh }}
bridge={{ bridge | sh }}

# Deletes the rules of TABLE whose text matches the extended regex PATTERN, by their
# numbers, last first (so the numbers of the others hold). Never evaluates rule text:
# a rule's comment is anyone's with NET_ADMIN, and this may run as root on the host.
delete_rules() {
  cmd=$1 table=$2 pattern=$3
  for chain in $("$cmd" -w -t "$table" -S 2>/dev/null | sed -n 's/^-[PN] \([^ ]*\).*/\1/p'); do
    numbers=$("$cmd" -w -t "$table" -S "$chain" 2>/dev/null | grep -e '^-A ' |
      grep -nE -- "$pattern" | cut -d: -f1 | sort -rn)
    for n in $numbers; do
      "$cmd" -w -t "$table" -D "$chain" "$n" || echo "could not delete rule $n of $table/$chain" >&2
    done
  done
}

# Flushes, then deletes, every chain of TABLE whose name matches PATTERN.
delete_chains() {
  cmd=$1 table=$2 pattern=$3
  chains=$("$cmd-save" -t "$table" 2>/dev/null | sed -n "s/^:\(${pattern}[^ ]*\) .*/\1/p")
  for c in $chains; do "$cmd" -w -t "$table" -F "$c"; done
  for c in $chains; do "$cmd" -w -t "$table" -X "$c" || echo "could not delete chain $c" >&2; done
}

# The bridge plugin's per-pod chains carry the network name in their jump's comment.
pod_chains=$(iptables-save -t nat 2>/dev/null |
  sed -n 's/^-A POSTROUTING .*name: \\"kinit\\" id: .* -j \(CNI-[0-9a-f]*\).*/\1/p')
delete_rules iptables nat 'name: \\"kinit\\" id: '
for c in $pod_chains; do
  iptables -w -t nat -F "$c" && iptables -w -t nat -X "$c"
done
echo "removed $(echo "$pod_chains" | grep -c CNI-) per-pod NAT chains"

if [ "$mode" = purge ]; then
  for cmd in iptables ip6tables; do
    for table in filter nat mangle; do
      delete_rules "$cmd" "$table" '-j (KUBE-|CNI-|KINIT-)'
      delete_chains "$cmd" "$table" 'KUBE-'
      delete_chains "$cmd" "$table" 'CNI-'
      delete_chains "$cmd" "$table" 'KINIT-'
    done
  done
  if ip link show "$bridge" >/dev/null 2>&1; then
    ip link delete "$bridge" && echo "deleted the bridge $bridge"
  fi
  echo "removed kube-proxy's, CNI's and kinit's iptables chains"
fi
