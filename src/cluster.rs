//! The settings that define a cluster: validated from flags, saved in the state directory,
//! and read back so every later command agrees with the first `kinit up`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::cli::ClusterArgs;
use crate::versions::Release;
use crate::{fs, net};

pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";
pub const DEFAULT_DNS_DOMAIN: &str = "cluster.local";
/// kinit's default pod range, as flannel and kind use.
pub const DEFAULT_POD_CIDR: &str = "10.244.0.0/16";
/// Each node gets this slice of the pod range (the controller-manager's default).
pub const NODE_CIDR_PREFIX: u8 = 24;
pub const API_SERVER_PORT: u16 = 6443;

/// What identifies one cluster; everything else is derived from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    pub node_ip: IpAddr,
    pub hostname: String,
    pub service_cidr: IpNet,
    pub dns_domain: String,
    /// Clusters made before the pod range was a setting used the default.
    #[serde(default = "default_pod_cidr")]
    pub pod_cidr: IpNet,
    /// The Kubernetes version the cluster runs; clusters made before it was a setting ran
    /// v1.36.3.
    #[serde(default = "first_kubernetes_version")]
    pub kubernetes_version: String,
    /// Where its images come from when not registry.k8s.io: remembered, so that a later
    /// `kinit up` without the flag keeps pulling from the same place (kubeadm keeps its
    /// imageRepository too). Not part of its identity: a new flag value replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_repository: Option<String>,
}

fn first_kubernetes_version() -> String {
    "v1.36.3".to_string()
}

fn default_pod_cidr() -> IpNet {
    DEFAULT_POD_CIDR
        .parse()
        .unwrap_or_else(|_| unreachable!("a valid constant"))
}

impl Settings {
    /// Fills in defaults for every flag the user left out.
    pub fn from_args(args: &ClusterArgs) -> Result<Self> {
        let node_ip = match args.node_ip {
            Some(ip) => ip,
            None => net::primary_ip()?,
        };
        let hostname = match &args.hostname {
            Some(name) => name.clone(),
            None => default_hostname()?,
        };
        let service_cidr = match args.service_cidr {
            Some(cidr) => cidr,
            None => parse_service_cidr(DEFAULT_SERVICE_CIDR).map_err(anyhow::Error::msg)?,
        };
        let dns_domain = args
            .dns_domain
            .clone()
            .unwrap_or_else(|| DEFAULT_DNS_DOMAIN.to_string());
        let settings = Self {
            node_ip,
            hostname,
            service_cidr,
            dns_domain,
            pod_cidr: args.pod_cidr.unwrap_or_else(default_pod_cidr),
            kubernetes_version: args
                .kubernetes_version
                .clone()
                .unwrap_or_else(|| Release::default().kubernetes.to_string()),
            image_repository: None,
        };
        settings.check_ranges()?;
        Ok(settings)
    }

    /// Settings for an existing cluster: the saved ones, refusing flags that contradict them,
    /// because changing them under a running cluster would break its certificates and data.
    pub fn reconcile(saved: Settings, args: &ClusterArgs) -> Result<Self> {
        let mut conflicts = Vec::new();
        if args.hostname.as_ref().is_some_and(|h| *h != saved.hostname) {
            conflicts.push(format!("--hostname (cluster has {})", saved.hostname));
        }
        if args.service_cidr.is_some_and(|c| c != saved.service_cidr) {
            conflicts.push(format!(
                "--service-cidr (cluster has {})",
                saved.service_cidr
            ));
        }
        if args
            .dns_domain
            .as_ref()
            .is_some_and(|d| *d != saved.dns_domain)
        {
            conflicts.push(format!("--dns-domain (cluster has {})", saved.dns_domain));
        }
        if args.pod_cidr.is_some_and(|c| c != saved.pod_cidr) {
            conflicts.push(format!("--pod-cidr (cluster has {})", saved.pod_cidr));
        }
        if let Some(wanted) = &args.kubernetes_version
            && *wanted != saved.kubernetes_version
        {
            bail!(
                "the existing cluster runs Kubernetes {} and kinit does not change the version of \
                 a cluster (upgrades are not supported); leave out --kubernetes-version {wanted} \
                 (and kubernetesVersion in the config file), or run `kinit down --purge` to start a new cluster",
                saved.kubernetes_version
            );
        }
        if !conflicts.is_empty() {
            bail!(
                "the existing cluster was created with other settings: {}; \
                 leave these flags out, or run `kinit down --purge` to start a new cluster",
                conflicts.join(", ")
            );
        }
        Ok(saved)
    }

