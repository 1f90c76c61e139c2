//! `kinit down`: remove kinit's containers, keeping the data unless `--purge`.

use std::path::Path;

use anyhow::Result;

use crate::cli::DownArgs;
use crate::docker::Docker;
use crate::fs::Lock;
use crate::layout::{LOCK_FILE, Layout};
use crate::progress;
use crate::teardown::{self, Note};

pub async fn run(state_dir: Option<&Path>, args: &DownArgs) -> Result<()> {
    super::require_root("down")?;
    let layout = Layout::resolve(state_dir)?;
    if args.purge {
        teardown::refuse_foreign_directory(&layout)?;
    }
    let _lock = Lock::acquire(Path::new(LOCK_FILE))?;
    let docker = Docker::connect().await?;
    let note = |note: Note| match note {
        Note::Done(line) => progress::println(&format!(" ✓ {line}")),
        Note::Warning(line) => progress::println(&format!(" ! {line}")),
    };
    teardown::run(&layout, &docker, args.purge, &note).await?;
    if !args.purge && layout.settings_file().exists() {
        progress::println(&format!(
            "Kept the cluster's data in {}; `kinit up` brings the same cluster back, `kinit down --purge` deletes it.",
            layout.root().display()
        ));
    }
    Ok(())
}
