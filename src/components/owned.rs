//! What kinit sets on each component itself, read from what it renders before the user's
//! additions, and the check of those additions against it. An extra arg for a flag kinit
//! passes or sets through a config file, a flag that would open what kinit keeps closed,
//! and a feature gate kinit sets to another value are refused, all at once, before anything
//! changes. Reading the rendered files keeps the list from drifting when a manifest gains a
//! flag.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};

use crate::cluster::{Component, FeatureGates, Settings};

/// Flags refused on every component besides those kinit passes, and why.
const GUARDED: [(&str, &str); 8] = [
    (
        "feature-gates",
        "use --feature-gates, which gives every component the same gates",
    ),
    (
        "anonymous-auth",
        "anonymous requests stay limited to the health endpoints",
    ),
    ("insecure-port", "kinit serves no unauthenticated port"),
    (
        "insecure-bind-address",
        "kinit serves no unauthenticated port",
    ),
    ("read-only-port", "kinit serves no unauthenticated port"),
    ("authorization-mode", "kinit authorizes with Node and RBAC"),
    (
        "authorization-config",
        "kinit authorizes with Node and RBAC",
    ),
    (
        "authorization-always-allow-paths",
        "only the health endpoints go unauthorized",
    ),
];

/// Flags kinit passes as defaults a user may change: the user's value comes later on the
/// command line, and the last one wins.
const DEFAULTS: [&str; 1] = ["v"];

/// The kubelet's flags for config fields whose flag is not the field's name in kebab case
/// (`clusterDNS` is `--cluster-dns`; `staticPodPath` is not `--static-pod-path`).
const KUBELET_FIELD_FLAGS: [(&str, &[&str]); 3] = [
    (
        "authentication",
        &[
            "anonymous-auth",
            "authentication-token-webhook",
            "client-ca-file",
        ],
    ),
    ("authorization", &["authorization-mode"]),
    ("staticPodPath", &["pod-manifest-path"]),
];

/// kube-proxy, started with `--config`, ignores every other flag but these (its logging
/// flags, which it copies over the file's; cmd/kube-proxy/app/options.go, kubernetes#120603).
const KUBE_PROXY_HONOURED: [&str; 8] = [
    "v",
    "vmodule",
    "logging-format",
    "log-flush-frequency",
    "log-json-split-stream",
    "log-json-info-buffer-size",
    "log-text-split-stream",
    "log-text-info-buffer-size",
];

/// What kinit sets on one component.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Owned {
    /// The flags it passes, or sets through the component's config file.
    pub flags: BTreeSet<String>,
    /// The feature gates it sets (the kubelet's, in its config file).
    pub gates: BTreeMap<String, bool>,
}

impl Owned {
    /// From a rendered command line (its first word is the program): `--name=value` or
    /// `--name`.
    pub fn from_command<'a>(words: impl IntoIterator<Item = &'a str>) -> Self {
        let flags = words
            .into_iter()
            .filter_map(|w| w.strip_prefix("--"))
            .map(|f| f.split_once('=').map_or(f, |(name, _)| name).to_string())
            .collect();
        Self {
            flags,
            gates: BTreeMap::new(),
        }
    }

    /// From a rendered static pod: its container's command.
    pub fn from_pod(manifest: &str) -> Result<Self> {
        let pod: serde_yaml::Value =
            serde_yaml::from_str(manifest).context("a static pod is not valid YAML")?;
        let command = pod["spec"]["containers"][0]["command"]
            .as_sequence()
            .context("a static pod has no command")?;
        Ok(Self::from_command(
            command.iter().filter_map(|w| w.as_str()),
        ))
    }

    /// From the rendered entrypoint of kinit-master, whose last command runs the kubelet
    /// (`exec kubelet \` and a flag per line), and the kubelet's config file.
    pub fn kubelet(entrypoint: &str, config: &str) -> Result<Self> {
        let exec = entrypoint
            .rfind("exec kubelet")
            .context("the master's entrypoint does not run the kubelet")?;
        let mut owned = Self::from_command(entrypoint[exec..].split_whitespace());
        let fields = config_fields(config)?;
        owned.gates = gates_of(&fields)?;
        for field in fields.keys().filter_map(serde_yaml::Value::as_str) {
            owned.flags.insert(kebab(field));
            let renamed = KUBELET_FIELD_FLAGS.iter().filter(|(f, _)| *f == field);
            owned
                .flags
                .extend(renamed.flat_map(|(_, flags)| flags.iter().map(|f| f.to_string())));
        }
        Ok(owned)
    }

    /// The user's gates this component's config file adds to kinit's: those kinit does not
    /// set already ([`check`] refuses one it sets to another value).
    pub fn others(&self, gates: &FeatureGates) -> BTreeMap<String, bool> {
        gates
            .iter()
            .filter(|(gate, _)| !self.gates.contains_key(*gate))
            .map(|(gate, on)| (gate.to_string(), on))
            .collect()
    }

    /// From kube-proxy's rendered command line and config file (its gates; the fields do
    /// not matter, since it honours only its logging flags).
    pub fn kube_proxy<'a>(args: impl IntoIterator<Item = &'a str>, config: &str) -> Result<Self> {
        let mut owned = Self::from_command(args);
        owned.gates = gates_of(&config_fields(config)?)?;
        Ok(owned)
    }
}