    /// Where the node lives now. Its address is not part of a cluster's identity (DHCP
    /// moves it): `--node-ip` moves the cluster to the address it names; without it, a saved
    /// address this host no longer has gives way to the host's primary address. Returns
    /// the address the cluster moved from.
    pub fn follow_node_ip(
        &mut self,
        flag: Option<IpAddr>,
        is_local: impl Fn(IpAddr) -> bool,
        primary: impl FnOnce() -> Result<IpAddr>,
    ) -> Result<Option<IpAddr>> {
        let new = match flag {
            Some(ip) => ip,
            None if is_local(self.node_ip) => return Ok(None),
            None => primary()?,
        };
        if new == self.node_ip {
            return Ok(None);
        }
        let old = std::mem::replace(&mut self.node_ip, new);
        self.check_ranges()?;
        Ok(Some(old))
    }

    /// The Kubernetes release the cluster runs, if this kinit runs it (a cluster made by
    /// another kinit may run a version this one does not know).
    pub fn release(&self) -> Result<Release> {
        Release::find(&self.kubernetes_version).map_err(|supported| {
            anyhow::anyhow!(
                "this cluster runs Kubernetes {}, which this kinit does not run ({supported}); \
                 use the kinit that created it, or `kinit down --purge` to start a new cluster",
                self.kubernetes_version
            )
        })
    }

    /// The first address of the Service range, which the `kubernetes` Service takes.
    pub fn first_service_ip(&self) -> IpAddr {
        nth_address(self.service_cidr, 1)
    }

    /// The cluster DNS Service address: the 10th of the Service range, as kubeadm does.
    pub fn dns_service_ip(&self) -> IpAddr {
        nth_address(self.service_cidr, 10)
    }

    /// The node's share of the pod range: its first /24, which is what the
    /// controller-manager allocates to the only node.
    pub fn node_pod_cidr(&self) -> IpNet {
        self.pod_cidr
            .subnets(NODE_CIDR_PREFIX)
            .ok()
            .and_then(|mut s| s.next())
            .unwrap_or(self.pod_cidr)
    }

    /// The pod range, the Service range and the node must not overlap: a packet to an
    /// address in two of them would go to the wrong place.
    fn check_ranges(&self) -> Result<()> {
        if self.pod_cidr.contains(&self.service_cidr.network())
            || self.service_cidr.contains(&self.pod_cidr.network())
        {
            bail!(
                "the pod range {} overlaps the Service range {}; pick ranges that do not overlap",
                self.pod_cidr,
                self.service_cidr
            );
        }
        for (range, what) in [(self.pod_cidr, "pod"), (self.service_cidr, "Service")] {
            if range.contains(&self.node_ip) {
                bail!(
                    "the node IP {} is inside the {what} range {range}; pick a {what} range that \
                     does not hold this host's address",
                    self.node_ip
                );
            }
        }
        Ok(())
    }

    /// `https://<node-ip>:6443`, bracketing IPv6 addresses.
    pub fn api_server_url(&self) -> String {
        format!(
            "https://{}",
            std::net::SocketAddr::new(self.node_ip, API_SERVER_PORT)
        )
    }

    /// Reads the saved settings; `None` when no cluster was created in this state directory.
    pub fn load(path: &Path) -> Result<Option<Self>> {
        let Some(bytes) = fs::read_optional(path)? else {
            return Ok(None);
        };
        let corrupt = || {
            format!(
                "the state file {} is corrupt; fix it, or run `kinit down --purge` to start over",
                path.display()
            )
        };
        let settings: Settings = serde_yaml::from_slice(&bytes).with_context(corrupt)?;
        settings.validate().with_context(corrupt)?;
        Ok(Some(settings))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let yaml = serde_yaml::to_string(self).context("cannot serialize the cluster settings")?;
        let text =
            format!("# Written by kinit up; the settings this cluster was created with.\n{yaml}");
        fs::write_file(path, text.as_bytes(), fs::Mode::Public)
    }

