//! What kube-router (the pod network between nodes and the NetworkPolicy engine) leaves on
//! a host besides its iptables chains: the routes to other nodes' pod ranges, the
//! `kube-bridge` it makes at start even with its CNI off, and its ipsets.
//!
//! Taken only when the caller established that kinit's cluster ran the kube-router here
//! and no other one runs in the host's network namespace now; even then a route goes only
//! when it leads into kinit's pod range, a bridge only when nothing is attached to it and
//! it has no address, a set only when it has one of kube-router's names.

use std::path::Path;

use anyhow::Result;
use ipnet::IpNet;

use super::bridge::ip;
use crate::docker::Docker;

/// The bridge kube-router makes for its CNI, whether its CNI is on or not.
const BRIDGE: &str = "kube-bridge";

/// The protocol number kube-router installs its routes to other nodes' pod ranges with
/// (`ip route` prints it as `proto 17`).
const ROUTE_PROTOCOL: &str = "17";

/// Name prefixes of kube-router's ipsets: its own sets and the per-policy source and
/// destination sets, each also in its IPv6 form.
const SET_PREFIXES: [&str; 3] = ["kube-router-", "KUBE-SRC-", "KUBE-DST-"];

/// The destinations of kube-router's routes (`ip -o route show proto 17`) inside `pods`.
fn routes_into(listing: &str, pods: IpNet) -> Vec<IpNet> {
    listing
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse::<IpNet>().ok())
        .filter(|dest| pods.contains(dest))
        .collect()
}

/// Deletes kube-router's routes into `pods`; how many.
pub fn remove_routes(pods: IpNet) -> Result<usize> {
    let listing = ip(&["-o", "route", "show", "proto", ROUTE_PROTOCOL])?;
    let routes = routes_into(&listing, pods);
    for dest in &routes {
        ip(&["route", "del", &dest.to_string(), "proto", ROUTE_PROTOCOL])?;
    }
    Ok(routes.len())
}

/// Deletes `kube-bridge` when nothing is attached to it and it holds no address (kinit
/// runs kube-router without its CNI, so it never gets one); whether it did.
pub fn remove_bridge() -> Result<bool> {
    let sys = Path::new("/sys/class/net").join(BRIDGE);
    if !sys.join("bridge").is_dir() {
        return Ok(false);
    }
    let ports = std::fs::read_dir(sys.join("brif")).map_or(0, |e| e.count());
    let addressed = ip(&["-o", "-4", "addr", "show", "dev", BRIDGE])?
        .lines()
        .any(|l| !l.trim().is_empty());
    if ports > 0 || addressed {
        return Ok(false);
    }
    ip(&["link", "delete", BRIDGE, "type", "bridge"])?;
    Ok(true)
}

/// Whether a set (as `ipset list -n` names it) is kube-router's.
fn is_kube_router_set(name: &str) -> bool {
    let name = name.strip_prefix("inet6:").unwrap_or(name);
    SET_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Destroys kube-router's ipsets with the `ipset` of kube-router's own image (hosts need
/// not have the tool); the sets destroyed. Run after its iptables rules are gone: the
/// kernel keeps a set a rule still matches.
pub async fn remove_sets(docker: &Docker, image: &str) -> Result<Vec<String>> {
    let listing = docker
        .run_tool(
            image,
            &["ipset".into(), "list".into(), "-n".into()],
            &["NET_ADMIN"],
        )
        .await?;
    let sets: Vec<String> = listing
        .lines()
        .map(str::trim)
        .filter(|s| is_kube_router_set(s))
        .map(String::from)
        .collect();
    if sets.is_empty() {
        return Ok(sets);
    }
    // The names go as arguments, never into the script.
    let mut command: Vec<String> = [
        "sh",
        "-c",
        r#"for s in "$@"; do ipset destroy "$s" || exit 1; done"#,
        "sh",
    ]
    .map(String::from)
    .to_vec();
    command.extend(sets.iter().cloned());
    docker.run_tool(image, &command, &["NET_ADMIN"]).await?;
    Ok(sets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_routes_into_the_pod_range_are_kube_routers_to_take() {
        let listing = "10.244.1.0/24 via 172.31.0.11 dev eth0 proto 17 \n\
                       10.50.0.0/24 via 172.31.0.12 dev eth0 proto 17 \n\
                       default via 172.31.0.1 dev eth0 proto 17\n";
        assert_eq!(
            routes_into(listing, "10.244.0.0/16".parse().unwrap()),
            ["10.244.1.0/24".parse::<IpNet>().unwrap()]
        );
    }

    #[test]
    fn sets_are_known_by_kube_routers_prefixes() {
        assert!(is_kube_router_set("kube-router-pod-subnets"));
        assert!(is_kube_router_set("inet6:kube-router-node-ips"));
        assert!(is_kube_router_set("KUBE-SRC-ABCDEFGHIJKLMNOP"));
        assert!(!is_kube_router_set("docker-allowed"));
        assert!(!is_kube_router_set("cali40all-hosts"));
    }
}
