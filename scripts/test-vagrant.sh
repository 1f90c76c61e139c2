#!/usr/bin/env bash
# test-vagrant.sh — the Vagrant tier: the repository's vagrant/Vagrantfile brought up for real,
# as its README section tells users, with vagrant-libvirt (Debian's packages) running a
# qemu domain under software emulation. The box is the VM tier's Debian guest image
# (scripts/vm/image.sh, packed by guest_box in scripts/vm/guest.sh); this host's stand-in
# internet (scripts/vm/internet.sh) serves the release binary, the upstream downloads and
# the images on the box's NAT gateway, set in the box as a user's mirrors are: Docker's
# registry mirror and kinit's config file.
#
#   1. `vagrant up --no-provision`, the mirrors written, then `vagrant provision`: the
#      Vagrantfile's own provisioners (install.sh with the release binary; `kinit up`; a
#      detached `kinit socks`)
#   2. README's steps: `vagrant ssh -c 'kinit example telescope'` and the page through the
#      SOCKS5 proxy on the host's forwarded loopback port; `sudo kinit kubeconfig` used by
#      kubectl on this host; a LoadBalancer Service answering on the box's private address
#   3. `vagrant destroy`
#
#   scripts/test-vagrant.sh [SUITE]      # default: bookworm
#
# Not run by scripts/test.sh (about 20 minutes under emulation; test.sh runs `vagrant
# validate`). Needs root and the offline bundle. Starts libvirtd when none answers and stops
# what it started; its libvirt network and storage pool are its own and go at the end.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/vm/guest.sh
source "$REPO/scripts/vm/guest.sh"
# shellcheck source=scripts/vm/internet.sh
source "$REPO/scripts/vm/internet.sh"
become_root "$@"
cd "$REPO"
SUITE=${1:-bookworm}
LIBVIRT=qemu:///system
# The box's NAT network: its own name and range, so a host's libvirt networks are left be.
NET=kinit-vagrant-test
NET_PREFIX=192.168.123
NODE_IP=192.168.56.10

ensure_vm_tools
apt_ensure vagrant:vagrant virsh:libvirt-clients libvirtd:libvirt-daemon-system \
  dnsmasq:dnsmasq-base bsdtar:libarchive-tools
dpkg -s vagrant-libvirt libvirt-daemon-driver-qemu >/dev/null 2>&1 ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq vagrant-libvirt libvirt-daemon-driver-qemu >/dev/null
ensure_bundle "" --pinned-only >/dev/null

