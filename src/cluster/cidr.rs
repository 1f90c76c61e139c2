//! The cluster's address ranges, each checked once when it is read (from a flag or from
//! `cluster.yaml`) and carried as a type from then on. Whether they overlap each other or
//! the node is a question about the whole cluster, asked by [`super::Settings`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

/// Each node gets this slice of the pod range (the controller-manager's default).
pub const NODE_CIDR_PREFIX: u8 = 24;

/// The range pod IPs come from: IPv4 (kinit's bridge network is IPv4 only), from /8 to /24
/// so that the node's /24 fits in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PodCidr(Ipv4Net);

impl PodCidr {
    /// kinit's default pod range, as flannel and kind use.
    pub const DEFAULT: Self = Self(Ipv4Net::new_assert(Ipv4Addr::new(10, 244, 0, 0), 16));

    pub fn net(self) -> IpNet {
        IpNet::V4(self.0)
    }

    /// The node's share: the first /24, which is what the controller-manager allocates to
    /// the only node.
    pub fn node_range(self) -> IpNet {
        let first = self
            .0
            .subnets(NODE_CIDR_PREFIX)
            .ok()
            .and_then(|mut s| s.next());
        IpNet::V4(first.unwrap_or(self.0))
    }
}

impl Default for PodCidr {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl FromStr for PodCidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let IpNet::V4(net) = parse_range(s, Self::DEFAULT)? else {
            return Err(format!("'{s}' is IPv6; the pod range must be IPv4"));
        };
        if !(8..=NODE_CIDR_PREFIX).contains(&net.prefix_len()) {
            return Err(format!(
                "'{s}' has a /{} prefix; the pod range needs a prefix from /8 to /{NODE_CIDR_PREFIX}",
                net.prefix_len()
            ));
        }
        Ok(Self(net))
    }
}

/// The range Service IPs come from, as the API server accepts it: no larger than /12 for
/// IPv4 (/108 for IPv6) and large enough to hold the cluster DNS address at its 10th IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceCidr(IpNet);

impl ServiceCidr {
    pub const DEFAULT: Self = Self(IpNet::V4(Ipv4Net::new_assert(
        Ipv4Addr::new(10, 96, 0, 0),
        12,
    )));

    pub fn net(self) -> IpNet {
        self.0
    }

    /// The first address of the range, which the `kubernetes` Service takes.
    pub fn kubernetes_ip(self) -> IpAddr {
        nth_address(self.0, 1)
    }

    /// The cluster DNS Service address: the 10th of the range, as kubeadm does.
    pub fn dns_ip(self) -> IpAddr {
        nth_address(self.0, 10)
    }
}

impl FromStr for ServiceCidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let net = parse_range(s, Self::DEFAULT)?;
        let (min, max) = match net {
            IpNet::V4(_) => (12, 28),
            IpNet::V6(_) => (108, 124),
        };
        if net.prefix_len() < min || net.prefix_len() > max {
            return Err(format!(
                "'{s}' has a /{} prefix; the Service range needs a prefix from /{min} to /{max}",
                net.prefix_len()
            ));
        }
        Ok(Self(net))
    }
}

plain_string_form!(PodCidr, ServiceCidr);

