//! The pod bridge, deleted only when it is the one kinit's CNI network made.
//!
//! `cni0` is the bridge plugin's default name, so flannel, a kubeadm node or an
//! administrator may have one too. kinit's master makes the bridge itself, with an alias
//! ([`BRIDGE_MARK`]): a marked bridge is kinit's, and goes even while the veths of pods
//! just removed are still attached (the kernel keeps a dead pod's network namespace until
//! its last TCP connection times out, minutes at worst). An unmarked one (made by a kinit
//! before the mark, or by someone else) is kinit's when the bridge plugin made it for
//! kinit: as the pods' gateway it holds the first address of kinit's node pod range, and
//! once kinit's pods are gone nothing is attached to it; a bridge that still has ports
//! serves someone else.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ipnet::IpNet;

use crate::cluster::nth_address;
use crate::components::master::{BRIDGE, BRIDGE_MARK};
use crate::fs;

/// What became of the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Absent,
    Deleted,
    /// Left alone, and why.
    Kept(String),
}

/// The addresses `ip -o addr show` lists, with their prefix lengths.
fn addresses(ip_o_addr: &str) -> Vec<IpNet> {
    ip_o_addr
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "inet" || *w == "inet6")?;
            words.get(at + 1)?.parse().ok()
        })
        .collect()
}

/// Whether `addrs` hold the gateway the bridge plugin gives a bridge for `node_pod_cidr`.
fn has_gateway(addrs: &[IpNet], node_pod_cidr: IpNet) -> bool {
    let gateway = nth_address(node_pod_cidr, 1);
    addrs
        .iter()
        .any(|a| a.addr() == gateway && a.prefix_len() == node_pod_cidr.prefix_len())
}

/// How long the kernel may take to delete the veths of pods just removed.
const VETH_GRACE: Duration = Duration::from_secs(10);

/// The interfaces attached to the bridge, once those of the pods just removed are gone:
/// the kernel tears a network namespace down, and its veth with it, some time after the
/// last process in it ended (longer with more pods), so a count taken at once would find
/// kinit's own pods and keep the bridge. Someone else's ports stay: that costs
/// [`VETH_GRACE`] before the bridge is left alone.
fn attached_after_pods_went(brif: &Path) -> usize {
    let count = || std::fs::read_dir(brif).map(|e| e.count()).unwrap_or(0);
    let deadline = Instant::now() + VETH_GRACE;
    let mut ports = count();
    while ports > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        ports = count();
    }
    ports
}

/// Runs `ip` with `args`; its output.
pub(super) fn ip(args: &[&str]) -> Result<String> {
    let Some(ip) = fs::system_tool("ip") else {
        bail!("this host has no ip command");
    };
    let out = Command::new(&ip)
        .env("PATH", fs::SYSTEM_PATH)
        .args(args)
        .output()
        .with_context(|| format!("cannot run ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Deletes the pod bridge if kinit's network made it for `node_pod_cidr`.
pub fn remove(node_pod_cidr: IpNet) -> Result<Outcome> {
    let sys = Path::new("/sys/class/net").join(BRIDGE);
    if !sys.exists() {
        return Ok(Outcome::Absent);
    }
    if !sys.join("bridge").is_dir() {
        return Ok(Outcome::Kept(format!("{BRIDGE} is not a bridge")));
    }
    let marked =
        std::fs::read_to_string(sys.join("ifalias")).is_ok_and(|alias| alias.trim() == BRIDGE_MARK);
    let ports = if marked {
        0
    } else {
        attached_after_pods_went(&sys.join("brif"))
    };
    if ports > 0 {
        return Ok(Outcome::Kept(format!(
            "{ports} interfaces are still attached to {BRIDGE}"
        )));
    }
    if fs::system_tool("ip").is_none() {
        return Ok(Outcome::Kept("this host has no ip command".into()));
    }
    let addrs = addresses(&ip(&["-o", "addr", "show", "dev", BRIDGE])?);
    if !marked && !has_gateway(&addrs, node_pod_cidr) {
        return Ok(Outcome::Kept(format!(
            "{BRIDGE} does not have kinit's pod gateway {}/{}, so another tool made it",
            nth_address(node_pod_cidr, 1),
            node_pod_cidr.prefix_len()
        )));
    }
    ip(&["link", "delete", BRIDGE, "type", "bridge"])?;
    Ok(Outcome::Deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = "\
5: cni0    inet 10.244.0.1/24 brd 10.244.0.255 scope global cni0\\       valid_lft forever preferred_lft forever
5: cni0    inet6 fe80::1c2d:3eff:fe4f:5a6b/64 scope link \\       valid_lft forever preferred_lft forever
";

    #[test]
    fn kinits_bridge_holds_the_gateway_of_its_node_pod_range() {
        let addrs = addresses(SHOW);
        assert_eq!(addrs.len(), 2);
        assert!(has_gateway(&addrs, "10.244.0.0/24".parse().unwrap()));
        assert!(!has_gateway(&addrs, "10.245.0.0/24".parse().unwrap()));
        assert!(!has_gateway(&addrs, "10.244.0.0/16".parse().unwrap()));
        assert!(!has_gateway(&[], "10.244.0.0/24".parse().unwrap()));
    }
}
