//! The optional config file: where binaries and images come from on this host, so an
//! air-gapped machine or a mirror needs no flags on every run, and what to add to the
//! components. Flags override it.
//!
//! ```yaml
//! # /etc/kinit/config.yaml (root) or ~/.config/kinit/config.yaml
//! mirror: file:///srv/kinit-bundle      # or http://mirror.example/k8s
//! imageRepository: registry.example:5000/k8s   # instead of registry.k8s.io
//! kubernetesVersion: v1.35.4            # for new clusters; `kinit version` lists them
//! bundle: /srv/kinit-bundle             # image archives to load when missing
//! featureGates: {InPlacePodVerticalScaling: true}   # --feature-gates
//! extraArgs:                            # --extra-arg COMPONENT:flag=value
//!   apiserver: {v: 4}
//! auditLog: true                        # --audit-log
//! podSecurity: baseline                 # --pod-security
//! addons: [storage]                     # like --addons: a new cluster's set of addons
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use serde::Deserialize;

use crate::addons::Addon;
use crate::cluster::{ExtraArgs, FeatureGates, PodSecurity};
use crate::fs;

#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Base URL for binaries, laid out like dl.k8s.io and GitHub's release downloads.
    #[serde(default, deserialize_with = "mirror_url")]
    pub mirror: Option<String>,
    /// Where the upstream images are pulled from instead of registry.k8s.io.
    #[serde(default, deserialize_with = "image_repository")]
    pub image_repository: Option<String>,
    /// An offline bundle directory whose image archives are loaded when missing.
    #[serde(default)]
    pub bundle: Option<PathBuf>,
    /// The Kubernetes version of a new cluster (`--kubernetes-version`).
    #[serde(default, deserialize_with = "kubernetes_version")]
    pub kubernetes_version: Option<String>,
    /// Feature gates for every component (`--feature-gates`); `{}` for none.
    #[serde(default)]
    pub feature_gates: Option<FeatureGates>,
    /// Extra flags by component and flag name (`--extra-arg`); `{}` for none.
    #[serde(default)]
    pub extra_args: Option<ExtraArgs>,
    /// The API server's audit log (`--audit-log`).
    #[serde(default)]
    pub audit_log: Option<bool>,
    /// The Pod Security level enforced by default (`--pod-security`).
    #[serde(default, deserialize_with = "pod_security")]
    pub pod_security: Option<PodSecurity>,
    /// The addons of a new cluster, added to an existing one (`--addons`).
    #[serde(default)]
    pub addons: Option<BTreeSet<Addon>>,
}

impl Config {
    /// The default config file: /etc/kinit/config.yaml for root, else the per-user one.
    pub fn default_path() -> Option<PathBuf> {
        if nix::unistd::geteuid().is_root() {
            return Some(PathBuf::from("/etc/kinit/config.yaml"));
        }
        directories::ProjectDirs::from("", "", "kinit").map(|d| d.config_dir().join("config.yaml"))
    }

    /// Reads the config file; a missing file is an empty config, a broken one an error.
    pub fn load(path: &Path) -> Result<Self> {
        let Some(bytes) = fs::read_optional(path)? else {
            return Ok(Self::default());
        };
        Self::parse(&bytes)
            .with_context(|| format!("the config file {} is invalid", path.display()))
    }

    /// A config file's contents; an empty or blank file is an empty config (fuzzed:
    /// fuzz/fuzz_targets/config.rs).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        Ok(serde_yaml::from_slice(bytes)?)
    }
}

/// A mirror base URL: `file://`, `http://` or `https://`, without a trailing slash.
pub fn parse_mirror(s: &str) -> Result<String, String> {
    let ok = ["file:///", "http://", "https://"]
        .iter()
        .any(|p| s.starts_with(p) && s.len() > p.len());
    if !ok {
        return Err(format!(
            "'{s}' is not a mirror URL: use file:///absolute/path, http://host/path or https://host/path"
        ));
    }
    Ok(s.trim_end_matches('/').to_string())
}

/// An image repository: a registry host (with an optional port) and path, no scheme.
pub fn parse_image_repository(s: &str) -> Result<String, String> {
    let trimmed = s.trim_end_matches('/');
    let valid = !trimmed.is_empty()
        && !trimmed.contains("://")
        && !trimmed.starts_with('/')
        && !trimmed.contains("//")
        && trimmed
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-:/[]".contains(&b));
    if !valid {
        return Err(format!(
            "'{s}' is not an image repository: use a registry host and path such as \
             registry.example:5000/k8s (lower case, no scheme)"
        ));
    }
    Ok(trimmed.to_string())
}

fn image_repository<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    raw.map(|s| parse_image_repository(&s).map_err(serde::de::Error::custom))
        .transpose()
}

fn kubernetes_version<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    raw.map(|s| crate::versions::parse_kubernetes_version(&s).map_err(serde::de::Error::custom))
        .transpose()
}

fn pod_security<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<PodSecurity>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    raw.map(|s| s.parse().map_err(serde::de::Error::custom))
        .transpose()
}

fn mirror_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    raw.map(|s| parse_mirror(&s).map_err(serde::de::Error::custom))
        .transpose()
}

/// Where `kinit up` gets binaries and images from, after flags and config are merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// The mirror every release file comes from; `None` for the upstream locations.
    pub mirror: Option<String>,
    /// The repository images come from; `None` for registry.k8s.io.
    pub image_repository: Option<String>,
    pub bundle: Option<PathBuf>,
}

