//! kinit-proxy: kube-proxy in iptables mode, and its configuration file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use super::master::File;
use super::owned::{self, Owned};
use crate::cluster::component::PROXY_HEALTHZ_PORT;
use crate::cluster::{Component, Settings};
use crate::docker::ContainerSpec;
use crate::fs::Mode;
use crate::layout::Layout;
use crate::manifests;
use crate::versions::Images;

/// kube-proxy's health endpoint: 200 once it has programmed the rules.
pub fn healthz() -> String {
    format!("http://127.0.0.1:{PROXY_HEALTHZ_PORT}/healthz")
}

#[derive(Debug, Serialize)]
struct Values {
    image: String,
    config: String,
    kubeconfig: String,
    hostname: String,
    node_ip: String,
    pod_cidr: String,
    modules: bool,
    healthz_port: u16,
    /// On a joined host: the kubelet's certificate directory, whose renewed client
    /// certificate kube-proxy uses.
    credentials_dir: Option<String>,
    /// The user's gates (besides any kinit sets) and extra args; none in the render that
    /// finds what kinit sets itself.
    feature_gates: BTreeMap<String, bool>,
    extra_args: BTreeMap<String, String>,
}

pub struct Proxy {
    pub spec: ContainerSpec,
    pub config: File,
}

/// kube-proxy's configuration file; its presence also tells a teardown that this state
/// directory ran a kube-proxy.
pub fn config_file(layout: &Layout) -> PathBuf {
    layout.config().join("kube-proxy.yaml")
}

/// kube-proxy's kubeconfig: its own certificate's on the control-plane host, the
/// kubelet's on a joined one.
pub fn kubeconfig_file(layout: &Layout) -> PathBuf {
    layout.kubeconfig("kube-proxy.conf")
}

fn values(settings: &Settings, layout: &Layout, images: &Images) -> Values {
    Values {
        image: images.kube("kube-proxy"),
        config: config_file(layout).to_string_lossy().into_owned(),
        kubeconfig: kubeconfig_file(layout).to_string_lossy().into_owned(),
        hostname: settings.hostname.to_string(),
        node_ip: settings.node_ip.to_string(),
        pod_cidr: settings.pod_cidr.to_string(),
        modules: Path::new("/lib/modules").exists(),
        healthz_port: PROXY_HEALTHZ_PORT,
        credentials_dir: (!settings.is_control_plane()).then(|| {
            super::node::kubelet_cert_dir(layout)
                .to_string_lossy()
                .into_owned()
        }),
        feature_gates: BTreeMap::new(),
        extra_args: BTreeMap::new(),
    }
}

/// What kinit sets on kube-proxy, from a render without the user's additions.
pub fn owned(settings: &Settings, layout: &Layout, images: &Images) -> Result<Owned> {
    let values = values(settings, layout, images);
    let spec: ContainerSpec = manifests::PROXY.render(&values)?;
    Owned::kube_proxy(
        spec.args.iter().map(String::as_str),
        &manifests::KUBE_PROXY_CONFIG.render_text(&values)?,
    )
}

/// Renders kube-proxy for these settings; refuses a user's extra arg or feature gate that
/// contradicts what kinit sets itself, or that kube-proxy would ignore.
pub fn render(settings: &Settings, layout: &Layout, images: &Images) -> Result<Proxy> {
    let own = owned(settings, layout, images)?;
    owned::check(settings, &[(Component::Proxy, own.clone())])?;
    let values = Values {
        feature_gates: own.others(&settings.feature_gates),
        extra_args: settings.extra_args.of(Component::Proxy),
        ..values(settings, layout, images)
    };
    Ok(Proxy {
        spec: manifests::PROXY.render(&values)?,
        config: File {
            path: config_file(layout),
            contents: manifests::KUBE_PROXY_CONFIG.render_text(&values)?,
            mode: Mode::Public,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_proxy_runs_iptables_mode_without_touching_host_sysctls() {
        let layout = Layout::new("/var/lib/kinit");
        let p = render(
            &crate::cluster::test_settings(),
            &layout,
            &Images::default(),
        )
        .unwrap();
        assert_eq!(p.spec.container_name(), "kinit-proxy");
        assert_eq!(p.spec.component, crate::cluster::Container::Proxy.label());
        assert!(!p.spec.privileged);
        assert_eq!(p.spec.capabilities, ["CAP_NET_ADMIN", "CAP_NET_RAW"]);
        let config: serde_yaml::Value = serde_yaml::from_str(&p.config.contents).unwrap();
        assert_eq!(config["mode"].as_str(), Some("iptables"));
        assert_eq!(config["clusterCIDR"].as_str(), Some("10.244.0.0/16"));
        assert_eq!(config["conntrack"]["maxPerCore"].as_i64(), Some(0));
        assert_eq!(
            config["healthzBindAddress"].as_str(),
            Some("127.0.0.1:10256")
        );
        assert_eq!(
            config["clientConnection"]["kubeconfig"].as_str(),
            Some("/var/lib/kinit/kube-proxy.conf")
        );
    }

    fn with(gates: &str, extra: &[&str]) -> Settings {
        let list: Vec<crate::cluster::ExtraArg> =
            extra.iter().map(|a| a.parse().unwrap()).collect();
        Settings {
            feature_gates: gates.parse().unwrap(),
            extra_args: crate::cluster::ExtraArgs::from_list(&list).unwrap(),
            ..crate::cluster::test_settings()
        }
    }

    #[test]
    fn kube_proxy_gets_the_gates_in_its_config_and_only_its_logging_flags() {
        let layout = Layout::new("/var/lib/kinit");
        let settings = with("InPlacePodVerticalScaling=true", &["proxy:v=4"]);
        let p = render(&settings, &layout, &Images::default()).unwrap();
        assert_eq!(
            p.spec.args,
            [
                "kube-proxy",
                "--config=/var/lib/kinit/config/kube-proxy.yaml",
                "--v=4"
            ]
        );
        let config: serde_yaml::Value = serde_yaml::from_str(&p.config.contents).unwrap();
        assert_eq!(config["featureGates"]["InPlacePodVerticalScaling"], true);
        assert_eq!(config["mode"].as_str(), Some("iptables"));

        let ignored = with(
            "",
            &[
                "proxy:proxy-mode=ipvs",
                "proxy:config=/x",
                "proxy:vmodule=x=4",
            ],
        );
        let err = format!(
            "{:#}",
            render(&ignored, &layout, &Images::default()).err().unwrap()
        );
        assert!(
            err.contains("--extra-arg proxy:proxy-mode (kube-proxy reads"),
            "{err}"
        );
        assert!(
            err.contains("--extra-arg proxy:config (kinit sets --config of kube-proxy"),
            "{err}"
        );
        assert!(!err.contains("proxy:vmodule"), "{err}");
    }
}
