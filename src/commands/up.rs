//! `kinit up`: the bring-up, step by step.

use std::path::Path;

use anyhow::Result;

use crate::cli::UpArgs;
use crate::cluster::Settings;
use crate::components::{self, etcd};
use crate::config::{Config, Sources};
use crate::docker::Docker;
use crate::fs::Lock;
use crate::layout::{LOCK_FILE, Layout};
use crate::progress::{self, Steps};
use crate::steps::{self, Context};

pub async fn run(
    state_dir: Option<&Path>,
    config_path: Option<&Path>,
    args: &UpArgs,
) -> Result<()> {
    // Everything that can refuse does so before the first change to the host.
    super::require_root("up")?;
    let layout = Layout::resolve(state_dir)?;
    let _lock = Lock::acquire(Path::new(LOCK_FILE))?;
    let settings = match Settings::load(&layout.settings_file())? {
        Some(saved) => Settings::reconcile(saved, &args.cluster)?,
        None => Settings::from_args(&args.cluster)?,
    };
    let config = match config_path {
        Some(path) => Config::load(path)?,
        None => Config::default_path()
            .map(|p| Config::load(&p))
            .transpose()?
            .unwrap_or_default(),
    };
    let sources = Sources::resolve(&config, args.mirror.as_deref(), args.bundle.as_deref())?;
    let docker = Docker::connect().await?;
    let ctx = Context {
        layout,
        settings,
        docker,
        sources,
        bin_dir: args.bin_dir.clone(),
    };

    let mut steps = Steps::new();
    steps
        .run("Checking the host", steps::preflight::run(&ctx))
        .await?;
    steps
        .run("Writing certificates", steps::pki::run(&ctx))
        .await?;
    steps
        .run("Making images available", steps::images::run(&ctx))
        .await?;
    steps.run("Starting etcd", steps::etcd::run(&ctx)).await?;
    steps
        .run("Installing kubectl", steps::kubectl::run(&ctx))
        .await?;

    let say = progress::println;
    say("");
    if !steps.changed() {
        say("Nothing to do: everything this kinit starts was already up.");
    }
    say(&format!(
        "etcd is up at https://{}:{} (TLS; client certificates in {}).",
        ctx.settings.node_ip,
        etcd::CLIENT_PORT,
        ctx.layout.etcd_pki().display()
    ));
    say("Not started yet: this version of kinit does not run these parts of a cluster:");
    for part in components::NOT_YET {
        say(&format!("  - {part}"));
    }
    say(&format!("Done in {}. See `kinit status`.", steps.elapsed()));
    Ok(())
}