/// The network written as `s`; `not_a_cidr` says why when it is none. A network with host
/// bits set (`10.96.0.1/12`) is a typo more often than not, so it is refused naming the
/// network that was probably meant.
pub fn parse_network(s: &str, not_a_cidr: impl FnOnce() -> String) -> Result<IpNet, String> {
    let net: IpNet = s.parse().map_err(|_| not_a_cidr())?;
    if net.trunc() != net {
        return Err(format!(
            "'{s}' has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// A cluster range written as `s`, like `example`.
fn parse_range(s: &str, example: impl std::fmt::Display) -> Result<IpNet, String> {
    parse_network(s, || {
        format!("'{s}' is not a CIDR (expected a range like {example})")
    })
}

/// The n-th address of a network (0 is the network address itself).
pub fn nth_address(net: IpNet, n: u32) -> IpAddr {
    match net.network() {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(n))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(u128::from(n)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each of `good` parses back to the same text; each of `bad` is refused saying why.
    fn check<T: FromStr<Err = String> + std::fmt::Display>(good: &[&str], bad: &[(&str, &str)]) {
        for s in good {
            assert_eq!(s.parse::<T>().map(|t| t.to_string()).as_deref(), Ok(*s));
        }
        for (s, why) in bad {
            let err = s.parse::<T>().err().unwrap_or_default();
            assert!(err.contains(why), "{s:?}: {err:?}");
        }
    }

    #[test]
    fn service_ranges_are_checked() {
        assert_eq!("10.96.0.0/12".parse(), Ok(ServiceCidr::DEFAULT));
        check::<ServiceCidr>(
            &["10.96.0.0/12", "fd00:10:96::/112", "10.0.0.0/28"],
            &[
                ("10.96.0.1/12", "did you mean 10.96.0.0/12?"),
                ("10.0.0.0/8", "needs a prefix from /12 to /28"),
                ("10.0.0.0/30", "has a /30 prefix"),
                ("fd00::/64", "from /108 to /124"),
                (
                    "10.0.0.0",
                    "is not a CIDR (expected a range like 10.96.0.0/12)",
                ),
                ("banana", "is not a CIDR"),
                ("", "is not a CIDR"),
            ],
        );
    }

    #[test]
    fn pod_ranges_are_checked() {
        assert_eq!("10.244.0.0/16".parse(), Ok(PodCidr::DEFAULT));
        check::<PodCidr>(
            &["10.244.0.0/16", "10.0.0.0/8", "192.168.7.0/24"],
            &[
                ("10.244.0.1/16", "host bits"),
                ("10.244.0.0/25", "/25 prefix"),
                ("8.0.0.0/7", "from /8 to /24"),
                ("fd00::/64", "is IPv6"),
                (
                    "nonsense",
                    "is not a CIDR (expected a range like 10.244.0.0/16)",
                ),
            ],
        );
    }

    #[test]
    fn derived_addresses() {
        let services = ServiceCidr::DEFAULT;
        assert_eq!(services.kubernetes_ip().to_string(), "10.96.0.1");
        assert_eq!(services.dns_ip().to_string(), "10.96.0.10");
        let v6: ServiceCidr = "fd00:10:96::/112".parse().unwrap();
        assert_eq!(v6.kubernetes_ip().to_string(), "fd00:10:96::1");
        assert_eq!(v6.dns_ip().to_string(), "fd00:10:96::a");
        assert_eq!(PodCidr::DEFAULT.node_range().to_string(), "10.244.0.0/24");
        let one_slice: PodCidr = "10.1.2.0/24".parse().unwrap();
        assert_eq!(one_slice.node_range().to_string(), "10.1.2.0/24");
        assert_eq!(
            nth_address(PodCidr::DEFAULT.net(), 0).to_string(),
            "10.244.0.0"
        );
    }

    #[test]
    fn ranges_read_and_write_as_plain_strings() {
        let pods: PodCidr = serde_yaml::from_str("10.244.0.0/16").unwrap();
        assert_eq!(pods, PodCidr::DEFAULT);
        assert_eq!(serde_yaml::to_string(&pods).unwrap(), "10.244.0.0/16\n");
        let services: ServiceCidr = serde_yaml::from_str("10.96.0.0/12").unwrap();
        assert_eq!(
            serde_json::to_string(&services).unwrap(),
            "\"10.96.0.0/12\""
        );
        let err = serde_yaml::from_str::<PodCidr>("10.244.0.0/25").unwrap_err();
        assert!(err.to_string().contains("/25 prefix"), "{err}");
        assert!(serde_yaml::from_str::<ServiceCidr>("10.0.0.0/8").is_err());
    }
}
