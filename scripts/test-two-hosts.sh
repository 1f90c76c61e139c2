#!/usr/bin/env bash
# test-two-hosts.sh — the two-host tier: a cluster on host A, host B joined with the
# command `kinit join-command` prints, both hosts containers of this machine made to be
# hosts (scripts/hosts/hosts.sh: their own Docker daemons, networks, mounts and cgroup
# namespaces, one link between them). The release binary (scripts/release.sh) and the
# offline bundle (--bundle, read-only) on both. What it checks, in order:
#   1. `kinit up` on A, `kinit join` on B (timed to B's Node Ready), `kinit status` on A;
#   2. a Deployment spread over both nodes by anti-affinity, a DaemonSet on both;
#   3. pod to pod across the hosts in both directions over TCP and UDP, the Service by its
#      DNS name from a pod on each host (TCP and UDP), the NodePort on both addresses,
#      `kinit socks` on each host to a pod on the other, a LAN neighbour dropped;
#   4. the conformance tests that need a second node (scripts/conformance-two-nodes.txt;
#      --conformance netpol or full runs more);
#   5. `kinit down --purge` on A refused while B is joined;
#   6. `kubectl drain` of B moving its pods to A;
#   7. the link cut: B NotReady, its pods moved to A; the link restored: B Ready;
#   8. B rebooted (its container restarted): Ready again by itself, its pods running;
#   9. A rebooted: the cluster and B's part in it back with no command on either host;
#  10. `kinit down` on B: drained, its Node deleted, its pods on A; `kinit up` on B: back;
#  11. B's address moves and back: `kinit up` on B follows it each time (its Node, the
#      kubelet's serving certificate, pod traffic both ways);
#  12. `kinit down --purge` on each host leaves its iptables, links, routes, ipsets and
#      Docker containers as they were before `kinit up`.
#
#   scripts/test-two-hosts.sh [--keep] [--move] [--conformance ci|netpol|full]
#     --keep           leave the hosts running at the end, and a failed suite test's
#                      namespaces and pods in them
#     --move           step 11 too (out of CI: in one run of four, pod traffic from B did
#                      not follow its move within 180 s, not yet understood)
#     --conformance    step 4's suite: ci (default) the two-node list; netpol every
#                      NetworkPolicy spec; full the whole conformance suite (hours)
#
# Needs root and the offline bundle (scripts/build-bundle.sh).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/hosts/hosts.sh
source "$REPO/scripts/hosts/hosts.sh"
become_root "$@"
cd "$REPO"
KEEP= SUITE=ci MOVE=
while [ $# -gt 0 ]; do
  case $1 in
    --keep) KEEP=--keep; shift ;;
    --move) MOVE=1; shift ;;
    --conformance) SUITE=${2:-}; shift 2 || die "--conformance needs ci, netpol or full" ;;
    *) die "unknown argument $1 (see the header of $0)" ;;
  esac
done
case $SUITE in
  ci) suite_args=(--list "$REPO/scripts/conformance-two-nodes.txt" --procs 1) ;;
  netpol) suite_args=(--netpol) ;;
  full) suite_args=() ;;
  *) die "--conformance takes ci, netpol or full, not '$SUITE'" ;;
esac

ensure_docker
apt_ensure "${HOST_TOOLS[@]}"
ensure_bundle "" --pinned-only >/dev/null
ensure_bundle conformance >/dev/null  # agnhost, the workload's image
WORK=$(mktemp -d /tmp/kinit-two-hosts.XXXXXX)
cleanup() {
  [ "$KEEP" = --keep ] || hosts_remove
  [ "$KEEP" = --keep ] || rm -rf "$WORK"
}
trap cleanup EXIT
hosts_remove

say "the release binary (scripts/release.sh, this machine's architecture)"
logged "$WORK/release.log" "scripts/release.sh" "$REPO/scripts/release.sh" --host-only "$WORK/releases"
KINIT_BIN=$WORK/releases/kinit-linux-amd64