fn config_fields(config: &str) -> Result<serde_yaml::Mapping> {
    serde_yaml::from_str(config).context("a component's config file is not a YAML mapping")
}

fn gates_of(fields: &serde_yaml::Mapping) -> Result<BTreeMap<String, bool>> {
    match fields.get("featureGates") {
        None => Ok(BTreeMap::new()),
        Some(gates) => serde_yaml::from_value(gates.clone())
            .context("a component's featureGates is not a map of names to true or false"),
    }
}

/// A config field's flag: `clientCAFile` is `client-ca-file`, `podCIDR` is `pod-cidr`.
fn kebab(field: &str) -> String {
    let chars: Vec<char> = field.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
            if !prev.is_ascii_uppercase() || next_lower {
                out.push('-');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Refuses every extra arg of these components, and every feature gate, that contradicts
/// what kinit sets on them; names them all in one error.
pub fn check(settings: &Settings, owned: &[(Component, Owned)]) -> Result<()> {
    let mut refused = Vec::new();
    for (component, own) in owned {
        let title = component.title();
        for name in settings.extra_args.of(*component).keys() {
            let arg = format!("--extra-arg {}:{name}", component.name());
            if let Some((_, why)) = GUARDED.iter().find(|(flag, _)| flag == name) {
                refused.push(format!("{arg} ({why})"));
            } else if own.flags.contains(name) && !DEFAULTS.contains(&name.as_str()) {
                refused.push(format!("{arg} (kinit sets --{name} of {title} itself)"));
            } else if *component == Component::Proxy
                && !KUBE_PROXY_HONOURED.contains(&name.as_str())
            {
                refused.push(format!(
                    "{arg} (kube-proxy reads its configuration file and ignores every flag but \
                     its logging flags: {})",
                    KUBE_PROXY_HONOURED.join(", ")
                ));
            }
        }
        for (gate, on) in settings.feature_gates.iter() {
            if let Some(own_on) = own.gates.get(gate).filter(|own_on| **own_on != on) {
                refused.push(format!(
                    "--feature-gates {gate}={on} (kinit sets {gate}={own_on} on {title}: \
                     see the README's Configuration section)"
                ));
            }
        }
    }
    if !refused.is_empty() {
        bail!(
            "kinit refuses these component settings: {}; leave them out (`kinit up \
             --no-extra-args` or `--feature-gates ''` clears what the cluster has)",
            refused.join("; ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_fields_become_flag_names() {
        for (field, flag) in [
            ("clientCAFile", "client-ca-file"),
            ("clusterDNS", "cluster-dns"),
            ("podCIDR", "pod-cidr"),
            ("tlsCertFile", "tls-cert-file"),
            (
                "imageGCHighThresholdPercent",
                "image-gc-high-threshold-percent",
            ),
            ("readOnlyPort", "read-only-port"),
            ("failCgroupV1", "fail-cgroup-v1"),
        ] {
            assert_eq!(kebab(field), flag);
        }
    }

    #[test]
    fn command_lines_give_flag_names() {
        let owned = Owned::from_command(["kube-x", "--a=1", "--b", "-v", "--c=x=y"]);
        let flags: Vec<&str> = owned.flags.iter().map(String::as_str).collect();
        assert_eq!(flags, ["a", "b", "c"]);
    }
}
