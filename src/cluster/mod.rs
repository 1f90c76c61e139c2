//! The settings that define a cluster: validated from flags, saved in the state directory,
//! and read back so every later command agrees with the first `kinit up`. Its names and
//! ranges are types checked once where they are read ([`names`], [`cidr`]); the parts it
//! runs as, with their ports, are [`component`].

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::addons::Addon;
use crate::versions::Release;
use crate::{fs, net};

/// A value checked once by its `FromStr`, read from and written to `cluster.yaml` and
/// `kinit status -o json` as the plain string it was parsed from.
macro_rules! plain_string_form {
    ($($name:ident),*) => {$(
        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(s: String) -> Result<Self, String> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0.to_string()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(&self.0, f)
            }
        }
    )*};
}

pub mod cidr;
pub mod component;
pub mod flags;
pub mod joined;
pub mod names;
pub mod pod_security;
#[cfg(test)]
mod tests;

pub use cidr::{NODE_CIDR_PREFIX, PodCidr, ServiceCidr, nth_address};
pub use component::{
    API_SERVER_PORT, Component, Container, ROUTER_ADMIN_PORT, ROUTER_BGP_PORT, ROUTER_HEALTH_PORT,
};
pub use flags::{ExtraArg, ExtraArgs, FeatureGates};
pub use joined::{ClusterConfig, Joined};
pub use names::{DEFAULT_DNS_DOMAIN, DnsDomain, NodeName};
pub use pod_security::PodSecurity;

/// What identifies one cluster; everything else is derived from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    pub node_ip: IpAddr,
    pub hostname: NodeName,
    pub service_cidr: ServiceCidr,
    pub dns_domain: DnsDomain,
    /// Clusters made before the pod range was a setting used the default.
    #[serde(default)]
    pub pod_cidr: PodCidr,
    /// The Kubernetes version the cluster runs; clusters made before it was a setting ran
    /// v1.36.3.
    #[serde(default = "first_kubernetes_version")]
    pub kubernetes_version: String,
    /// Where its images come from when not registry.k8s.io: remembered, so that a later
    /// `kinit up` without the flag keeps pulling from the same place (kubeadm keeps its
    /// imageRepository too). Not part of its identity: a new flag value replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_repository: Option<String>,
    /// Feature gates for every component that takes them (`--feature-gates`). Like the
    /// extra args and the audit log, not part of the cluster's identity: a later `kinit up`
    /// keeps them, one that names them anew replaces them.
    #[serde(default, skip_serializing_if = "FeatureGates::is_empty")]
    pub feature_gates: FeatureGates,
    /// Extra command-line flags of the components (`--extra-arg`).
    #[serde(default, skip_serializing_if = "ExtraArgs::is_empty")]
    pub extra_args: ExtraArgs,
    /// The API server's audit log, under `<state>/logs` (`--audit-log`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub audit_log: bool,
    /// The Pod Security level enforced in every namespace but kube-system
    /// (`--pod-security`); privileged, the default, enforces nothing.
    #[serde(default, skip_serializing_if = "PodSecurity::is_privileged")]
    pub pod_security: PodSecurity,
    /// The addons `kinit up` applies (`kinit addons enable/disable` change the set);
    /// clusters made before addons existed get the defaults.
    #[serde(default = "Addon::defaults")]
    pub addons: BTreeSet<Addon>,
    /// On a host that joined another's cluster: that cluster. Such a host runs the node's
    /// part only (kinit-node, kube-proxy, kinit-boot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joined: Option<Joined>,
}

fn first_kubernetes_version() -> String {
    "v1.36.3".to_string()
}

/// What a command asks of the cluster, each value checked already; `None` leaves a setting
/// to its default (a new cluster) or to the saved one (an existing cluster).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requested {
    pub node_ip: Option<IpAddr>,
    pub hostname: Option<NodeName>,
    pub service_cidr: Option<ServiceCidr>,
    pub dns_domain: Option<DnsDomain>,
    pub pod_cidr: Option<PodCidr>,
    pub kubernetes_version: Option<String>,
    /// Each of these given replaces what the cluster has, as a whole.
    pub feature_gates: Option<FeatureGates>,
    pub extra_args: Option<ExtraArgs>,
    pub audit_log: Option<bool>,
    pub pod_security: Option<PodSecurity>,
}