WORK=$(mktemp -d /tmp/kinit-vagrant.XXXXXX)
# libvirt's qemu runs as its own user: it reads the box's kernel and the pool's disks here.
chmod 0755 "$WORK"
POOL=kinit-vagrant-test-$$
pids=()
started=()
# The private network Vagrant makes for the Vagrantfile's address, taken down at the end
# only when this run made it.
NET_OWN_PRIVATE=
cleanup() {
  if [ -f "$WORK/project/Vagrantfile" ]; then
    (cd "$WORK/project" && vagrant destroy -f >"$WORK/destroy.log" 2>&1) || cat "$WORK/destroy.log" >&2
  fi
  [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
  local net
  for net in "$NET" $NET_OWN_PRIVATE; do
    virsh -c "$LIBVIRT" net-destroy "$net" >/dev/null 2>&1 || true
    virsh -c "$LIBVIRT" net-undefine "$net" >/dev/null 2>&1 || true
  done
  virsh -c "$LIBVIRT" pool-destroy "$POOL" >/dev/null 2>&1 || true
  local d
  for d in "${started[@]}"; do
    [ -f "/run/$d.pid" ] && kill "$(cat "/run/$d.pid")" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---- libvirt, its network and pool, the box -----------------------------------------

if ! virsh -c "$LIBVIRT" version >/dev/null 2>&1; then
  # No service manager started them (a container, or a host without systemd).
  pgrep -x virtlogd >/dev/null || { virtlogd -d; started+=(virtlogd); }
  libvirtd -d
  started+=(libvirtd)
  for _ in $(seq 50); do virsh -c "$LIBVIRT" version >/dev/null 2>&1 && break; sleep 0.2; done
  virsh -c "$LIBVIRT" version >/dev/null || die "libvirtd did not start"
fi
if virsh -c "$LIBVIRT" net-info "$NET" >/dev/null 2>&1; then
  die "libvirt already has a network $NET (another run of this script?)"
fi
existing_nets=$(virsh -c "$LIBVIRT" net-list --all --name)
mkdir -p "$WORK/pool"
virsh -c "$LIBVIRT" pool-create-as "$POOL" dir --target "$WORK/pool" >/dev/null
# Made here, not by Vagrant, so the stand-in internet can listen on its gateway before the
# box first asks for anything.
cat >"$WORK/net.xml" <<XML
<network>
  <name>$NET</name>
  <forward mode='nat'/>
  <ip address='$NET_PREFIX.1' netmask='255.255.255.0'>
    <dhcp><range start='$NET_PREFIX.10' end='$NET_PREFIX.254'/></dhcp>
  </ip>
</network>
XML
# Defined, not transient: `vagrant destroy` takes down the management network it used.
virsh -c "$LIBVIRT" net-define "$WORK/net.xml" >/dev/null
virsh -c "$LIBVIRT" net-start "$NET" >/dev/null

export VAGRANT_HOME=$WORK/vagrant.d
mkdir -p "$VAGRANT_HOME"
say "the Vagrant box (Debian $SUITE, libvirt)"
vagrant box add --name "kinit-test/debian-$SUITE" "$(guest_box "$SUITE")" >"$WORK/box.log" 2>&1 ||
  { cat "$WORK/box.log" >&2; die "vagrant box add failed"; }
chmod -R go+rX "$VAGRANT_HOME/boxes"
# What this host needs from vagrant-libvirt, beside the project's Vagrantfile (Vagrant reads
# VAGRANT_HOME's Vagrantfile too): no KVM, so qemu's emulation with all the CPU features it
# has; this run's pool and network. (Not the console in a file: vagrant-libvirt 0.11.2
# fails to merge a serial console set in any Vagrantfile but the project's.)
cat >"$VAGRANT_HOME/Vagrantfile" <<RUBY
Vagrant.configure("2") do |config|
  config.vm.provider "libvirt" do |lv|
    lv.uri = "$LIBVIRT"
    lv.driver = "qemu"
    lv.cpu_mode = "maximum"
    lv.storage_pool_name = "$POOL"
    lv.management_network_name = "$NET"
    lv.management_network_address = "$NET_PREFIX.0/24"
    lv.graphics_type = "none"
    lv.video_type = "none"
  end
end
RUBY

# ---- the stand-in internet, on the box's NAT gateway ----------------------------------

stand_in_internet "$WORK" "$NET_PREFIX.1" "$NET_PREFIX.1"

# ---- the Vagrantfile, as users run it ------------------------------------------------

# A copy of the project's directory as a user has it: vagrant/Vagrantfile beside
# scripts/install.sh, which its provisioner uploads.
mkdir -p "$WORK/project" "$WORK/scripts"
cp "$REPO/vagrant/Vagrantfile" "$WORK/project/"
cp "$REPO/scripts/install.sh" "$WORK/scripts/"
socks_port=$(free_port)
export KINIT_BOX=kinit-test/debian-$SUITE KINIT_SOCKS_HOST_PORT=$socks_port
export KINIT_RELEASE_URL=$RELEASES_URL
cd "$WORK/project"
# vx CMD: CMD in the box as the vagrant user, as `vagrant ssh -c` runs it.
vx() { vagrant ssh -c "$1" -- -q; }
# indent: output indented in this log, without the box upload's progress line redrawn in
# place thousands of times.
indent() { stdbuf -oL tr '\r' '\n' | grep --line-buffered -v 'Progress: [0-9]*%' | sed -u 's/^/  /'; }

t0=$SECONDS
say "vagrant up --no-provision"
vagrant up --no-provision --provider libvirt 2>&1 | indent
say "the box is up ($((SECONDS - t0))s)"
NET_OWN_PRIVATE=$(virsh -c "$LIBVIRT" net-list --all --name | grep -v '^$' | grep -vxF -f <(echo "$existing_nets"; echo "$NET") || true)
vx 'echo "  $(. /etc/os-release; echo "$PRETTY_NAME"), $(systemctl --version | head -n 1), cgroup fs $(stat -fc %T /sys/fs/cgroup)"'
# The mirrors, as a user behind one sets them: Docker's registry mirror, kinit's config.
# vagrant ssh -c may give the command a terminal, so files go in base64 on its command line.
put_file() { vx "echo $(base64 -w0) | base64 -d | sudo install -D -m 0644 /dev/stdin $1"; }
put_file /etc/docker/daemon.json <<<"$DOCKER_DAEMON_JSON"
printf 'mirror: %s\nimageRepository: %s\n' "$MIRROR" "$REGISTRY" | put_file /etc/kinit/config.yaml
t0=$SECONDS
say "vagrant provision (install.sh, kinit up, kinit socks)"
vagrant provision 2>&1 | indent
say "provisioned ($((SECONDS - t0))s)"

web="$REGISTRY/kinit-examples/web:1"
db="$REGISTRY/kinit-examples/db:1"
say "README: vagrant ssh -c 'kinit example telescope'"
vx "kinit example telescope --image-override telescope=$web --image-override mongo=$db" 2>&1 | indent
wait_host 300 "telescope answers through kinit socks on the host's 127.0.0.1:$socks_port" \
  through_socks "$socks_port" http://telescope.default.svc.cluster.local/

say "README: sudo kinit kubeconfig, for kubectl on the host"
vx 'sudo kinit kubeconfig' >"$WORK/kinit.yaml"
kubectl=$(find "$KINIT_BUNDLE_DIR/release" -path '*/bin/linux/amd64/kubectl' -type f | sort -V | tail -n 1)
[ -n "$kubectl" ] || die "the bundle has no kubectl"
"$kubectl" --kubeconfig "$WORK/kinit.yaml" get nodes -o wide | indent
"$kubectl" --kubeconfig "$WORK/kinit.yaml" get nodes -o jsonpath='{.items[0].status.addresses[0].address}' |
  grep -qx "$NODE_IP" || die "the node's address is not the Vagrantfile's $NODE_IP"

say "README: a LoadBalancer Service on the box's private address"
vx 'kubectl expose deployment telescope --name telescope-lb --type=LoadBalancer --port=8080 --target-port=80' | indent
wait_host 300 "the LoadBalancer Service answers on http://$NODE_IP:8080/ from the host" \
  curl -fsS --max-time 10 "http://$NODE_IP:8080/"

say "vagrant provision again (what a user does after changing something): nothing to do"
vagrant provision --provision-with up 2>&1 | tee "$WORK/again.log" | indent
grep -q 'Nothing to do: the cluster was already up' "$WORK/again.log" ||
  die "kinit up in the second provisioning changed something (above)"
say "passed: vagrant/Vagrantfile with vagrant-libvirt on Debian $SUITE"
