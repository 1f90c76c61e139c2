//! The component container as kinit wants it, its hash, and the engine's create body made
//! from it.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, DeviceMapping, HostConfig, HostConfigCgroupnsModeEnum,
    HostConfigLogConfig, Mount, MountBindOptions, MountBindOptionsPropagationEnum, MountType,
    RestartPolicy, RestartPolicyNameEnum,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::privilege::Privilege;

/// Marks a container as kinit's; `kinit down` removes exactly these.
pub const LABEL_MANAGED: &str = "io.kinit.managed";
pub const LABEL_COMPONENT: &str = "io.kinit.component";
/// The hash of the [`ContainerSpec`] a container was created from.
pub const LABEL_SPEC: &str = "io.kinit.spec-hash";

/// A component container as kinit wants it. Every component runs on the host network
/// with restart policy `unless-stopped`, so a crash or a Docker restart brings it back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerSpec {
    /// The container is named `kinit-<component>`.
    pub component: String,
    pub image: String,
    /// Replaces the image's entrypoint when given.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub binds: Vec<Bind>,
    /// Share the host's PID namespace.
    #[serde(default)]
    pub host_pid: bool,
    /// Share the host's IPC, UTS and cgroup namespaces too: what a kubelet needs to manage
    /// pods on the host as if it ran there.
    #[serde(default)]
    pub host_namespaces: bool,
    /// Host devices passed through at the same path (`--device`).
    #[serde(default)]
    pub devices: Vec<String>,
    /// Capabilities on top of Docker's default set, for components that need a few but not
    /// privilege (kube-proxy programs iptables).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Ask for `--privileged`; see [`super::Docker::apply`] for hosts that refuse it.
    #[serde(default)]
    pub privileged: bool,
    /// A digest of the files the process reads only when it starts (its configuration,
    /// its credentials): part of the hash and nothing else, so new files give a new
    /// container. Left out of the hashed text when unset, so specs without it hash as they
    /// did before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_digest: Option<String>,
}

/// A host path mounted into a component container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bind {
    pub host: String,
    pub container: String,
    #[serde(default)]
    pub read_only: bool,
    /// Mount propagation (`rshared` for the kubelet's pod volumes).
    #[serde(default)]
    pub propagation: Option<Propagation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Propagation {
    Rshared,
    Rslave,
}

impl ContainerSpec {
    pub fn container_name(&self) -> String {
        container_name(&self.component)
    }

    /// A stable digest of the spec, stored as a label to detect changes. The log policy
    /// is part of it: a container made under another policy is made again.
    pub fn hash(&self) -> String {
        let mut bytes = serde_json::to_vec(self).unwrap_or_default();
        bytes.extend(format!("log:{LOG_DRIVER},{LOG_MAX_SIZE},{LOG_MAX_FILES}").bytes());
        short_digest(&bytes)
    }
}

/// Docker's default json-file driver keeps a container's log forever. Every container
/// kinit makes, and every pod container its kubelet makes (src/runtime_proxy.rs), rotates
/// instead: at most [`LOG_MAX_FILES`] files of [`LOG_MAX_SIZE`]. json-file is the driver
/// cri-dockerd reads `kubectl logs` from.
pub const LOG_DRIVER: &str = "json-file";
pub const LOG_MAX_SIZE: &str = "10m";
pub const LOG_MAX_FILES: &str = "3";

/// The options of [`LOG_DRIVER`] that bound a container's log.
pub fn log_options() -> HashMap<String, String> {
    HashMap::from([
        ("max-size".to_string(), LOG_MAX_SIZE.to_string()),
        ("max-file".to_string(), LOG_MAX_FILES.to_string()),
    ])
}

