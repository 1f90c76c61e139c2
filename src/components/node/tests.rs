use super::*;
use crate::cluster::Settings;
use crate::cluster::{ClusterConfig, test_settings};
use crate::versions::Images;

fn joined() -> Settings {
    let cluster = ClusterConfig::of(&test_settings());
    Settings::for_node(
        &cluster,
        "https://10.0.2.15:6443",
        "10.0.2.16".parse().expect("ip"),
        "worker".parse().expect("name"),
    )
    .expect("settings")
}

fn render_with(pod_range: Option<&str>) -> Node {
    let layout = Layout::new("/var/lib/kinit");
    let inputs = Inputs {
        settings: &joined(),
        layout: &layout,
        host: &crate::components::master::tests::host(),
        images: &Images::default(),
        node_image: "kinit/node:test",
        verbosity: 2,
    };
    render(&inputs, pod_range).expect("renders")
}

#[test]
fn the_node_runs_a_bootstrapping_kubelet_without_static_pods() {
    let node = render_with(None);
    assert_eq!(node.spec.container_name(), "kinit-node");
    let text = |name: &str| {
        node.files
            .iter()
            .find(|f| f.path.ends_with(name))
            .map(|f| f.contents.clone())
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let config: serde_yaml::Value = serde_yaml::from_str(&text("kubelet.yaml")).expect("yaml");
    assert_eq!(config["serverTLSBootstrap"].as_bool(), Some(true));
    assert_eq!(config["rotateCertificates"].as_bool(), Some(true));
    assert!(config.get("staticPodPath").is_none(), "{config:?}");
    assert!(config.get("tlsCertFile").is_none(), "{config:?}");
    assert!(config.get("podCIDR").is_none(), "{config:?}");
    let entrypoint = text("master-entrypoint.sh");
    assert!(
        entrypoint.contains("--bootstrap-kubeconfig='/var/lib/kinit/bootstrap-kubelet.conf'"),
        "{entrypoint}"
    );
    assert!(entrypoint.contains("--node-ip='10.0.2.16'"), "{entrypoint}");
    assert!(
        entrypoint.contains("--hostname-override='worker'"),
        "{entrypoint}"
    );
    assert!(
        node.network.is_none(),
        "a network before the pod range is known"
    );
}

#[test]
fn the_network_takes_the_pod_range_the_node_was_given() {
    let node = render_with(Some("10.244.1.0/24"));
    let network = node.network.expect("a network");
    let conf: serde_json::Value = serde_json::from_str(&network.contents).expect("json");
    assert_eq!(
        conf["plugins"][0]["ipam"]["ranges"][0][0]["subnet"].as_str(),
        Some("10.244.1.0/24")
    );
}
