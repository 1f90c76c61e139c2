#!/usr/bin/env bash
# test-vm.sh — the VM tier: kinit on the hosts it is made for. A Debian guest booted under
# qemu (systemd as PID 1, cgroup v2 only, Docker with the systemd cgroup driver; image from
# scripts/vm/image.sh, cached by its recipe) goes the whole user path, driven over SSH:
#
#   1. scripts/install.sh: Docker from Debian's packages, kinit's static release binary
#      (scripts/release.sh) from this host in the release layout
#   2. `kinit up` from an empty image store and download cache, pulling from this host's
#      stand-in internet at 10.0.2.2: an HTTP mirror in the upstream layouts (the offline
#      bundle) and an OCI registry holding every image under its upstream path
#   3. the walkthroughs: nginx scaled to 3 behind a Service, opened from this host through
#      `kinit socks` over a forwarded port; a LoadBalancer Service reached from this host;
#      with --full also Telescope + MongoDB (through `kinit socks` too), the Job with a
#      Secret and a PersistentVolumeClaim written by a pod
#   4. `systemctl reboot`: the kubelet's graceful node shutdown drains the pods first; the
#      shutdown and the cluster's return are timed, and every object (and with --full the
#      volume's data) must be back with no kinit command run
#   5. `kinit down --purge`: the guest must be as install.sh left it (units, cgroups,
#      mounts, iptables rules, links, files, Docker images; see snapshot below)
#
#   scripts/test-vm.sh [--full] [SUITE...]   # default: bookworm (Debian 12); also: trixie (13)
#
# Run by scripts/test.sh for bookworm without --full (CI's subset: the walkthroughs' other
# examples and volumes across a restart run on the host tiers); `scripts/test-vm.sh --full bookworm trixie` is the full
# run. Needs root, the offline bundle (scripts/build-bundle.sh) and rustup for the release
# build. Everything it starts is stopped on exit; the guest's disk is thrown away.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/vm/guest.sh
source "$REPO/scripts/vm/guest.sh"
# shellcheck source=scripts/vm/internet.sh
source "$REPO/scripts/vm/internet.sh"
become_root "$@"
cd "$REPO"
FULL=
if [ "${1:-}" = --full ]; then
  FULL=1
  shift
fi
SUITES=("${@:-bookworm}")

