//! Who may use the proxy and where it may go: the client and destination allowlists and
//! the optional username/password, as plain data and pure functions so every rule is
//! unit-tested without a socket.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::cluster::cidr;

/// A set of networks; an address is allowed when any of them holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowlist {
    /// `--allow-any`: every address except the host's own ([`is_host_local`]), which a
    /// client reaches only through networks named with `--allow` (`named`).
    AnyRemote {
        named: Vec<IpNet>,
    },
    Nets(Vec<IpNet>),
}

impl Allowlist {
    pub fn allows(&self, ip: IpAddr) -> bool {
        // An IPv4-mapped IPv6 address (::ffff:10.96.0.1) reaches the IPv4 host, so it must
        // be judged as that IPv4 address, or `--allow 10.96.0.0/12` could be sidestepped
        // (and an allowed IPv4 host refused).
        let ip = ip.to_canonical();
        match self {
            Allowlist::AnyRemote { named } => {
                !is_host_local(ip) || named.iter().any(|net| net.contains(&ip))
            }
            Allowlist::Nets(nets) => nets.iter().any(|net| net.contains(&ip)),
        }
    }

    /// Why `ip` is refused, for the log line a user reads when a page does not load.
    pub fn refusal(&self, ip: IpAddr) -> &'static str {
        match self {
            Allowlist::AnyRemote { .. } if is_host_local(ip.to_canonical()) => {
                "this host's loopback and link-local addresses stay closed under --allow-any; \
                 open one with --allow CIDR"
            }
            _ => "not in the destination allowlist (--allow CIDR, or --allow-any)",
        }
    }
}

impl fmt::Display for Allowlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |nets: &[IpNet]| {
            nets.iter()
                .map(IpNet::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Allowlist::AnyRemote { named } if named.is_empty() => {
                f.write_str("any address except this host's loopback and link-local ones")
            }
            Allowlist::AnyRemote { named } => write!(
                f,
                "any address except this host's loopback and link-local ones, plus {}",
                join(named)
            ),
            Allowlist::Nets(nets) => f.write_str(&join(nets)),
        }
    }
}

/// Addresses that reach this host itself or its link: loopback, "this network" (Linux
/// connects 0.0.0.0 and :: to loopback), and link-local, where cloud metadata services
/// (169.254.169.254) hand out credentials. A proxy open to "anywhere" would otherwise
/// expose every service bound to localhost.
pub fn is_host_local(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_loopback() || v4.octets()[0] == 0 || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// The loopback networks, IPv4 and IPv6.
pub fn loopback() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The clients allowed by default: loopback (the end of an `ssh -L` tunnel), plus, when
/// the user chose to listen on a non-loopback address, the networks that address is on.
/// `interfaces` are the host's (address, prefix length) pairs.
pub fn default_clients(bind: IpAddr, interfaces: &[(IpAddr, u8)]) -> Vec<IpNet> {
    let mut nets = loopback();
    if bind.is_loopback() {
        return nets;
    }
    for &(addr, prefix) in interfaces {
        let on_bind = if bind.is_unspecified() {
            // 0.0.0.0 listens on every IPv4 interface, :: on every interface.
            addr.is_ipv4() == bind.is_ipv4() || bind.is_ipv6()
        } else {
            addr == bind
        };
        if on_bind
            && !addr.is_loopback()
            && let Ok(net) = IpNet::new(addr, prefix)
            && !nets.contains(&net.trunc())
        {
            nets.push(net.trunc());
        }
    }
    nets
}

/// A CIDR for an allowlist; a bare address means just that address.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    cidr::parse_network(s, || {
        format!("'{s}' is not a CIDR or an IP address (for example 10.96.0.0/12)")
    })
}

/// RFC 1929 username and password. Debug output hides the password, since flags are
/// printed in debug logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    password: String,
}

impl Credentials {
    /// `user:password`, as [`parse_auth`] reads it: what `--detach` hands its child through
    /// a pipe, never its command line.
    pub fn to_secret_line(&self) -> String {
        format!("{}:{}", self.user, self.password)
    }

