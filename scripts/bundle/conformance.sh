# Sourced by scripts/build-bundle.sh: the `conformance` component. Builds the upstream
# conformance suite (e2e.test and the ginkgo runner) at the pinned Kubernetes release, and
# every Linux test image its tests run, under the exact names `e2e.test --list-images`
# prints, from upstream sources (agnhost and the other Go programs of
# k8s.io/kubernetes/test/images, k8s.io/sample-apiserver) and Debian's packages of the same
# programs (busybox, nginx, dig, curl, iperf, util-linux, stress). Output:
#
#   OUT_DIR/conformance/bin/{e2e.test,ginkgo}   the suite, for scripts/conformance.sh
#   OUT_DIR/conformance/images.txt              e2e.test --list-images
#   OUT_DIR/conformance/images/<ref>.tar        docker save archives (not under OUT_DIR/images:
#                                               `kinit up --bundle` does not load test images)
#
# Functions are called by name (run_step's FUNC), which shellcheck cannot follow.
# shellcheck shell=bash disable=SC2317

# k8s.io/sample-apiserver for registry.k8s.io/e2e-test-images/sample-apiserver:1.X.Y: upstream
# builds that image from the sample-apiserver module of the same Kubernetes release
# (test/images/sample-apiserver/Makefile), i.e. v0.X.Y.
sample_apiserver_module_version() { echo "v0.${1#1.}"; }

# The Linux images the suite lists and this component builds: repository (below
# registry.k8s.io) -> the step function making it. What it lists and is not here is either
# made by another component (etcd, pause), deliberately absent (the private and the invalid
# registry's images: tests check that they cannot be pulled), or used by no conformance
# test and not buildable from what this host reaches (CSI sidecars, NFS/iSCSI servers,
# node-perf workloads, apparmor-loader, perl); `conformance_images` prints the list.
declare -A E2E_IMAGE_BUILDERS=(
  [e2e-test-images/agnhost]=image_e2e_agnhost
  [e2e-test-images/busybox]=image_e2e_busybox
  [e2e-test-images/nginx]=image_e2e_nginx
  [e2e-test-images/sample-apiserver]=image_e2e_sample_apiserver
  [e2e-test-images/nonroot]=image_e2e_nonroot
  [e2e-test-images/nonewprivs]=image_e2e_nonewprivs
  [e2e-test-images/ipc-utils]=image_e2e_ipc_utils
  [e2e-test-images/glibc-dns-testing]=image_e2e_glibc_dns_testing
  [e2e-test-images/regression-issue-74839]=image_e2e_regression_issue_74839
  [e2e-test-images/resource-consumer]=image_e2e_resource_consumer
  [e2e-test-images/kitten]=image_e2e_kitten
  [e2e-test-images/nautilus]=image_e2e_nautilus
  [build-image/distroless-iptables]=image_e2e_distroless_iptables
)
# Listed images that other bundle components make (and `kinit up --bundle` loads).
E2E_IMAGES_ELSEWHERE='^registry\.k8s\.io/(etcd|pause):'

