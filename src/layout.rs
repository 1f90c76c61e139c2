//! Where things live inside the state directory. The layout follows kubeadm's
//! /etc/kubernetes (pki/, admin.conf, ...) so the files look familiar.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};

/// The default state directory when kinit runs as root.
pub const ROOT_STATE_DIR: &str = "/var/lib/kinit";

/// Paths inside one state directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Like [`Layout::new`], but made absolute: Docker mounts need absolute host paths.
    fn absolute(root: &Path) -> Result<Self> {
        let abs = std::path::absolute(root)
            .map_err(|e| anyhow!("cannot resolve the state directory {}: {e}", root.display()))?;
        Ok(Self::new(abs))
    }

    /// The state directory from `--state-dir`; else /var/lib/kinit for root, and for other
    /// users too when the host has a cluster there (so `kinit status` finds it); else the
    /// per-user data directory.
    pub fn resolve(flag: Option<&Path>) -> Result<Self> {
        if let Some(dir) = flag {
            return Self::absolute(dir);
        }
        if nix::unistd::geteuid().is_root() || Path::new(ROOT_STATE_DIR).exists() {
            return Ok(Self::new(ROOT_STATE_DIR));
        }
        directories::ProjectDirs::from("", "", "kinit")
            .map(|dirs| Self::new(dirs.data_dir()))
            .ok_or_else(|| {
                anyhow!("cannot find a home directory for kinit's state; pass --state-dir")
            })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cluster settings written by the first `kinit up`.
    pub fn settings_file(&self) -> PathBuf {
        self.root.join("cluster.yaml")
    }

    /// etcd's data directory, kept across `kinit down`.
    pub fn etcd_data(&self) -> PathBuf {
        self.root.join("etcd")
    }

    pub fn etcd_pki(&self) -> PathBuf {
        self.root.join("pki/etcd")
    }

    pub fn pki(&self) -> PathBuf {
        self.root.join("pki")
    }

    /// A kubeconfig kinit wrote, by file name (admin.conf, kubelet.conf, ...).
    pub fn kubeconfig(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The static pod manifests the kubelet runs (kube-apiserver, ...).
    pub fn static_pods(&self) -> PathBuf {
        self.root.join("manifests")
    }

    /// Component configuration files kinit renders (kubelet, kube-proxy, authentication).
    pub fn config(&self) -> PathBuf {
        self.root.join("config")
    }

    /// The kubelet's root directory: pod volumes live here and are mounted on the host.
    pub fn kubelet(&self) -> PathBuf {
        self.root.join("kubelet")
    }

    /// CNI configuration, IP reservations and cache.
    pub fn cni(&self) -> PathBuf {
        self.root.join("cni")
    }

    /// cri-dockerd's checkpoints of the pod sandboxes it made.
    pub fn cri_dockerd(&self) -> PathBuf {
        self.root.join("cri-dockerd")
    }

    /// The images the node pulled through kinit's runtime interposer, one ID a line: the
    /// only ones the kubelet may remove. Kept by `kinit down` (beside cri-dockerd's files).
    pub fn pulled_images(&self) -> PathBuf {
        self.cri_dockerd().join("kinit-pulled-images")
    }

    /// The images `kinit up` pulled itself (absent from the engine until then), one ID a
    /// line: with [`Self::pulled_images`], what `kinit down --purge` removes.
    pub fn kinit_pulled_images(&self) -> PathBuf {
        self.root.join("pulled-images")
    }

    /// Where the kubelet keeps pod logs (links to Docker's log files).
    pub fn pod_logs(&self) -> PathBuf {
        self.root.join("pod-logs")
    }

    /// Logs components write into the state directory: the API server's audit log
    /// (`kinit up --audit-log`), root's alone.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// The API server's audit log, in [`Layout::logs`]; rotated beside it.
    pub fn audit_log(&self) -> PathBuf {
        self.logs().join("audit.log")
    }

    /// The storage addon's volumes, one directory each (the node-local provisioner's
    /// path): inside the state directory, so `kinit down --purge` deletes them.
    pub fn local_volumes(&self) -> PathBuf {
        self.root.join("local-path")
    }

    /// Which user kubeconfig `kinit up` merged the cluster into, so `down --purge` can
    /// take it out again.
    pub fn kubeconfig_record(&self) -> PathBuf {
        self.root.join("kubeconfig-target")
    }

    /// On the control-plane host: the other nodes the cluster had when `kinit down` last
    /// stopped it, so a purge while the API server is down still knows of joined hosts.
    pub fn nodes_record(&self) -> PathBuf {
        self.root.join("other-nodes")
    }

    /// The node image kinit assembled and loaded, as `<tag> <image ID>`: a tag that names
    /// another image now was re-pointed by someone else (steps::node).
    pub fn node_image_record(&self) -> PathBuf {
        self.root.join("node-image")
    }

    /// The node address this host's kube-router pod started with (steps::router).
    pub fn router_record(&self) -> PathBuf {
        self.root.join("router-address")
    }
}

/// One cluster per host: container names and ports are host-wide, so the lock is too.
/// /run is a tmpfs, so taking the lock leaves nothing behind.
pub const LOCK_FILE: &str = "/run/kinit.lock";
