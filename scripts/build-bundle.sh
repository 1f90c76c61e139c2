#!/usr/bin/env bash
# build-bundle.sh — build kinit's offline bundle (an upstream-layout mirror + image archives) from upstream sources.
#
#   scripts/build-bundle.sh [--only COMPONENT[,COMPONENT...]] [--pinned-only] [KUBE_VERSION] OUT_DIR
#
# Components: etcd kubernetes cri-dockerd coredns cni pause workloads registry
#             local-path-provisioner metrics-server traefik kube-router (default: all),
# and conformance (only when asked for: the upstream conformance suite and its test images,
# scripts/bundle/conformance.sh).
#
# Why this exists: the test machines reach no container registry and no upstream download
# server, only the Go module proxy and Debian's packages. So we build the real upstream
# programs from their Go modules at the versions pinned in scripts/versions.env, wrap them
# in images with `docker import` under their exact upstream names (so kinit's normal
# "image already present" path is what the tests exercise), and lay the release files out in
# OUT_DIR exactly as the upstream servers publish them (dl.k8s.io's release/ tree, the GitHub
# release assets of cri-dockerd and the CNI plugins, as .tgz with .sha256), so kinit reads
# OUT_DIR via --mirror file://OUT_DIR as it would read the internet, and assembles its node
# image from those files itself. tools/ holds a registry and crane (go-containerregistry),
# not kinit artifacts: the test bed's stand-in for a container registry on the internet.
# See scripts/bundle/README.md for the layout and the choices made.
#
# Every step's output is cached under ${KINIT_BUILD_CACHE:-/var/cache/kinit-build}/<step>/<version>/
# together with a stamp of its recipe; a second run only copies files out and prints "cached".
# Each step's build output goes to ${KINIT_BUILD_LOG_DIR:-$KINIT_BUILD_CACHE/logs}/<step>-<version>.log.
# Steps and components are called by name (run_step's FUNC, comp_<name>), which shellcheck
# cannot follow, so it would call their bodies unreachable.
# shellcheck disable=SC2317
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUNDLE_DIR="$SCRIPT_DIR/bundle"
# shellcheck source=scripts/versions.env disable=SC1091
source "$SCRIPT_DIR/versions.env"

ALL_COMPONENTS=(etcd kubernetes cri-dockerd coredns cni pause workloads registry
  local-path-provisioner metrics-server traefik kube-router)
# Built only when --only names them: what kinit does not need, only its tests.
OPTIONAL_COMPONENTS=(conformance)

usage() {
  cat <<EOF
usage: $0 [--only COMPONENT[,COMPONENT...]] [--pinned-only] [KUBE_VERSION] OUT_DIR

Components: ${ALL_COMPONENTS[*]} (default: all); ${OPTIONAL_COMPONENTS[*]} (only with --only)
etcd, kubernetes, coredns and pause are built for every supported Kubernetes release
($PINNED_KUBERNETES_VERSION and $PREVIOUS_KUBERNETES_VERSION); --pinned-only builds the pinned one only.
Environment: KINIT_BUILD_CACHE (default /var/cache/kinit-build), KINIT_BUILD_LOG_DIR
EOF
}

# Derived versions and names (all from versions.env).
# Components built once per Kubernetes release kinit supports (versions.env: the pinned one
# and the PREVIOUS_ one), each with the etcd, CoreDNS and pause kubeadm pairs with it.
PER_RELEASE=(etcd kubernetes coredns pause)
RELEASE_KEYS=(KUBERNETES_VERSION ETCD_VERSION ETCD_IMAGE_TAG COREDNS_VERSION PAUSE_VERSION)
for k in "${RELEASE_KEYS[@]}"; do printf -v "PINNED_$k" '%s' "${!k}"; done
# use_release PINNED_|PREVIOUS_: point the version variables at one release.
use_release() {
  local k src
  for k in "${RELEASE_KEYS[@]}"; do
    src="$1$k"
    printf -v "$k" '%s' "${!src}"
  done
  K8S_STAGING_VERSION="v0.${KUBERNETES_VERSION#v1.}"          # v1.36.3 -> v0.36.3
  K8S_MAJOR=$(cut -d. -f1 <<<"${KUBERNETES_VERSION#v}")
  K8S_MINOR=$(cut -d. -f2 <<<"$KUBERNETES_VERSION")
}
use_release PINNED_
# PATH inside the images: distroless' default, so binaries in /usr/local/bin are found.
IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WEB_IMAGE="kinit-examples/web:${EXAMPLE_IMAGE_TAG}"
DB_IMAGE="kinit-examples/db:${EXAMPLE_IMAGE_TAG}"
# The conformance component's steps.
# shellcheck source=scripts/bundle/conformance.sh
source "$BUNDLE_DIR/conformance.sh"

wants() { [[ " ${COMPONENTS[*]} " == *" $1 "* ]]; }