A=kinit-host-a B=kinit-host-b
A_IP=172.31.0.10 B_IP=172.31.0.11
host_start "$A" "$A_IP" "$KINIT_BIN" -v "$KINIT_BUNDLE_DIR:/bundle:ro"
host_start "$B" "$B_IP" "$KINIT_BIN" -v "$KINIT_BUNDLE_DIR:/bundle:ro"

# host_snapshot HOST NAME: what kinit may change in a host's network and Docker, written to
# $WORK/HOST.NAME: iptables, links (pods' veths are gone once they are), routes, ipsets
# (read with this machine's ipset in the host's network namespace: the hosts have none, as
# many servers do), and Docker's containers, volumes and networks.
host_snapshot() {
  local host=$1 pid
  pid=$(docker inspect -f '{{.State.Pid}}' "$host")
  {
    echo '# iptables'
    # Less the outer Docker's rules for the host's resolver (127.0.0.11), whose ports
    # change when the host container restarts.
    hx "$host" 'iptables-save; ip6tables-save' | iptables_tables | grep -v '127\.0\.0\.11'
    echo '# links'
    hx "$host" "ip -o link show | awk -F': ' '{print \$2}' | cut -d@ -f1 | sort"
    echo '# routes'
    hx "$host" 'ip route show; ip rule show'
    echo '# ipsets'
    nsenter -t "$pid" -n ipset list -n | sort
    echo '# docker'
    hx "$host" "docker ps -aq; docker volume ls -q; docker network ls --format '{{.Name}}' | sort"
  } >"$WORK/$host.$2"
}
host_snapshot "$A" before
host_snapshot "$B" before

# ON_TIMEOUT names a command that prints what explains a wait that ran out.
ON_TIMEOUT=
wait_for() {
  local what=$1 limit=$2 t0=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - t0 >= limit)); then
      [ -z "$ON_TIMEOUT" ] || "$ON_TIMEOUT" 2>&1 | indent || true
      die "$what: not within ${limit}s"
    fi
    sleep 2
  done
  say "$what ($((SECONDS - t0))s)"
}
kubectl_a() { hx "$A" "kubectl $*"; }

# What decides where pod traffic goes, on both hosts: addresses and routes, kinit's
# iptables rules, the BGP sessions (TCP 179; the bundle's kube-router image has no gobgp
# client) and kube-router's log; with an argument, every rule and ipset too (read with
# this machine's ipset in the host's network namespace, as host_snapshot does).
pod_network_state() {
  local h pod
  for h in "$A" "$B"; do
    echo "---- $h"
    hx "$h" 'ip -4 -brief addr; ip route; iptables-save | grep KINIT-'
    hx "$h" "ss -tn '( sport = :179 or dport = :179 )'" || true
    pod=$(kubectl_a "-n kube-system get pods -l k8s-app=kube-router --field-selector spec.nodeName=$h -o name")
    kubectl_a "-n kube-system logs $pod --tail=30" || true
    if [ -n "${1:-}" ]; then
      hx "$h" 'iptables-save'
      nsenter -t "$(docker inspect -f '{{.State.Pid}}' "$h")" -n ipset save
    fi
  done
}

# ---- 1. join ----------------------------------------------------------------------------
say "$A: kinit up"
t0=$SECONDS
hx "$A" 'kinit up --bundle /bundle --addons ""' 2>&1 | indent
say "$A: kinit up took $((SECONDS - t0))s"

say "$A: kinit join-command"
join=$(hx "$A" 'kinit join-command')
[[ $join == "sudo kinit join "* ]] || die "kinit join-command printed: $join"
# An address B does not have is refused by B's checks, before B keeps anything.
if refused=$(hx "$B" "${join#sudo } --bundle /bundle --node-ip 192.0.2.77" 2>&1); then
  die "kinit join with another host's --node-ip succeeded"
fi
grep -q "192.0.2.77 is not an address of this host" <<<"$refused" ||
  die "kinit join with another host's --node-ip: $refused"
