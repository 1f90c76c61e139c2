//! `kinit example NAME [--delete]` and `kinit example --list`: deploys a tutorial through
//! the API, waits until it is ready and says where to open it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};

use crate::cli::ExampleArgs;
use crate::cluster::Settings;
use crate::examples::{self, Example, Shape};
use crate::fs::Lock;
use crate::kubernetes::{JobState, Kube, PodState};
use crate::layout::{LOCK_FILE, Layout};
use crate::progress::{self, Outcome, Steps};
use crate::wait;

/// First runs pull images from Docker Hub; give them time.
const READY_TIMEOUT: Duration = Duration::from_secs(600);
const DELETE_TIMEOUT: Duration = Duration::from_secs(180);
const NAMESPACE: &str = "default";

pub async fn run(state_dir: Option<&Path>, args: &ExampleArgs) -> Result<()> {
    if args.list {
        for e in &examples::ALL {
            let images: Vec<String> = e.images.iter().map(|(s, i)| format!("{s}={i}")).collect();
            crate::outln!("{:<18} {} ({})", e.name, e.summary, images.join(", "))?;
        }
        return Ok(());
    }
    let name = args
        .name
        .as_deref()
        .ok_or_else(|| anyhow!("name a tutorial (see `kinit example --list`)"))?;
    let example = examples::find(name)?;
    // Bad overrides are refused before anything else is looked at.
    example.render(&args.image_override, crate::cluster::DEFAULT_DNS_DOMAIN)?;
    let layout = Layout::resolve(state_dir)?;
    // Root's run changes the cluster as `kinit up` does: never both at once. (Other users
    // cannot take the host's lock, nor run `up` or `down`.)
    let _lock = if nix::unistd::geteuid().is_root() {
        Some(Lock::acquire(Path::new(LOCK_FILE))?)
    } else {
        None
    };
    let Some(settings) = Settings::load(&layout.settings_file())? else {
        bail!(
            "no cluster in {} (run `sudo kinit up` first)",
            layout.root().display()
        );
    };
    let missing: Vec<&str> = example
        .needs
        .iter()
        .filter(|a| !settings.addons.contains(a))
        .map(|a| a.name())
        .collect();
    if !missing.is_empty() && !args.delete {
        bail!(
            "the {name} example needs the {} addon{}: `sudo kinit addons enable {}` first",
            missing.join(" and "),
            if missing.len() > 1 { "s" } else { "" },
            missing.join(" && sudo kinit addons enable ")
        );
    }
    let manifest = example.render(&args.image_override, settings.dns_domain.as_str())?;
    let kube = Kube::connect(&credentials(&layout)?).await?;

    let mut steps = Steps::new();
    if args.delete {
        steps
            .run(&format!("Removing the {name} example"), async {
                let deleted = kube.delete(&manifest).await?;
                wait::within(
                    &format!("the {name} example's pods did not go away"),
                    DELETE_TIMEOUT,
                    async |seen| {
                        let selector = example.selector();
                        kube.wait_pods(NAMESPACE, Some(&selector), seen, |left| {
                            if left.is_empty() {
                                Ok(())
                            } else {
                                Err(format!("{} still there", names(left)))
                            }
                        })
                        .await
                    },
                )
                .await?;
                // A claim goes only once no pod uses it (its protection finalizer): waited
                // for too, so the example can be made again at once.
                wait::within(
                    &format!("the {name} example's objects did not go away"),
                    DELETE_TIMEOUT,
                    async |seen| kube.wait_gone(&manifest, seen).await,
                )
                .await?;
                Ok(if deleted == 0 {
                    Outcome::AlreadyDone("nothing of it was there".into())
                } else {
                    Outcome::Done(format!("deleted {deleted} objects and their pods"))
                })
            })
            .await?;
        return Ok(());
    }

    steps
        .run(&format!("Deploying the {name} example"), async {
            let (total, changed) = kube.apply(&manifest).await?;
            Ok(Outcome::Done(format!(
                "{changed} of {total} objects created or changed"
            )))
        })
        .await?;
    steps
        .run("Waiting for it to be ready", wait_ready(&kube, example))
        .await?;
    show(&kube, example, &settings).await
}

/// The admin kubeconfig when this user may read it, else the user's own kubeconfig with
/// the `kinit` context that `kinit up` merged into it.
pub(super) fn credentials(layout: &Layout) -> Result<PathBuf> {
    let admin = layout.kubeconfig("admin.conf");
    if std::fs::File::open(&admin).is_ok() {
        return Ok(admin);
    }
    let user = crate::kubeconfig::resolve_target(None)?.path;
    if user.exists() {
        Ok(user)
    } else {
        bail!(
            "cannot read {} (run with sudo) and there is no kubeconfig at {}",
            admin.display(),
            user.display()
        )
    }
}

