# internet.sh — the stand-in internet of the VM and Vagrant tiers (sourced after
# scripts/lib.sh): what a user's guest would download from, served by this host on one of
# its addresses. An HTTP server holds kinit's release binary in the release layout
# (scripts/release.sh) and the offline bundle as the upstream download mirror; an OCI
# registry holds every image kinit lists under its upstream path, and the walkthroughs'
# stand-in images.
# shellcheck shell=bash

# stand_in_internet WORK BIND_ADDRESS GUEST_ADDRESS: builds the release binary into
# WORK/www/releases, starts both servers on BIND_ADDRESS (appending their PIDs to the
# caller's `pids` array) and fills the registry. GUEST_ADDRESS is how guests reach
# BIND_ADDRESS. Sets RELEASES_URL, MIRROR (for --mirror or the config file's `mirror`),
# REGISTRY (host:port, for Docker's registry mirror and --image-repository), DOCKER_DAEMON_JSON
# (a guest's /etc/docker/daemon.json with REGISTRY as its plain-HTTP registry mirror, as a
# user behind a mirror sets it) and KINIT_BIN (the release binary, to run on this host).
stand_in_internet() {
  local work=$1 bind=$2 guest=$3 http_port registry_port ref tar path
  apt_ensure python3:python3 curl:curl
  say "the release binary (scripts/release.sh, this machine's architecture)"
  logged "$work/release.log" "scripts/release.sh" "$REPO/scripts/release.sh" --host-only "$work/www/releases"
  KINIT_BIN=$work/www/releases/kinit-linux-amd64
  ln -s "$KINIT_BUNDLE_DIR" "$work/www/mirror"
  http_port=$(free_port)
  python3 -m http.server --bind "$bind" --directory "$work/www" "$http_port" >"$work/http.log" 2>&1 &
  pids+=($!)
  registry_port=$(free_port)
  "$KINIT_BUNDLE_DIR/tools/registry" -port "$registry_port" >"$work/registry.log" 2>&1 &
  pids+=($!)
  wait_port "$registry_port" "the registry"
  # go-containerregistry's registry listens on loopback only; on another address, socat
  # forwards to it.
  if [ "$bind" != 127.0.0.1 ]; then
    apt_ensure socat:socat
    socat "TCP-LISTEN:$registry_port,bind=$bind,reuseaddr,fork" "TCP:127.0.0.1:$registry_port" &
    pids+=($!)
    wait_port "$registry_port" "the registry's forwarder" "$bind"
  fi
  wait_port "$http_port" "the HTTP mirror" "$bind"
  RELEASES_URL="http://$guest:$http_port/releases"
  MIRROR="http://$guest:$http_port/mirror"
  REGISTRY="$guest:$registry_port"
  DOCKER_DAEMON_JSON=$(printf '{"registry-mirrors": ["http://%s"], "insecure-registries": ["%s"]}' "$REGISTRY" "$REGISTRY")

  # Every image kinit lists (the cluster's and the addons'), under its upstream path less
  # the registry host, as --image-repository reads it; and the walkthroughs' stand-in
  # images, which guests name with the registry's address (--image-override).
  say "pushing kinit's images and the walkthroughs' to the registry"
  local images
  mapfile -t images < <("$KINIT_BIN" images list | awk '{print $2}')
  for ref in "${images[@]}" kinit-examples/web:1 kinit-examples/db:1; do
    tar="$KINIT_BUNDLE_DIR/images/$(tr '/:' '__' <<<"$ref").tar"
    [ -f "$tar" ] || die "the bundle has no $ref ($tar)"
    path=$ref
    [[ ${ref%%/*} != *.* ]] || path=${ref#*/}
    "$KINIT_BUNDLE_DIR/tools/crane" push "$tar" "127.0.0.1:$registry_port/$path" >/dev/null 2>&1 ||
      die "cannot push $ref to the registry"
  done
}
