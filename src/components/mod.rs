//! The containers kinit runs, each rendered from its manifest into a [`ContainerSpec`].
//!
//! [`ContainerSpec`]: crate::docker::ContainerSpec

pub mod boot;
pub mod etcd;
pub mod master;
pub mod node;
pub mod owned;
pub mod proxy;
