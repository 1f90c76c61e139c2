//! The throwaway container `kinit down` runs to clean the host's network state, with
//! the tools of kinit's node image (iptables, ip).

use anyhow::Result;
use serde::Serialize;

use super::master::BRIDGE;
use crate::docker::ContainerSpec;
use crate::manifests;
use crate::versions;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Per-pod NAT chains of pods removed without the kubelet.
    Down,
    /// Everything kube-proxy, the CNI plugins and kinit put into iptables, and the bridge.
    Purge,
}

#[derive(Serialize)]
struct Values {
    mode: Mode,
    bridge: &'static str,
}

/// The clean-up shell script for `mode`.
pub fn script(mode: Mode) -> Result<String> {
    manifests::CLEANUP.render_text(&Values {
        mode,
        bridge: BRIDGE,
    })
}

pub fn spec(mode: Mode) -> Result<ContainerSpec> {
    let script = script(mode)?;
    Ok(ContainerSpec {
        component: "cleanup".into(),
        image: versions::node_image(),
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into(), script]),
        capabilities: vec!["CAP_NET_ADMIN".into(), "CAP_NET_RAW".into()],
        ..Default::default()
    })
}
