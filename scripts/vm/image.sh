#!/usr/bin/env bash
# image.sh — the recipe of the VM tier's guest: a Debian system as its cloud and Vagrant
# images boot it (systemd as PID 1, cgroup v2 only, systemd-networkd with DHCP, OpenSSH),
# built from Debian's packages with mmdebstrap, and nothing of kinit's: no Docker, no
# curl, no kinit. scripts/install.sh puts those in, as on a user's fresh VM.
#
#   scripts/vm/image.sh SUITE OUT_DIR     # SUITE: bookworm (Debian 12) or trixie (13)
#
# OUT_DIR gets vmlinuz and initrd.img (booted with qemu's -kernel/-initrd), disk.raw (a
# sparse ext4 file system, the root on /dev/vda, no partition table) and the key root logs
# in with over SSH (id_ed25519). scripts/vm/guest.sh caches OUT_DIR by this file's
# SHA-256: a change here builds a new image.
set -euo pipefail
SUITE=${1:?usage: image.sh SUITE OUT_DIR}
OUT=${2:?usage: image.sh SUITE OUT_DIR}
MIRROR=${KINIT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY=${KINIT_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# Room for the images and pods of a cluster and the walkthroughs; sparse on the host.
DISK_SIZE=24G

mkdir -p "$OUT"
root="$OUT/root"
rm -rf "$root" "$OUT/id_ed25519" "$OUT/id_ed25519.pub"
ssh-keygen -q -t ed25519 -N '' -C kinit-vm-test -f "$OUT/id_ed25519"

# What the distribution's server images have: systemd with logind, D-Bus and resolved (its
# stub resolver in /etc/resolv.conf, as on Ubuntu), a kernel, OpenSSH and sudo. `important`
# is Debian's base system (apt, udev, iproute2, ...).
packages=linux-image-amd64,systemd-sysv,dbus,libpam-systemd,systemd-resolved,openssh-server,sudo,iproute2
# Written into the guest's root before it is packed ($1 is that root).
customize=$(cat <<'HOOK'
set -eu
r=$1
echo kinit-vm >"$r/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 kinit-vm\n::1 localhost ip6-localhost ip6-loopback\n' >"$r/etc/hosts"
printf '/dev/vda / ext4 defaults,errors=remount-ro 0 1\n' >"$r/etc/fstab"
mkdir -p "$r/etc/systemd/network"
# DHCP on every interface Vagrant has not configured: its own files (50-vagrant-*) sort
# first, and networkd takes the first file that matches.
printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n' >"$r/etc/systemd/network/99-dhcp.network"
chroot "$r" systemctl enable systemd-networkd.service systemd-resolved.service >/dev/null 2>&1
ln -sf ../run/systemd/resolve/stub-resolv.conf "$r/etc/resolv.conf"
mkdir -p -m 0700 "$r/root/.ssh"
# Vagrant's user, as Vagrant boxes have it: sudo without a password, the same key as root.
chroot "$r" useradd --uid 1000 --user-group --create-home --shell /bin/bash vagrant
printf 'vagrant ALL=(ALL) NOPASSWD: ALL\n' >"$r/etc/sudoers.d/vagrant"
chmod 0440 "$r/etc/sudoers.d/vagrant"
install -d -m 0700 -o 1000 -g 1000 "$r/home/vagrant/.ssh"
HOOK
)
mmdebstrap --mode=root --variant=important --include="$packages" \
  --customize-hook="$customize" \
  --customize-hook="install -m 0600 '$OUT/id_ed25519.pub' \"\$1/root/.ssh/authorized_keys\"" \
  --customize-hook="install -m 0600 -o 1000 -g 1000 '$OUT/id_ed25519.pub' \"\$1/home/vagrant/.ssh/authorized_keys\"" \
  "$SUITE" "$root" \
  "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY $SUITE-security main"

# The kernel and initramfs of the installed linux-image package boot the guest directly.
kernel=$(find "$root/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)
[ -n "$kernel" ] || { echo "error: no kernel in the guest's /boot" >&2; exit 1; }
version=${kernel##*/vmlinuz-}
cp "$kernel" "$OUT/vmlinuz"
cp "$root/boot/initrd.img-$version" "$OUT/initrd.img"
rm -f "$OUT/disk.raw"
mkfs.ext4 -q -F -L kinit-root -d "$root" "$OUT/disk.raw" "$DISK_SIZE"
rm -rf "$root"
echo "guest image: Debian $SUITE, kernel $version, in $OUT"
