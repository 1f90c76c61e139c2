//! Pinned component versions, generated at build time from `scripts/versions.env`.

include!(concat!(env!("OUT_DIR"), "/versions.rs"));

/// The etcd image kinit runs by default; the offline bundle tags its build with this name.
pub fn etcd_image() -> String {
    format!("registry.k8s.io/etcd:{ETCD_IMAGE_TAG}")
}

/// A Kubernetes control-plane image (kube-apiserver, kube-proxy, ...) at the pinned version.
pub fn kube_image(name: &str) -> String {
    format!("registry.k8s.io/{name}:{KUBERNETES_VERSION}")
}

pub fn coredns_image() -> String {
    format!("registry.k8s.io/coredns/coredns:{COREDNS_VERSION}")
}

pub fn pause_image() -> String {
    format!("registry.k8s.io/pause:{PAUSE_VERSION}")
}

/// kinit's node image: the kubelet, cri-dockerd, the CNI plugins and the host tools they
/// call. scripts/build-bundle.sh builds it.
pub fn node_image() -> String {
    format!("kinit/node:{KUBERNETES_VERSION}")
}
