//! Browser help: the PAC file (`kinit socks --pac`) that sends only cluster addresses and
//! names through the proxy, and the startup banner saying how to use it from a laptop.

use std::fmt::Write as _;
use std::net::SocketAddr;

use ipnet::IpNet;

use super::policy::Allowlist;

/// A proxy auto-config script. `port` is where the browser reaches the proxy (the laptop
/// end of `ssh -L`, normally the same port). Only IP literals are tested against networks:
/// `isInNet` on a name would make the browser resolve it locally, which is what remote
/// DNS through the proxy is there to avoid.
pub fn pac(port: u16, domain: &str, nets: &[IpNet]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "// Written by `kinit socks --pac`: cluster names and addresses go through the\n\
         // SOCKS5 proxy (reached at 127.0.0.1:{port}, e.g. through `ssh -L`), the rest direct."
    );
    let _ = writeln!(s, "function FindProxyForURL(url, host) {{");
    let _ = writeln!(s, "  var proxy = \"SOCKS5 127.0.0.1:{port}\";");
    let _ = writeln!(s, "  host = host.toLowerCase();");
    let _ = writeln!(
        s,
        "  if (dnsDomainIs(host, \".{domain}\") || shExpMatch(host, \"*.*.svc\")) return proxy;"
    );
    let v4: Vec<_> = nets
        .iter()
        .filter_map(|n| match n {
            IpNet::V4(n) => Some(n),
            IpNet::V6(_) => None,
        })
        .collect();
    if !v4.is_empty() {
        let _ = writeln!(s, "  if (/^\\d+\\.\\d+\\.\\d+\\.\\d+$/.test(host)) {{");
        for n in v4 {
            let _ = writeln!(
                s,
                "    if (isInNet(host, \"{}\", \"{}\")) return proxy;",
                n.network(),
                n.netmask()
            );
        }
        let _ = writeln!(s, "  }}");
    }
    let v6: Vec<_> = nets.iter().filter(|n| matches!(n, IpNet::V6(_))).collect();
    if !v6.is_empty() {
        // isInNetEx (IPv6-aware) exists in Chrome and Firefox; older browsers skip this.
        let _ = writeln!(
            s,
            "  if (host.indexOf(\":\") >= 0 && typeof isInNetEx == \"function\") {{"
        );
        let _ = writeln!(s, "    host = host.replace(/^\\[|\\]$/g, \"\");");
        for n in v6 {
            let _ = writeln!(s, "    if (isInNetEx(host, \"{n}\")) return proxy;");
        }
        let _ = writeln!(s, "  }}");
    }
    let _ = writeln!(s, "  return \"DIRECT\";");
    let _ = writeln!(s, "}}");
    s
}

/// What the banner reports.
pub struct Banner<'a> {
    pub listen: SocketAddr,
    /// How the user reaches this host by ssh (its name or node IP).
    pub ssh_host: &'a str,
    pub clients: &'a Allowlist,
    pub destinations: &'a Allowlist,
    pub domain: &'a str,
    pub dns: Option<SocketAddr>,
    pub auth_user: Option<&'a str>,
}

