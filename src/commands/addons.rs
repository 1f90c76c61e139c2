//! `kinit addons list|enable|disable NAME`: the cluster's optional parts. The enabled set
//! is recorded in the cluster's settings, so `kinit up` keeps applying it.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::addons::Addon;
use crate::bundle;
use crate::cli::AddonsCommand;
use crate::cluster::Settings;
use crate::cluster::component::Container;
use crate::config::Config;
use crate::docker::{self, Docker, ImageSource};
use crate::fs::Lock;
use crate::kubernetes::Kube;
use crate::layout::{LOCK_FILE, Layout};
use crate::progress::{Outcome, Steps};
use crate::versions::Images;
use crate::wait;

/// A namespace goes only once everything in it has.
const DELETE_TIMEOUT: Duration = Duration::from_secs(180);

pub async fn run(
    state_dir: Option<&Path>,
    config_path: Option<&Path>,
    cmd: &AddonsCommand,
) -> Result<()> {
    match cmd {
        AddonsCommand::List => list(state_dir).await,
        AddonsCommand::Enable { name } => enable(state_dir, config_path, *name).await,
        AddonsCommand::Disable { name, force } => disable(state_dir, *name, *force).await,
    }
}

/// The cluster's settings, layout and images; an error when there is no cluster.
fn cluster(state_dir: Option<&Path>) -> Result<(Layout, Settings, Images)> {
    let layout = Layout::resolve(state_dir)?;
    let Some(settings) = Settings::load(&layout.settings_file())? else {
        bail!(
            "no cluster in {} (run `sudo kinit up` first)",
            layout.root().display()
        );
    };
    let images = Images::new(settings.image_repository.as_deref(), settings.release()?);
    Ok((layout, settings, images))
}

async fn list(state_dir: Option<&Path>) -> Result<()> {
    let (layout, settings, images) = cluster(state_dir)?;
    let kube = Kube::connect(&super::example::credentials(&layout)?).await?;
    crate::outln!("{:<16}{:<10}STATE", "NAME", "ENABLED")?;
    for addon in Addon::ALL {
        let enabled = settings.addons.contains(&addon);
        let state = match state(&kube, addon, enabled, &layout, &images).await {
            Ok(state) => state,
            Err(e) => format!("unknown: {e:#}"),
        };
        let yes = if enabled { "yes" } else { "no" };
        crate::outln!("{:<16}{yes:<10}{state}", addon.name())?;
    }
    Ok(())
}

/// "ready", or what the addon still waits for, or what is left of a disabled one.
async fn state(
    kube: &Kube,
    addon: Addon,
    enabled: bool,
    layout: &Layout,
    images: &Images,
) -> Result<String> {
    if !enabled {
        let left = kube
            .existing(&addon.render_for_removal(layout, images)?)
            .await?;
        return Ok(if left.is_empty() {
            "-".into()
        } else {
            format!(
                "{} objects left ({}); `sudo kinit addons disable {addon}` removes them",
                left.len(),
                left.join(", ")
            )
        });
    }
    let workload = addon.workload();
    let Some(replicas) = kube
        .deployment_replicas(workload.namespace, workload.name)
        .await?
    else {
        return Ok(format!(
            "not applied (`sudo kinit addons enable {addon}` or `sudo kinit up` applies it)"
        ));
    };
    if replicas.ready < replicas.wanted {
        return Ok(format!(
            "not ready: Deployment {}/{} has {} of {} replicas ready",
            workload.namespace, workload.name, replicas.ready, replicas.wanted
        ));
    }
    if let Some(name) = addon.api_service() {
        match kube.api_service_available(name).await? {
            None => return Ok(format!("not ready: no APIService {name}")),
            Some(Err(why)) => return Ok(format!("not ready: APIService {name}: {why}")),
            Some(Ok(())) => {}
        }
    }
    Ok("ready".into())
}

/// Both change the cluster and its settings as `kinit up` does: root, and never at once.
fn changing(state_dir: Option<&Path>, command: &str) -> Result<(Lock, Layout, Settings, Images)> {
    super::require_root(command)?;
    let lock = Lock::acquire(Path::new(LOCK_FILE))?;
    let (layout, settings, images) = cluster(state_dir)?;
    Ok((lock, layout, settings, images))
}

