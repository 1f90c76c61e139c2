# hosts.sh — the two-host tier's hosts (sourced after scripts/lib.sh): each a container of
# this machine's Docker made to be a host, as kind makes its nodes: a Debian system
# (scripts/hosts/image.sh, cached by its recipe) with its own Docker daemon, network,
# mount and cgroup namespaces, /var/lib/docker and kinit's state on volumes of their own.
# The hosts share one bridge network: the link between them is a veth pair, which a test
# takes down and up. kinit's containers and pods run inside each host's Docker, so nothing
# of a host is on this machine's network or in its cgroups' roots.
# shellcheck shell=bash

HOSTS_NETWORK=kinit-hosts
HOSTS_SUBNET=172.31.0.0/24
HOSTS_GATEWAY=172.31.0.1
HOSTS_LABEL=io.kinit.test-host
# What the tier needs on this machine, as apt_ensure COMMAND:PACKAGE pairs: mmdebstrap for
# the hosts' image, capsh for the capabilities they get, ipset to read theirs.
HOST_TOOLS=(mmdebstrap:mmdebstrap capsh:libcap2-bin ipset:ipset)

# host_rootfs: the hosts' root file system (scripts/hosts/image.sh), built when its recipe
# changed and cached in $KINIT_BUILD_CACHE/hosts; prints its path. Needs no Docker, so
# test_prerequisites makes it beside the bundle's compiles.
host_rootfs() {
  local key dir
  key=$(sha256sum <"$REPO/scripts/hosts/image.sh" | cut -c1-12)
  dir=$KINIT_BUILD_CACHE/hosts
  mkdir -p "$dir"
  if [ ! -f "$dir/bookworm-$key.tar" ]; then
    apt_ensure "${HOST_TOOLS[@]}"
    local t0=$SECONDS
    say "building the hosts' image (mmdebstrap; log: $dir/bookworm-$key.log)" >&2
    "$REPO/scripts/hosts/image.sh" bookworm "$dir/bookworm-$key.tar.part" >"$dir/bookworm-$key.log" 2>&1 ||
      { tail -n 30 "$dir/bookworm-$key.log" >&2; die "building the hosts' image failed"; }
    mv "$dir/bookworm-$key.tar.part" "$dir/bookworm-$key.tar"
    say "hosts' image built in $((SECONDS - t0))s" >&2
  fi
  echo "$dir/bookworm-$key.tar"
}

# host_image: the hosts' image in Docker (imported from host_rootfs); prints its tag.
host_image() {
  local rootfs tag
  rootfs=$(host_rootfs)
  tag=kinit-test/host:$(basename "$rootfs" .tar | cut -d- -f2)
  if ! docker image inspect "$tag" >/dev/null 2>&1; then
    docker import --change 'ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/sbin/host-init"]' \
      "$rootfs" "$tag" >/dev/null
  fi
  echo "$tag"
}

# hosts_network: the bridge the hosts share (made if missing).
hosts_network() {
  docker network inspect "$HOSTS_NETWORK" >/dev/null 2>&1 ||
    docker network create --subnet "$HOSTS_SUBNET" --gateway "$HOSTS_GATEWAY" \
      --label "$HOSTS_LABEL=1" "$HOSTS_NETWORK" >/dev/null
}

# daemon_caps: every capability this machine's Docker daemon holds that the engine knows by
# name, as --cap-add flags (`--privileged` asks for some the test machines' bounding set
# lacks; Docker 20.10 refuses the newest names, as kinit's own containers find out).
daemon_caps() {
  local pid bits cap
  pid=$(pgrep -o -x dockerd)
  bits=$(awk '/^CapBnd/ {print $2}' "/proc/$pid/status")
  for cap in $(capsh --decode="$bits" | sed 's/.*=//; s/,/ /g'); do
    if docker run --rm --network none --entrypoint true --cap-add "$cap" "$(host_image)" >/dev/null 2>&1; then
      printf -- '--cap-add=%s ' "${cap#cap_}"
    fi
  done
}

# host_start NAME IP KINIT_BIN [DOCKER_RUN_ARGS...]: starts host NAME at IP with the kinit
# binary at /usr/local/bin/kinit, and waits for its Docker daemon.
host_start() {
  local name=$1 ip=$2 bin=$3 image resolv
  shift 3
  image=$(host_image)
  hosts_network
  apt_ensure "${HOST_TOOLS[@]}"
  # No resolver inside: pods resolve cluster names through CoreDNS, and nothing of the
  # tests looks a public name up. A host's own file, as hosts have.
  resolv=$WORK/$name.resolv.conf
  printf 'nameserver %s\n' "$HOSTS_GATEWAY" >"$resolv"
  # shellcheck disable=SC2046
  docker run -d --name "$name" --hostname "$name" --label "$HOSTS_LABEL=1" \
    --network "$HOSTS_NETWORK" --ip "$ip" \
    $(daemon_caps) \
    --security-opt apparmor=unconfined --security-opt seccomp=unconfined \
    --security-opt systempaths=unconfined \
    --cgroupns private --device-cgroup-rule 'a *:* rwm' --device /dev/kmsg \
    --tmpfs /run --tmpfs /tmp \
    -v /lib/modules:/lib/modules:ro \
    -v "$name-docker:/var/lib/docker" -v "$name-kinit:/var/lib/kinit" \
    -v "$resolv:/etc/resolv.conf:ro" \
    -v "$bin:/usr/local/bin/kinit:ro" \
    -v "$REPO/scripts/hosts/host-init:/usr/local/sbin/host-init:ro" \
    "$@" "$image" >/dev/null
  local t0=$SECONDS
  until docker exec "$name" docker info >/dev/null 2>&1; do
    ((SECONDS - t0 < 120)) || { docker exec "$name" tail -n 30 /var/log/dockerd.log >&2 || true; die "$name: its Docker did not start"; }
    docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null | grep -qx true ||
      { docker logs --tail 30 "$name" >&2; die "$name: the host container stopped"; }
    sleep 1
  done
  say "$name: up at $ip, its Docker answers ($((SECONDS - t0))s)"
}

# hx NAME CMD: runs a shell command line on host NAME.
hx() { local name=$1; shift; docker exec -i "$name" sh -c "$*"; }

# host_link NAME up|down: the host's end of its link to the others, on this machine.
host_link() {
  local name=$1 state=$2 index veth
  index=$(docker exec "$name" cat /sys/class/net/eth0/iflink)
  veth=$(ip -o link | awk -F': ' -v i="$index" '$1 == i {print $2}' | cut -d@ -f1)
  [ -n "$veth" ] || die "$name: no link with index $index on this machine"
  ip link set "$veth" "$state"
}

# hosts_remove: every host container, its volumes and the network.
hosts_remove() {
  local name
  for name in $(docker ps -aq --filter "label=$HOSTS_LABEL"); do
    docker rm -f -v "$name" >/dev/null 2>&1 || true
  done
  docker volume ls -q | grep -E '^kinit-host-[a-z]+-(docker|kinit)$' | xargs -r docker volume rm >/dev/null 2>&1 || true
  docker network rm "$HOSTS_NETWORK" >/dev/null 2>&1 || true
}