impl Banner<'_> {
    pub fn render(&self) -> String {
        let port = self.listen.port();
        // ssh forwards to an address this host listens on: loopback covers 0.0.0.0 and ::.
        let target = if self.listen.ip().is_unspecified() || self.listen.ip().is_loopback() {
            "127.0.0.1".to_string()
        } else {
            match self.listen {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            }
        };
        let dns = match self.dns {
            Some(d) => format!("through cluster DNS at {d}"),
            None => "not resolved: no cluster DNS known (--dns-server)".to_string(),
        };
        let auth = match self.auth_user {
            Some(user) => format!("username/password required (user {user})"),
            None => "none".to_string(),
        };
        let mut s = String::new();
        let _ = writeln!(s, "kinit socks: SOCKS5 proxy listening on {}", self.listen);
        let _ = writeln!(s, "  destinations allowed: {}", self.destinations);
        let _ = writeln!(
            s,
            "  names in {} and name.namespace.svc: {dns}",
            self.domain
        );
        let _ = writeln!(
            s,
            "  clients allowed: {}; authentication: {auth}",
            self.clients
        );
        let _ = writeln!(s);
        let _ = writeln!(s, "From your laptop:");
        let _ = writeln!(
            s,
            "  1. Tunnel (leave it running):  ssh -N -L {port}:{target}:{port} user@{}",
            self.ssh_host
        );
        let _ = writeln!(
            s,
            "  2. Firefox: Settings > Network Settings > Manual proxy configuration:\n\
             \x20    SOCKS Host 127.0.0.1, Port {port}, SOCKS v5, tick \"Proxy DNS when using SOCKS v5\".\n\
             \x20    Or only cluster traffic: run `kinit socks --pac --port {port} > kinit.pac`, copy the\n\
             \x20    file to the laptop and set \"Automatic proxy configuration URL\" to file:///path/to/kinit.pac"
        );
        let _ = writeln!(
            s,
            "  3. Chrome: google-chrome --proxy-server=\"socks5://127.0.0.1:{port}\"  (names resolve\n\
             \x20    through the proxy), or --proxy-pac-url=\"file:///path/to/kinit.pac\" for cluster\n\
             \x20    traffic only. Chrome cannot send a SOCKS username/password."
        );
        let _ = writeln!(
            s,
            "  4. curl: curl --socks5-hostname 127.0.0.1:{port} http://<service>.<namespace>.svc.{}/",
            self.domain
        );
        let _ = writeln!(s);
        let _ = writeln!(s, "Ctrl-C stops the proxy.");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pac_sends_cluster_names_and_ranges_through_the_proxy() {
        let nets: Vec<IpNet> = [
            "10.244.0.0/16",
            "10.96.0.0/12",
            "10.0.2.15/32",
            "fd00:10::/108",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let p = pac(8082, "cluster.local", &nets);
        assert!(p.contains("var proxy = \"SOCKS5 127.0.0.1:8082\";"), "{p}");
        assert!(p.contains("dnsDomainIs(host, \".cluster.local\")"), "{p}");
        assert!(
            p.contains("isInNet(host, \"10.96.0.0\", \"255.240.0.0\")"),
            "{p}"
        );
        assert!(
            p.contains("isInNet(host, \"10.244.0.0\", \"255.255.0.0\")"),
            "{p}"
        );
        assert!(
            p.contains("isInNet(host, \"10.0.2.15\", \"255.255.255.255\")"),
            "{p}"
        );
        assert!(p.contains("isInNetEx(host, \"fd00:10::/108\")"), "{p}");
        assert!(p.trim_end().ends_with("return \"DIRECT\";\n}"), "{p}");
        // isInNet is reached only for IPv4 literals, never for names.
        let guard = p.find("test(host)").unwrap();
        assert!(p.find("isInNet(").unwrap() > guard);
    }

    #[test]
    fn banner_says_how_to_connect() {
        let clients = Allowlist::Nets(vec!["127.0.0.0/8".parse().unwrap()]);
        let dest = Allowlist::Nets(vec!["10.96.0.0/12".parse().unwrap()]);
        let b = Banner {
            listen: "127.0.0.1:8082".parse().unwrap(),
            ssh_host: "10.0.2.15",
            clients: &clients,
            destinations: &dest,
            domain: "cluster.local",
            dns: Some("10.96.0.10:53".parse().unwrap()),
            auth_user: None,
        }
        .render();
        assert!(b.contains("listening on 127.0.0.1:8082"), "{b}");
        assert!(
            b.contains("ssh -N -L 8082:127.0.0.1:8082 user@10.0.2.15"),
            "{b}"
        );
        assert!(b.contains("through cluster DNS at 10.96.0.10:53"), "{b}");
        assert!(b.contains("Proxy DNS when using SOCKS v5"), "{b}");
        assert!(
            b.contains("--proxy-server=\"socks5://127.0.0.1:8082\""),
            "{b}"
        );
    }
}