async fn wait_ready(kube: &Kube, example: &Example) -> Result<Outcome> {
    let what = format!("the {} example did not become ready", example.name);
    wait::within(&what, READY_TIMEOUT, async |seen| match example.shape {
        Shape::Deployment | Shape::Ingress => {
            kube.wait_deployment(NAMESPACE, example.name, seen).await?;
            if example.shape == Shape::Ingress {
                let db = format!("{}-db", example.name);
                kube.wait_deployment(NAMESPACE, &db, seen).await?;
            }
            // Every pod ready, and every one of them behind the Service.
            let selector = example.selector();
            let ready = kube
                .wait_pods(NAMESPACE, Some(&selector), seen, |pods| {
                    // A reboot's graceful shutdown leaves Failed pods beside their
                    // replacements.
                    let pods: Vec<&PodState> = pods.iter().filter(|p| !p.is_terminal()).collect();
                    if pods.is_empty() {
                        Err("no pods yet".into())
                    } else if pods.iter().all(|p| p.ready) {
                        Ok(pods.len())
                    } else {
                        Err(format!(
                            "waiting for {}",
                            names(pods.iter().copied().filter(|p| !p.ready))
                        ))
                    }
                })
                .await?;
            let serving = if example.shape == Shape::Ingress {
                // Only the app's pods are behind its Service; the database has its own.
                let app = format!("app={}", example.name);
                kube.pods_matching(NAMESPACE, Some(&app))
                    .await?
                    .iter()
                    .filter(|p| !p.is_terminal())
                    .count()
            } else {
                ready
            };
            kube.wait_endpoints(NAMESPACE, example.name, serving, seen)
                .await
        }
        Shape::Job => match kube.wait_job(NAMESPACE, "hello", seen).await? {
            JobState::Succeeded => Ok(()),
            JobState::Failed => {
                let logs = job_output(kube).await.unwrap_or_default();
                bail!("{what}: the Job failed; its output:\n{logs}")
            }
        },
    })
    .await?;
    Ok(Outcome::Done("ready".into()))
}

/// Pod names and phases for a message: "a (Pending), b (Running)".
fn names<'a>(pods: impl IntoIterator<Item = &'a PodState>) -> String {
    pods.into_iter()
        .map(|p| format!("{} ({})", p.name, p.phase))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn job_output(kube: &Kube) -> Result<String> {
    let pods = kube
        .pods_matching(NAMESPACE, Some("job-name=hello"))
        .await?;
    let pod = pods.first().ok_or_else(|| anyhow!("the Job has no pod"))?;
    kube.pod_logs(NAMESPACE, &pod.name).await
}

async fn show(kube: &Kube, example: &Example, settings: &Settings) -> Result<()> {
    let say = progress::println;
    let domain = &settings.dns_domain;
    say("");
    match example.shape {
        Shape::Deployment => {
            let pods = kube
                .pods_matching(NAMESPACE, Some(&example.selector()))
                .await?;
            let service = format!("http://{}.{NAMESPACE}.svc.{domain}/", example.name);
            say(&format!("The {} example is ready:", example.name));
            for p in pods.iter().filter(|p| !p.is_terminal()) {
                if let Some(ip) = &p.ip {
                    say(&format!("  pod {:<32} http://{ip}/", p.name));
                }
            }
            say(&format!("  Service {:<28} {service}", example.name));
            say("");
            say("From this host: curl the pod or Service addresses above. From a browser: run");
            say(
                "`sudo kinit socks --detach`, then `ssh -N -L 8082:127.0.0.1:8082 <user>@<this host>` on the",
            );
            say(&format!(
                "laptop, set the browser's SOCKS5 proxy to 127.0.0.1:8082 (remote DNS on) and open {service}"
            ));
        }
        Shape::Ingress => {
            let ip = settings.node_ip;
            let host = examples::INGRESS_HOST;
            say(&format!(
                "The {} example is ready at http://{host}/",
                example.name
            ));
            say(&format!(
                "  (the Ingress on the node's address {ip}; MongoDB's data on the claim {}-db)",
                example.name
            ));
            say("");
            say(&format!(
                "From this host: curl --resolve {host}:80:{ip} http://{host}/"
            ));
            say(&format!(
                "From a browser on a machine that reaches {ip} (the one hosting a Vagrant box): add"
            ));
            say(&format!(
                "`{ip} {host}` to its hosts file and open http://{host}/"
            ));
        }
        Shape::Job => {
            say("The Job ran to completion; its output:");
            for line in job_output(kube).await?.lines() {
                say(&format!("  {line}"));
            }
            say("It deletes itself 5 minutes after finishing (ttlSecondsAfterFinished).");
        }
    }
    say(&format!(
        "Remove it with `kinit example {} --delete`.",
        example.name
    ));
    Ok(())
}
