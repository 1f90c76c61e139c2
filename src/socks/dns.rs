//! Split name resolution for SOCKS clients that send host names (`curl --socks5-hostname`,
//! browsers with remote DNS): names in the cluster domain go to the cluster DNS Service,
//! everything else to the host's own resolver.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

/// Where a name is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    /// A cluster name, as the fully qualified name to ask cluster DNS for.
    Cluster(String),
    /// Any other name, for the host resolver.
    Host(String),
}

/// Sorts a name the client sent. Names under the cluster domain are cluster names, and so
/// are the short `name.namespace.svc` forms pods use (completed with the domain, because
/// outside a pod no search path does it). `domain` is the cluster domain (cluster.local).
pub fn classify(name: &str, domain: &str) -> Option<Name> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 || name.split('.').any(str::is_empty) {
        return None;
    }
    let domain = domain.to_ascii_lowercase();
    if name == domain || name.ends_with(&format!(".{domain}")) {
        return Some(Name::Cluster(name));
    }
    if name.ends_with(".svc") && name.split('.').count() >= 3 {
        return Some(Name::Cluster(format!("{name}.{domain}")));
    }
    Some(Name::Host(name))
}

/// Why a name has no address.
#[derive(Debug)]
pub enum LookupError {
    /// A cluster name, but no cluster DNS server is known.
    NoClusterDns,
    Failed(anyhow::Error),
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::NoClusterDns => {
                f.write_str("no cluster DNS server is known (no cluster state, no --dns-server)")
            }
            LookupError::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

/// Resolves names for the proxy.
pub struct Resolver {
    domain: String,
    cluster: Option<(TokioResolver, SocketAddr)>,
    timeout: Duration,
}

impl Resolver {
    /// `cluster_dns` is the cluster DNS Service (or `--dns-server`); `None` when unknown.
    pub fn new(domain: &str, cluster_dns: Option<SocketAddr>, timeout: Duration) -> Result<Self> {
        let cluster = match cluster_dns {
            Some(server) => Some((cluster_resolver(server, timeout)?, server)),
            None => None,
        };
        Ok(Self {
            domain: domain.to_string(),
            cluster,
            timeout,
        })
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Every address of `name` (checked against the destination allowlist by the caller).
    pub async fn lookup(&self, name: &Name) -> Result<Vec<IpAddr>, LookupError> {
        match name {
            Name::Cluster(fqdn) => {
                let Some((resolver, server)) = &self.cluster else {
                    return Err(LookupError::NoClusterDns);
                };
                // The trailing dot makes the name absolute: no search domains are tried.
                let lookup = resolver
                    .lookup_ip(format!("{fqdn}."))
                    .await
                    .with_context(|| format!("cluster DNS {server} has no address for {fqdn}"))
                    .map_err(LookupError::Failed)?;
                Ok(lookup.iter().collect())
            }
            Name::Host(host) => {
                // getaddrinfo, so /etc/hosts and nsswitch apply as for any program here.
                let found =
                    tokio::time::timeout(self.timeout, tokio::net::lookup_host((host.as_str(), 0)))
                        .await
                        .map_err(|_| {
                            LookupError::Failed(anyhow::anyhow!("looking up {host} timed out"))
                        })?
                        .with_context(|| format!("the host resolver has no address for {host}"))
                        .map_err(LookupError::Failed)?;
                Ok(found.map(|addr| addr.ip()).collect())
            }
        }
    }
}

/// A resolver that asks only the cluster DNS server, over UDP and then TCP.
fn cluster_resolver(server: SocketAddr, timeout: Duration) -> Result<TokioResolver> {
    let mut udp = ConnectionConfig::udp();
    udp.port = server.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = server.port();
    let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(
        server.ip(),
        true,
        vec![udp, tcp],
    )]);
    let mut options = ResolverOpts::default();
    options.timeout = timeout;
    options.attempts = 1;
    // Cluster names live only in cluster DNS; /etc/hosts must not shadow them.
    options.use_hosts_file = ResolveHosts::Never;
    // CoreDNS caches already; a cache here would keep a "no such name" from a CoreDNS that
    // had not synced yet, or from before a Service was created, for its negative TTL.
    options.cache_size = 0;
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(options)
        .build()
        .with_context(|| format!("cannot set up a DNS resolver for {server}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(s: &str) -> Option<Name> {
        Some(Name::Cluster(s.into()))
    }

    fn host(s: &str) -> Option<Name> {
        Some(Name::Host(s.into()))
    }

    #[test]
    fn names_are_sorted_into_cluster_and_host() {
        let d = "cluster.local";
        assert_eq!(
            classify("web.default.svc.cluster.local", d),
            cluster("web.default.svc.cluster.local")
        );
        assert_eq!(
            classify("Web.Default.SVC.cluster.local.", d),
            cluster("web.default.svc.cluster.local")
        );
        assert_eq!(
            classify("10-244-0-5.default.pod.cluster.local", d),
            cluster("10-244-0-5.default.pod.cluster.local")
        );
        assert_eq!(
            classify("web.default.svc", d),
            cluster("web.default.svc.cluster.local")
        );
        assert_eq!(
            classify("_http._tcp.web.default.svc", d),
            cluster("_http._tcp.web.default.svc.cluster.local")
        );
        assert_eq!(classify("example.com", d), host("example.com"));
        assert_eq!(classify("localhost", d), host("localhost"));
        // Only the full domain counts: these are someone else's names.
        assert_eq!(classify("evilcluster.local", d), host("evilcluster.local"));
        assert_eq!(classify("default.svc", d), host("default.svc"));
        assert_eq!(classify("svc.example.com", d), host("svc.example.com"));
        // Another cluster domain.
        assert_eq!(
            classify("web.default.svc.k8s.test", "k8s.test"),
            cluster("web.default.svc.k8s.test")
        );
        assert_eq!(
            classify("web.default.svc.cluster.local", "k8s.test"),
            host("web.default.svc.cluster.local")
        );
        for bad in ["", ".", "a..b", &"a.".repeat(130)] {
            assert_eq!(classify(bad, d), None, "{bad:?}");
        }
    }
}
