//! kinit's LoadBalancer Services, decided: the approach of k3s's ServiceLB with one address,
//! that of the node the controller runs on (the control-plane host's, which it prefers). A
//! Service of type LoadBalancer with no `loadBalancerClass` gets that IP as its external
//! address (ipMode VIP), and kube-proxy, which programs every VIP ingress address on every
//! node, forwards its ports to the Service's endpoints: from the host, from other machines
//! that reach it, and through `kinit socks`. Without a pool of spare addresses, one port serves one Service,
//! so a port another Service holds, or that a program on the host listens on (SSH, the API
//! server, the kubelet), leaves the Service pending with an event that says why. Some
//! ports are never given at all (see [`reserved`]): SSH's, kinit's components' and the
//! NodePort range.
//!
//! This module decides who gets an address; `kubernetes::service_lb` watches the Services
//! and writes the decisions, from the `load-balancer` addon's pod (`kinit service-lb`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::cluster::Component;

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
    /// Its status already holds the node's address: it keeps its ports against Services
    /// that came later (not against a program on the host that listens there now, which
    /// it would otherwise cut off: kube-proxy forwards the ports first).
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

/// The least time between two decisions: a burst of Service changes is decided once.
pub const MIN_GAP: Duration = Duration::from_secs(1);
/// Decided again this often without a change to any Service: the node's address may have
/// moved, and a program may have started or stopped listening on a Service's port.
const RESYNC: Duration = Duration::from_secs(10);

/// When the controller decides: after a change it has not decided on, at most once per
/// [`MIN_GAP`], and every [`RESYNC`] without one.
#[derive(Debug, Default)]
pub struct Pace {
    last: Option<Instant>,
    changed: bool,
}

impl Pace {
    /// A Service changed.
    pub fn changed(&mut self) {
        self.changed = true;
    }

    /// Whether to decide now; when it says yes, the next gap counts from `now`.
    pub fn due(&mut self, now: Instant) -> bool {
        let due = match self.last {
            None => true,
            Some(last) => {
                let since = now.saturating_duration_since(last);
                (self.changed && since >= MIN_GAP) || since >= RESYNC
            }
        };
        if due {
            self.last = Some(now);
            self.changed = false;
        }
        due
    }
}

/// SSH's port: a Service on it would take the node's SSH from its users.
const SSH_PORT: u16 = 22;
/// The API server's default `--service-node-port-range`, which kinit keeps.
const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// Why a port number is never the node's address's for a Service, of any protocol:
/// kube-proxy would forward it before the program that serves it sees a packet (SSH,
/// every port a kinit component listens on), or forwards it already for NodePorts.
pub fn reserved(number: u16) -> Option<&'static str> {
    if number == SSH_PORT {
        return Some("SSH");
    }
    if NODE_PORTS.contains(&number) {
        return Some("NodePorts");
    }
    Component::ALL
        .into_iter()
        .flat_map(Component::ports)
        .find(|p| p.number == number)
        .map(|p| p.purpose)
}

/// The decision for every claim, in the order given. Services that hold the address come
/// first, then the oldest; a claim gets the address only when none of its ports is
/// reserved, taken by one before it, or listened on by a program on the host.
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
            if let Some(what) = reserved(port.number) {
                conflicts.push(format!("{port} is reserved for {what}"));
            } else if let Some(&other) = taken.get(port) {
                let other = &claims[other];
                conflicts.push(format!(
                    "{port} is Service {}/{}'s",
                    other.namespace, other.name
                ));
            } else if listening.contains(port) {
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