! hx "$B" 'test -e /var/lib/kinit/cluster.yaml' || die "a refused join left B's settings"
say "$B: kinit join --node-ip of another host refused, nothing kept"
say "$B: ${join%% --token*} --token ... (the printed command, with --bundle)"
t0=$SECONDS
hx "$B" "${join#sudo } --bundle /bundle" 2>&1 | indent
kubectl_a "wait --for=condition=Ready node/$B --timeout=120s" >/dev/null
say "$B: kinit join to a Ready node in $((SECONDS - t0))s"
hx "$A" 'kinit status' | indent
# Matched in a variable: `grep -q` quits at the first match, and with pipefail the writer's
# broken pipe would fail the check.
status=$(hx "$A" 'kinit status')
grep -q "^  $B  *Ready  *$B_IP" <<<"$status" || die "kinit status on $A does not list $B Ready"
if refused=$(hx "$B" 'kinit up --bundle /bundle --pod-security baseline' 2>&1); then
  die "kinit up --pod-security on the joined $B succeeded"
fi
grep -q "node of the cluster at .*: --pod-security do not apply here" <<<"$refused" ||
  die "kinit up --pod-security on $B: $refused"
say "$B: kinit up with a cluster's flag is refused on the joined host"
labels=$(kubectl_a "get node $A -o jsonpath='{.metadata.labels}'")
grep -q 'node-role.kubernetes.io/control-plane' <<<"$labels" ||
  die "$A is not labelled as the control plane"

# ---- 2. workloads on both nodes -----------------------------------------------------------
say "the workload: a Deployment spread by anti-affinity, a Service, a DaemonSet"
for h in "$A" "$B"; do
  hx "$h" 'docker load -i /bundle/conformance/images/registry.k8s.io_e2e-test-images_agnhost_2.55.tar' >/dev/null
done
hx "$A" 'kubectl apply -f -' <"$REPO/scripts/hosts/workload.yaml" | indent
kubectl_a 'rollout status deployment/spread --timeout=120s' >/dev/null
kubectl_a 'rollout status daemonset/everywhere --timeout=120s' >/dev/null
# spread_pods: "node ip name" of each running spread pod not being deleted (a lost node's
# pods stay Terminating until it answers again), one per line.
spread_pods() {
  kubectl_a "get pods -l app=spread --field-selector status.phase=Running \
    -o jsonpath='{range .items[*]}{.spec.nodeName} {.status.podIP} {.metadata.name} {.metadata.deletionTimestamp}{\"\\n\"}{end}'" |
    awk 'NF == 3'
}
spread_on_both() { [ "$(spread_pods | awk '{print $1}' | sort -u | wc -l)" -eq 2 ]; }
# only_on_a: both of the Deployment's pods ready, on A.
only_on_a() {
  [ "$(spread_pods | awk '{print $1}' | sort -u)" = "$A" ] &&
    [ "$(kubectl_a "get deployment spread -o jsonpath='{.status.readyReplicas}'")" = 2 ]
}
spread_on_both_ready() {
  spread_on_both && [ "$(kubectl_a "get deployment spread -o jsonpath='{.status.readyReplicas}'")" = 2 ]
}
# rebalance: with both pods on one node, one is replaced on the other (anti-affinity
# prefers the node without one; a rollout restart would put both new pods there).
rebalance() {
  kubectl_a 'scale deployment/spread --replicas=1' >/dev/null
  kubectl_a 'rollout status deployment/spread --timeout=120s' >/dev/null
  kubectl_a 'scale deployment/spread --replicas=2' >/dev/null
  kubectl_a 'rollout status deployment/spread --timeout=120s' >/dev/null
}
ds_on_both() { [ "$(kubectl_a "get ds everywhere -o jsonpath='{.status.numberReady}'")" = 2 ]; }
b_condition() { kubectl_a "get node $B -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}'"; }
b_ready() { [ "$(b_condition)" = True ]; }
b_not_ready() { [ "$(b_condition)" != True ]; }
spread_on_both || { spread_pods; die "the Deployment's pods are not on both nodes"; }
say "the Deployment's pods are on both nodes:"
spread_pods | indent
ds_on_both || die "the DaemonSet does not have 2 pods ready"
say "the DaemonSet runs on both nodes (2/2)"

