//! `kinit certs --out DIR`: the whole PKI and kubeconfigs, and nothing else.

use std::path::Path;

use anyhow::Result;

use crate::cli::CertsArgs;
use crate::cluster::Settings;
use crate::fs::Lock;
use crate::layout::{LOCK_FILE, Layout};
use crate::{fs, pki};

pub fn run(state_dir: Option<&Path>, args: &CertsArgs) -> Result<()> {
    let settings = Settings::new(&args.cluster.requested())?;
    // Into the cluster's own state directory, this would race a `kinit up` or `down`.
    let _lock = if is_cluster_state_dir(state_dir, &args.out) {
        Some(Lock::acquire(Path::new(LOCK_FILE))?)
    } else {
        None
    };
    fs::check_writable(&args.out)?;
    let report = pki::ensure(&args.out, &settings)?;
    crate::outln!(
        "Certificates for {} ({}) in {}: {report}.",
        settings.hostname,
        settings.node_ip,
        args.out.display()
    )?;
    Ok(())
}

/// Whether `out` is the state directory of this host's cluster (the same directory, by
/// device and inode, whatever the path says).
fn is_cluster_state_dir(state_dir: Option<&Path>, out: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(layout) = Layout::resolve(state_dir) else {
        return false;
    };
    match (std::fs::metadata(layout.root()), std::fs::metadata(out)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}
