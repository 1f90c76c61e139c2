//! kinit-boot: the container that sets the host up again whenever the Docker daemon starts.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::docker::ContainerSpec;
use crate::manifests;
use crate::node_image::BIN_DIR;

#[derive(Debug, Serialize)]
struct Values<'a> {
    image: String,
    kinit: String,
    host_system_paths: &'a [String],
    state_dir: String,
}

/// The `kinit-boot` container, from the node image (which holds kinit itself), with the
/// host's system directories `system_paths` (see [`super::master::Host`]).
pub fn spec(node_image: &str, system_paths: &[String], state_dir: &Path) -> Result<ContainerSpec> {
    manifests::BOOT.render(&Values {
        image: node_image.to_string(),
        kinit: format!("{BIN_DIR}/kinit"),
        host_system_paths: system_paths,
        state_dir: state_dir.to_string_lossy().into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_runs_kinit_boot_in_the_host_pid_namespace() {
        let spec = spec(
            "kinit/node:v1.36.3-abc",
            &["/usr".into(), "/lib".into()],
            Path::new("/var/lib/kinit"),
        )
        .unwrap();
        assert_eq!(spec.container_name(), "kinit-boot");
        assert_eq!(spec.component, crate::cluster::Container::Boot.label());
        assert_eq!(
            spec.entrypoint.as_deref(),
            Some(&["/kinit/bin/kinit".to_string(), "boot".into()][..])
        );
        assert!(spec.privileged && spec.host_pid);
        // Nothing a freshly booted host may lack: only its system directories, read-only.
        assert_eq!(spec.binds.len(), 2);
        assert!(
            spec.binds
                .iter()
                .all(|b| b.read_only && b.host == b.container)
        );
    }
}