impl Settings {
    /// A new cluster: what was asked, with defaults for everything left out.
    pub fn new(args: &Requested) -> Result<Self> {
        let node_ip = match args.node_ip {
            Some(ip) => ip,
            None => net::primary_ip()?,
        };
        let hostname = match &args.hostname {
            Some(name) => name.clone(),
            None => NodeName::of_this_host()?,
        };
        let mut settings = Self {
            node_ip,
            hostname,
            service_cidr: args.service_cidr.unwrap_or(ServiceCidr::DEFAULT),
            dns_domain: args.dns_domain.clone().unwrap_or_default(),
            pod_cidr: args.pod_cidr.unwrap_or(PodCidr::DEFAULT),
            kubernetes_version: args
                .kubernetes_version
                .clone()
                .unwrap_or_else(|| Release::default().kubernetes.to_string()),
            image_repository: None,
            feature_gates: FeatureGates::default(),
            extra_args: ExtraArgs::default(),
            audit_log: false,
            pod_security: PodSecurity::default(),
            addons: Addon::defaults(),
            joined: None,
        };
        settings.configure_components(args);
        settings.check_ranges()?;
        Ok(settings)
    }

    /// Settings for an existing cluster: the saved ones, refusing flags that contradict them,
    /// because changing them under a running cluster would break its certificates and data.
    pub fn reconcile(mut saved: Settings, args: &Requested) -> Result<Self> {
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
        saved.configure_components(args);
        Ok(saved)
    }

    /// The components' feature gates, extra args, audit log and Pod Security level: each one `args` names
    /// replaces the cluster's as a whole (a set given says what the cluster runs from now
    /// on, not what to add to it); the others stay as they are.
    fn configure_components(&mut self, args: &Requested) {
        if let Some(gates) = &args.feature_gates {
            self.feature_gates = gates.clone();
        }
        if let Some(extra) = &args.extra_args {
            self.extra_args = extra.clone();
        }
        if let Some(on) = args.audit_log {
            self.audit_log = on;
        }
        if let Some(level) = args.pod_security {
            self.pod_security = level;
        }
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

    /// The addons `--addons` or the config file name: a new cluster gets exactly those; an
    /// existing one gets those it lacks, and keeps the others (`kinit up` never removes an
    /// addon, whose volumes may hold data: `kinit addons disable` does). Returns the ones
    /// kept that were not named.
    pub fn request_addons(&mut self, wanted: &BTreeSet<Addon>, new_cluster: bool) -> Vec<Addon> {
        let wanted = &crate::addons::with_requirements(wanted);
        if new_cluster {
            self.addons = wanted.clone();
            return Vec::new();
        }
        let kept = self.addons.difference(wanted).copied().collect();
        self.addons.extend(wanted);
        kept
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

    /// The pod range, the Service range and the node must not overlap: a packet to an
    /// address in two of them would go to the wrong place.
    pub(crate) fn check_ranges(&self) -> Result<()> {
        let (pods, services) = (self.pod_cidr.net(), self.service_cidr.net());
        if pods.contains(&services.network()) || services.contains(&pods.network()) {
            bail!(
                "the pod range {} overlaps the Service range {}; pick ranges that do not overlap",
                self.pod_cidr,
                self.service_cidr
            );
        }
        for (range, what) in [(pods, "pod"), (services, "Service")] {
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
        Self::parse(&bytes).with_context(corrupt).map(Some)
    }

    /// `cluster.yaml`'s contents, checked as [`Settings::load`] checks them (fuzzed:
    /// fuzz/fuzz_targets/cluster_yaml.rs).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let settings: Settings = serde_yaml::from_slice(bytes)?;
        settings.check_ranges()?;
        Ok(settings)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let yaml = serde_yaml::to_string(self).context("cannot serialize the cluster settings")?;
        let text =
            format!("# Written by kinit up; the settings this cluster was created with.\n{yaml}");
        fs::write_file(path, text.as_bytes(), fs::Mode::Public)
    }
}

/// The settings unit tests share: node kinit-test at 10.0.2.15, default ranges.
#[cfg(test)]
pub fn test_settings() -> Settings {
    Settings {
        node_ip: "10.0.2.15".parse().expect("valid IP"),
        hostname: "kinit-test".parse().expect("valid name"),
        service_cidr: ServiceCidr::DEFAULT,
        dns_domain: DnsDomain::default(),
        pod_cidr: PodCidr::DEFAULT,
        kubernetes_version: Release::default().kubernetes.to_string(),
        image_repository: None,
        feature_gates: FeatureGates::default(),
        extra_args: ExtraArgs::default(),
        audit_log: false,
        pod_security: PodSecurity::default(),
        addons: Addon::defaults(),
        joined: None,
    }
}
