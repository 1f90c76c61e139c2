#!/bin/sh
# The kinit-master container's entrypoint (rendered by src/components/master.rs): host
# set-up the kubelet depends on, cri-dockerd in the background, then the kubelet. It runs
# again on every container start, so after a Docker restart the host is set up again.
set -eu

# The kubelet refuses a cgroupRoot that does not exist in every hierarchy it checks; under
# the systemd driver it looks for the slice it makes of the root (/kinit is kinit.slice).
# kinit's own root keeps its pods apart from anything else on the host. The directories are
# those src/cgroup.rs found from the host's mount table at `kinit up`.
{%- if cgroup_slice %}
# Started by the host's systemd, so that systemd owns it and the slices the kubelet has it
# make under it. This container shares the host's PID namespace, so systemctl takes it for a
# chroot and ignores the request unless told not to. The directories below are made anyway:
# on v1 systemd creates a slice only in the hierarchies of the controllers it uses.
SYSTEMD_IGNORE_CHROOT=1 systemctl start {{ cgroup_slice | sh }} ||
  echo "kinit-{{ component }}: systemctl start {{ cgroup_slice }} failed; making its cgroup directories directly" >&2
{%- endif %}
for dir in{% for dir in cgroup_dirs %} {{ dir | sh }}{% endfor %}; do
  if [ ! -d "${dir%/*}" ]; then
    echo "kinit-{{ component }}: no cgroup hierarchy ${dir%/*}: the host's cgroup layout changed since \`kinit up\`; run it again" >&2
    exit 1
  fi
  mkdir -p "$dir"
done

# The pod bridge, made here with kinit's mark when there is none (the CNI bridge plugin
# takes an existing bridge as it is), so that `kinit down --purge` knows it for kinit's even
# while veths are still attached: the kernel keeps a removed pod's network namespace, and
# its veth on the bridge, until the pod's last TCP connection has timed out.
if ip link add {{ bridge | sh }} type bridge 2>/dev/null; then
  ip link set dev {{ bridge | sh }} alias {{ bridge_mark | sh }}
fi

# Docker sets the FORWARD policy to DROP, and with bridge-nf-call-iptables on, traffic
# between pods on the bridge goes through FORWARD: let the pod bridge through. Appended,
# not inserted first, so that DOCKER-USER and whatever an administrator put ahead of it
# still decide first; a jump an earlier kinit inserted at the top is moved to the end.
iptables -w -N KINIT-FORWARD 2>/dev/null || true
for dir in -i -o; do
  iptables -w -C KINIT-FORWARD "$dir" {{ bridge | sh }} -j ACCEPT 2>/dev/null ||
    iptables -w -A KINIT-FORWARD "$dir" {{ bridge | sh }} -j ACCEPT
done
while iptables -w -D FORWARD -j KINIT-FORWARD 2>/dev/null; do :; done
iptables -w -A FORWARD -j KINIT-FORWARD
{%- if service_iptables == "iptables" %}
# A pod's packet still addressed to a Service IP here, after kube-proxy's NAT, is for a
# port no Service has: refused, as kube-proxy's nftables mode refuses it, rather than sent
# out by the default route to whatever answers there (some networks accept every TCP
# connection).
iptables -w -C KINIT-FORWARD -d {{ service_cidr | sh }} -j REJECT 2>/dev/null ||
  iptables -w -I KINIT-FORWARD 1 -d {{ service_cidr | sh }} -j REJECT
{%- endif %}

# Nothing but the pods themselves may send to a pod or Service address from outside the
# host: a neighbour that routes those ranges through this host would otherwise reach
# every pod. Dropped before NAT, so NodePorts, hostPorts and replies to the pods' own
# connections (addressed to the host until de-NATed) are unaffected; the host's own
# traffic never passes PREROUTING.
guard_range() {
  "$1" -w -t mangle -N KINIT-PREROUTING 2>/dev/null || true
  "$1" -w -t mangle -C KINIT-PREROUTING ! -i {{ bridge | sh }} -d "$2" -j DROP 2>/dev/null ||
    "$1" -w -t mangle -A KINIT-PREROUTING ! -i {{ bridge | sh }} -d "$2" -j DROP
  "$1" -w -t mangle -C PREROUTING -j KINIT-PREROUTING 2>/dev/null ||
    "$1" -w -t mangle -I PREROUTING 1 -j KINIT-PREROUTING
}
# The other nodes and their pods are not outside: kinit-boot keeps one RETURN rule for
# each other node's address and pod range at the top of KINIT-PREROUTING, from the
# cluster's Nodes (src/host/guard.rs).
guard_range iptables {{ pod_cidr | sh }}
guard_range {{ service_iptables | sh }} {{ service_cidr | sh }}

