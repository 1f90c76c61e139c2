//! The containers kinit runs, each rendered from its manifest into a [`ContainerSpec`].
//!
//! [`ContainerSpec`]: crate::docker::ContainerSpec

pub mod etcd;

/// Components this version of kinit starts, in bring-up order.
pub const STARTED: &[&str] = &["etcd"];

/// Components of a full cluster that this version does not start yet.
pub const NOT_YET: &[&str] = &[
    "master (kubelet, kube-apiserver, kube-controller-manager, kube-scheduler)",
    "proxy (kube-proxy)",
    "cluster DNS (CoreDNS)",
    "the kubeconfig for kubectl",
];

/// Every image this version of kinit runs.
pub fn images() -> Vec<String> {
    vec![crate::versions::etcd_image()]
}
