//! etcd: the first component, holding every object of the cluster.

use anyhow::Result;
use serde::Serialize;

use crate::cluster::Settings;
use crate::cluster::component::{ETCD_CLIENT_PORT, ETCD_PEER_PORT};
use crate::docker::ContainerSpec;
use crate::layout::Layout;
use crate::manifests;
use crate::net::url_host;
use crate::versions::Images;

/// The values `manifests/components/etcd.yaml` is rendered with.
#[derive(Debug, Serialize)]
struct Values {
    image: String,
    name: String,
    /// The node IP as it appears in a URL (IPv6 in brackets).
    node_host: String,
    data_dir: String,
    pki_dir: String,
    client_port: u16,
    peer_port: u16,
}

/// The `kinit-etcd` container for this cluster.
pub fn spec(settings: &Settings, layout: &Layout, images: &Images) -> Result<ContainerSpec> {
    manifests::ETCD.render(&Values {
        image: images.etcd(),
        name: settings.hostname.to_string(),
        node_host: url_host(settings.node_ip),
        data_dir: layout.etcd_data().to_string_lossy().into_owned(),
        pki_dir: layout.etcd_pki().to_string_lossy().into_owned(),
        client_port: ETCD_CLIENT_PORT,
        peer_port: ETCD_PEER_PORT,
    })
}

/// Where kinit itself talks to etcd: loopback, so the check works whatever the node IP.
pub fn local_endpoint() -> String {
    format!("https://127.0.0.1:{ETCD_CLIENT_PORT}")
}

/// The peer URL the member advertises for this node address.
pub fn peer_url(settings: &Settings) -> String {
    format!("https://{}:{ETCD_PEER_PORT}", url_host(settings.node_ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(ip: &str) -> Settings {
        Settings {
            node_ip: ip.parse().unwrap(),
            ..crate::cluster::test_settings()
        }
    }

    #[test]
    fn renders_tls_only_etcd_with_data_and_pki_mounts() {
        let layout = Layout::new("/var/lib/kinit");
        let spec = spec(&settings("10.0.2.15"), &layout, &Images::default()).unwrap();
        assert_eq!(spec.container_name(), "kinit-etcd");
        assert_eq!(spec.component, crate::cluster::Container::Etcd.label());
        assert_eq!(
            spec.image,
            format!("registry.k8s.io/etcd:{}", crate::versions::ETCD_IMAGE_TAG)
        );
        let args = spec.args.join(" ");
        for expected in [
            "--name=kinit-test",
            "--listen-client-urls=https://127.0.0.1:2379,https://10.0.2.15:2379",
            "--initial-cluster=kinit-test=https://10.0.2.15:2380",
            "--client-cert-auth=true",
            "--peer-client-cert-auth=true",
        ] {
            assert!(args.contains(expected), "{expected} missing from {args}");
        }
        assert!(!args.contains("http://"), "plain HTTP listener in {args}");
        assert_eq!(spec.binds[0].host, "/var/lib/kinit/etcd");
        assert!(spec.binds[1].read_only);
        assert!(!spec.privileged);
    }

    #[test]
    fn ipv6_node_addresses_are_bracketed_and_odd_paths_survive() {
        let layout = Layout::new("/srv/my state: \"x\"");
        let spec = spec(&settings("fd00::15"), &layout, &Images::default()).unwrap();
        assert!(
            spec.args
                .iter()
                .any(|a| a == "--advertise-client-urls=https://[fd00::15]:2379")
        );
        assert_eq!(spec.binds[0].host, "/srv/my state: \"x\"/etcd");
    }
}