# ---- 3. traffic between the hosts -------------------------------------------------------
read -r _ pod_a name_a < <(spread_pods | grep "^$A ")
read -r _ pod_b name_b < <(spread_pods | grep "^$B ")
# dial HOST POD PROTOCOL TARGET PORT: what netexec in POD (on HOST) got back asking TARGET
# for its hostname (netexec's /dial connects from inside the pod).
dial() {
  hx "$1" "curl -fsS --max-time 15 'http://$2:8080/dial?request=hostname&protocol=$3&host=$4&port=$5&tries=1'"
}
# dials WANT HOST POD PROTOCOL TARGET PORT: whether the answer came from WANT (a prefix of
# the answering pod's name); expect_dial dies saying what came instead.
dials() {
  local want=$1 got
  shift
  got=$(dial "$@") && [[ $got == *"\"responses\":[\"$want"* ]]
}
expect_dial() {
  local want=$1 got
  shift
  got=$(dial "$@" 2>&1) || die "dial $*: $got"
  [[ $got == *"\"responses\":[\"$want"* ]] || die "dial $*: got $got, wanted $want"
}
wait_for "a pod on $B reaches a pod on $A over TCP" 60 dials "$name_a" "$B" "$pod_b" http "$pod_a" 8080
expect_dial "$name_a" "$B" "$pod_b" udp "$pod_a" 8081
say "a pod on $B reaches a pod on $A over UDP"
expect_dial "$name_b" "$A" "$pod_a" http "$pod_b" 8080
expect_dial "$name_b" "$A" "$pod_a" udp "$pod_b" 8081
say "a pod on $A reaches a pod on $B over TCP and UDP"
svc=spread.default.svc.cluster.local
for from in "$A $pod_a" "$B $pod_b"; do
  read -r host pod <<<"$from"
  expect_dial spread- "$host" "$pod" http "$svc" 80
  expect_dial spread- "$host" "$pod" udp "$svc" 81
  say "a pod on $host reaches the Service by its DNS name ($svc) over TCP and UDP"
done
node_port=$(kubectl_a "get svc spread -o jsonpath='{.spec.ports[0].nodePort}'")
for ip in "$A_IP" "$B_IP"; do
  for _ in 1 2 3 4; do
    [[ $(curl -fsS --max-time 5 "http://$ip:$node_port/hostname") == spread-* ]] ||
      die "the NodePort on $ip:$node_port did not answer"
  done
done
say "the NodePort answers on both hosts' addresses ($node_port)"
for pair in "$A $pod_b $name_b" "$B $pod_a $name_a"; do
  read -r host pod name <<<"$pair"
  hx "$host" 'kinit socks --detach --port 1080' >/dev/null
  wait_for "kinit socks on $host reaches a pod on the other host" 30 \
    hx "$host" "curl -fsS --max-time 5 --socks5 127.0.0.1:1080 http://$pod:8080/hostname | grep -qx $name"