    fn validate(&self) -> Result<()> {
        parse_hostname(&self.hostname).map_err(anyhow::Error::msg)?;
        parse_service_cidr(&self.service_cidr.to_string()).map_err(anyhow::Error::msg)?;
        parse_dns_domain(&self.dns_domain).map_err(anyhow::Error::msg)?;
        parse_pod_cidr(&self.pod_cidr.to_string()).map_err(anyhow::Error::msg)?;
        self.check_ranges()
    }
}

/// The n-th address of a network (0 is the network address itself).
pub fn nth_address(net: IpNet, n: u32) -> IpAddr {
    match net.network() {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(n))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(u128::from(n)))),
    }
}

/// The host name, lowercased, as Kubernetes needs a node name to be.
fn default_hostname() -> Result<String> {
    let raw = nix::unistd::gethostname().context("cannot read this host's name")?;
    let name = raw.to_string_lossy().to_lowercase();
    parse_hostname(&name).map_err(|e| {
        anyhow::anyhow!("this host's name cannot be a Kubernetes node name ({e}); pass --hostname")
    })
}

/// A node name: an RFC 1123 DNS subdomain, as Kubernetes requires.
pub fn parse_hostname(s: &str) -> Result<String, String> {
    if is_dns_subdomain(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "'{s}' is not a valid host name: use lowercase letters, digits, '-' and '.', \
             start and end with a letter or digit, at most 253 characters"
        ))
    }
}

pub fn parse_dns_domain(s: &str) -> Result<String, String> {
    let s = s.strip_suffix('.').unwrap_or(s);
    if is_dns_subdomain(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "'{s}' is not a valid DNS domain (for example: cluster.local)"
        ))
    }
}

