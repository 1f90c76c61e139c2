//! The containers kinit runs, each rendered from its manifest into a [`ContainerSpec`].
//!
//! [`ContainerSpec`]: crate::docker::ContainerSpec

pub mod cleanup;
pub mod etcd;
pub mod master;
pub mod proxy;

use crate::versions;

/// The component containers, in bring-up order.
pub const ALL: [&str; 3] = ["etcd", "master", "proxy"];

/// Every image a cluster runs.
pub fn images() -> Vec<String> {
    vec![
        versions::etcd_image(),
        versions::node_image(),
        versions::pause_image(),
        versions::kube_image("kube-apiserver"),
        versions::kube_image("kube-controller-manager"),
        versions::kube_image("kube-scheduler"),
        versions::kube_image("kube-proxy"),
        versions::coredns_image(),
    ]
}
