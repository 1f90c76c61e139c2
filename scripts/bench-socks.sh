#!/usr/bin/env bash
# Benchmark of `kinit socks` (issue 5) against a direct connection, `ssh -D` to localhost,
# Debian's microsocks and dante-server, all on loopback, in one run:
#
#   scripts/bench-socks.sh [--bytes N] [--connects N] [--concurrent N]
#
# Installs what it needs from Debian (microsocks, dante-server, openssh-server), starts each
# proxy on a free loopback port (sshd with a throwaway key and config, nothing of the host's
# ssh set-up is used or changed), runs benches/socks.rs, which prints throughput, set-up
# latency p50/p99 and resident memory idle and at N concurrent tunnels, with ratios, and
# stops everything it started. Needs root (apt, sshd).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"
build_for_bench --socks
become_root "$@"
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
# Measured as users run it: a backtrace captured per failed tunnel is a developer setting.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
apt_ensure microsocks:microsocks danted:dante-server sshd:openssh-server ssh:openssh-client

WORK=$(mktemp -d /tmp/kinit-socks-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
# Many open tunnels need many descriptors, in the proxies and in the benchmark.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

targets=()

# kinit socks, allowed to the loopback server the benchmark targets (outside any cluster).
port=$(free_port)
# Every benchmark tunnel comes from 127.0.0.1: lift the per-client and global caps above
# --concurrent.
"$TARGET/release/kinit" --state-dir "$WORK/kinit" socks --port "$port" --allow 127.0.0.1/32 \
  --max-tunnels-per-client 60000 --max-tunnels 60000 \
  >"$WORK/kinit.log" 2>&1 &
PIDS+=($!); wait_port "$port" kinit
targets+=("kinit=127.0.0.1:$port@${PIDS[-1]}")

port=$(free_port)
microsocks -i 127.0.0.1 -p "$port" >"$WORK/microsocks.log" 2>&1 &
PIDS+=($!); wait_port "$port" microsocks
targets+=("microsocks=127.0.0.1:$port@${PIDS[-1]}")

# ssh -D against a private sshd on loopback; its memory is the ssh client's plus the sshd
# session processes that open the connections.
sshd_port=$(free_port)
ssh-keygen -q -t ed25519 -N '' -f "$WORK/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/client_key"
cp "$WORK/client_key.pub" "$WORK/authorized_keys"
cat >"$WORK/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $sshd_port
HostKey $WORK/host_key
AuthorizedKeysFile $WORK/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
# The throwaway key and config live under /tmp, which StrictModes rejects.
StrictModes no
UsePAM no
PidFile $WORK/sshd.pid
AllowTcpForwarding yes
MaxSessions 100
CONF
mkdir -p /run/sshd
"$(command -v sshd)" -D -f "$WORK/sshd_config" -E "$WORK/sshd.log" &
sshd_pid=$!; PIDS+=("$sshd_pid"); wait_port "$sshd_port" sshd
port=$(free_port)
ssh -N -D "127.0.0.1:$port" -p "$sshd_port" -i "$WORK/client_key" \
  -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR root@127.0.0.1 &
ssh_pid=$!; PIDS+=("$ssh_pid"); wait_port "$port" "ssh -D"
sleep 1
children() { pgrep -P "$1" | tr '\n' ' ' || true; }
session_pids=$(children "$sshd_pid")
for p in $session_pids; do session_pids+=" $(children "$p")"; done
ssh_all=$(echo "$ssh_pid $session_pids" | tr -s ' ' ',' | sed 's/,$//')
targets+=("ssh-D=127.0.0.1:$port@$ssh_all")

# dante: one process per client group; its memory is every danted process.
port=$(free_port)
cat >"$WORK/sockd.conf" <<CONF
logoutput: $WORK/sockd.log
internal: 127.0.0.1 port = $port
external: lo
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }
socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }
CONF
if danted -f "$WORK/sockd.conf" -p "$WORK/sockd.pid" -N 2 >"$WORK/sockd.out" 2>&1 &
then
  PIDS+=($!)
  if wait_port "$port" dante 2>/dev/null; then
    targets+=("dante=127.0.0.1:$port@comm:danted")
  else
    say "dante-server did not start here; leaving it out: $(tail -n 3 "$WORK/sockd.log" "$WORK/sockd.out" 2>/dev/null | tr '\n' ' ')"
  fi
fi

say "proxies: ${targets[*]}"
bench=$(ls -t "$TARGET"/release/deps/socks-* | grep -v '\.d$' | head -n 1)
"$bench" "$@" "${targets[@]}"
