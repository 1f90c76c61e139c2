//! Host networking facts: the primary address, the interfaces' networks, and which
//! process listens on a port.

use std::collections::HashSet;
use std::net::{IpAddr, UdpSocket};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The address this host uses to reach the outside world: the source address of its
/// default route. Connecting a UDP socket only picks a route; no packet is sent.
pub fn primary_ip() -> Result<IpAddr> {
    for (bind, target) in [
        ("0.0.0.0:0", "8.8.8.8:53"),
        ("[::]:0", "[2001:4860:4860::8888]:53"),
    ] {
        let Ok(sock) = UdpSocket::bind(bind) else {
            continue;
        };
        if sock.connect(target).is_err() {
            continue;
        }
        if let Ok(addr) = sock.local_addr()
            && !addr.ip().is_unspecified()
            && !addr.ip().is_loopback()
        {
            return Ok(addr.ip());
        }
    }
    bail!("cannot find this host's primary address (it has no default route); pass --node-ip")
}

/// The address this host sends from toward `dest` (the routing table's choice), e.g. the
/// address a joining host has on the link to the API server.
pub fn source_ip_toward(dest: IpAddr) -> Result<IpAddr> {
    let bind = match dest {
        IpAddr::V4(_) => "0.0.0.0:0",
        IpAddr::V6(_) => "[::]:0",
    };
    let sock = UdpSocket::bind(bind).context("cannot open a UDP socket")?;
    sock.connect(std::net::SocketAddr::new(dest, 9))
        .with_context(|| format!("no route to {dest}; pass --node-ip"))?;
    let ip = sock
        .local_addr()
        .context("cannot read the socket's address")?
        .ip();
    if ip.is_unspecified() {
        bail!("no address of this host reaches {dest}; pass --node-ip");
    }
    Ok(ip)
}

/// Whether `ip` is one of this host's addresses: binding to it fails only with "address
/// not available" when it is not (any other failure says nothing about the address).
pub fn is_local_address(ip: IpAddr) -> bool {
    match std::net::TcpListener::bind(std::net::SocketAddr::new(ip, 0)) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::AddrNotAvailable,
    }
}

/// Every address of this host's interfaces with its prefix length.
pub fn interface_addresses() -> Result<Vec<(IpAddr, u8)>> {
    let ifaces =
        nix::ifaddrs::getifaddrs().context("cannot list this host's network interfaces")?;
    let mut found = Vec::new();
    for iface in ifaces {
        let (Some(addr), Some(mask)) = (iface.address, iface.netmask) else {
            continue;
        };
        let (ip, mask) = match (addr.as_sockaddr_in(), mask.as_sockaddr_in()) {
            (Some(a), Some(m)) => (IpAddr::V4(a.ip()), IpAddr::V4(m.ip())),
            _ => match (addr.as_sockaddr_in6(), mask.as_sockaddr_in6()) {
                (Some(a), Some(m)) => (IpAddr::V6(a.ip()), IpAddr::V6(m.ip())),
                _ => continue,
            },
        };
        if let Ok(prefix) = ipnet::ip_mask_to_prefix(mask) {
            found.push((ip, prefix));
        }
    }
    Ok(found)
}

/// A process listening on a TCP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub pid: Option<u32>,
    pub command: Option<String>,
}

impl std::fmt::Display for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.command, self.pid) {
            (Some(cmd), Some(pid)) => write!(f, "{cmd} (pid {pid})"),
            _ => f.write_str("an unknown process"),
        }
    }
}

/// Who listens on `port` (any address, IPv4 or IPv6), read from /proc without touching it.
pub fn listeners(port: u16) -> Vec<Listener> {
    listeners_in(Path::new("/proc"), port)
}

fn listeners_in(proc: &Path, port: u16) -> Vec<Listener> {
    let mut inodes = HashSet::new();
    for table in ["net/tcp", "net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(proc.join(table)) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return Vec::new();
    }
    let mut found: Vec<Listener> = owners(proc, &inodes);
    if found.is_empty() {
        // The socket belongs to a process we cannot see (another PID namespace).
        found.push(Listener {
            pid: None,
            command: None,
        });
    }
    found
}

/// Socket inodes in LISTEN state (0A) on `port` from a /proc/net/tcp table.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let state = fields.get(3)?;
            let inode = fields.get(9)?.parse().ok()?;
            let (_, hex_port) = local.rsplit_once(':')?;
            let p = u16::from_str_radix(hex_port, 16).ok()?;
            (p == port && *state == "0A").then_some(inode)
        })
        .collect()
}

fn owners(proc: &Path, inodes: &HashSet<u64>) -> Vec<Listener> {
    let Ok(entries) = std::fs::read_dir(proc) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .ok()
                .and_then(|target| {
                    let t = target.to_str()?;
                    t.strip_prefix("socket:[")?
                        .strip_suffix(']')?
                        .parse::<u64>()
                        .ok()
                })
                .is_some_and(|inode| inodes.contains(&inode))
        });
        if holds {
            let command = std::fs::read_to_string(entry.path().join("comm"))
                .ok()
                .map(|c| c.trim().to_string());
            found.push(Listener {
                pid: Some(pid),
                command,
            });
        }
    }
    found.sort_by_key(|l| l.pid);
    found
}

/// An address as it appears in a URL's host part (IPv6 in brackets).
pub fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_entries_only() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:0953 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n\
   1: 0100007F:0953 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0 100 0 0 10 0\n\
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table, 2387), vec![4242]);
        assert_eq!(listening_inodes(table, 22), vec![4444]);
        assert!(listening_inodes(table, 80).is_empty());
    }

    #[test]
    fn names_this_process_as_the_holder_of_its_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let found = listeners(port);
        assert!(
            found.iter().any(|l| l.pid == Some(std::process::id())),
            "port {port} holders: {found:?}"
        );
        drop(listener);
        assert!(listeners(port).is_empty());
    }

    #[test]
    fn primary_ip_is_a_real_address() {
        // Test hosts always have a default route (Docker needs one); the address must be
        // neither loopback nor unspecified.
        let ip = primary_ip().unwrap();
        assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
    }
}
