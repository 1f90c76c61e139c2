//! The script `kinit down` runs on the host to clean its network state, with the host's
//! own iptables and ip (the node runs on the same tools).

use anyhow::Result;
use serde::Serialize;

use super::master::BRIDGE;
use crate::manifests;

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
