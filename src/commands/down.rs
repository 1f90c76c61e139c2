//! `kinit down`: remove kinit's containers, keeping the data unless `--purge`.

use std::path::Path;

use anyhow::{Result, bail};

use crate::cli::DownArgs;
use crate::docker::Docker;
use crate::download::Downloader;
use crate::fs::{self, Lock};
use crate::layout::{LOCK_FILE, Layout};
use crate::progress;

/// Seconds a component gets to shut down cleanly (etcd flushes its WAL).
const STOP_GRACE_SECONDS: i32 = 10;

pub async fn run(state_dir: Option<&Path>, args: &DownArgs) -> Result<()> {
    super::require_root("down")?;
    let layout = Layout::resolve(state_dir)?;
    if args.purge {
        refuse_foreign_directory(&layout)?;
    }
    let _lock = Lock::acquire(Path::new(LOCK_FILE))?;
    let docker = Docker::connect().await?;

    let containers = docker.list().await?;
    for c in containers.iter().rev() {
        docker.stop(&c.name, STOP_GRACE_SECONDS).await?;
        docker.remove(&c.name).await?;
        progress::println(&format!(" ✓ Removed {}", c.name));
    }
    if containers.is_empty() {
        progress::println(" ✓ No kinit containers to remove");
    }
    if args.purge {
        fs::remove_tree(layout.root())?;
        progress::println(&format!(
            " ✓ Deleted {} (certificates, etcd data, settings)",
            layout.root().display()
        ));
        let cache = Downloader::default_cache()?;
        fs::remove_tree(&cache)?;
        progress::println(&format!(
            " ✓ Deleted {} (downloaded binaries)",
            cache.display()
        ));
    } else if layout.settings_file().exists() {
        progress::println(&format!(
            "Kept the cluster's data in {}; `kinit up` brings the same cluster back, `kinit down --purge` deletes it.",
            layout.root().display()
        ));
    }
    Ok(())
}

/// `--purge` deletes a whole directory tree; make sure it is one kinit made.
fn refuse_foreign_directory(layout: &Layout) -> Result<()> {
    let root = layout.root();
    let Ok(mut entries) = std::fs::read_dir(root) else {
        return Ok(()); // missing: nothing to delete
    };
    if entries.next().is_some() && !layout.settings_file().exists() {
        bail!(
            "{} does not look like a kinit state directory (it has no cluster.yaml); not deleting it",
            root.display()
        );
    }
    Ok(())
}
