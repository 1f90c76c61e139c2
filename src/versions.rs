//! Pinned component versions, generated at build time from `scripts/versions.env`.

include!(concat!(env!("OUT_DIR"), "/versions.rs"));

/// The etcd image kinit runs by default; the offline bundle tags its build with this name.
pub fn etcd_image() -> String {
    format!("registry.k8s.io/etcd:{ETCD_IMAGE_TAG}")
}