impl Sources {
    /// Flags win over the config file. A bundle given without a mirror also serves the
    /// binaries, since it holds them in the mirror layout.
    pub fn resolve(
        config: &Config,
        mirror: Option<&str>,
        image_repository: Option<&str>,
        bundle: Option<&Path>,
    ) -> Result<Self> {
        let bundle = bundle
            .map(Path::to_path_buf)
            .or_else(|| config.bundle.clone());
        if let Some(dir) = &bundle
            && !dir.is_dir()
        {
            return Err(anyhow!("the bundle {} is not a directory", dir.display()));
        }
        let bundle_mirror = bundle
            .as_ref()
            .map(|dir| std::path::absolute(dir).map(|abs| format!("file://{}", abs.display())))
            .transpose()
            .context("cannot resolve the bundle directory")?;
        let mirror = mirror
            .map(str::to_string)
            .or_else(|| config.mirror.clone())
            .or(bundle_mirror);
        let image_repository = image_repository
            .map(str::to_string)
            .or_else(|| config.image_repository.clone());
        Ok(Self {
            mirror,
            image_repository,
            bundle,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_urls_are_checked_and_normalised() {
        assert_eq!(parse_mirror("file:///srv/b/").unwrap(), "file:///srv/b");
        assert_eq!(
            parse_mirror("http://m.example/k8s").unwrap(),
            "http://m.example/k8s"
        );
        for bad in ["", "/srv/b", "file://relative", "ftp://x", "https://"] {
            assert!(parse_mirror(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn image_repositories_are_checked() {
        assert_eq!(
            parse_image_repository("127.0.0.1:5000/k8s/").unwrap(),
            "127.0.0.1:5000/k8s"
        );
        assert_eq!(
            parse_image_repository("registry.k8s.io").unwrap(),
            "registry.k8s.io"
        );
        for bad in [
            "",
            "/",
            "https://r.example",
            "R.example",
            "r.example//x",
            "a b",
        ] {
            assert!(parse_image_repository(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn config_file_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        assert_eq!(Config::load(&path).unwrap(), Config::default());
        std::fs::write(&path, "mirror: http://m.example/\n").unwrap();
        assert_eq!(
            Config::load(&path).unwrap().mirror.as_deref(),
            Some("http://m.example")
        );
        std::fs::write(&path, "mirror: /not/a/url\n").unwrap();
        assert!(format!("{:#}", Config::load(&path).unwrap_err()).contains("not a mirror URL"));
        std::fs::write(&path, "addons: [storage]\n").unwrap();
        assert_eq!(
            Config::load(&path).unwrap().addons,
            Some([crate::addons::Addon::Storage].into())
        );
        std::fs::write(&path, "addons: [gateway]\n").unwrap();
        let err = format!("{:#}", Config::load(&path).unwrap_err());
        assert!(err.contains("unknown variant `gateway`"), "{err}");
        std::fs::write(&path, "mirorr: http://typo\n").unwrap();
        assert!(format!("{:#}", Config::load(&path).unwrap_err()).contains("unknown field"));
    }

    #[test]
    fn config_file_component_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(
            &path,
            "featureGates: {B: false, A: true}\nextraArgs:\n  apiserver: {v: 4}\n  kubelet:\n    max-pods: 200\nauditLog: true\npodSecurity: restricted\n",
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.feature_gates.unwrap().to_string(), "A=true,B=false");
        assert_eq!(
            config.extra_args.unwrap().to_string(),
            "kubelet:max-pods=200 apiserver:v=4"
        );
        assert_eq!(config.audit_log, Some(true));
        assert_eq!(config.pod_security, Some(PodSecurity::Restricted));
        // Empty sets are given, and replace what the cluster has.
        std::fs::write(&path, "featureGates: {}\nextraArgs: {}\n").unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.feature_gates, Some(FeatureGates::default()));
        assert_eq!(config.extra_args, Some(ExtraArgs::default()));
        assert_eq!(config.audit_log, None);
        for (bad, why) in [
            ("featureGates: {A: maybe}\n", "featureGates"),
            ("extraArgs: {etcd: {v: 4}}\n", "'etcd' is not a component"),
            ("extraArgs: {apiserver: {v: [4]}}\n", "must be a string"),
            (
                "podSecurity: strict\n",
                "'strict' is not a Pod Security level",
            ),
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = format!("{:#}", Config::load(&path).unwrap_err());
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn flags_override_config_and_a_bundle_serves_binaries() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            mirror: Some("http://config.example".into()),
            image_repository: Some("mirror.example/k8s".into()),
            ..Config::default()
        };
        let s = Sources::resolve(&config, Some("http://flag.example"), None, None).unwrap();
        assert_eq!(s.mirror.as_deref(), Some("http://flag.example"));
        let s = Sources::resolve(&config, None, None, None).unwrap();
        assert_eq!(s.mirror.as_deref(), Some("http://config.example"));
        assert_eq!(s.image_repository.as_deref(), Some("mirror.example/k8s"));
        let s = Sources::resolve(&config, None, Some("127.0.0.1:5000"), None).unwrap();
        assert_eq!(s.image_repository.as_deref(), Some("127.0.0.1:5000"));
        let s = Sources::resolve(&Config::default(), None, None, Some(dir.path())).unwrap();
        assert_eq!(s.mirror, Some(format!("file://{}", dir.path().display())));
        assert_eq!(
            Sources::resolve(&Config::default(), None, None, None)
                .unwrap()
                .mirror,
            None
        );
        assert!(
            Sources::resolve(&Config::default(), None, None, Some(&dir.path().join("no"))).is_err()
        );
    }
}