done
# A LAN neighbour of both hosts (a container on their network, so this machine's routes
# stay as they are) routes the pod range through A: A's guard drops it, while A's
# NodePort answers it.
neighbour=$(docker run --rm --network "$HOSTS_NETWORK" --cap-add NET_ADMIN --entrypoint bash "$(host_image)" -c "
  ip route add 10.244.0.0/24 via $A_IP || exit 2
  curl -fsS --max-time 5 http://$A_IP:$node_port/hostname >/dev/null || exit 3
  if timeout 4 bash -c 'exec 3<>/dev/tcp/$pod_a/8080' 2>/dev/null; then exit 1; fi
  echo dropped" 2>&1) || die "the LAN neighbour check failed (exit $?): $neighbour"
[ "$neighbour" = dropped ] || die "the LAN neighbour check said: $neighbour"
say "a LAN neighbour routing the pod range through $A is dropped"

# ---- 4. the suite's two-node tests ------------------------------------------------------
# e2e.test runs on this machine against A's API server, as from a LAN neighbour, with the
# suite's images loaded into both hosts' Docker.
for h in "$A" "$B"; do
  hx "$h" 'kinit images load /bundle/conformance/images' >/dev/null
done
hx "$A" 'kinit kubeconfig' >"$WORK/admin.kubeconfig"
[ -z "$KEEP" ] || suite_args+=(--keep-failed)
if ! "$REPO/scripts/conformance.sh" "${suite_args[@]}" \
  --kubeconfig "$WORK/admin.kubeconfig" --kinit "$KINIT_BIN" 2>&1 | indent; then
  # The failed tests' pods are gone by now; what the hosts' rules and sets were is not.
  state=/var/tmp/kinit-two-hosts-$SUITE-$(date +%Y%m%d-%H%M%S).txt
  pod_network_state full >"$state" 2>&1 || true
  die "the conformance tests ($SUITE) on two nodes failed (reports above; both hosts' rules and sets in $state)"
fi
# The suite deletes its namespaces when it ends, not before it returns: their bare pods
# would stop the drain below.
suite_gone() { [ -z "$(kubectl_a 'get namespaces -l e2e-framework -o name')" ]; }
wait_for "the suite's namespaces are gone" 300 suite_gone

# ---- 5. the control plane keeps its joined hosts ----------------------------------------
if out=$(hx "$A" 'kinit down --purge' 2>&1); then
  die "kinit down --purge on $A went ahead with $B joined: $out"
fi
[[ $out == *"other hosts are joined to this cluster: $B"* ]] || die "kinit down --purge on $A said: $out"
kubectl_a "get node $A" >/dev/null || die "the refused purge stopped the cluster"
say "kinit down --purge on $A is refused while $B is joined, and changes nothing"

# ---- 6. drain ---------------------------------------------------------------------------
kubectl_a "drain $B --ignore-daemonsets --delete-emptydir-data --timeout=120s" >/dev/null
wait_for "kubectl drain $B: both pods ready on $A" 120 only_on_a
say "kubectl drain $B moved its pods to $A"
kubectl_a "uncordon $B" >/dev/null
rebalance
wait_for "uncordoned, $B gets a pod again" 60 spread_on_both

# ---- 7. the link cut and restored -------------------------------------------------------
t0=$SECONDS
host_link "$B" down
wait_for "link cut: $B NotReady" 120 b_not_ready
wait_for "link cut: $B's pods replaced on $A" 180 only_on_a
host_link "$B" up
wait_for "link restored: $B Ready" 120 b_ready
say "link cut and restored in $((SECONDS - t0))s"

# ---- 8. B reboots -----------------------------------------------------------------------
t0=$SECONDS
docker restart "$B" >/dev/null
wait_for "$B rebooted: its kubelet runs again" 180 hx "$B" "docker inspect -f '{{.State.Running}}' kinit-node | grep -qx true"
wait_for "$B rebooted: Ready" 180 b_ready
wait_for "$B rebooted: the DaemonSet's pod runs on it again" 180 ds_on_both
rebalance
wait_for "$B rebooted: it runs a spread pod again" 60 spread_on_both
read -r _ pod_a name_a < <(spread_pods | grep "^$A ")
read -r _ pod_b name_b < <(spread_pods | grep "^$B ")
wait_for "$B rebooted: a pod on it reaches a pod on $A" 60 dials "$name_a" "$B" "$pod_b" http "$pod_a" 8080
say "$B came back by itself in $((SECONDS - t0))s"

# ---- 9. A reboots -----------------------------------------------------------------------
t0=$SECONDS
docker restart "$A" >/dev/null
wait_for "$A rebooted: its API server answers" 240 kubectl_a 'get --raw /readyz'
wait_for "$A rebooted: the DaemonSet runs on both nodes again" 180 ds_on_both
wait_for "$A rebooted: a spread pod on each node, ready" 180 spread_on_both_ready
read -r _ pod_a name_a < <(spread_pods | grep "^$A ")
read -r _ pod_b name_b < <(spread_pods | grep "^$B ")
wait_for "$A rebooted: a pod on $B reaches a pod on $A" 60 dials "$name_a" "$B" "$pod_b" http "$pod_a" 8080
expect_dial "$name_b" "$A" "$pod_a" udp "$pod_b" 8081
say "$A came back and $B with it, no command on either, in $((SECONDS - t0))s"

# ---- 10. B leaves ------------------------------------------------------------------------
say "$B: kinit down"
hx "$B" 'kinit down' 2>&1 | indent
kubectl_a "get node $B" >/dev/null 2>&1 && die "kinit down on $B left its Node"
wait_for "kinit down on $B: both pods ready on $A" 120 only_on_a
[ -z "$(hx "$B" 'docker ps -q --filter label=io.kinit.managed')" ] || die "kinit down on $B left containers"
say "kinit down on $B drained it and deleted its Node; its pods run on $A"
hx "$B" 'kinit up' 2>&1 | indent
wait_for "kinit up on $B after kinit down: its Node back, Ready" 120 b_ready
hx "$B" 'kinit status' | indent
status=$(hx "$B" 'kinit status')
grep -q "^Joined: node $B ($B_IP) of the cluster at https://$A_IP:6443" <<<"$status" ||
  die "kinit status on $B does not say it is joined"

# ---- 11. B's address moves --------------------------------------------------------------
# As DHCP moves a host: B's address on its link changes, and a plain `kinit up` on B
# follows it: the Node's InternalIP, the kubelet's serving certificate (the API server
# reaches it for logs, checking the address against it), BGP on both hosts and A's guard.
# Then back the same way, so the purge below compares like with like.
b_address() { kubectl_a "get node $B -o jsonpath='{.status.addresses[?(@.type==\"InternalIP\")].address}'"; }
b_at() { [ "$(b_address)" = "$1" ] && b_ready; }
move_b() {
  local from=$1 to=$2 t0=$SECONDS out
  hx "$B" "ip addr del $from/24 dev eth0 && ip addr add $to/24 dev eth0 && ip route replace default via $HOSTS_GATEWAY"
  out=$(hx "$B" 'kinit up' 2>&1) || { indent <<<"$out"; die "kinit up on $B at $to failed"; }
  indent <<<"$out"
  [[ $out == *"The node's address moved from $from to $to"* ]] || die "kinit up on $B did not say its address moved"
  wait_for "$B moved to $to: its Node has the address, Ready" 120 b_at "$to"
  read -r _ pod_a name_a < <(spread_pods | grep "^$A ")
  read -r _ pod_b name_b < <(spread_pods | grep "^$B ")
  wait_for "$B moved to $to: the API server reads a pod's logs through its kubelet" 120 \
    kubectl_a "logs $name_b --tail=1"
  # The other host's kube-router peers with the new address at its next periodic sync
  # (every minute; manifests/network/kube-router.yaml).
  wait_for "$B moved to $to: a pod on it reaches a pod on $A" 180 dials "$name_a" "$B" "$pod_b" http "$pod_a" 8080
  wait_for "$B moved to $to: a pod on $A reaches a pod on it" 60 dials "$name_b" "$A" "$pod_a" http "$pod_b" 8080
  say "$B's address moved from $from to $to and the cluster followed it in $((SECONDS - t0))s"
}
if [ -n "$MOVE" ]; then
  ON_TIMEOUT=pod_network_state
  rebalance
  wait_for "$B runs a spread pod again" 60 spread_on_both_ready
  move_b "$B_IP" 172.31.0.12
  move_b 172.31.0.12 "$B_IP"
  ON_TIMEOUT=
fi

# ---- 12. purge ---------------------------------------------------------------------------
for h in "$B" "$A"; do
  hx "$h" 'kinit down --purge' 2>&1 | indent
  hx "$h" 'docker image ls -q registry.k8s.io/e2e-test-images/agnhost | xargs -r docker rmi -f' >/dev/null
  host_snapshot "$h" purged
  diff -u "$WORK/$h.before" "$WORK/$h.purged" || die "kinit down --purge on $h left a difference"
  say "$h: after kinit down --purge its iptables, links, routes, ipsets and Docker are as before kinit up"
done
say "passed"