# e2e.test as upstream's `make WHAT=test/e2e/e2e.test` builds it (`go test -c` of
# k8s.io/kubernetes/test/e2e, static, version stamped like the servers), ginkgo at the
# version k8s.io/kubernetes' go.mod requires, and the Go programs of the test images
# (test/images: agnhost, nonewprivs' nnp, regression-issue-74839, resource-consumer's
# consumer and consume-cpu), all in one wrapper module pinned like build_kubernetes.
build_e2e() {
  local out=$1 mod="k8s.io/kubernetes@${KUBERNETES_VERSION}" gomod m ginkgo_version
  go_wrapper e2e
  gomod=$(go mod download -json "$mod" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" { print $1 }' "$gomod" | while read -r m; do
    go mod edit -replace "$m=$m@$K8S_STAGING_VERSION"
  done
  go_copy_replaces "$mod"
  ginkgo_version=$(awk '$1 == "github.com/onsi/ginkgo/v2" { print $2; exit }' "$gomod")
  [[ -n $ginkgo_version ]] || die "no github.com/onsi/ginkgo/v2 in $gomod"
  local img=k8s.io/kubernetes/test/images
  local pkgs=("$img/agnhost" "$img/nonewprivs" "$img/regression-issue-74839"
    "$img/resource-consumer" "$img/resource-consumer/consume-cpu")
  # -t: the test package's own imports too.
  go get -t "k8s.io/kubernetes/test/e2e@$KUBERNETES_VERSION" "${pkgs[@]/%/@$KUBERNETES_VERSION}" \
    "github.com/onsi/ginkgo/v2/ginkgo@$ginkgo_version"
  local commit date ldflags="" kv
  commit=$(go_origin "$mod" Hash)
  date=$(go_origin "$mod" Time)
  for kv in "gitVersion=$KUBERNETES_VERSION" "gitMajor=$K8S_MAJOR" "gitMinor=$K8S_MINOR" \
      gitTreeState=archive ${commit:+"gitCommit=$commit"} ${date:+"buildDate=$date"}; do
    ldflags+=" -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
  done
  mkdir -p "$out/bin"
  local t0=$SECONDS
  go test -c -trimpath -ldflags "-s -w $ldflags" -o "$out/bin/e2e.test" k8s.io/kubernetes/test/e2e
  echo "e2e.test built in $((SECONDS - t0))s"
  t0=$SECONDS
  go_build "$out/bin" "" "github.com/onsi/ginkgo/v2/ginkgo"
  echo "ginkgo built in $((SECONDS - t0))s"
  t0=$SECONDS
  go_build "$out/bin" "$ldflags" "${pkgs[@]}"
  mv "$out/bin/resource-consumer" "$out/bin/consumer"
  echo "test image programs built in $((SECONDS - t0))s"
  ls -l "$out/bin"
  "$out/bin/e2e.test" --version | tee "$STEP_WORK/version"
  grep -q "$KUBERNETES_VERSION" "$STEP_WORK/version"
  "$out/bin/ginkgo" version | tee "$STEP_WORK/ginkgo-version"
  grep -q "${ginkgo_version#v}" "$STEP_WORK/ginkgo-version"
  "$out/bin/e2e.test" --list-images | sort -u >"$out/images.txt"
  cat "$out/images.txt"
  "$out/bin/agnhost" --help | sed -n 1,3p
}

# k8s.io/sample-apiserver at the module version the image tag names (its own go.mod and
# replace lines), built as test/images/sample-apiserver/Makefile does.
build_sample_apiserver() {
  local out=$1 ref v mod
  ref=$(e2e_refs e2e-test-images/sample-apiserver)
  v=$(sample_apiserver_module_version "${ref##*:}")
  mod="k8s.io/sample-apiserver@$v"
  go_wrapper sample-apiserver
  go_copy_replaces "$mod"
  go get "$mod"
  go_build "$out/bin" "" k8s.io/sample-apiserver
  "$out/bin/sample-apiserver" --help 2>&1 | sed -n 1,3p
}

# deb_source PKG UPSTREAM_VERSION DIR: the Debian source package of PKG whose upstream
# version is UPSTREAM_VERSION, from the first Debian release in DEBIAN_SOURCE_SUITES that
# carries it, downloaded into DIR by apt (which checks it against Debian's keyring) with a
# private state directory: the host's apt sources are neither read nor changed.
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SOURCE_SUITES=(bookworm trixie forky)
deb_source() {
  local pkg=$1 version=$2 dir=$3 apt="$STEP_WORK/apt" keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [[ -f $keyring ]] || die "$keyring is missing (apt-get install debian-archive-keyring)"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$dir"
  local suite
  for suite in "${DEBIAN_SOURCE_SUITES[@]}"; do
    echo "deb-src [signed-by=$keyring] $DEBIAN_MIRROR $suite main"
  done >"$apt/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o APT::Sandbox::User=root)
  apt-get "${opts[@]}" update
  # Versions look like [EPOCH:]UPSTREAM-REVISION.
  local full
  full=$(apt-cache "${opts[@]}" showsrc "$pkg" | sed -n 's/^Version: //p' |
    awk -v v="$version" '{ u = $0; sub(/^[0-9]+:/, "", u); sub(/-[^-]*$/, "", u); if (u == v) { print; exit } }')
  [[ -n $full ]] || die "no Debian source package of $pkg $version in ${DEBIAN_SOURCE_SUITES[*]}"
  (cd "$dir" && apt-get "${opts[@]}" source --download-only "$pkg=$full")
  ls -l "$dir"
}

# busybox: upstream's release at the version the e2e busybox tag names, built static with
# its defconfig, as the busybox image upstream's is made from. Not Debian's binary package:
# Debian reverts (debian/patches/revert-9c143ce5...) upstream's passing on of environment
# variables whose names are no shell names, so its `sh -c env` drops `1-data-1=...`, which
# the relaxed environment-variable-name tests print. The source is Debian's source package
# (its orig tarball is upstream's release tarball); Debian's patches are not applied. Also
# the small commands of the images upstream builds on Alpine, whose are busybox's too.
build_busybox() {
  local out=$1 ref version
  ref=$(e2e_refs e2e-test-images/busybox | sort -V | tail -n 1)
  version=${ref##*:}; version=${version%-*}
  deb_source busybox "$version" "$STEP_WORK/src"
  tar -xjf "$STEP_WORK/src/busybox_$version.orig.tar.bz2" -C "$STEP_WORK"
  cd "$STEP_WORK/busybox-$version" || return
  make defconfig >/dev/null
  # Static; tc left out (it does not build against the kernel headers of Linux 6.8+, which
  # dropped CBQ, and no test runs it).
  sed -i -e 's/^# CONFIG_STATIC is not set$/CONFIG_STATIC=y/' -e 's/^CONFIG_TC=y$/# CONFIG_TC is not set/' .config
  make oldconfig </dev/null >/dev/null
  make -j"$(nproc)" busybox
  mkdir -p "$out/bin"
  install -m 0755 busybox "$out/bin/busybox"
  file "$out/bin/busybox"
  "$out/bin/busybox" | sed -n 1p | tee "$STEP_WORK/banner"
  grep -q "BusyBox v$version " "$STEP_WORK/banner"
  env '1-data-1=value-1' "$out/bin/busybox" sh -c env | grep -x '1-data-1=value-1'
}

# The source directory of test/images/NAME in the kubernetes module (data files the images
# carry: porter's certificate, the kitten and nautilus pages).
test_images_src() {
  local dir
  dir=$(go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  echo "$dir/test/images/$1"
}

# busybox_rootfs ROOTFS: the built busybox in /bin with a link for every applet that has no
# program of its own in the root filesystem (as busybox's image; Alpine's base has them too).
busybox_rootfs() {
  local r=$1 a
  mkdir -p "$r/bin"
  install -m 0755 "${STEP_DIR[busybox]}/bin/busybox" "$r/bin/busybox"
  for a in $("$r/bin/busybox" --list); do
    [[ -e $r/bin/$a || -e $r/usr/bin/$a || -e $r/sbin/$a || -e $r/usr/sbin/$a ]] ||
      ln -s busybox "$r/bin/$a"
  done
}

# e2e_image OUT ROOTFS REF... [-- DOCKERFILE-CHANGE...]: image_from_rootfs under the first
# REF; every other REF an image of its own from it (the same layer, a label naming the tag),
# all saved in the same archive. Not one image with several tags: the kubelet's image GC
# untags an image with several tags even while a container uses it, and scripts/conformance.sh
# protects the test images from it with a container on each.
e2e_image() {
  local out=$1 r=$2; shift 2
  local refs=() changes=()
  while [[ $# -gt 0 && $1 != -- ]]; do refs+=("$1"); shift; done
  [[ $# -eq 0 ]] || shift
  changes=("$@")
  image_from_rootfs "$out" "$r" "${refs[0]}" "${changes[@]}"
  [[ ${#refs[@]} -gt 1 ]] || return 0
  local ref
  for ref in "${refs[@]:1}"; do
    printf 'FROM %s\nLABEL kinit-conformance.tag=%s\n' "${refs[0]}" "$ref" |
      DOCKER_BUILDKIT=0 docker build -q -t "$ref" - >/dev/null
  done
  printf '%s\n' "${refs[@]}" >"$out/image.ref"
  docker save -o "$out/image.tar" "${refs[@]}"
}

# The refs `e2e.test --list-images` prints for a repository (several tags: agnhost, nginx).
e2e_refs() { grep -E "^registry\.k8s\.io/$1:" "${STEP_DIR[e2e]}/images.txt"; }

# agnhost, as test/images/agnhost/Dockerfile on alpine: /agnhost (also as /agnhost-2, the
# entrypoint-tester's second name), porter's localhost.crt/key in /, /uploads for netexec,
# user 1000 in group 50000, and the tools its tests run inside it: dig and nslookup, getent, curl,
# nc (OpenBSD's), ss and ip, iperf, bash, ipcs, and a CoreDNS (the bundle's). Busybox
# supplies the small commands alpine's base has. The fake registry server's
# /var/registry (a copy of registry.k8s.io's pause, fetched by upstream's build) is left
# out: no conformance test serves it. Every agnhost tag the suite lists (the current
# one and the previous, AgnhostPrev) is this build of the pinned release.
agnhost_rootfs() {
  local r=$1 src
  src=$(test_images_src agnhost)
  debs_rootfs "$r" bash coreutils grep sed findutils procps libc-bin bind9-dnsutils curl \
    netcat-openbsd iproute2 iperf util-linux
  # /bin/sh is busybox's ash, as on Alpine; nc is OpenBSD's (Debian names it through
  # update-alternatives, a maintainer script that is not run).
  rm -f "$r/bin/sh"
  ln -s nc.openbsd "$r/bin/nc"
  busybox_rootfs "$r"
  base_rootfs "$r"
  cat >>"$r/etc/passwd" <<'EOF'
user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh
EOF
  cat >>"$r/etc/group" <<'EOF'
user-defined-in-image:x:1000:
group-defined-in-image:x:50000:user-defined-in-image
EOF
  # (image_from_rootfs makes every file root's, as upstream's image has all but this home.)
  mkdir -p "$r/home/user-defined-in-image" "$r/uploads"
  ln -sf /usr/bin/iperf "$r/usr/local/bin/iperf"
  install -m 0755 "${STEP_DIR[coredns]}/bin/coredns" "$r/coredns"
  install -m 0644 "$src/porter/localhost.crt" "$src/porter/localhost.key" "$r/"
  install -m 0755 "${STEP_DIR[e2e]}/bin/agnhost" "$r/agnhost"
  ln -s agnhost "$r/agnhost-2"
}
AGNHOST_CHANGES=("ENV PATH=$IMAGE_PATH" 'ENTRYPOINT ["/agnhost"]' 'CMD ["pause"]'
  'EXPOSE 80 8080 8081 9376 5000')

image_e2e_agnhost() {
  local out=$1 r="$STEP_WORK/rootfs" refs
  mapfile -t refs < <(e2e_refs e2e-test-images/agnhost)
  agnhost_rootfs "$r"
  e2e_image "$out" "$r" "${refs[@]}" -- "${AGNHOST_CHANGES[@]}"
  smoke "${refs[0]}" --help | sed -n 1,3p
  smoke --entrypoint /agnhost-2 "${refs[0]}" entrypoint-tester a b
  smoke --entrypoint sh "${refs[0]}" -c 'dig -v; getent hosts localhost; curl --version | head -n 1; ss -V; iperf -v; ipcs -V; /coredns -version; id user-defined-in-image; wget --help 2>&1 | head -n 1'
  # The tests' nc options (-t, -u, -v, -w) are OpenBSD netcat's.
  smoke --entrypoint sh "${refs[0]}" -c 'nc -h 2>&1 | head -n 1' | grep OpenBSD
}

# kitten and nautilus: agnhost with a picture and data.json served by test-webserver.
webserver_image() {
  local out=$1 name=$2 r="$STEP_WORK/rootfs" refs src
  mapfile -t refs < <(e2e_refs "e2e-test-images/$name")
  src=$(test_images_src "$name")
  agnhost_rootfs "$r"
  install -m 0644 "$src/html/$name.jpg" "$src/html/data.json" "$r/"
  e2e_image "$out" "$r" "${refs[@]}" -- "${AGNHOST_CHANGES[@]:0:3}" 'CMD ["test-webserver"]' 'EXPOSE 80'
  smoke --entrypoint sh "${refs[0]}" -c "ls -l /$name.jpg /data.json"
}
image_e2e_kitten() { webserver_image "$1" kitten; }
image_e2e_nautilus() { webserver_image "$1" nautilus; }

# busybox (both tags): the built busybox with every applet linked in /bin, as busybox's image.
image_e2e_busybox() {
  local out=$1 r="$STEP_WORK/rootfs" refs
  mapfile -t refs < <(e2e_refs e2e-test-images/busybox)
  busybox_rootfs "$r"
  base_rootfs "$r"
  e2e_image "$out" "$r" "${refs[@]}" -- "ENV PATH=$IMAGE_PATH" 'CMD ["sh"]'
  smoke "${refs[0]}" sh -c 'busybox | head -n 1; ls /bin | wc -l; id'
  # Environment variables whose names are no shell names reach the shell's children.
  smoke -e '1-data-1=value-1' "${refs[0]}" sh -c env | grep -x '1-data-1=value-1'
}

# nginx (both tags): Debian's nginx set up as the official image is (nginx.conf and
# conf.d/default.conf as upstream's): the default server on port 80 serving
# /usr/share/nginx/html, logs to the container's stdout and stderr, `nginx -g 'daemon off;'`
# (stopped with SIGTERM, nginx's fast shutdown: `docker import` cannot set upstream's
# STOPSIGNAL SIGQUIT). Busybox stands in for the alpine base upstream's image is built on.
image_e2e_nginx() {
  local out=$1 r="$STEP_WORK/rootfs" refs
  mapfile -t refs < <(e2e_refs e2e-test-images/nginx)
  debs_rootfs "$r" nginx
  busybox_rootfs "$r"
  base_rootfs "$r"
  echo 'nginx:x:101:101:nginx user:/nonexistent:/bin/false' >>"$r/etc/passwd"
  echo 'nginx:x:101:' >>"$r/etc/group"
  rm -rf "$r/etc/nginx/sites-enabled" "$r/etc/nginx/sites-available" "$r/etc/nginx/modules-enabled"
  mkdir -p "$r/etc/nginx/conf.d" "$r/usr/share/nginx/html" "$r/var/log/nginx" \
    "$r"/var/lib/nginx/{body,proxy,fastcgi,uwsgi,scgi} "$r/run"
  ln -sf /dev/stdout "$r/var/log/nginx/access.log"
  ln -sf /dev/stderr "$r/var/log/nginx/error.log"
  install -m 0644 "$BUNDLE_DIR/nginx.conf" "$r/etc/nginx/nginx.conf"
  install -m 0644 "$BUNDLE_DIR/nginx-default.conf" "$r/etc/nginx/conf.d/default.conf"
  install -m 0644 "$BUNDLE_DIR/nginx-index.html" "$r/usr/share/nginx/html/index.html"
  e2e_image "$out" "$r" "${refs[@]}" -- "ENV PATH=$IMAGE_PATH" 'EXPOSE 80' \
    'CMD ["nginx", "-g", "daemon off;"]'
  local id
  id=$(smoke -d "${refs[0]}")
  sleep 1
  docker exec "$id" wget -qO- http://127.0.0.1/ | tee "$STEP_WORK/index.html"
  docker logs "$id"
  docker rm -f "$id" >/dev/null
  grep -q 'Welcome to nginx' "$STEP_WORK/index.html"
}

# The sample API server the aggregator test registers.
image_e2e_sample_apiserver() {
  local out=$1 r="$STEP_WORK/rootfs" ref
  ref=$(e2e_refs e2e-test-images/sample-apiserver)
  base_rootfs "$r"
  install -m 0755 "${STEP_DIR[sample-apiserver]}/bin/sample-apiserver" "$r/sample-apiserver"
  e2e_image "$out" "$r" "$ref" -- 'ENTRYPOINT ["/sample-apiserver"]'
  smoke "$ref" --help | sed -n 1,3p
}

# A small Debian (as registry.k8s.io/build-image/debian-base): shell, coreutils and friends.
debian_base() {
  debs_rootfs "$1" dash bash coreutils grep sed findutils "${@:2}"
  ln -sf dash "$1/bin/sh"
  base_rootfs "$1"
}

image_e2e_nonroot() {
  local out=$1 r="$STEP_WORK/rootfs" ref
  ref=$(e2e_refs e2e-test-images/nonroot)
  debian_base "$r"
  e2e_image "$out" "$r" "$ref" -- "ENV PATH=$IMAGE_PATH" 'USER 1234'
  smoke "$ref" id
}

# nnp, set-user-ID root, on a busybox base (upstream: alpine).
image_e2e_nonewprivs() {
  local out=$1 r="$STEP_WORK/rootfs" ref
  ref=$(e2e_refs e2e-test-images/nonewprivs)
  busybox_rootfs "$r"
  base_rootfs "$r"
  install -m 4755 "${STEP_DIR[e2e]}/bin/nonewprivs" "$r/usr/local/bin/nnp"
  e2e_image "$out" "$r" "$ref" -- "ENV PATH=$IMAGE_PATH" 'CMD ["nnp"]'
  smoke --user 1000 "$ref"
}

image_e2e_ipc_utils() {
  local out=$1 r="$STEP_WORK/rootfs" ref
  ref=$(e2e_refs e2e-test-images/ipc-utils)
  debs_rootfs "$r" util-linux
  busybox_rootfs "$r"
  base_rootfs "$r"
  e2e_image "$out" "$r" "$ref" -- "ENV PATH=$IMAGE_PATH" 'CMD ["sh"]'
  smoke "$ref" ipcs -V
}

# Debian with dig and a CoreDNS (the bundle's instead of upstream's 1.5.0 release download).
image_e2e_glibc_dns_testing() {
  local out=$1 r="$STEP_WORK/rootfs" ref
  ref=$(e2e_refs e2e-test-images/glibc-dns-testing)
  debian_base "$r" bind9-dnsutils libc-bin
  install -m 0755 "${STEP_DIR[coredns]}/bin/coredns" "$r/coredns"
  e2e_image "$out" "$r" "$ref" -- "ENV PATH=$IMAGE_PATH"
  smoke "$ref" sh -c 'dig -v; getent hosts localhost; /coredns -version'
}

image_e2e_regression_issue_74839() {
  local out=$1 r="$STEP_WORK/rootfs" ref
  ref=$(e2e_refs e2e-test-images/regression-issue-74839)
  debian_base "$r"
  install -m 0755 "${STEP_DIR[e2e]}/bin/regression-issue-74839" "$r/regression-issue-74839"
  e2e_image "$out" "$r" "$ref" -- "ENV PATH=$IMAGE_PATH" 'ENTRYPOINT ["/regression-issue-74839"]'
  smoke --entrypoint sh "$ref" -c 'ls -l /regression-issue-74839'
}

# consumer and consume-cpu (at ./consume-cpu/consume-cpu from /, where the consumer looks),
# Debian's stress for memory.
image_e2e_resource_consumer() {
  local out=$1 r="$STEP_WORK/rootfs" ref
  ref=$(e2e_refs e2e-test-images/resource-consumer)
  debian_base "$r" stress
  install -m 0755 "${STEP_DIR[e2e]}/bin/consumer" "$r/consumer"
  install -D -m 0755 "${STEP_DIR[e2e]}/bin/consume-cpu" "$r/consume-cpu/consume-cpu"
  e2e_image "$out" "$r" "$ref" -- "ENV PATH=$IMAGE_PATH" 'EXPOSE 8080' 'ENTRYPOINT ["/consumer"]'
  smoke --entrypoint sh "$ref" -c 'stress --version; ls -l /consumer /consume-cpu/consume-cpu'
}

# Debian's iptables (both backends, the wrapper picking the host's) and conntrack, as the
# kube-proxy image.
image_e2e_distroless_iptables() {
  local out=$1 r="$STEP_WORK/rootfs" ref
  ref=$(e2e_refs build-image/distroless-iptables)
  debs_rootfs "$r" iptables conntrack dash grep coreutils kmod
  ln -sf dash "$r/bin/sh"
  base_rootfs "$r"
  install_iptables_wrapper "$r"
  e2e_image "$out" "$r" "$ref" -- "ENV PATH=$IMAGE_PATH"
  smoke "$ref" iptables-nft --version
}

E2E_IMAGE_HELPERS=(test_images_src busybox_rootfs e2e_image e2e_refs agnhost_rootfs
  webserver_image debian_base)

# conformance_images: each listed image and what becomes of it here.
conformance_images() {
  local ref repo
  while read -r ref; do
    repo=${ref#registry.k8s.io/}; repo=${repo%:*}
    if [[ -n ${E2E_IMAGE_BUILDERS[$repo]:-} ]]; then echo "built      $ref"
    elif [[ $ref =~ $E2E_IMAGES_ELSEWHERE ]]; then echo "bundle     $ref"
    else echo "not built  $ref"
    fi
  done <"${STEP_DIR[e2e]}/images.txt"
}

comp_conformance() {
  run_step e2e "$KUBERNETES_VERSION" build_e2e
  # CoreDNS goes into agnhost and glibc-dns-testing, as upstream's images carry one.
  run_step coredns "$COREDNS_VERSION" build_coredns
  local ref v
  ref=$(e2e_refs e2e-test-images/sample-apiserver)
  v=$(sample_apiserver_module_version "${ref##*:}")
  run_step sample-apiserver "$v" build_sample_apiserver
  ref=$(e2e_refs e2e-test-images/busybox | sort -V | tail -n 1)
  v=${ref##*:}
  run_step busybox "${v%-*}" build_busybox
  # The helpers the image steps share, as one more input of each image's stamp.
  local helpers="$WORK/conformance-helpers"
  { declare -f "${E2E_IMAGE_HELPERS[@]}"; declare -p AGNHOST_CHANGES; } >"$helpers"
  local dest="$OUT_DIR/conformance" repo f step tag
  rm -rf "$dest/images"
  mkdir -p "$dest/bin" "$dest/images"
  for repo in $(printf '%s\n' "${!E2E_IMAGE_BUILDERS[@]}" | sort); do
    f=${E2E_IMAGE_BUILDERS[$repo]}
    tag=$(e2e_refs "$repo" | sed 's/.*://' | paste -sd+)
    [[ -n $tag ]] || die "e2e.test no longer lists registry.k8s.io/$repo (update scripts/bundle/conformance.sh)"
    step="image-e2e-${repo##*/}"
    run_step "$step" "$tag" "$f" "$helpers" "$(stamp_of e2e)" "$(stamp_of coredns)" \
      "$(stamp_of sample-apiserver)" "$(stamp_of busybox)" "$BUNDLE_DIR/iptables-wrapper" "$BUNDLE_DIR/nginx.conf" \
      "$BUNDLE_DIR/nginx-default.conf" "$BUNDLE_DIR/nginx-index.html"
    export_e2e_image "$step" "$dest/images"
  done
  place "${STEP_DIR[e2e]}/bin/e2e.test" "$dest/bin/e2e.test"
  place "${STEP_DIR[e2e]}/bin/ginkgo" "$dest/bin/ginkgo"
  place "${STEP_DIR[e2e]}/images.txt" "$dest/images.txt"
  conformance_images >"$dest/images-status.txt"
  log "    conformance: of the images e2e.test lists, $(grep -c '^built' "$dest/images-status.txt") built here," \
    "$(grep -c '^bundle' "$dest/images-status.txt") from the bundle," \
    "$(grep -c '^not built' "$dest/images-status.txt") not built (see $dest/images-status.txt)"
}

# export_e2e_image STEP DIR: as export_image, into DIR, and not listed in BUNDLE_IMAGES (the
# images `kinit up --bundle` loads).
export_e2e_image() {
  local dir=${STEP_DIR[$1]} refs id ref missing=0
  mapfile -t refs <"$dir/image.ref"
  id=$(<"$dir/image.id")
  [[ $(docker image inspect -f '{{.Id}}' "${refs[0]}" 2>/dev/null) == "$id" ]] || missing=1
  for ref in "${refs[@]:1}"; do
    docker image inspect "$ref" >/dev/null 2>&1 || missing=1
  done
  if [[ $missing -eq 1 ]]; then
    log "    loading ${refs[*]} into Docker from the cache"
    docker load -q -i "$dir/image.tar" >/dev/null
  fi
  place "$dir/image.tar" "$2/$(tr '/:' '__' <<<"${refs[0]}").tar"
}