/// The first 12 bytes of a SHA-256, in hex: enough to tell versions of a file apart.
pub fn short_digest(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

pub fn container_name(component: &str) -> String {
    format!("kinit-{component}")
}

/// What the engine is asked to create for `spec`, labelled with its `hash`. Under
/// [`Privilege::DaemonCapabilities`], `caps` replaces the spec's capabilities.
pub(super) fn container_body(
    spec: &ContainerSpec,
    hash: &str,
    privilege: Privilege,
    caps: &[String],
) -> ContainerCreateBody {
    let labels = HashMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (LABEL_COMPONENT.to_string(), spec.component.clone()),
        (LABEL_SPEC.to_string(), hash.to_string()),
    ]);
    let mounts = spec
        .binds
        .iter()
        .map(|b| Mount {
            target: Some(b.container.clone()),
            source: Some(b.host.clone()),
            typ: Some(MountType::BIND),
            read_only: Some(b.read_only),
            bind_options: b.propagation.map(|p| MountBindOptions {
                propagation: Some(match p {
                    Propagation::Rshared => MountBindOptionsPropagationEnum::RSHARED,
                    Propagation::Rslave => MountBindOptionsPropagationEnum::RSLAVE,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let fallback = privilege == Privilege::DaemonCapabilities;
    let host = |on: bool| on.then(|| "host".to_string());
    let devices = spec
        .devices
        .iter()
        .map(|d| DeviceMapping {
            path_on_host: Some(d.clone()),
            path_in_container: Some(d.clone()),
            cgroup_permissions: Some("rwm".into()),
        })
        .collect();
    let cap_add = if fallback {
        caps.to_vec()
    } else {
        spec.capabilities.clone()
    };
    let host_config = HostConfig {
        network_mode: Some("host".into()),
        pid_mode: host(spec.host_pid),
        ipc_mode: host(spec.host_namespaces),
        uts_mode: host(spec.host_namespaces),
        cgroupns_mode: spec
            .host_namespaces
            .then_some(HostConfigCgroupnsModeEnum::HOST),
        devices: Some(devices),
        mounts: Some(mounts),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
            maximum_retry_count: None,
        }),
        privileged: Some(privilege == Privilege::Full),
        cap_add: Some(cap_add),
        log_config: Some(HostConfigLogConfig {
            typ: Some(LOG_DRIVER.into()),
            config: Some(log_options()),
        }),
        security_opt: fallback.then(|| {
            ["seccomp=unconfined", "apparmor=unconfined"]
                .map(String::from)
                .to_vec()
        }),
        // What `docker run --security-opt systempaths=unconfined` does: nothing masked or
        // read-only under /proc and /sys, as in a privileged container.
        masked_paths: fallback.then(Vec::new),
        readonly_paths: fallback.then(Vec::new),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: spec.entrypoint.clone(),
        cmd: Some(spec.args.clone()),
        env: Some(spec.env.clone()),
        labels: Some(labels),
        host_config: Some(host_config),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etcd() -> ContainerSpec {
        ContainerSpec {
            component: "etcd".into(),
            image: "registry.k8s.io/etcd:3.6.8-0".into(),
            args: vec!["etcd".into()],
            ..Default::default()
        }
    }

    #[test]
    fn spec_hash_changes_with_the_spec() {
        let spec = etcd();
        let mut other = spec.clone();
        other.args.push("--name=x".into());
        assert_eq!(spec.hash(), spec.clone().hash());
        assert_ne!(spec.hash(), other.hash());
        assert_eq!(spec.container_name(), "kinit-etcd");
    }

    /// The hash of a spec as kinit versions before this one computed it: a change here
    /// re-creates every container of every existing cluster at its next `kinit up`.
    #[test]
    fn spec_hash_is_pinned() {
        let spec = ContainerSpec {
            env: vec!["A=1".into()],
            binds: vec![Bind {
                host: "/var/lib/kinit/etcd".into(),
                container: "/var/lib/etcd".into(),
                read_only: false,
                propagation: Some(Propagation::Rshared),
            }],
            host_pid: true,
            devices: vec!["/dev/kmsg".into()],
            capabilities: vec!["CAP_NET_ADMIN".into()],
            privileged: true,
            ..etcd()
        };
        assert_eq!(spec.hash(), "c2276dcf94ffddabdc98ee1d");
    }

    #[test]
    fn the_files_digest_is_hashed_but_never_reaches_the_container() {
        let spec = etcd();
        let with_files = |digest: &str| ContainerSpec {
            files_digest: Some(digest.into()),
            ..etcd()
        };
        assert_ne!(spec.hash(), with_files("a").hash());
        assert_ne!(with_files("a").hash(), with_files("b").hash());
        assert_eq!(with_files("a").hash(), with_files("a").hash());
        let body = container_body(&with_files("a"), "h", Privilege::None, &[]);
        assert_eq!(body, container_body(&spec, "h", Privilege::None, &[]));
        assert_eq!(body.env, Some(Vec::new()));
    }

    #[test]
    fn only_the_fallback_lifts_confinement() {
        let spec = ContainerSpec {
            capabilities: vec!["CAP_NET_ADMIN".into()],
            ..etcd()
        };
        let daemon = ["CAP_SYS_ADMIN".to_string()];
        let host = |privilege| {
            container_body(&spec, "h", privilege, &daemon)
                .host_config
                .unwrap_or_default()
        };
        let full = host(Privilege::Full);
        assert_eq!(full.privileged, Some(true));
        assert_eq!(full.cap_add, Some(spec.capabilities.clone()));
        assert_eq!(full.security_opt, None);
        let fallback = host(Privilege::DaemonCapabilities);
        assert_eq!(fallback.privileged, Some(false));
        assert_eq!(fallback.cap_add, Some(daemon.to_vec()));
        assert_eq!(fallback.masked_paths, Some(Vec::new()));
        assert!(
            fallback
                .security_opt
                .is_some_and(|o| o.contains(&"seccomp=unconfined".to_string()))
        );
        assert_eq!(host(Privilege::None).privileged, Some(false));
    }
}