async fn enable(state_dir: Option<&Path>, config_path: Option<&Path>, addon: Addon) -> Result<()> {
    let (_lock, layout, mut settings, images) = changing(state_dir, "addons enable")?;
    let config = super::load_config(config_path)?;
    let kube = Kube::connect(&layout.kubeconfig("admin.conf")).await?;
    let docker = Docker::connect().await?;
    let master = docker::container_name(Container::Master.label());
    let node_image = match docker.inspect(&master).await? {
        Some(state) => state.image,
        None => bail!("no {master} container: the cluster is down (run `sudo kinit up`)"),
    };
    // What it requires and lacks first, as `kinit up --addons` would.
    let missing = addon
        .requires()
        .iter()
        .copied()
        .filter(|a| !settings.addons.contains(a));
    let mut steps = Steps::new();
    for addon in missing.chain([addon]).collect::<Vec<_>>() {
        steps
            .run(
                &format!("Making the {addon} images available"),
                addon_images(&docker, &config, &addon.images(&images)),
            )
            .await?;
        steps
            .run(&format!("Applying the {addon} addon"), async {
                let text = addon.render(&layout, &images, &node_image)?;
                let (total, changed) = kube.apply(&text).await?;
                let was = settings.addons.insert(addon);
                if was {
                    settings.save(&layout.settings_file())?;
                }
                Ok(match (changed, was) {
                    (0, false) => {
                        Outcome::AlreadyDone(format!("enabled; {total} objects as they should be"))
                    }
                    _ => Outcome::Done(format!("applied {changed} of {total} objects; enabled")),
                })
            })
            .await?;
    }
    crate::outln!("`kinit addons list` says when {addon} is ready.")?;
    Ok(())
}

/// Loads the addon's images the config file's bundle has and Docker lacks, then makes each image
/// present (as it is, or pulled), as `kinit up` does.
async fn addon_images(docker: &Docker, config: &Config, images: &[String]) -> Result<Outcome> {
    let mut loaded = 0;
    if let Some(dir) = &config.bundle {
        loaded = bundle::load_wanted(docker, dir, images).await?.loaded.len();
    }
    let mut pulled = 0;
    for image in images {
        if docker.ensure_image(image).await? == ImageSource::Pulled {
            pulled += 1;
        }
    }
    Ok(match (loaded, pulled) {
        (0, 0) => Outcome::AlreadyDone(format!("all {} present", images.len())),
        _ => Outcome::Done(format!("{loaded} loaded from the bundle, {pulled} pulled")),
    })
}

async fn disable(state_dir: Option<&Path>, addon: Addon, force: bool) -> Result<()> {
    let (_lock, layout, mut settings, images) = changing(state_dir, "addons disable")?;
    let needed_by: Vec<&str> = settings
        .addons
        .iter()
        .filter(|a| a.requires().contains(&addon))
        .map(|a| a.name())
        .collect();
    if !needed_by.is_empty() {
        bail!(
            "the {} addon needs {addon}: disable it first (`sudo kinit addons disable {}`)",
            needed_by.join(", "),
            needed_by[0]
        );
    }
    let kube = Kube::connect(&layout.kubeconfig("admin.conf")).await?;
    if let Some(provisioner) = addon.provisioner()
        && !force
    {
        let volumes = kube.volumes_provisioned_by(provisioner).await?;
        if !volumes.is_empty() {
            bail!(
                "the {addon} addon's PersistentVolumes still exist: {}; delete the claims that \
                 hold them (their data goes with them), or pass --force to disable {addon} \
                 anyway (the volumes and their data under {} stay, and nothing deletes them)",
                volumes.join(", "),
                layout.local_volumes().display()
            );
        }
    }
    let objects = addon.render_for_removal(&layout, &images)?;
    let mut steps = Steps::new();
    steps
        .run(&format!("Removing the {addon} addon"), async {
            let deleted = kube.delete(&objects).await?;
            let what = format!("the {addon} addon's objects did not go away");
            wait::within(&what, DELETE_TIMEOUT, async |seen| {
                kube.wait_gone(&objects, seen).await
            })
            .await?;
            let workload = addon.workload();
            let selector = addon.selector();
            wait::within(&what, DELETE_TIMEOUT, async |seen| {
                kube.wait_pods(workload.namespace, Some(&selector), seen, |left| {
                    if left.is_empty() {
                        Ok(())
                    } else {
                        let names: Vec<&str> = left.iter().map(|p| p.name.as_str()).collect();
                        Err(format!("pods {} still there", names.join(", ")))
                    }
                })
                .await
            })
            .await?;
            // With its controller gone, the addresses it gave would stay, and lead nowhere
            // once kube-proxy drops them... or keep working, unmanaged: clear them.
            let cleared = if addon == Addon::LoadBalancer {
                kube.clear_load_balancer_addresses().await?
            } else {
                Vec::new()
            };
            let was = settings.addons.remove(&addon);
            if was {
                settings.save(&layout.settings_file())?;
            }
            let cleared = if cleared.is_empty() {
                String::new()
            } else {
                format!("; cleared the external address of {}", cleared.join(", "))
            };
            Ok(if deleted == 0 && !was && cleared.is_empty() {
                Outcome::AlreadyDone("disabled; nothing of it was there".into())
            } else {
                Outcome::Done(format!(
                    "deleted {deleted} objects and their pods; disabled{cleared}"
                ))
            })
        })
        .await?;
    Ok(())
}
