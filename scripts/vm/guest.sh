# guest.sh — boots and drives the VM tier's guests (sourced after scripts/lib.sh): a Debian
# image from scripts/vm/image.sh, cached by that recipe's SHA-256, started under qemu's
# software emulation with a throwaway copy-on-write disk, reached over SSH on a forwarded
# loopback port. The guest sees this host at 10.0.2.2 (its loopback, through qemu's user
# network) and Debian's mirror through the host's network.
# shellcheck shell=bash

# The VM tier's tools (as apt_ensure's COMMAND:PACKAGE): qemu, its disk tool, mmdebstrap,
# an SSH client, and jq for the VM tier's checks of the cluster.
VM_TOOLS=(qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils mmdebstrap:mmdebstrap
  mkfs.ext4:e2fsprogs ssh:openssh-client jq:jq)

ensure_vm_tools() { apt_ensure "${VM_TOOLS[@]}"; }

# guest_image SUITE: the directory holding SUITE's guest image (built when the recipe
# changed or none is cached); prints it.
guest_image() {
  local suite=$1 key dir
  key=$(cat "$REPO/scripts/vm/image.sh" | sha256sum | cut -c1-12)
  dir="$KINIT_BUILD_CACHE/vm/$suite-$key"
  if [ ! -f "$dir/.complete" ]; then
    ensure_vm_tools
    local t0=$SECONDS
    say "building the Debian $suite guest image (mmdebstrap; log: $dir.log)" >&2
    rm -rf "$dir"
    mkdir -p "$(dirname "$dir")"
    "$REPO/scripts/vm/image.sh" "$suite" "$dir" >"$dir.log" 2>&1 ||
      { tail -n 30 "$dir.log" >&2; die "building the $suite guest image failed"; }
    touch "$dir/.complete"
    say "guest image for $suite built in $((SECONDS - t0))s" >&2
  fi
  echo "$dir"
}

# guest_boot NAME IMAGE_DIR RUN_DIR [HOSTFWD...]: boots a guest of IMAGE_DIR with its own
# copy-on-write disk in RUN_DIR and the given extra forwards (qemu's
# "tcp:127.0.0.1:HOSTPORT-:GUESTPORT" form); SSH is forwarded from a free loopback port.
# Sets GUEST_SSH_PORT, GUEST_KEY and GUEST_RUN for the helpers below.
guest_boot() {
  local name=$1 image=$2 run=$3 fwd
  shift 3
  ensure_vm_tools
  mkdir -p "$run"
  GUEST_RUN=$run
  GUEST_KEY=$image/id_ed25519
  GUEST_SSH_PORT=$(free_port)
  qemu-img create -q -f qcow2 -b "$image/disk.raw" -F raw "$run/disk.qcow2"
  local net="user,id=net0,hostfwd=tcp:127.0.0.1:$GUEST_SSH_PORT-:22"
  for fwd in "$@"; do net="$net,hostfwd=$fwd"; done
  # No KVM on the test machines: qemu's multi-threaded software emulation, with every CPU
  # feature it can emulate (kube-apiserver and etcd are built for x86-64 v1, but faster
  # with more). A reboot inside the guest restarts it with the same kernel and disk.
  qemu-system-x86_64 -name "$name" -machine q35 -accel tcg,thread=multi -cpu max \
    -smp "${KINIT_VM_CPUS:-2}" -m "${KINIT_VM_MEMORY:-6144}" \
    -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 panic=10" \
    -drive "file=$run/disk.qcow2,if=virtio,format=qcow2,cache=unsafe" \
    -netdev "$net" -device virtio-net-pci,netdev=net0 \
    -device virtio-rng-pci \
    -display none -serial "file:$run/console.log" \
    -daemonize -pidfile "$run/qemu.pid"
  say "guest $name booting (console: $run/console.log, ssh: 127.0.0.1:$GUEST_SSH_PORT)"
}

# guest_ssh CMD...: runs CMD as root in the guest.
guest_ssh() {
  ssh -q -i "$GUEST_KEY" -p "$GUEST_SSH_PORT" -o StrictHostKeyChecking=no \
    -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=10 \
    -o ServerAliveInterval=15 -o ServerAliveCountMax=8 -o BatchMode=yes \
    root@127.0.0.1 "$@"
}

# guest_wait_ssh SECONDS: until the guest's SSH answers (booted far enough to log in).
guest_wait_ssh() {
  local limit=$1 t0=$SECONDS
  while ((SECONDS - t0 < limit)); do
    guest_ssh true 2>/dev/null && return 0
    guest_running || { tail -n 30 "$GUEST_RUN/console.log" >&2; die "the guest stopped"; }
    sleep 3
  done
  tail -n 30 "$GUEST_RUN/console.log" >&2
  die "the guest's SSH did not answer within ${limit}s (console above)"
}

guest_running() {
  [ -f "$GUEST_RUN/qemu.pid" ] && kill -0 "$(cat "$GUEST_RUN/qemu.pid")" 2>/dev/null
}

# wait_host SECONDS WHAT CMD...: until CMD succeeds on this host (something reached in a
# guest); says how long it took, or shows CMD's last failure and dies.
wait_host() {
  local limit=$1 what=$2 t0=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS - t0 < limit)) || { "$@" || true; die "$what: not within ${limit}s"; }
    sleep 3
  done
  say "$what ($((SECONDS - t0))s)"
}

# through_socks PORT URL: the page at URL fetched on this host through a guest's
# `kinit socks`, forwarded to this host's loopback PORT.
through_socks() { curl -fsS --max-time 20 --socks5-hostname "127.0.0.1:$1" "$2"; }

# guest_stop: powers the guest off (no shutdown inside: its disk is thrown away).
guest_stop() {
  guest_running || return 0
  local pid
  pid=$(cat "$GUEST_RUN/qemu.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
}

# guest_box SUITE: a Vagrant box for vagrant-libvirt made of SUITE's guest image (the disk as
# qcow2, the kernel and initramfs it boots with, the key Vagrant logs in with), built once
# per image; prints the box file's path.
guest_box() {
  local image box stage
  image=$(guest_image "$1")
  box=$image/libvirt.box
  if [ ! -f "$box" ]; then
    stage=$(mktemp -d "$image/box.XXXXXX")
    qemu-img convert -O qcow2 "$image/disk.raw" "$stage/box.img"
    cp "$image/vmlinuz" "$image/initrd.img" "$image/id_ed25519" "$stage/"
    printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %s}\n' \
      "$(($(stat -c %s "$image/disk.raw") / 1024 / 1024 / 1024))" >"$stage/metadata.json"
    # The box's own settings: the image has no boot loader (libvirt boots its kernel
    # directly) and Vagrant logs in with the image's key, not its public insecure one.
    cat >"$stage/Vagrantfile" <<'RUBY'
Vagrant.configure("2") do |config|
  config.ssh.username = "vagrant"
  config.ssh.private_key_path = File.join(__dir__, "id_ed25519")
  config.ssh.insert_key = false
  config.vm.provider "libvirt" do |lv|
    lv.kernel = File.join(__dir__, "vmlinuz")
    lv.initrd = File.join(__dir__, "initrd.img")
    lv.cmd_line = "root=/dev/vda rw console=ttyS0 panic=10"
    lv.disk_bus = "virtio"
  end
end
RUBY
    tar -C "$stage" -cf "$box.tmp" metadata.json Vagrantfile box.img vmlinuz initrd.img id_ed25519
    mv "$box.tmp" "$box"
    rm -rf "$stage"
  fi
  echo "$box"
}