ensure_vm_tools
ensure_bundle "" --pinned-only >/dev/null
WORK=$(mktemp -d /tmp/kinit-vm.XXXXXX)
pids=()
cleanup() {
  [ -z "${GUEST_RUN:-}" ] || guest_stop
  [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---- the stand-in internet, on this host's loopback (10.0.2.2 in the guest) ----------

stand_in_internet "$WORK" 127.0.0.1 10.0.2.2

# What must survive a reboot: every object but pods, ReplicaSets and EndpointSlices (made
# anew by their controllers) and the job example's Job, which deletes itself 5 minutes after
# it finished (ttlSecondsAfterFinished).
OBJECTS='kubectl get all,pvc,secrets,configmaps,serviceaccounts -A -o name | grep -v "^pod/\|^replicaset\|endpointslice\|^job.batch/hello$" | sort'

# ---- one guest ----------------------------------------------------------------------

# gx CMD: runs a shell command line in the guest.
gx() { guest_ssh "$@"; }

# ---- the cluster, seen from this host ------------------------------------------------

# The waits on the cluster ask from this host, through the API server's port forwarded to
# loopback: asking from inside the guest (an SSH login and a dozen kubectl starts every
# few seconds, under software emulation) took so much of its two emulated CPUs from the
# cluster being waited on that probes timed out and pods restarted (CI, 2026-12-07).
# shellcheck source=scripts/versions.env disable=SC1091
source "$REPO/scripts/versions.env"
KUBECTL="$KINIT_BUNDLE_DIR/release/$KUBERNETES_VERSION/bin/linux/$(go env GOARCH)/kubectl"
[ -x "$KUBECTL" ] || die "the bundle has no kubectl $KUBERNETES_VERSION ($KUBECTL)"
hk() { "$KUBECTL" --kubeconfig "$WORK/kubeconfig" --request-timeout=30s "$@"; }

# host_kubeconfig: the guest's admin kubeconfig (`kinit kubeconfig`), pointed at the
# forwarded port; the server certificate is checked against the guest's own address.
host_kubeconfig() {
  local server cluster
  (umask 077 && gx 'kinit kubeconfig' >"$WORK/kubeconfig")
  server=$(hk config view -o jsonpath='{.clusters[0].cluster.server}')
  cluster=$(hk config view -o jsonpath='{.clusters[0].name}')
  server=${server#https://}
  hk config set-cluster "$cluster" --server "https://127.0.0.1:$api_port" \
    --tls-server-name "${server%:*}" >/dev/null
}

# all_replicas_ready: every Deployment's ready pods (by the pods' own Ready condition, not
# the Deployment's status, which may be from before a reboot) number its replicas; prints
# the ones short of it.
all_replicas_ready() {
  hk get deployments -A -o json >"$WORK/deployments.json" &&
    hk get pods -A -o json >"$WORK/pods.json" || return 1
  local short
  short=$(jq -r --slurpfile p "$WORK/pods.json" '.items[] | . as $d
    | [$p[0].items[] | select(.metadata.namespace == $d.metadata.namespace)
      | select((.metadata.labels // {}) as $l
        | ($d.spec.selector.matchLabels // {}) | to_entries | all(.value == $l[.key]))
      | select(any(.status.conditions[]?; .type == "Ready" and .status == "True"))]
    | length | select(. < $d.spec.replicas)
    | "\($d.metadata.namespace)/\($d.metadata.name): \(.) of \($d.spec.replicas) ready"' \
    "$WORK/deployments.json") || return 1
  [ -z "$short" ] || { echo "$short"; return 1; }
}

cluster_back() { hk wait --for=condition=Ready node --all --timeout=5s && all_replicas_ready; }
notes_written() { [[ "$(hk exec deploy/notes -- cat /data/note)" == *written-before-reboot* ]]; }

# wait_cluster SECONDS WHAT CMD...: until CMD succeeds; then the pods and the last events
# if it never did. Progress, not a short limit: slow emulation takes minutes where this
# host takes seconds.
wait_cluster() {
  local limit=$1 what=$2 t0=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - t0 >= limit)); then
      "$@" || true
      { hk get pods -A -o wide; hk get events -A --sort-by=.lastTimestamp | tail -n 25; } 2>&1 | indent || true
      die "$what: not within ${limit}s"
    fi
    sleep 5
  done
  say "$what ($((SECONDS - t0))s)"
}

# snapshot NAME: what kinit may touch on the host, written to $WORK/NAME.<kind>: units,
# cgroups, mounts, iptables rules, network links, files outside the noisy places, and
# Docker's images, containers, networks and volumes. `kinit down --purge` must bring
# every list back to the one taken after install.sh. Not compared: the kubectl kinit
# installed and the kubeconfig (purge keeps the one and takes the kinit context out of the
# other, as the README says; checked below), and kubectl's cache beside it.
snapshot() {
  local name=$1
  # Left out: login sessions and timers' runs, and the mount of Docker's own default
  # network namespace, which the daemon makes at its first container and keeps.
  gx "systemctl list-units --all --no-legend --plain | awk '{print \$1}' | grep -Ev '^(session-[0-9]+\.scope|user@[0-9]+\.service|user-runtime-dir@[0-9]+\.service|user-[0-9]+\.slice|systemd-tmpfiles-clean\..*|apt-daily.*|man-db\..*|fstrim\..*|e2scrub.*|dpkg-db-backup\..*|logrotate\..*|run-docker-netns-default\.mount)$' | sort" >"$WORK/$name.units"
  gx "cd /sys/fs/cgroup && find . -type d | grep -Ev '^\./user\.slice(/|$)' | sort" >"$WORK/$name.cgroups"
  gx "awk '{print \$5, \$9}' /proc/self/mountinfo | grep -v '^/run/docker/netns/default ' | sort" >"$WORK/$name.mounts"
  gx "for c in iptables-save ip6tables-save; do \$c; done" | iptables_tables >"$WORK/$name.iptables"
  gx "ip -o link show | awk -F': ' '{print \$2}' | sort" >"$WORK/$name.links"
  gx "find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /tmp -o -path /var/tmp \
      -o -path /var/log -o -path /var/cache -o -path /var/lib/docker -o -path /var/lib/containerd \
      -o -path /var/lib/systemd -o -path /var/lib/apt -o -path /var/lib/dhcp -o -path /root/.ssh \\
      -o -path /root/.kube -o -path /usr/local/bin/kubectl \\) -prune \
      -o -print | sort" >"$WORK/$name.files"
  # /run is a tmpfs the reboot empties: adduser's lock from install.sh goes, and
  # iptables' lock (which kinit-boot makes again, as README says) and kinit's own lock
  # file come; neither holds anything.
  gx "ls -1 /run | grep -vx 'adduser\|kinit.lock\|xtables.lock' | sort" >"$WORK/$name.run"
  # Networks by name: Docker gives its default bridge a new ID at each start.
  gx "docker image ls -a -q --no-trunc | sort; docker ps -aq | sort; docker network ls --format '{{.Name}}' | sort; docker volume ls -q | sort" >"$WORK/$name.docker"
}

# compare_snapshots BEFORE AFTER: each list must be the same; prints what differs.
compare_snapshots() {
  local kind bad=0
  for kind in units cgroups mounts iptables links files run docker; do
    if ! diff -u "$WORK/$1.$kind" "$WORK/$2.$kind" >"$WORK/diff.$kind"; then
      printf 'kinit down --purge left a difference in the guest'"'"'s %s:\n' "$kind" >&2
      grep '^[-+][^-+]' "$WORK/diff.$kind" | head -n 40 >&2
      bad=1
    fi
  done
  [ "$bad" -eq 0 ] || die "the guest is not as install.sh left it"
  say "after kinit down --purge the guest's units, cgroups, mounts, iptables rules, links, files, /run and Docker objects are as install.sh left them"
}

run_suite() {
  local suite=$1 image t0
  image=$(guest_image "$suite")
  socks_port=$(free_port)
  lb_port=$(free_port)
  api_port=$(free_port)
  guest_boot "kinit-$suite" "$image" "$WORK/$suite" \
    "tcp:127.0.0.1:$socks_port-:8082" "tcp:127.0.0.1:$lb_port-:8080" "tcp:127.0.0.1:$api_port-:6443"
  t0=$SECONDS
  guest_wait_ssh 600
  say "$suite: SSH answers $((SECONDS - t0))s after the boot began"
  gx 'echo "  $(. /etc/os-release; echo "$PRETTY_NAME"), kernel $(uname -r), $(systemctl --version | head -n 1), cgroup fs $(stat -fc %T /sys/fs/cgroup)"'

  say "$suite: install.sh (Docker from Debian's packages, kinit's release binary from 10.0.2.2)"
  # The stand-in internet's registry, as a user's Docker Hub mirror is set up: plain HTTP.
  gx 'mkdir -p /etc/docker && cat >/etc/docker/daemon.json' <<<"$DOCKER_DAEMON_JSON"
  gx 'cat >/root/install.sh' <"$REPO/scripts/install.sh"
  t0=$SECONDS
  gx "KINIT_RELEASE_URL=$RELEASES_URL sh /root/install.sh" | indent
  say "$suite: install.sh took $((SECONDS - t0))s"
  gx 'docker info --format "  Docker {{.ServerVersion}}, cgroup driver {{.CgroupDriver}}, cgroup v{{.CgroupVersion}}"'
  snapshot installed

  say "$suite: kinit up (empty cache and image store; the stand-in internet at 10.0.2.2)"
  t0=$SECONDS
  gx "kinit up --mirror $MIRROR --image-repository $REGISTRY" 2>&1 | indent ||
    die "kinit up failed in the $suite guest"
  say "$suite: kinit up took $((SECONDS - t0))s"
  host_kubeconfig

  say "$suite: the walkthroughs"
  local web="$REGISTRY/kinit-examples/web:1" db="$REGISTRY/kinit-examples/db:1"
  gx "kinit socks --detach --bind 0.0.0.0 --allow-client 10.0.2.2/32" | indent
  gx "kinit example nginx --image-override nginx=$web" | indent
  [ "$(gx 'kubectl get deployment nginx -o jsonpath={.status.readyReplicas}')" = 3 ] ||
    die "the nginx example is not 3 ready replicas"
  wait_host 120 "nginx's Service answers through kinit socks from this host" \
    through_socks "$socks_port" http://nginx.default.svc.cluster.local/
  if [ -n "$FULL" ]; then
    gx "kinit example telescope --image-override telescope=$web --image-override mongo=$db" | indent
    wait_host 120 "telescope's Service answers through kinit socks from this host" \
      through_socks "$socks_port" http://telescope.default.svc.cluster.local/
    gx "kinit example job --image-override busybox=$web" | indent
    gx 'kubectl logs job/hello' | grep -q 'The secret says: Hello from a Kubernetes Secret' ||
      die "the job example's output lacks the Secret"
  fi
  if [ -n "$FULL" ]; then
    # A volume of the default StorageClass, written by a pod; it must outlive the reboot.
    gx 'kubectl apply -f -' <<YAML
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: notes}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: notes}
spec:
  selector: {matchLabels: {app: notes}}
  template:
    metadata: {labels: {app: notes}}
    spec:
      containers:
      - name: notes
        image: $web
        command: [sh, -c, 'grep -q written /data/note 2>/dev/null || echo written-before-reboot >/data/note; exec sleep 100000']
        volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, persistentVolumeClaim: {claimName: notes}}]
YAML
    wait_cluster 300 "the PersistentVolumeClaim is bound and written" notes_written
  fi
  gx 'kubectl expose deployment nginx --name nginx-lb --type LoadBalancer --port 8080 --target-port 80' >/dev/null
  wait_host 120 "the LoadBalancer Service answers on the guest's forwarded port" \
    curl -fsS --max-time 10 "http://127.0.0.1:$lb_port/"

  reboot_guest "$suite"

  say "$suite: kinit down --purge"
  gx 'kinit down --purge' 2>&1 | indent
  if gx 'kubectl config get-contexts -o name' | grep -qx kinit; then
    die "kinit down --purge left the kinit context in root's kubeconfig"
  fi
  snapshot purged
  compare_snapshots installed purged
  guest_stop
  say "$suite: passed"
}

