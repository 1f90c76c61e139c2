//! kinit-proxy: kube-proxy in iptables mode, and its configuration file.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use super::master::File;
use crate::cluster::Settings;
use crate::cluster::component::PROXY_HEALTHZ_PORT;
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
    pod_cidr: String,
    modules: bool,
    healthz_port: u16,
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

pub fn render(settings: &Settings, layout: &Layout, images: &Images) -> Result<Proxy> {
    let config = config_file(layout);
    let values = Values {
        image: images.kube("kube-proxy"),
        config: config.to_string_lossy().into_owned(),
        kubeconfig: layout
            .kubeconfig("kube-proxy.conf")
            .to_string_lossy()
            .into_owned(),
        hostname: settings.hostname.to_string(),
        pod_cidr: settings.pod_cidr.to_string(),
        modules: Path::new("/lib/modules").exists(),
        healthz_port: PROXY_HEALTHZ_PORT,
    };
    Ok(Proxy {
        spec: manifests::PROXY.render(&values)?,
        config: File {
            path: PathBuf::from(&config),
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
}
