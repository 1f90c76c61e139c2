//! kinit's LoadBalancer Services, decided: the approach of k3s's ServiceLB for a node whose
//! address is the only one a single-host cluster has. A Service of type LoadBalancer with
//! no `loadBalancerClass` gets the node's IP as its external address (ipMode VIP), and
//! kube-proxy, which programs every VIP ingress address, forwards its ports to the
//! Service's endpoints: from the host, from other machines that reach the node, and
//! through `kinit socks`. Without a pool of spare addresses, one port serves one Service,
//! so a port another Service holds, or that a program on the host listens on (SSH, the API
//! server, the kubelet), leaves the Service pending with an event that says why.
//!
//! This module decides who gets an address; `kubernetes::service_lb` watches the Services
//! and writes the decisions, from the `load-balancer` addon's pod (`kinit service-lb`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The name the controller gives its events, and its field manager.
pub const CONTROLLER: &str = "kinit-service-lb";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

/// One port of the node's address, by protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    pub protocol: Protocol,
    pub number: u16,
}

/// A LoadBalancer Service that wants the node's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub namespace: String,
    pub name: String,
    /// Its creation time (RFC 3339): the older Service keeps a contested port.
    pub created: String,
    pub ports: Vec<Port>,
    /// Its status already holds the node's address: it keeps it against later listeners
    /// (kube-proxy forwards its ports before any program on the host sees them).
    pub holds: bool,
}

/// What a claim gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The node's address.
    Assign,
    /// No address, and why (for the Service's events).
    Pending(String),
}

/// The decision for every claim, in the order given. Services that hold the address come
/// first, then the oldest; a claim gets the address only when none of its ports is taken
/// by one before it, and (unless it holds the address already) no program listens there.
pub fn decide(claims: &[Claim], listening: &BTreeSet<Port>) -> Vec<Decision> {
    let mut order: Vec<usize> = (0..claims.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&claims[a], &claims[b]);
        (!a.holds, &a.created, &a.namespace, &a.name).cmp(&(
            !b.holds,
            &b.created,
            &b.namespace,
            &b.name,
        ))
    });
    let mut taken: BTreeMap<Port, usize> = BTreeMap::new();
    let mut decisions = vec![Decision::Assign; claims.len()];
    for i in order {
        let claim = &claims[i];
        let mut conflicts = Vec::new();
        for port in &claim.ports {
            if let Some(&other) = taken.get(port) {
                let other = &claims[other];
                conflicts.push(format!(
                    "{port} is Service {}/{}'s",
                    other.namespace, other.name
                ));
            } else if !claim.holds && listening.contains(port) {
                conflicts.push(format!("a program on the host listens on {port}"));
            }
        }
        if conflicts.is_empty() {
            for port in &claim.ports {
                taken.insert(*port, i);
            }
        } else {
            decisions[i] = Decision::Pending(format!(
                "the node's address cannot serve it: {}",
                conflicts.join("; ")
            ));
        }
    }
    decisions
}

/// The ports programs on this host listen on at `node_ip` or at every address, from the
/// kernel's socket tables (`/proc/net/{tcp,tcp6,udp,udp6}` of this network namespace: the
/// controller's pod runs on the host's network). A table that cannot be read counts as
/// empty: the address is then only checked against other Services.
pub fn listening(node_ip: IpAddr) -> BTreeSet<Port> {
    let mut ports = BTreeSet::new();
    for (file, protocol, v6) in [
        ("/proc/net/tcp", Protocol::Tcp, false),
        ("/proc/net/tcp6", Protocol::Tcp, true),
        ("/proc/net/udp", Protocol::Udp, false),
        ("/proc/net/udp6", Protocol::Udp, true),
    ] {
        if let Ok(table) = std::fs::read_to_string(file) {
            ports.extend(parse_table(&table, protocol, v6, node_ip));
        }
    }
    ports
}

/// TCP sockets in LISTEN (state 0A) and every bound UDP socket, on `node_ip` or on the
/// wildcard address.
fn parse_table(table: &str, protocol: Protocol, v6: bool, node_ip: IpAddr) -> Vec<Port> {
    const TCP_LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            if protocol == Protocol::Tcp && state != TCP_LISTEN {
                return None;
            }
            let (address, port) = local.split_once(':')?;
            let number = u16::from_str_radix(port, 16).ok()?;
            let ip = if v6 {
                parse_v6(address)?
            } else {
                parse_v4(address)?
            };
            let serves = ip.is_unspecified() || ip == node_ip || mapped(ip) == Some(node_ip);
            (serves && number != 0).then_some(Port { protocol, number })
        })
        .collect()
}

/// The kernel prints an IPv4 address as one 32-bit word in host byte order.
fn parse_v4(hex: &str) -> Option<IpAddr> {
    let word = u32::from_str_radix(hex, 16).ok()?;
    Some(IpAddr::V4(Ipv4Addr::from(word.to_ne_bytes())))
}

/// ... and an IPv6 address as four such words.
fn parse_v6(hex: &str) -> Option<IpAddr> {
    if hex.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(4).enumerate() {
        let word = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    Some(IpAddr::V6(Ipv6Addr::from(bytes)))
}

/// An IPv4-mapped IPv6 address (a dual-stack socket bound to an IPv4 address) as IPv4.
fn mapped(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(_) => None,
    }
}

impl Protocol {
    /// From a ServicePort's `protocol` (TCP when unset, as the API defaults it).
    pub fn parse(name: Option<&str>) -> Option<Self> {
        match name.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocol = match self.protocol {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        };
        write!(f, "{}/{protocol}", self.number)
    }
}

#[cfg(test)]
mod tests;
