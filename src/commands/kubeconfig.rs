//! `kinit kubeconfig`: prints the admin kubeconfig, e.g. `kinit kubeconfig > kinit.yaml`.

use std::path::Path;

use anyhow::{Result, anyhow};

use crate::fs;
use crate::layout::Layout;

pub fn run(state_dir: Option<&Path>) -> Result<()> {
    let layout = Layout::resolve(state_dir)?;
    let path = layout.kubeconfig("admin.conf");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(anyhow!(
                "{} holds the cluster's admin key and only root may read it: run `sudo kinit kubeconfig`",
                path.display()
            ));
        }
        Err(_) => match fs::read_optional(&path)? {
            Some(b) => b,
            None => {
                return Err(anyhow!(
                    "no cluster in {} (run `sudo kinit up` first)",
                    layout.root().display()
                ));
            }
        },
    };
    crate::out!("{}", String::from_utf8_lossy(&bytes))?;
    Ok(())
}