/// A pod range: an IPv4 network address from /8 to /24, so the node's /24 fits in it.
/// (kinit's bridge network is IPv4 only.)
pub fn parse_pod_cidr(s: &str) -> Result<IpNet, String> {
    let net: IpNet = s
        .parse()
        .map_err(|_| format!("'{s}' is not a CIDR (expected a range like {DEFAULT_POD_CIDR})"))?;
    if net.trunc() != net {
        return Err(format!(
            "'{s}' has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    match net {
        IpNet::V6(_) => Err(format!("'{s}' is IPv6; the pod range must be IPv4")),
        IpNet::V4(_) if !(8..=NODE_CIDR_PREFIX).contains(&net.prefix_len()) => Err(format!(
            "'{s}' has a /{} prefix; the pod range needs a prefix from /8 to /{NODE_CIDR_PREFIX}",
            net.prefix_len()
        )),
        IpNet::V4(_) => Ok(net),
    }
}

/// A Service range the API server accepts: a network address (no host bits) no larger
/// than the API server allows (/12 for IPv4, /108 for IPv6) and large enough to hold the
/// cluster DNS address at its 10th IP.
pub fn parse_service_cidr(s: &str) -> Result<IpNet, String> {
    let net: IpNet = s.parse().map_err(|_| {
        format!("'{s}' is not a CIDR (expected a range like {DEFAULT_SERVICE_CIDR})")
    })?;
    if net.trunc() != net {
        return Err(format!(
            "'{s}' has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
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
    Ok(net)
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The settings unit tests share: node kinit-test at 10.0.2.15, default ranges.
#[cfg(test)]
pub fn test_settings() -> Settings {
    Settings {
        node_ip: "10.0.2.15".parse().expect("valid IP"),
        hostname: "kinit-test".into(),
        service_cidr: "10.96.0.0/12".parse().expect("valid CIDR"),
        dns_domain: "cluster.local".into(),
        pod_cidr: DEFAULT_POD_CIDR.parse().expect("valid CIDR"),
        kubernetes_version: Release::default().kubernetes.to_string(),
        image_repository: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        test_settings()
    }

    #[test]
    fn service_cidr_validation() {
        assert!(parse_service_cidr("10.96.0.0/12").is_ok());
        assert!(parse_service_cidr("fd00:10:96::/112").is_ok());
        let err = parse_service_cidr("10.96.0.1/12").unwrap_err();
        assert!(err.contains("did you mean 10.96.0.0/12"), "{err}");
        assert!(
            parse_service_cidr("10.0.0.0/8")
                .unwrap_err()
                .contains("/12 to /28")
        );
        assert!(parse_service_cidr("10.0.0.0/30").is_err());
        assert!(parse_service_cidr("10.0.0.0").is_err());
        assert!(parse_service_cidr("banana").is_err());
    }

    #[test]
    fn hostname_and_domain_validation() {
        assert!(parse_hostname("kinit-test").is_ok());
        assert!(parse_hostname("node1.example.com").is_ok());
        for bad in [
            "",
            "Upper",
            "-lead",
            "trail-",
            "a..b",
            "under_score",
            &"a".repeat(64),
        ] {
            assert!(parse_hostname(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_dns_domain("cluster.local.").unwrap(), "cluster.local");
        assert!(parse_dns_domain("bad domain").is_err());
    }

    #[test]
    fn derived_addresses() {
        let s = settings();
        assert_eq!(s.first_service_ip().to_string(), "10.96.0.1");
        assert_eq!(nth_address(s.service_cidr, 10).to_string(), "10.96.0.10");
        assert_eq!(s.dns_service_ip().to_string(), "10.96.0.10");
        assert_eq!(s.api_server_url(), "https://10.0.2.15:6443");
        let v6 = Settings {
            node_ip: "fd00::5".parse().unwrap(),
            ..s
        };
        assert_eq!(v6.api_server_url(), "https://[fd00::5]:6443");
    }

    #[test]
    fn pod_ranges_are_checked_and_give_the_node_its_first_slice() {
        assert!(parse_pod_cidr("10.244.0.0/16").is_ok());
        for (bad, why) in [
            ("10.244.0.1/16", "host bits"),
            ("10.244.0.0/25", "/25 prefix"),
            ("fd00::/64", "IPv6"),
            ("nonsense", "not a CIDR"),
        ] {
            let err = parse_pod_cidr(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert_eq!(settings().node_pod_cidr().to_string(), "10.244.0.0/24");
        let overlapping = ClusterArgs {
            node_ip: Some("10.0.2.15".parse().unwrap()),
            hostname: Some("kinit-test".into()),
            pod_cidr: Some("10.96.0.0/16".parse().unwrap()),
            ..Default::default()
        };
        let err = Settings::from_args(&overlapping).unwrap_err().to_string();
        assert!(err.contains("overlaps the Service range"), "{err}");
        let holding_node = ClusterArgs {
            pod_cidr: Some("10.0.0.0/16".parse().unwrap()),
            ..overlapping
        };
        let err = Settings::from_args(&holding_node).unwrap_err().to_string();
        assert!(err.contains("is inside the pod range"), "{err}");
        // A settings file from before the pod range was saved reads as the default.
        let old = "nodeIp: 10.0.2.15\nhostname: kinit-test\nserviceCidr: 10.96.0.0/12\ndnsDomain: cluster.local\n";
        let read: Settings = serde_yaml::from_str(old).unwrap();
        assert_eq!(read, settings());
    }

    #[test]
    fn the_node_follows_its_address() {
        let primary = || Ok("192.168.1.20".parse().unwrap());
        let gone = |_| false;
        let here = |_| true;
        // A flag moves it, whether the old address is still there or not.
        let mut s = settings();
        let flag = Some("10.0.2.16".parse().unwrap());
        assert_eq!(
            s.follow_node_ip(flag, here, primary).unwrap(),
            Some("10.0.2.15".parse().unwrap())
        );
        assert_eq!(s.node_ip.to_string(), "10.0.2.16");
        // Without one, only a lost address moves it, to the primary one.
        let mut s = settings();
        assert_eq!(s.follow_node_ip(None, here, primary).unwrap(), None);
        assert_eq!(s, settings());
        assert!(s.follow_node_ip(None, gone, primary).unwrap().is_some());
        assert_eq!(s.node_ip.to_string(), "192.168.1.20");
        // The same address is no move; an address inside the pod range is refused.
        let mut s = settings();
        assert_eq!(
            s.follow_node_ip(Some(s.node_ip), gone, primary).unwrap(),
            None
        );
        let err = s
            .follow_node_ip(Some("10.244.3.3".parse().unwrap()), here, primary)
            .unwrap_err()
            .to_string();
        assert!(err.contains("10.244.0.0/16"), "{err}");
        // Flags that name the cluster's identity are still refused by reconcile; the node
        // IP is not one of them.
        let moved = ClusterArgs {
            node_ip: Some("10.9.9.9".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(Settings::reconcile(settings(), &moved).unwrap(), settings());
    }

    #[test]
    fn reconcile_refuses_conflicting_flags_only() {
        let same = ClusterArgs {
            hostname: Some("kinit-test".into()),
            ..Default::default()
        };
        assert_eq!(Settings::reconcile(settings(), &same).unwrap(), settings());
        let other = ClusterArgs {
            service_cidr: Some("10.100.0.0/16".parse().unwrap()),
            ..Default::default()
        };
        let err = Settings::reconcile(settings(), &other)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--service-cidr (cluster has 10.96.0.0/12)"),
            "{err}"
        );
    }

    #[test]
    fn the_kubernetes_version_of_a_cluster_never_changes() {
        let previous = crate::versions::SUPPORTED[1].kubernetes;
        let new = Settings::from_args(&ClusterArgs {
            node_ip: Some("10.0.2.15".parse().unwrap()),
            hostname: Some("kinit-test".into()),
            kubernetes_version: Some(previous.into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(new.release().unwrap(), crate::versions::SUPPORTED[1]);
        let same = ClusterArgs {
            kubernetes_version: Some(previous.into()),
            ..Default::default()
        };
        assert_eq!(Settings::reconcile(new.clone(), &same).unwrap(), new);
        let err = Settings::reconcile(
            new,
            &ClusterArgs {
                kubernetes_version: Some(Release::default().kubernetes.into()),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&format!("runs Kubernetes {previous}")),
            "{err}"
        );
        assert!(err.contains("upgrades are not supported"), "{err}");

        // A state file from before the version was a setting ran v1.36.3.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.yaml");
        std::fs::write(
            &path,
            "nodeIp: 10.0.2.15\nhostname: old\nserviceCidr: 10.96.0.0/12\ndnsDomain: cluster.local\n",
        )
        .unwrap();
        let old = Settings::load(&path).unwrap().unwrap();
        assert_eq!(old.kubernetes_version, "v1.36.3");
        // One no kinit here runs still loads (status, down work); up says what to do.
        std::fs::write(&path, "nodeIp: 10.0.2.15\nhostname: old\nserviceCidr: 10.96.0.0/12\ndnsDomain: cluster.local\nkubernetesVersion: v1.20.0\n").unwrap();
        let unknown = Settings::load(&path).unwrap().unwrap();
        let err = unknown.release().unwrap_err().to_string();
        assert!(
            err.contains("runs Kubernetes v1.20.0, which this kinit does not run"),
            "{err}"
        );
    }

    #[test]
    fn state_file_round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.yaml");
        assert!(Settings::load(&path).unwrap().is_none());
        settings().save(&path).unwrap();
        assert_eq!(Settings::load(&path).unwrap(), Some(settings()));
        std::fs::write(&path, "nodeIp: [not an ip\n").unwrap();
        let err = format!("{:#}", Settings::load(&path).unwrap_err());
        assert!(err.contains("is corrupt"), "{err}");
        std::fs::write(
            &path,
            "nodeIp: 10.0.2.15\nhostname: BAD\nserviceCidr: 10.96.0.0/12\ndnsDomain: x\n",
        )
        .unwrap();
        assert!(Settings::load(&path).is_err());
    }
}