# kube-router listens on every address, and has no option to keep a port on loopback: its
# health check and its BGP speaker's admin API (gobgp's, without authentication) answer
# loopback only; BGP answers the other nodes only (kinit-boot's RETURN rules for them come
# first in KINIT-PREROUTING).
{{ node_iptables | sh }} -w -N KINIT-INPUT 2>/dev/null || true
for port in {{ router_admin_port }} {{ router_health_port }}; do
  {{ node_iptables | sh }} -w -C KINIT-INPUT -p tcp --dport "$port" ! -i lo -j DROP 2>/dev/null ||
    {{ node_iptables | sh }} -w -A KINIT-INPUT -p tcp --dport "$port" ! -i lo -j DROP
done
{{ node_iptables | sh }} -w -C INPUT -j KINIT-INPUT 2>/dev/null ||
  {{ node_iptables | sh }} -w -I INPUT 1 -j KINIT-INPUT
{{ node_iptables | sh }} -w -t mangle -N KINIT-PREROUTING 2>/dev/null || true
{{ node_iptables | sh }} -w -t mangle -C KINIT-PREROUTING -p tcp --dport {{ router_bgp_port }} -m addrtype --dst-type LOCAL -j DROP 2>/dev/null ||
  {{ node_iptables | sh }} -w -t mangle -A KINIT-PREROUTING -p tcp --dport {{ router_bgp_port }} -m addrtype --dst-type LOCAL -j DROP
{{ node_iptables | sh }} -w -t mangle -C PREROUTING -j KINIT-PREROUTING 2>/dev/null ||
  {{ node_iptables | sh }} -w -t mangle -I PREROUTING 1 -j KINIT-PREROUTING

# wait_for_socket PATH WHAT: a socket the process started just before creates.
wait_for_socket() {
  i=0
  while [ ! -S "$1" ]; do
    i=$((i + 1))
    if [ "$i" -gt 100 ]; then
      echo "$2 did not create its socket $1 in 20s" >&2
      exit 1
    fi
    sleep 0.2
  done
}

# The interposer and cri-dockerd run beside the kubelet. When either ends, this shell (the
# kubelet, once exec'd below) is stopped, so that Docker restarts the whole node instead of
# leaving a kubelet without its runtime. A subshell's $$ is this shell's PID.
supervised() {
  "$@" || true
  echo "kinit-{{ component }}: $1 exited; stopping the kubelet so that Docker restarts the node" >&2
  kill -TERM $$
}

# cri-dockerd reaches Docker through kinit's interposer, which on hosts that refuse a
# negative oom_score_adj (no CAP_SYS_RESOURCE) clamps it in the containers it creates, and
# lets the kubelet's image garbage collector remove only the images the node pulled (the
# file records them), never other tools' images on the shared Docker.
rm -f {{ docker_proxy_socket | sh }} {{ cri_socket | sh }}
supervised kinit runtime-proxy --listen {{ docker_proxy_socket | sh }} --upstream /var/run/docker.sock \
  --pulled-images {{ pulled_images | sh }} &
wait_for_socket {{ docker_proxy_socket | sh }} "kinit runtime-proxy"

mkdir -p {{ cri_dockerd_dir | sh }} {{ cni_cache_dir | sh }}
# No cgroup-driver flag: cri-dockerd asks Docker. Streaming (exec, logs -f, port-forward)
# stays on loopback; only the kubelet talks to it.
supervised cri-dockerd \
  --container-runtime-endpoint={{ ("unix://" ~ cri_socket) | sh }} \
  --docker-endpoint={{ ("unix://" ~ docker_proxy_socket) | sh }} \
  --cri-dockerd-root-directory={{ cri_dockerd_dir | sh }} \
  --network-plugin=cni \
  --cni-bin-dir=/opt/cni/bin \
  --cni-conf-dir={{ cni_conf_dir | sh }} \
  --cni-cache-dir={{ cni_cache_dir | sh }} \
  --pod-infra-container-image={{ pause_image | sh }} \
  --streaming-bind-addr=127.0.0.1:10010 &

wait_for_socket {{ cri_socket | sh }} cri-dockerd

{%- if shutdown_grace_seconds %}
# The kubelet's shutdown inhibitor lock comes from logind over the system bus, at the
# host's socket (this image has no /var/run link for godbus' default path).
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/dbus/system_bus_socket
{%- endif %}
exec kubelet \
  --config={{ kubelet_config | sh }} \
  --kubeconfig={{ kubelet_kubeconfig | sh }} \
{%- if not control_plane %}
  --bootstrap-kubeconfig={{ bootstrap_kubeconfig | sh }} \
  --cert-dir={{ kubelet_cert_dir | sh }} \
{%- endif %}
  --root-dir={{ kubelet_dir | sh }} \
  --node-ip={{ node_ip | sh }} \
  --hostname-override={{ hostname | sh }} \
  --v={{ kubelet_verbosity }}
{#- The user's extra args (kinit up --extra-arg kubelet:...), after kinit's: the kubelet
    takes a flag over its config file, and the last of a flag given twice. #}
{%- for name, value in kubelet_args | items %} \
  {{ ("--" ~ name ~ "=" ~ value) | sh }}
{%- endfor %}