log() { printf '%s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Helpers whose source is part of every step's stamp: changing how things are built
# invalidates what was built (Go's own cache keeps such rebuilds short).
STAMP_HELPERS=(go_wrapper go_copy_replaces go_origin go_build base_rootfs debs_rootfs
  install_iptables_wrapper image_from_rootfs image_kube smoke)

# run_step STEP VERSION FUNC [INPUT_FILE...]
# Runs FUNC OUTDIR unless $CACHE/STEP/VERSION holds a result whose stamp matches: the stamp
# hashes the source of FUNC and of the STAMP_HELPERS, and the INPUT_FILEs (our sources, the
# stamps of the steps it consumes). FUNC runs in a subshell with errexit on, in its own
# scratch directory $STEP_WORK, with all output in the step's log; on failure the log's tail is printed.
run_step() {
  local step=$1 version=$2 func=$3; shift 3
  local dir="$CACHE/$step/$version"
  # Once per invocation and version; STEP_DIR[step] is the current release's.
  [[ ${STEP_DIR[$step]:-} != "$dir" ]] || return 0
  STEP_DIR[$step]=$dir
  local stamp f
  stamp=$({ declare -f "$func" "${STAMP_HELPERS[@]}"; echo "$version $DEB_SKIP $IMAGE_PATH"
            for f in "$@"; do cat "$f"; done; } | sha256sum | cut -c1-16)
  if [[ -f $dir/.stamp && $(<"$dir/.stamp") == "$stamp" ]]; then
    log "==> $step $version: cached"
    SUMMARY+=("$step|$version|cached|0")
    return 0
  fi
  local logf="$LOG_DIR/$step-$version.log" t0=$SECONDS rc
  log "==> $step $version: building (log: $logf)"
  rm -rf "$dir.tmp"; mkdir -p "$dir.tmp"
  set +e
  STEP_WORK="$WORK/$step"
  mkdir -p "$STEP_WORK"
  (set -e; cd "$STEP_WORK"; "$func" "$dir.tmp") >"$logf" 2>&1
  rc=$?
  set -e
  rm -rf "$STEP_WORK"
  if [[ $rc -ne 0 ]]; then
    tail -n 40 "$logf" | sed 's/^/    /' >&2
    die "$step $version failed (exit $rc); full log: $logf"
  fi
  echo "$stamp" >"$dir.tmp/.stamp"
  rm -rf "$dir"; mv "$dir.tmp" "$dir"
  log "==> $step $version: built in $((SECONDS - t0))s"
  SUMMARY+=("$step|$version|built|$((SECONDS - t0))")
}
stamp_of() { echo "${STEP_DIR[$1]}/.stamp"; }

# ---------------------------------------------------------------------------------------
# Helpers: Go wrapper modules
# ---------------------------------------------------------------------------------------

# go_wrapper NAME: create an empty throwaway module kinit-bundle/NAME and cd into it.
go_wrapper() {
  mkdir -p "$STEP_WORK/$1"; cd "$STEP_WORK/$1"
  go mod init "kinit-bundle/$1"
}

# go_copy_replaces MODULE@VERSION: a dependency's own `replace` lines are ignored by Go,
# so repeat the versioned ones (not the ./local ones) in the wrapper, as upstream builds see them.
go_copy_replaces() {
  local gomod
  gomod=$(go mod download -json "$1" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  awk '
    /^replace[ \t]*\($/ { inblock = 1; next }
    inblock && /^\)/     { inblock = 0; next }
    /^replace[ \t]/      { sub(/^replace[ \t]+/, ""); print; next }
    inblock              { print }
  ' "$gomod" | sed 's,//.*,,' | while read -r -a f; do
    # old [oldver] => new [newver]
    local arrow=1; [[ ${f[1]:-} == "=>" ]] || arrow=2
    local old=${f[0]} new=${f[$((arrow + 1))]:-} newver=${f[$((arrow + 2))]:-}
    [[ -n $new && -n $newver && $new != .* && $new != /* ]] || continue
    [[ $arrow -eq 1 ]] || old="${f[0]}@${f[1]}"
    echo "copying replace $old => $new $newver"
    go mod edit -replace "$old=$new@$newver"
  done
}

# go_origin MODULE@VERSION FIELD: a field (Hash or Time) of the module's proxy metadata, if known.
go_origin() {
  case $2 in
    Hash) go list -m -f '{{with .Origin}}{{.Hash}}{{end}}' "$1" 2>/dev/null || true ;;
    Time) go list -m -f '{{with .Time}}{{.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' "$1" 2>/dev/null || true ;;
  esac
}

# go_build OUT LDFLAGS PKG...: static, stripped, path-independent build of main packages into OUT/.
go_build() {
  local out=$1 ldflags=$2; shift 2
  mkdir -p "$out"
  go build -trimpath -ldflags "-s -w $ldflags" -o "$out/" "$@"
  file "$out"/* 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------
# Helpers: root filesystems and images
# ---------------------------------------------------------------------------------------

# base_rootfs DIR: what a distroless "static" image provides and static Go binaries may read:
# users root/nobody/nonroot(65532), nsswitch (Go's resolver reads it), a world-writable /tmp,
# and the CA bundle (from the build host) for anything that talks TLS to public endpoints.
base_rootfs() {
  local r=$1
  mkdir -p "$r"/{etc,tmp,root,home/nonroot,usr/local/bin,var/run}
  chmod 1777 "$r/tmp"
  cat >"$r/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
  cat >"$r/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
  echo 'hosts: files dns' >"$r/etc/nsswitch.conf"
  if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    mkdir -p "$r/etc/ssl/certs"
    cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/"
  fi
}

# Packages never unpacked into an image: package-management and maintainer-script machinery
# (we do not run maintainer scripts), Perl, which they drag in, and the awks other than mawk
# (an "awk" dependency lists all of them as alternatives). Binaries' shared libraries are
# ordinary Depends and so are kept.
DEB_SKIP='^(gawk|original-awk|adduser|apt|base-files|cdebconf|debconf|debianutils|dpkg|init-system-helpers|install-info|lsb-base|passwd|sysvinit-utils|usr-is-merged|usrmerge|tar|ca-certificates|openssl|libelogind0|libdebian-installer4|libnewt0\.52|libslang2|libtextwrap1|perl|perl-base|perl-modules-.*|libperl.*|lib.*-perl|libgdbm.*|libpam-modules.*|libpam-runtime|libsemanage.*|libsepol.*|systemd.*)$'

# debs_rootfs DIR PKG...: unpack PKGs and their dependency closure (Depends/Pre-Depends) from
# the host's apt sources into DIR with dpkg-deb -x. A "mini debootstrap": no chroot, no
# maintainer scripts, nothing installed on the host, and it works on Debian and Ubuntu alike.
debs_rootfs() {
  local r=$1; shift
  local debs="$STEP_WORK/debs"
  mkdir -p "$r" "$debs"
  local pkgs
  mapfile -t pkgs < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
      --no-breaks --no-replaces --no-enhances "$@" | grep -E '^[a-z0-9][a-z0-9.+-]*$' | sort -u \
      | grep -Ev "$DEB_SKIP")
  echo "unpacking ${#pkgs[@]} packages: ${pkgs[*]}"
  (cd "$debs" && apt-get -o APT::Sandbox::User=root download "${pkgs[@]}") ||
    die "apt-get download failed (package lists missing or stale? run apt-get update)"
  local d
  for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$r"; done
  rm -rf "$debs"
  # Newer releases ship only /usr/lib*, /usr/bin (merged /usr): add the top-level links
  # that base-files/debootstrap would have made, where the packages made no real directory.
  for d in bin sbin lib lib64; do
    [[ -e $r/$d || ! -d $r/usr/$d ]] || ln -s "usr/$d" "$r/$d"
  done
  rm -rf "$r"/usr/share/{doc,man,info,locale,lintian,bug,bash-completion}
}

# install_iptables_wrapper DIR: the iptables package leaves the choice between its nft and
# legacy backends to update-alternatives (a maintainer script we do not run). Like the
# upstream kube-proxy image, point the iptables commands at a wrapper that picks the
# backend the host already uses on first call. Needs /bin/sh and grep in the image.
install_iptables_wrapper() {
  local r=$1 c
  install -m 0755 "$BUNDLE_DIR/iptables-wrapper" "$r/usr/sbin/iptables-wrapper"
  for c in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    ln -sf iptables-wrapper "$r/usr/sbin/$c"
  done
}

# image_from_rootfs OUT ROOTFS REF [DOCKERFILE-CHANGE...]: docker import ROOTFS as REF (with
# --change instructions such as ENTRYPOINT/ENV/USER), then keep `docker save` of it in OUT.
image_from_rootfs() {
  local out=$1 rootfs=$2 ref=$3; shift 3
  local changes=() c
  for c in "$@"; do changes+=(--change "$c"); done
  local old; old=$(docker image inspect -f '{{.Id}}' "$ref" 2>/dev/null || true)
  # --xattrs keeps file capabilities (setcap), which docker import preserves.
  tar --numeric-owner --owner=0 --group=0 --xattrs --xattrs-include=security.capability \
    -C "$rootfs" -c . | docker import "${changes[@]}" - "$ref"
  docker image inspect -f '{{.Id}}' "$ref" >"$out/image.id"
  # A rebuild leaves the previous image untagged; drop it unless a container still uses it.
  [[ -z $old || $old == "$(<"$out/image.id")" ]] || docker rmi "$old" >/dev/null 2>&1 || true
  echo "$ref" >"$out/image.ref"
  docker save -o "$out/image.tar" "$ref"
  du -sh "$out/image.tar"
}

# smoke ARGS...: `docker run` a freshly built image to prove it works. No network: the checks
# need none, and then they do not depend on the state of the host's docker0 bridge.
smoke() { docker run --rm --network none "$@"; }

# ---------------------------------------------------------------------------------------
# Output (OUT_DIR) helpers — cheap, run on every invocation
# ---------------------------------------------------------------------------------------

# place SRC DEST: hard link when possible (same filesystem as the cache), else copy.
place() { mkdir -p "$(dirname "$2")"; rm -f "$2"; ln "$1" "$2" 2>/dev/null || cp "$1" "$2"; }

# export_bins SRC_DIR DEST_DIR NAME...: binaries plus NAME.sha256 (hex digest only, as dl.k8s.io).
export_bins() {
  local src=$1 dest=$2 n; shift 2
  for n in "$@"; do
    place "$src/$n" "$dest/$n"
    sha256sum "$dest/$n" | cut -d' ' -f1 >"$dest/$n.sha256"
  done
}

# export_archive FILE DEST_DIR: a release archive plus FILE.sha256 in sha256sum format
# ("<hex>  <name>"), as the CNI plugins' GitHub releases publish it.
export_archive() {
  local name; name=$(basename "$1")
  place "$1" "$2/$name"
  (cd "$2" && sha256sum "$name" >"$name.sha256")
}

# export_image STEP: make sure the image is in the local engine (load the cached archive if
# the engine lost it), and put the archive in OUT_DIR/images/<ref with / and : as _>.tar.
export_image() {
  local dir=${STEP_DIR[$1]} ref id
  ref=$(<"$dir/image.ref"); id=$(<"$dir/image.id")
  if [[ $(docker image inspect -f '{{.Id}}' "$ref" 2>/dev/null) != "$id" ]]; then
    log "    loading $ref into Docker from the cache"
    docker load -q -i "$dir/image.tar" >/dev/null
  fi
  place "$dir/image.tar" "$OUT_DIR/images/$(tr '/:' '__' <<<"$ref").tar"
  [[ " ${BUNDLE_IMAGES[*]} " == *" $ref "* ]] || BUNDLE_IMAGES+=("$ref")
}
BUNDLE_IMAGES=()

# ---------------------------------------------------------------------------------------
# Steps: each takes its (empty) output directory as $1
# ---------------------------------------------------------------------------------------

# etcd, etcdctl, etcdutl from their Go modules at the pinned release; version.Version is a
# constant in the module; the git SHA is stamped like etcd's ./build does when the proxy
# knows it (for 3.6.8 it does not, so `etcd --version` says "Git SHA: Not provided").
build_etcd() {
  local out=$1 v="v${ETCD_VERSION}"
  go_wrapper etcd
  go_copy_replaces "go.etcd.io/etcd/server/v3@$v"
  go get "go.etcd.io/etcd/server/v3@$v" "go.etcd.io/etcd/etcdctl/v3@$v" "go.etcd.io/etcd/etcdutl/v3@$v"
  local sha ldflags=""
  sha=$(go_origin "go.etcd.io/etcd/server/v3@$v" Hash)
  [[ -z $sha ]] || ldflags="-X go.etcd.io/etcd/api/v3/version.GitSHA=${sha:0:9}"
  go_build "$out/bin" "$ldflags" \
    go.etcd.io/etcd/server/v3 go.etcd.io/etcd/etcdctl/v3 go.etcd.io/etcd/etcdutl/v3
  # go names a binary after its import path less the /v3 suffix: server -> etcd.
  mv "$out/bin/server" "$out/bin/etcd"
  ls -l "$out/bin"
  "$out/bin/etcd" --version
}

# registry.k8s.io/etcd: binaries in /usr/local/bin, found through PATH (no entrypoint), as upstream.
image_etcd() {
  local out=$1 r="$STEP_WORK/rootfs-etcd"
  base_rootfs "$r"
  install -m 0755 "${STEP_DIR[etcd]}"/bin/{etcd,etcdctl,etcdutl} "$r/usr/local/bin/"
  mkdir -p "$r/var/lib/etcd"
  image_from_rootfs "$out" "$r" "registry.k8s.io/etcd:${ETCD_IMAGE_TAG}" \
    "ENV PATH=$IMAGE_PATH" \
    'EXPOSE 2379 2380'
  smoke "registry.k8s.io/etcd:${ETCD_IMAGE_TAG}" etcd --version
}

# Kubernetes server and client binaries from the k8s.io/kubernetes module. Its go.mod requires
# the staging modules (k8s.io/api, ...) at v0.0.0 and replaces them with ./staging/src/...;
# a dependency's replaces are ignored, so the wrapper pins each to its published v0.x.y tag.
# The version variables are the ones hack/lib/version.sh stamps, in component-base (servers)
# and client-go (kubectl version --client).
build_kubernetes() {
  local out=$1 mod="k8s.io/kubernetes@${KUBERNETES_VERSION}" gomod m
  go_wrapper kubernetes
  gomod=$(go mod download -json "$mod" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" { print $1 }' "$gomod" | while read -r m; do
    go mod edit -replace "$m=$m@$K8S_STAGING_VERSION"
  done
  go_copy_replaces "$mod"
  # go get the packages, not just the module, so go.sum covers everything they import.
  local pkgs=(k8s.io/kubernetes/cmd/{kube-apiserver,kube-controller-manager,kube-scheduler,kube-proxy,kubelet,kubectl})
  go get "${pkgs[@]/%/@$KUBERNETES_VERSION}"
  local commit date ldflags="" kv
  commit=$(go_origin "$mod" Hash)
  date=$(go_origin "$mod" Time)
  for kv in "gitVersion=$KUBERNETES_VERSION" "gitMajor=$K8S_MAJOR" "gitMinor=$K8S_MINOR" \
      gitTreeState=archive ${commit:+"gitCommit=$commit"} ${date:+"buildDate=$date"}; do
    ldflags+=" -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
  done
  go_build "$out/bin" "$ldflags" "${pkgs[@]}"
  ls -l "$out/bin"
  "$out/bin/kubectl" version --client
}

# cri-dockerd, unpatched: its go.mod pins Kubernetes 1.29 libraries through replace lines,
# which the wrapper copies. Version stamping as in its Makefile (version without "v", short
# commit). Packed like its GitHub release asset: cri-dockerd/cri-dockerd in a .tgz.
build_cri_dockerd() {
  local out=$1 mod="github.com/Mirantis/cri-dockerd@${CRI_DOCKERD_VERSION}" commit
  go_wrapper cri-dockerd
  go_copy_replaces "$mod"
  go get "$mod"
  commit=$(go_origin "$mod" Hash)
  go_build "$out/bin" "-X github.com/Mirantis/cri-dockerd/cmd/version.Version=${CRI_DOCKERD_VERSION#v} \
    -X github.com/Mirantis/cri-dockerd/cmd/version.GitCommit=${commit:0:7}" github.com/Mirantis/cri-dockerd
  "$out/bin/cri-dockerd" --version
  local pack="$STEP_WORK/pack"
  install -d -m 0755 "$pack/cri-dockerd"
  install -m 0755 "$out/bin/cri-dockerd" "$pack/cri-dockerd/"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$pack" -c cri-dockerd |
    gzip -n -9 >"$out/cri-dockerd-${CRI_DOCKERD_VERSION#v}.$GOARCH.tgz"
  tar -tvzf "$out/cri-dockerd-${CRI_DOCKERD_VERSION#v}.$GOARCH.tgz"
}

# CoreDNS with its default plugin set (core/plugin/zplugin.go is generated upstream and part
# of the module); CoreVersion is a constant, GitCommit is stamped like its Makefile does.
build_coredns() {
  local out=$1 mod="github.com/coredns/coredns@${COREDNS_VERSION}" commit
  go_wrapper coredns
  go_copy_replaces "$mod"
  go get "$mod"
  commit=$(go_origin "$mod" Hash)
  go_build "$out/bin" "-X github.com/coredns/coredns/coremain.GitCommit=${commit:0:7}" github.com/coredns/coredns
  "$out/bin/coredns" -version
}

# CNI plugins from their Go module rather than Debian's containernetworking-plugins: the same
# route as every other component, a current release (Debian 12 ships 1.1.1) and static binaries.
# Packed like its GitHub release asset (./ and the plugins, flat), with only the four kinit uses.
build_cni() {
  local out=$1 mod="github.com/containernetworking/plugins@${CNI_PLUGINS_VERSION}"
  go_wrapper cni
  go_copy_replaces "$mod"
  local pkgs=(github.com/containernetworking/plugins/plugins/{main/bridge,ipam/host-local,main/loopback,meta/portmap})
  go get "${pkgs[@]/%/@$CNI_PLUGINS_VERSION}"
  go_build "$out/bin" "-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=${CNI_PLUGINS_VERSION}" \
    "${pkgs[@]}"
  ls -l "$out/bin"
  echo '{"cniVersion":"1.0.0"}' | CNI_COMMAND=VERSION "$out/bin/bridge"
  local pack="$STEP_WORK/pack"
  install -d -m 0755 "$pack"
  install -m 0755 "$out"/bin/* "$pack/"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$pack" -c . |
    gzip -n -9 >"$out/cni-plugins-linux-$GOARCH-$CNI_PLUGINS_VERSION.tgz"
  tar -tvzf "$out/cni-plugins-linux-$GOARCH-$CNI_PLUGINS_VERSION.tgz"
}

# pause: upstream's build/pause/linux/pause.c from the k8s.io/kubernetes module, built the
# way its Makefile does (gcc -static), so the image holds one file.
build_pause() {
  local out=$1 src
  mkdir -p "$out/bin"
  src=$(go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -f $src/build/pause/linux/pause.c ]] || die "no build/pause/linux/pause.c in k8s.io/kubernetes@${KUBERNETES_VERSION}"
  gcc -static -Os -Wall -Werror -DVERSION="v${PAUSE_VERSION}" -o "$out/bin/pause" "$src/build/pause/linux/pause.c"
  strip "$out/bin/pause"
  "$out/bin/pause" -v | grep -qx "pause.c v${PAUSE_VERSION}"
}

# registry.k8s.io/pause: /pause only, run as 65535 like upstream.
image_pause() {
  local out=$1 r="$STEP_WORK/rootfs-pause" ref="registry.k8s.io/pause:${PAUSE_VERSION}"
  mkdir -p "$r"
  install -m 0755 "${STEP_DIR[pause]}/bin/pause" "$r/pause"
  image_from_rootfs "$out" "$r" "$ref" 'ENTRYPOINT ["/pause"]' 'USER 65535:65535'
  smoke --entrypoint /pause "$ref" -v
}

# registry.k8s.io/kube-{apiserver,controller-manager,scheduler}: distroless-like, binary in
# /usr/local/bin, no entrypoint (kubeadm-style manifests give the command), as upstream.
image_kube() {
  local out=$1 name=$2 r="$STEP_WORK/rootfs-$2" ref="registry.k8s.io/$2:${KUBERNETES_VERSION}"
  base_rootfs "$r"
  install -m 0755 "${STEP_DIR[kubernetes]}/bin/$name" "$r/usr/local/bin/"
  image_from_rootfs "$out" "$r" "$ref" "ENV PATH=$IMAGE_PATH"
  smoke "$ref" "$name" --version
}
image_kube_apiserver() { image_kube "$1" kube-apiserver; }
image_kube_controller_manager() { image_kube "$1" kube-controller-manager; }
image_kube_scheduler() { image_kube "$1" kube-scheduler; }

# registry.k8s.io/kube-proxy: upstream builds it on distroless-iptables; here Debian's
# iptables + conntrack (with their libraries) and the iptables-wrapper that picks nft/legacy.
image_kube_proxy() {
  local out=$1 r="$STEP_WORK/rootfs-kube-proxy" ref="registry.k8s.io/kube-proxy:${KUBERNETES_VERSION}"
  debs_rootfs "$r" iptables conntrack dash grep coreutils kmod
  ln -sf dash "$r/bin/sh"
  base_rootfs "$r"
  install_iptables_wrapper "$r"
  install -m 0755 "${STEP_DIR[kubernetes]}/bin/kube-proxy" "$r/usr/local/bin/"
  image_from_rootfs "$out" "$r" "$ref" "ENV PATH=$IMAGE_PATH"
  smoke "$ref" kube-proxy --version
  smoke "$ref" iptables-nft --version
  smoke "$ref" iptables-legacy --version
  smoke "$ref" conntrack --version
  # Read-only rule listing through the wrapper needs CAP_NET_ADMIN on the host network.
  docker run --rm --network host --cap-add NET_ADMIN --cap-add NET_RAW "$ref" \
    sh -c 'iptables --version && iptables -S | head -3 && ls -l /usr/sbin/iptables'
}

# registry.k8s.io/coredns/coredns: /coredns as entrypoint, user nonroot, and (as upstream)
# cap_net_bind_service on the file so it can bind :53 as nonroot. Without setcap on the build
# host it still works in a pod network namespace: Docker sets ip_unprivileged_port_start=0 there.
image_coredns() {
  local out=$1 r="$STEP_WORK/rootfs-coredns" ref="registry.k8s.io/coredns/coredns:${COREDNS_VERSION}"
  base_rootfs "$r"
  install -m 0755 "${STEP_DIR[coredns]}/bin/coredns" "$r/coredns"
  if command -v setcap >/dev/null; then
    setcap cap_net_bind_service=+ep "$r/coredns"
  else
    echo "warning: setcap not found (apt-get install libcap2-bin); /coredns gets no file capability"
  fi
  image_from_rootfs "$out" "$r" "$ref" 'ENTRYPOINT ["/coredns"]' 'USER 65532:65532' 'EXPOSE 53 53/udp'
  smoke "$ref" -version
}

# kinit-examples/web: busybox httpd from Debian's busybox-static; start-web writes an
# index.html naming the pod (its hostname) and serves it on port 80.
image_web() {
  local out=$1 r="$STEP_WORK/rootfs-web" a
  debs_rootfs "$r" busybox-static
  for a in $("$r/bin/busybox" --list); do
    [[ -e $r/bin/$a ]] || ln -s busybox "$r/bin/$a"
  done
  base_rootfs "$r"
  install -m 0755 "$BUNDLE_DIR/start-web" "$r/usr/local/bin/start-web"
  image_from_rootfs "$out" "$r" "$WEB_IMAGE" "ENV PATH=$IMAGE_PATH" 'EXPOSE 80' \
    'CMD ["/usr/local/bin/start-web"]'
  local id
  id=$(smoke -d "$WEB_IMAGE")
  sleep 1
  docker exec "$id" wget -qO- http://127.0.0.1/ | tee "$STEP_WORK/web.html"
  docker rm -f "$id" >/dev/null
  grep -q "${id:0:12}" "$STEP_WORK/web.html"
}

# kinit-examples/db: Debian's redis-server, listening on 6379 on all addresses, no persistence
# (scripts/bundle/redis.conf); redis-cli is included for readiness probes.
image_db() {
  local out=$1 r="$STEP_WORK/rootfs-db"
  debs_rootfs "$r" redis-server redis-tools
  base_rootfs "$r"
  mkdir -p "$r/etc/redis" "$r/data"
  install -m 0644 "$BUNDLE_DIR/redis.conf" "$r/etc/redis/redis.conf"
  image_from_rootfs "$out" "$r" "$DB_IMAGE" "ENV PATH=$IMAGE_PATH" 'EXPOSE 6379' 'WORKDIR /data' \
    'CMD ["redis-server", "/etc/redis/redis.conf"]'
  local id
  id=$(smoke -d "$DB_IMAGE")
  sleep 1
  docker exec "$id" redis-cli set kinit ok
  docker exec "$id" redis-cli get kinit
  docker rm -f "$id" >/dev/null
}

# tools/registry and tools/crane from github.com/google/go-containerregistry: not kinit
# artifacts but the test bed's stand-in for a registry on the internet (an in-memory
# registry, and crane to push the bundle's image archives into it). Stamped like its
# .goreleaser.yaml. Smoke test: serve on a free loopback port, push the pause image archive,
# list its tags.
build_registry() {
  local out=$1 v=$GO_CONTAINERREGISTRY_VERSION m="github.com/google/go-containerregistry"
  go_wrapper registry
  go_copy_replaces "$m@$v"
  local pkgs=("$m/cmd/registry" "$m/cmd/crane")
  go get "${pkgs[@]/%/@$v}"
  go_build "$out/bin" "-X $m/cmd/crane/cmd.Version=${v#v} -X $m/pkg/v1/remote/transport.Version=${v#v}" "${pkgs[@]}"
  "$out/bin/crane" version | grep -qx "${v#v}"
  local log="$STEP_WORK/registry.log" pid port="" tag="smoke-$PAUSE_VERSION"
  "$out/bin/registry" -port 0 2>"$log" &
  pid=$!
  # shellcheck disable=SC2064 # the pid is known now
  trap "kill $pid 2>/dev/null || true" EXIT
  for _ in $(seq 100); do
    port=$(sed -n 's/.* serving on port \([0-9][0-9]*\)$/\1/p' "$log")
    [[ -z $port ]] || break
    kill -0 "$pid" || { cat "$log"; die "registry exited"; }
    sleep 0.1
  done
  [[ -n $port ]] || { cat "$log"; die "registry did not report its port"; }
  echo "registry (pid $pid) serving on 127.0.0.1:$port"
  "$out/bin/crane" push "${STEP_DIR[image-pause]}/image.tar" "127.0.0.1:$port/pause:$tag"
  "$out/bin/crane" ls "127.0.0.1:$port/pause" | tee "$STEP_WORK/tags"
  grep -qx "$tag" "$STEP_WORK/tags"
  "$out/bin/crane" digest "127.0.0.1:$port/pause:$tag"
  kill "$pid"; wait "$pid" || true
  trap - EXIT
  cat "$log"
}

# ---------------------------------------------------------------------------------------
# Addon images (kinit addons): built like the components, under their upstream names
# ---------------------------------------------------------------------------------------

# local-path-provisioner (the storage addon's dynamic provisioner), stamped like its
# scripts/build (-X main.VERSION).
build_local_path_provisioner() {
  local out=$1 mod="github.com/rancher/local-path-provisioner@${LOCAL_PATH_PROVISIONER_VERSION}"
  go_wrapper local-path-provisioner
  go_copy_replaces "$mod"
  go get "$mod"
  go_build "$out/bin" "-X main.VERSION=${LOCAL_PATH_PROVISIONER_VERSION}" github.com/rancher/local-path-provisioner
  "$out/bin/local-path-provisioner" --version
}

# docker.io/rancher/local-path-provisioner: upstream is alpine with the binary in /usr/bin
# and CMD local-path-provisioner; here Debian's busybox-static gives the shell, mkdir, chmod
# and rm that its helper pods run (the storage addon uses this image as the helper image).
image_local_path_provisioner() {
  local out=$1 r="$STEP_WORK/rootfs-local-path-provisioner" a
  local ref="docker.io/rancher/local-path-provisioner:${LOCAL_PATH_PROVISIONER_VERSION}"
  debs_rootfs "$r" busybox-static
  for a in $("$r/bin/busybox" --list); do
    [[ -e $r/bin/$a ]] || ln -s busybox "$r/bin/$a"
  done
  base_rootfs "$r"
  install -D -m 0755 "${STEP_DIR[local-path-provisioner]}/bin/local-path-provisioner" \
    "$r/usr/bin/local-path-provisioner"
  image_from_rootfs "$out" "$r" "$ref" "ENV PATH=$IMAGE_PATH" 'CMD ["local-path-provisioner"]'
  smoke "$ref" local-path-provisioner --version
  smoke "$ref" sh -c 'mkdir -m 0777 -p /tmp/v/a && rm -rf /tmp/v && echo helper ok'
}

# metrics-server, stamped like its Makefile (client-go's version variables).
build_metrics_server() {
  local out=$1 mod="sigs.k8s.io/metrics-server@${METRICS_SERVER_VERSION}" commit date ldflags kv
  go_wrapper metrics-server
  go_copy_replaces "$mod"
  go get "sigs.k8s.io/metrics-server/cmd/metrics-server@${METRICS_SERVER_VERSION}"
  commit=$(go_origin "$mod" Hash)
  date=$(go_origin "$mod" Time)
  ldflags=""
  for kv in "gitVersion=$METRICS_SERVER_VERSION" ${commit:+"gitCommit=$commit"} ${date:+"buildDate=$date"}; do
    ldflags+=" -X k8s.io/client-go/pkg/version.$kv"
  done
  go_build "$out/bin" "$ldflags" sigs.k8s.io/metrics-server/cmd/metrics-server
  "$out/bin/metrics-server" --version
}

# registry.k8s.io/metrics-server/metrics-server: distroless-like, /metrics-server as
# entrypoint, user 65534, as upstream.
image_metrics_server() {
  local out=$1 r="$STEP_WORK/rootfs-metrics-server"
  local ref="registry.k8s.io/metrics-server/metrics-server:${METRICS_SERVER_VERSION}"
  base_rootfs "$r"
  install -m 0755 "${STEP_DIR[metrics-server]}/bin/metrics-server" "$r/metrics-server"
  image_from_rootfs "$out" "$r" "$ref" 'ENTRYPOINT ["/metrics-server"]' 'USER 65534:65534'
  smoke "$ref" --version
}

# Traefik (the ingress addon's controller), stamped like its Makefile. Its web dashboard
# (webui/, built with npm upstream) is not built: kinit does not enable the dashboard.
build_traefik() {
  local out=$1 mod="github.com/traefik/traefik/v3@${TRAEFIK_VERSION}" date
  go_wrapper traefik
  go_copy_replaces "$mod"
  go get "github.com/traefik/traefik/v3/cmd/traefik@${TRAEFIK_VERSION}"
  date=$(go_origin "$mod" Time)
  go_build "$out/bin" "-X github.com/traefik/traefik/v3/pkg/version.Version=${TRAEFIK_VERSION} \
    -X github.com/traefik/traefik/v3/pkg/version.Codename=kinit-bundle \
    ${date:+-X github.com/traefik/traefik/v3/pkg/version.BuildDate=$date}" \
    github.com/traefik/traefik/v3/cmd/traefik
  "$out/bin/traefik" version
}

# docker.io/library/traefik: upstream is alpine with /usr/local/bin/traefik and an
# entrypoint script that prepends `traefik` to flags; kinit's manifest names the binary as
# its command, which either image runs.
image_traefik() {
  local out=$1 r="$STEP_WORK/rootfs-traefik"
  local ref="docker.io/library/traefik:${TRAEFIK_VERSION}"
  base_rootfs "$r"
  install -m 0755 "${STEP_DIR[traefik]}/bin/traefik" "$r/usr/local/bin/traefik"
  image_from_rootfs "$out" "$r" "$ref" 'ENTRYPOINT ["/usr/local/bin/traefik"]' 'EXPOSE 80'
  smoke "$ref" version
}

# kube-router (the pod network between nodes and NetworkPolicy), stamped like its Makefile
# (the version variables; upstream puts the commit where the tag is). Upstream's image also
# carries a gobgp client; this one does not.
build_kube_router() {
  local out=$1 m=github.com/cloudnativelabs/kube-router/v2 date
  go_wrapper kube-router
  go_copy_replaces "$m@${KUBE_ROUTER_VERSION}"
  go get "$m/cmd/kube-router@${KUBE_ROUTER_VERSION}"
  date=$(go_origin "$m@${KUBE_ROUTER_VERSION}" Time)
  go_build "$out/bin" "-X $m/pkg/version.Version=${KUBE_ROUTER_VERSION} \
    ${date:+-X $m/pkg/version.BuildDate=$date}" "$m/cmd/kube-router"
  "$out/bin/kube-router" --version
}

# docker.io/cloudnativelabs/kube-router: upstream is alpine with kube-router as entrypoint
# and iptables (through iptables-wrapper), ipset, iproute2, conntrack and ipvsadm beside it;
# here Debian's, with the same wrapper as kube-proxy's. kube-router runs `ipset` and
# `iptables-save`/`-restore` from PATH and loads kernel modules with modprobe.
image_kube_router() {
  local out=$1 r="$STEP_WORK/rootfs-kube-router"
  local ref="docker.io/cloudnativelabs/kube-router:${KUBE_ROUTER_VERSION}"
  debs_rootfs "$r" iptables ipset iproute2 conntrack kmod dash grep coreutils
  ln -sf dash "$r/bin/sh"
  base_rootfs "$r"
  install_iptables_wrapper "$r"
  install -m 0755 "${STEP_DIR[kube-router]}/bin/kube-router" "$r/usr/local/bin/"
  image_from_rootfs "$out" "$r" "$ref" "ENV PATH=$IMAGE_PATH" 'ENTRYPOINT ["/usr/local/bin/kube-router"]'
  smoke "$ref" --version
  smoke --cap-add NET_ADMIN --entrypoint ipset "$ref" --version
  smoke --entrypoint ip "$ref" -V
  smoke --entrypoint iptables-legacy "$ref" --version
}

# ---------------------------------------------------------------------------------------
# Components
# ---------------------------------------------------------------------------------------
comp_etcd() {
  run_step etcd "$ETCD_VERSION" build_etcd
  run_step image-etcd "$ETCD_IMAGE_TAG" image_etcd "$(stamp_of etcd)"
  export_image image-etcd
}

comp_kubernetes() {
  run_step kubernetes "$KUBERNETES_VERSION" build_kubernetes
  export_bins "${STEP_DIR[kubernetes]}/bin" "$OUT_DIR/release/$KUBERNETES_VERSION/bin/linux/$GOARCH" \
    kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubectl
  local n f
  for n in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
    f=image_${n//-/_}
    run_step "image-$n" "$KUBERNETES_VERSION" "$f" "$(stamp_of kubernetes)" "$BUNDLE_DIR/iptables-wrapper"
    export_image "image-$n"
  done
}

comp_cri_dockerd() {
  run_step cri-dockerd "$CRI_DOCKERD_VERSION" build_cri_dockerd
  export_archive "${STEP_DIR[cri-dockerd]}/cri-dockerd-${CRI_DOCKERD_VERSION#v}.$GOARCH.tgz" \
    "$OUT_DIR/Mirantis/cri-dockerd/releases/download/$CRI_DOCKERD_VERSION"
}

comp_coredns() {
  run_step coredns "$COREDNS_VERSION" build_coredns
  run_step image-coredns "$COREDNS_VERSION" image_coredns "$(stamp_of coredns)"
  export_image image-coredns
}

comp_cni() {
  run_step cni "$CNI_PLUGINS_VERSION" build_cni
  export_archive "${STEP_DIR[cni]}/cni-plugins-linux-$GOARCH-$CNI_PLUGINS_VERSION.tgz" \
    "$OUT_DIR/containernetworking/plugins/releases/download/$CNI_PLUGINS_VERSION"
}

comp_pause() {
  run_step pause "$PAUSE_VERSION" build_pause
  run_step image-pause "$PAUSE_VERSION" image_pause "$(stamp_of pause)"
  export_image image-pause
}

comp_workloads() {
  run_step image-web "$EXAMPLE_IMAGE_TAG" image_web "$BUNDLE_DIR/start-web"
  export_image image-web
  run_step image-db "$EXAMPLE_IMAGE_TAG" image_db "$BUNDLE_DIR/redis.conf"
  export_image image-db
}

# The registry's smoke test pushes the pause image archive: build (or reuse) it first
# (exported only when the pause component is wanted too).
comp_registry() {
  run_step pause "$PAUSE_VERSION" build_pause
  run_step image-pause "$PAUSE_VERSION" image_pause "$(stamp_of pause)"
  run_step registry "$GO_CONTAINERREGISTRY_VERSION" build_registry "$(stamp_of image-pause)"
  mkdir -p "$OUT_DIR/tools"
  place "${STEP_DIR[registry]}/bin/registry" "$OUT_DIR/tools/registry"
  place "${STEP_DIR[registry]}/bin/crane" "$OUT_DIR/tools/crane"
}

comp_local_path_provisioner() {
  run_step local-path-provisioner "$LOCAL_PATH_PROVISIONER_VERSION" build_local_path_provisioner
  run_step image-local-path-provisioner "$LOCAL_PATH_PROVISIONER_VERSION" image_local_path_provisioner \
    "$(stamp_of local-path-provisioner)"
  export_image image-local-path-provisioner
}

comp_metrics_server() {
  run_step metrics-server "$METRICS_SERVER_VERSION" build_metrics_server
  run_step image-metrics-server "$METRICS_SERVER_VERSION" image_metrics_server "$(stamp_of metrics-server)"
  export_image image-metrics-server
}

comp_traefik() {
  run_step traefik "$TRAEFIK_VERSION" build_traefik
  run_step image-traefik "$TRAEFIK_VERSION" image_traefik "$(stamp_of traefik)"
  export_image image-traefik
}

comp_kube_router() {
  run_step kube-router "$KUBE_ROUTER_VERSION" build_kube_router
  run_step image-kube-router "$KUBE_ROUTER_VERSION" image_kube_router "$(stamp_of kube-router)"
  export_image image-kube-router
}

# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------
main() {
  # Arguments
  ONLY=""
  OUT_DIR=""
  RELEASES=(PINNED_ PREVIOUS_)
  POSITIONAL=()
  while [[ $# -gt 0 ]]; do
    case $1 in
      --only) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; ONLY=$2; shift 2 ;;
      --only=*) ONLY=${1#--only=}; shift ;;
      --pinned-only) RELEASES=(PINNED_); shift ;;
      -h|--help) usage; exit 0 ;;
      -*) echo "error: unknown option $1" >&2; usage >&2; exit 2 ;;
      *) POSITIONAL+=("$1"); shift ;;
    esac
  done
  # `build-bundle.sh KUBE_VERSION OUT_DIR` is accepted too, as long as the version is the
  # pinned one: the pin lives in versions.env so kinit and the bundle cannot disagree.
  case ${#POSITIONAL[@]} in
    1) OUT_DIR=${POSITIONAL[0]} ;;
    2) [[ ${POSITIONAL[0]} == "$KUBERNETES_VERSION" ]] || {
         echo "error: this checkout pins Kubernetes $KUBERNETES_VERSION (scripts/versions.env), not ${POSITIONAL[0]}" >&2
         exit 2
       }
       OUT_DIR=${POSITIONAL[1]} ;;
    *) usage >&2; exit 2 ;;
  esac

  COMPONENTS=("${ALL_COMPONENTS[@]}")
  if [[ -n $ONLY ]]; then
    IFS=, read -r -a COMPONENTS <<<"$ONLY"
    for c in "${COMPONENTS[@]}"; do
      [[ " ${ALL_COMPONENTS[*]} ${OPTIONAL_COMPONENTS[*]} " == *" $c "* ]] ||
        { echo "error: unknown component '$c' (known: ${ALL_COMPONENTS[*]} ${OPTIONAL_COMPONENTS[*]})" >&2; exit 2; }
    done
  fi

  # Environment
  [[ $(id -u) -eq 0 ]] || { echo "error: run as root (docker import, apt-get download, cache in /var/cache)" >&2; exit 1; }
  command -v go >/dev/null || { echo "error: go is not installed" >&2; exit 1; }
  docker info >/dev/null 2>&1 || { echo "error: the Docker engine is not reachable (start dockerd)" >&2; exit 1; }

  # Build with the installed Go only, fully static, without VCS stamping (no git checkout),
  # and never through a go.work that happens to sit above the working directory.
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOWORK=off
  GOARCH=$(go env GOARCH)
  export GOOS=linux GOARCH

  CACHE=${KINIT_BUILD_CACHE:-/var/cache/kinit-build}
  LOG_DIR=${KINIT_BUILD_LOG_DIR:-$CACHE/logs}
  mkdir -p "$CACHE" "$LOG_DIR" "$OUT_DIR"
  OUT_DIR=$(cd "$OUT_DIR" && pwd)
  # One run at a time per cache: a second run waits, then finds the first one's results.
  exec 9>"$CACHE/.lock"
  if ! flock -n 9; then
    log "waiting for another build-bundle.sh using $CACHE ..."
    flock 9
  fi
  WORK=$(mktemp -d "$CACHE/work.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT

  # What earlier versions of this script wrote and this one no longer does (kinit/node is
  # assembled by kinit now; binaries are laid out as the upstream release servers do).
  rm -rf "$OUT_DIR"/{cri-dockerd,cni-plugins,etcd} "$OUT_DIR"/images/kinit_node_*.tar

  T_START=$SECONDS
  SUMMARY=()                 # "step|version|built/cached|seconds"
  declare -gA STEP_DIR=()    # step -> cache dir, so a step runs once per invocation

  local prefix
  for prefix in "${RELEASES[@]}"; do
    use_release "$prefix"
    for c in "${PER_RELEASE[@]}"; do
      if wants "$c"; then "comp_${c//-/_}"; fi
    done
  done
  use_release PINNED_
  for c in "${ALL_COMPONENTS[@]}" "${OPTIONAL_COMPONENTS[@]}"; do
    if wants "$c" && [[ " ${PER_RELEASE[*]} " != *" $c "* ]]; then "comp_${c//-/_}"; fi
  done

  # A machine-readable index of what this bundle holds, for kinit and the tests (left as it
  # is by a run that built only optional components, which kinit never reads).
  local only_optional=1
  for c in "${COMPONENTS[@]}"; do
    [[ " ${OPTIONAL_COMPONENTS[*]} " == *" $c "* ]] || only_optional=0
  done
  [[ $only_optional -eq 1 && -f $OUT_DIR/bundle.env ]] || {
    echo "# Written by scripts/build-bundle.sh; paths are relative to this file."
    grep -E '^[A-Z_]+=' "$SCRIPT_DIR/versions.env"
    echo "BUNDLE_COMPONENTS=\"${COMPONENTS[*]}\""
    echo "BUNDLE_IMAGES=\"${BUNDLE_IMAGES[*]}\""
  } >"$OUT_DIR/bundle.env"

  log ""
  printf '%-30s %-10s %-7s %7s\n' STEP VERSION RESULT SECONDS
  for row in "${SUMMARY[@]}"; do
    IFS='|' read -r s v r t <<<"$row"
    printf '%-30s %-10s %-7s %7s\n' "$s" "$v" "$r" "$t"
  done
  printf '%-30s %-10s %-7s %7s\n' total "" "" "$((SECONDS - T_START))"
  log "bundle: $(du -sh "$OUT_DIR" | cut -f1) in $OUT_DIR"
}

# One line, read whole before it runs: editing this file during a long build is harmless.
main "$@"; exit $?