    /// Whether a client's username and password are these. The comparison takes the same
    /// time wherever the first difference is, so timing does not reveal a prefix.
    pub fn matches(&self, user: &str, password: &str) -> bool {
        constant_time_eq(self.user.as_bytes(), user.as_bytes())
            & constant_time_eq(self.password.as_bytes(), password.as_bytes())
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}:***)", self.user)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `user:password`; the password may contain ':'. RFC 1929 carries each in 1 to 255 bytes.
pub fn parse_auth(s: &str) -> Result<Credentials, String> {
    let Some((user, password)) = s.split_once(':') else {
        return Err("expected USER:PASSWORD".into());
    };
    for (what, value) in [("user name", user), ("password", password)] {
        if value.is_empty() || value.len() > 255 {
            return Err(format!(
                "the {what} must be 1 to 255 bytes long (SOCKS5 username/password, RFC 1929)"
            ));
        }
    }
    Ok(Credentials {
        user: user.into(),
        password: password.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Allowlist {
        Allowlist::Nets(list.iter().map(|s| s.parse().unwrap()).collect())
    }

    #[test]
    fn allowlist_matches_networks_and_mapped_addresses() {
        let allow = nets(&["10.96.0.0/12", "10.244.0.0/16", "10.0.2.15/32", "fd00::/64"]);
        for ok in [
            "10.96.0.1",
            "10.111.255.254",
            "10.244.3.7",
            "10.0.2.15",
            "fd00::1",
            "::ffff:10.96.0.10",
        ] {
            assert!(allow.allows(ip(ok)), "{ok} refused");
        }
        for bad in [
            "10.112.0.0",
            "10.0.2.16",
            "127.0.0.1",
            "8.8.8.8",
            "fd00:0:0:1::1",
            "::ffff:8.8.8.8",
            "::1",
        ] {
            assert!(!allow.allows(ip(bad)), "{bad} allowed");
        }
        assert!(!Allowlist::Nets(vec![]).allows(ip("10.96.0.1")));
        assert_eq!(
            allow.to_string(),
            "10.96.0.0/12, 10.244.0.0/16, 10.0.2.15/32, fd00::/64"
        );
    }

    #[test]
    fn allow_any_keeps_the_hosts_own_addresses_closed_unless_named() {
        let any = Allowlist::AnyRemote { named: vec![] };
        for ok in [
            "8.8.8.8",
            "10.96.0.1",
            "172.17.0.1",
            "2001:db8::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(any.allows(ip(ok)), "{ok} refused");
        }
        for bad in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "169.254.169.254",
            "169.254.0.1",
            "::1",
            "::",
            "fe80::1",
            "febf::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!any.allows(ip(bad)), "{bad} allowed");
            assert!(any.refusal(ip(bad)).contains("--allow CIDR"), "{bad}");
        }
        let named = Allowlist::AnyRemote {
            named: vec!["127.0.0.1/32".parse().unwrap()],
        };
        assert!(named.allows(ip("127.0.0.1")));
        assert!(named.allows(ip("::ffff:127.0.0.1")));
        assert!(!named.allows(ip("127.0.0.2")));
        assert!(!named.allows(ip("169.254.169.254")));
        assert!(named.allows(ip("1.1.1.1")));
        assert_eq!(
            named.to_string(),
            "any address except this host's loopback and link-local ones, plus 127.0.0.1/32"
        );
    }

    #[test]
    fn default_clients_are_loopback_plus_the_bind_network() {
        let ifaces = [
            (ip("127.0.0.1"), 8),
            (ip("10.0.2.15"), 24),
            (ip("192.168.56.10"), 24),
            (ip("fe80::1"), 64),
        ];
        let loop_only = default_clients(ip("127.0.0.1"), &ifaces);
        assert_eq!(
            Allowlist::Nets(loop_only).to_string(),
            "127.0.0.0/8, ::1/128"
        );
        let one = default_clients(ip("192.168.56.10"), &ifaces);
        assert_eq!(
            Allowlist::Nets(one).to_string(),
            "127.0.0.0/8, ::1/128, 192.168.56.0/24"
        );
        let all_v4 = default_clients(ip("0.0.0.0"), &ifaces);
        assert_eq!(
            Allowlist::Nets(all_v4).to_string(),
            "127.0.0.0/8, ::1/128, 10.0.2.0/24, 192.168.56.0/24"
        );
        let all = default_clients(ip("::"), &ifaces);
        assert!(all.contains(&"fe80::/64".parse().unwrap()), "{all:?}");
        // A bind address the host does not have adds nothing (binding will fail anyway).
        assert_eq!(default_clients(ip("10.9.9.9"), &ifaces).len(), 2);
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(parse_cidr("10.0.2.15").unwrap().to_string(), "10.0.2.15/32");
        assert_eq!(parse_cidr("fd00::1").unwrap().to_string(), "fd00::1/128");
        assert_eq!(
            parse_cidr("10.96.0.0/12").unwrap().to_string(),
            "10.96.0.0/12"
        );
        assert!(
            parse_cidr("10.96.0.1/12")
                .unwrap_err()
                .contains("did you mean 10.96.0.0/12")
        );
        assert!(parse_cidr("banana").unwrap_err().contains("is not a CIDR"));
        assert!(parse_cidr("10.0.0.0/33").is_err());
    }

    #[test]
    fn auth_parsing_and_matching() {
        let c = parse_auth("alice:s3cr:et").unwrap();
        assert_eq!(c.user, "alice");
        assert!(c.matches("alice", "s3cr:et"));
        assert!(!c.matches("alice", "s3cr"));
        assert!(!c.matches("bob", "s3cr:et"));
        assert!(!format!("{c:?}").contains("s3cr"));
        assert_eq!(parse_auth(&c.to_secret_line()).unwrap(), c);
        assert!(parse_auth("alice").is_err());
        assert!(parse_auth(":pw").unwrap_err().contains("user name"));
        assert!(parse_auth("alice:").unwrap_err().contains("password"));
        assert!(parse_auth(&format!("a:{}", "p".repeat(256))).is_err());
    }
}
