//! The cluster's names, each checked once against Kubernetes' rules when it is read (from
//! a flag or from `cluster.yaml`) and carried as a type from then on.

use std::str::FromStr;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub const DEFAULT_DNS_DOMAIN: &str = "cluster.local";

/// The node's name: an RFC 1123 DNS subdomain, as Kubernetes requires of node names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeName(String);

impl NodeName {
    /// This host's name, lowercased (Kubernetes refuses upper case and hosts often have it).
    pub fn of_this_host() -> Result<Self> {
        let raw = nix::unistd::gethostname().context("cannot read this host's name")?;
        let name = raw.to_string_lossy().to_lowercase();
        name.parse().map_err(|e| {
            anyhow::anyhow!(
                "this host's name cannot be a Kubernetes node name ({e}); pass --hostname"
            )
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for NodeName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if is_dns_subdomain(s) {
            Ok(Self(s.to_string()))
        } else {
            Err(format!(
                "'{s}' is not a valid host name: use lowercase letters, digits, '-' and '.', \
                 start and end with a letter or digit, at most 253 characters"
            ))
        }
    }
}

/// The cluster's DNS domain (`cluster.local`), without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DnsDomain(String);

impl DnsDomain {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for DnsDomain {
    fn default() -> Self {
        Self(DEFAULT_DNS_DOMAIN.to_string())
    }
}

impl FromStr for DnsDomain {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.strip_suffix('.').unwrap_or(s);
        if is_dns_subdomain(s) {
            Ok(Self(s.to_string()))
        } else {
            Err(format!(
                "'{s}' is not a valid DNS domain (for example: {DEFAULT_DNS_DOMAIN})"
            ))
        }
    }
}

plain_string_form!(NodeName, DnsDomain);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_dns_subdomains() {
        for good in ["kinit-test", "node1.example.com", "a", &"a".repeat(63)] {
            assert_eq!(good.parse::<NodeName>().unwrap().as_str(), good);
        }
        for bad in [
            "",
            "Upper",
            "-lead",
            "trail-",
            "a..b",
            ".a",
            "under_score",
            "node.",
            &"a".repeat(64),
            &["a"; 128].join("."),
        ] {
            let err = bad.parse::<NodeName>().unwrap_err();
            assert!(err.contains("is not a valid host name"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn dns_domains_lose_their_trailing_dot() {
        let domain: DnsDomain = "cluster.local.".parse().unwrap();
        assert_eq!(domain.as_str(), "cluster.local");
        assert_eq!(DnsDomain::default().as_str(), DEFAULT_DNS_DOMAIN);
        assert_eq!(
            DEFAULT_DNS_DOMAIN.parse::<DnsDomain>().unwrap(),
            DnsDomain::default()
        );
        for bad in ["bad domain", "", ".", "Cluster.Local", "a..b"] {
            let err = bad.parse::<DnsDomain>().unwrap_err();
            assert!(err.contains("is not a valid DNS domain"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn names_read_and_write_as_plain_strings() {
        let name: NodeName = serde_yaml::from_str("kinit-test").unwrap();
        assert_eq!(serde_yaml::to_string(&name).unwrap(), "kinit-test\n");
        assert_eq!(name.to_string(), "kinit-test");
        let err = serde_yaml::from_str::<NodeName>("BAD").unwrap_err();
        assert!(
            err.to_string().contains("is not a valid host name"),
            "{err}"
        );
        let domain: DnsDomain = serde_yaml::from_str("cluster.local").unwrap();
        assert_eq!(serde_json::to_string(&domain).unwrap(), "\"cluster.local\"");
        assert!(serde_yaml::from_str::<DnsDomain>("a b").is_err());
    }
}