# reboot_guest SUITE: a graceful `systemctl reboot`; times the shutdown (until the kernel
# restarts) and the return (until every object is back and the Services answer), with no
# kinit command run.
reboot_guest() {
  local suite=$1 objects restarts t0 t_down t_ssh
  objects=$(gx "$OBJECTS")
  say "$suite: systemctl reboot ($(wc -l <<<"$objects") objects besides pods)"
  local console="$WORK/$suite/console.log" before
  before=$(grep -c 'reboot: Restarting system' "$console" || true)
  t0=$SECONDS
  gx 'systemctl reboot' || true
  until [ "$(grep -c 'reboot: Restarting system' "$console" || true)" -gt "$before" ]; do
    ((SECONDS - t0 < 600)) || die "the guest did not restart within 600s"
    sleep 1
  done
  t_down=$((SECONDS - t0))
  if grep -q 'A stop job is running' "$console"; then
    grep 'A stop job is running' "$console" | tail -n 3 >&2
    die "the shutdown waited on a stop job (console above)"
  fi
  guest_wait_ssh 600
  t_ssh=$((SECONDS - t0))
  # Every Deployment at its full count of ready replicas again (its status from before
  # the reboot says so too until the controller-manager has looked, hence the generation
  # check does not suffice: count the ready pods themselves).
  wait_cluster 900 "$suite: after the reboot the node is Ready and every Deployment has all its replicas ready" \
    cluster_back
  gx "kinit socks --detach --bind 0.0.0.0 --allow-client 10.0.2.2/32" >/dev/null
  wait_host 300 "nginx's Service answers through kinit socks after the reboot" \
    through_socks "$socks_port" http://nginx.default.svc.cluster.local/
  if [ -n "$FULL" ]; then
    wait_host 300 "telescope's Service answers through kinit socks after the reboot" \
      through_socks "$socks_port" http://telescope.default.svc.cluster.local/
  fi
  wait_host 300 "the LoadBalancer Service answers after the reboot" \
    curl -fsS --max-time 10 "http://127.0.0.1:$lb_port/"
  local t_back=$((SECONDS - t0))
  say "$suite: reboot: shutdown ${t_down}s, SSH back at ${t_ssh}s, cluster and Services back at ${t_back}s"
  gx 'kubectl get pods -A' | indent
  local after
  after=$(gx "$OBJECTS")
  if [ "$after" != "$objects" ]; then
    diff <(echo "$objects") <(echo "$after") >&2 || true
    die "objects differ after the reboot (above: < before, > after)"
  fi
  if [ -n "$FULL" ]; then
    gx 'kubectl exec deploy/notes -- cat /data/note' | grep -q written-before-reboot ||
      die "the volume's data did not survive the reboot"
  fi
  restarts=$(gx "kubectl get pods -A --field-selector=status.phase=Running -o jsonpath='{range .items[*]}{.metadata.name}={.status.containerStatuses[0].restartCount} {end}'")
  say "$suite: restarts of the running pods' first containers: $restarts"
  local pod
  for pod in kube-apiserver kube-controller-manager kube-scheduler; do
    if [ "$(gx "kubectl -n kube-system get pod $pod-kinit-vm -o jsonpath='{.status.containerStatuses[0].restartCount}'")" -gt 1 ]; then
      say "$suite: $pod restarted after the reboot; its previous run ended with:"
      gx "kubectl -n kube-system logs $pod-kinit-vm --previous 2>&1 | tail -n 5 | cut -c1-300" | indent
    fi
  done
  say "$suite: pods the graceful shutdown stopped: $(gx 'kubectl get pods -A --field-selector=status.phase=Failed --no-headers | wc -l') Failed (replaced by their controllers)"
  # `kinit up` again, as users do: finds everything in place, the Failed pods beside
  # their replacements included.
  gx "kinit up --mirror $MIRROR --image-repository $REGISTRY" 2>&1 | indent ||
    die "kinit up after the reboot failed"
}

for suite in "${SUITES[@]}"; do
  run_suite "$suite"
done
