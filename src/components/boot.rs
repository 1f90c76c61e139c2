//! kinit-boot: the container that sets the host up again whenever the Docker daemon starts.

use anyhow::Result;
use serde::Serialize;

use crate::docker::ContainerSpec;
use crate::manifests;
use crate::node_image::BIN_DIR;

#[derive(Debug, Serialize)]
struct Values {
    image: String,
    kinit: String,
}

/// The `kinit-boot` container, from the node image (which holds kinit itself).
pub fn spec(node_image: &str) -> Result<ContainerSpec> {
    manifests::BOOT.render(&Values {
        image: node_image.to_string(),
        kinit: format!("{BIN_DIR}/kinit"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_runs_kinit_boot_in_the_host_pid_namespace() {
        let spec = spec("kinit/node:v1.36.3-abc").unwrap();
        assert_eq!(spec.container_name(), "kinit-boot");
        assert_eq!(
            spec.entrypoint.as_deref(),
            Some(&["/kinit/bin/kinit".to_string(), "boot".into()][..])
        );
        assert!(spec.privileged && spec.host_pid);
        // Nothing a freshly booted host may lack: no binds at all.
        assert!(spec.binds.is_empty());
    }
}
