//! One function per subcommand; each parses nothing and decides little, calling the
//! library modules in order.

mod addons;
mod boot;
mod certs;
mod down;
mod example;
mod images;
mod join;
mod join_command;
mod kubeconfig;
mod logs;
mod socks;
mod status;
mod up;

use anyhow::{Context, Result, bail};
use clap::CommandFactory;

use crate::cli::{Cli, Command};
use crate::versions;

pub async fn run(cli: Cli) -> Result<()> {
    let state_dir = cli.state_dir.as_deref();
    match cli.command {
        Command::Up(args) => up::run(state_dir, cli.config.as_deref(), &args).await,
        Command::Down(args) => down::run(state_dir, &args).await,
        Command::Status(args) => status::run(state_dir, &args).await,
        Command::Logs(args) => logs::run(&args).await,
        Command::Certs(args) => certs::run(state_dir, &args),
        Command::Images(cmd) => images::run(&cmd).await,
        Command::Addons(cmd) => addons::run(state_dir, cli.config.as_deref(), &cmd).await,
        Command::Version => version(),
        Command::Socks(args) => socks::run(state_dir, &args).await,
        Command::Kubeconfig => kubeconfig::run(state_dir),
        Command::Example(args) => example::run(state_dir, &args).await,
        Command::JoinCommand(args) => join_command::run(state_dir, &args).await,
        Command::Join(args) => join::run(state_dir, cli.config.as_deref(), &args).await,
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "kinit", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { dir: None } => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .context("cannot write the man page"),
        Command::Boot => boot::run(state_dir).await,
        Command::ServiceLb => {
            let kube = crate::kubernetes::Kube::in_cluster().await?;
            kube.serve_load_balancers(crate::service_lb::listening)
                .await
        }
        Command::ApproveServingCerts => {
            let kube = crate::kubernetes::Kube::in_cluster().await?;
            kube.approve_serving_certificates().await
        }
        Command::RuntimeProxy {
            listen,
            upstream,
            pulled_images,
        } => {
            let rewrites = crate::runtime_proxy::Rewrites::for_this_host();
            tracing::info!(
                "serving the Docker API on {} ({})",
                listen.display(),
                rewrites.describe()
            );
            crate::runtime_proxy::serve(&listen, &upstream, rewrites, pulled_images.as_deref())
                .await
        }
        Command::Man { dir: Some(dir) } => clap_mangen::generate_to(Cli::command(), &dir)
            .with_context(|| format!("cannot write the man pages into {}", dir.display())),
    }
}

fn version() -> Result<()> {
    crate::outln!("kinit {}", env!("CARGO_PKG_VERSION"))?;
    for (i, release) in versions::SUPPORTED.iter().enumerate() {
        let default = if i == 0 { " (default)" } else { "" };
        crate::outln!(
            "kubernetes {}{default}: etcd {}, coredns {}, pause {}",
            release.kubernetes,
            release.etcd,
            release.coredns,
            release.pause
        )?;
    }
    crate::outln!("cri-dockerd {}", versions::CRI_DOCKERD_VERSION)?;
    crate::outln!("cni-plugins {}", versions::CNI_PLUGINS_VERSION)?;
    Ok(())
}

/// The config file `--config` names, else the default one; a missing file is an empty
/// config.
fn load_config(path: Option<&std::path::Path>) -> Result<crate::config::Config> {
    use crate::config::Config;
    Ok(match path {
        Some(path) => Config::load(path)?,
        None => Config::default_path()
            .map(|p| Config::load(&p))
            .transpose()?
            .unwrap_or_default(),
    })
}

/// Commands that change the host need root; say so before touching anything.
fn require_root(command: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "`kinit {command}` changes the host (containers, /var/lib/kinit) and needs root: run `sudo kinit {command}`"
        );
    }
    Ok(())
}
