//! Command-line flags: one definition per flag, help text beside it.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::builder::PossibleValue;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::addons::{self, Addon};
use crate::cluster::{
    self, Component, DnsDomain, ExtraArg, ExtraArgs, FeatureGates, NodeName, PodCidr, PodSecurity,
    ServiceCidr,
};
use crate::{config, versions};

mod join;
mod socks;

pub use join::{JoinArgs, JoinCommandArgs};
pub use socks::SocksArgs;

#[derive(Debug, Parser)]
#[command(
    name = "kinit",
    version,
    about = "One command to a real Kubernetes cluster on Docker",
    long_about = "kinit turns a Linux host with Docker into a Kubernetes test cluster: \
                  certificates, etcd, the control plane and kube-proxy run as host-networked \
                  containers, `kinit join` adds other hosts as nodes, and `kinit socks` lets a \
                  browser open pod and Service IPs.\n\n\
                  Start with `sudo kinit up`, then `kinit status`."
)]
pub struct Cli {
    /// More output: -v shows details of each step, -vv everything kinit does.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Where kinit keeps the cluster's certificates, etcd data and settings
    /// [default: /var/lib/kinit; for users other than root without a cluster there, the
    /// per-user data directory].
    #[arg(long, global = true, env = "KINIT_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// The config file (mirror, bundle) [default: /etc/kinit/config.yaml as root, else the
    /// per-user config directory].
    #[arg(long, global = true, env = "KINIT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the cluster, or repair it if some part is missing (needs root).
    ///
    /// Checks the host, writes certificates into the state directory and starts every
    /// component as a Docker container. Safe to run again: steps already done are skipped.
    Up(UpArgs),
    /// Stop and remove kinit's containers; keeps the data so `kinit up` brings it back.
    Down(DownArgs),
    /// Show each component's container, its health and the versions in use.
    Status(StatusArgs),
    /// Run a SOCKS5 proxy so a browser can open pod and Service IPs.
    Socks(SocksArgs),
    /// Print the cluster's admin kubeconfig (context `kinit`), e.g. to copy to a laptop.
    Kubeconfig,
    /// Show a component's logs.
    Logs(LogsArgs),
    /// Write the cluster's certificates and kubeconfigs to a directory, touching nothing else.
    ///
    /// Produces kubeadm's layout (pki/ca.crt, pki/apiserver.crt, pki/etcd/..., admin.conf,
    /// ...). Run it again on the same directory and valid certificates are kept as they are.
    Certs(CertsArgs),
    /// Print the command that joins another host to this cluster as a node (needs root).
    ///
    /// Makes a bootstrap token that expires (--ttl) and prints `sudo kinit join ...` with it
    /// and the hash of the cluster's CA, for the other host.
    JoinCommand(JoinCommandArgs),
    /// Join this host to a cluster as a node, with the command `kinit join-command` printed
    /// on the cluster's host (needs root).
    ///
    /// Runs the node's part only: the kubelet (kinit-node), kube-proxy and kinit-boot, from
    /// the same downloads and images as `kinit up`. The host's credentials are a kubelet's.
    Join(JoinArgs),
    /// Deploy a tutorial application (telescope, nginx, job) and say where to open it.
    Example(ExampleArgs),
    /// Print kinit's version and the component versions it deploys.
    Version,
    /// List, enable or disable the cluster's addons (storage, metrics-server).
    #[command(subcommand)]
    Addons(AddonsCommand),
    /// Load or list the container images kinit runs (for hosts without registry access).
    #[command(subcommand)]
    Images(ImagesCommand),
    /// Print a shell completion script: `kinit completions bash > /etc/bash_completion.d/kinit`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print kinit's man page (roff), or write a page per subcommand with --dir.
    Man {
        /// Write kinit.1 and one page per subcommand (kinit-up.1, ...) into DIR, e.g.
        /// /usr/local/share/man/man1, instead of printing kinit.1.
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
    /// Inside kinit's node container: serve the Docker API to cri-dockerd, clamping what a
    /// restricted host refuses (negative oom_score_adj without CAP_SYS_RESOURCE), and
    /// removing only the images the node pulled.
    #[command(hide = true)]
    RuntimeProxy {
        #[arg(long, value_name = "SOCKET")]
        listen: PathBuf,
        #[arg(long, value_name = "SOCKET")]
        upstream: PathBuf,
        /// The file that records the images the node pulled, the only ones it may remove;
        /// without it, every image removal is refused.
        #[arg(long, value_name = "FILE")]
        pulled_images: Option<PathBuf>,
    },
    /// Inside the kinit-boot container, on each start of the Docker daemon: set the host up
    /// again and start the kinit containers Docker could not start before that.
    #[command(hide = true)]
    Boot,
    /// In the load-balancer addon's pod: give LoadBalancer Services the node's address.
    #[command(hide = true)]
    ServiceLb,
    /// In the control-plane host's approver pod: approve joined kubelets' requests for
    /// their serving certificates when they name only their own Node.
    #[command(hide = true)]
    ApproveServingCerts,
}

#[derive(Debug, Subcommand)]
pub enum AddonsCommand {
    /// Each addon, whether it is enabled, and its state (ready or what it waits for).
    List,
    /// Enable an addon: apply its objects and record it in the cluster's settings, so
    /// `kinit up` keeps it. Enabling an enabled addon applies it again.
    Enable {
        #[arg(value_parser = parse_addon)]
        name: Addon,
    },
    /// Disable an addon: delete every object it made (waiting until they are gone) and
    /// record that, so `kinit up` leaves it out.
    Disable {
        #[arg(value_parser = parse_addon)]
        name: Addon,
        /// Disable storage even while PersistentVolumes of its provisioner exist: they
        /// stay, with their data under the state directory, but nothing deletes them.
        #[arg(long)]
        force: bool,
    },
}

fn parse_addon(s: &str) -> Result<Addon, String> {
    s.parse()
}

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Load the image archives of an offline bundle into Docker (those not present yet).
    Load {
        /// The bundle directory (with images/*.tar) or a directory of `docker save` archives.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Load every archive, even when Docker has its images already (re-pointing any name
        /// Docker has to the archive's image).
        #[arg(long)]
        all: bool,
    },
    /// List the images this kinit runs and whether Docker has them.
    List,
}

/// The settings that identify a cluster and go into its certificates.
#[derive(Debug, Clone, Default, Args)]
pub struct ClusterArgs {
    /// The address the API server and etcd advertise [default: the host's primary address].
    #[arg(long, value_name = "IP")]
    pub node_ip: Option<IpAddr>,

    /// The node's name [default: this host's name].
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<NodeName>,

    /// The range Service IPs come from [default: 10.96.0.0/12].
    #[arg(long, value_name = "CIDR")]
    pub service_cidr: Option<ServiceCidr>,

    /// The cluster's DNS domain [default: cluster.local].
    #[arg(long, value_name = "DOMAIN")]
    pub dns_domain: Option<DnsDomain>,

    /// The range pod IPs come from; the node gets its first /24 [default: 10.244.0.0/16].
    #[arg(long, value_name = "CIDR")]
    pub pod_cidr: Option<PodCidr>,

    /// The Kubernetes version of a new cluster: the pinned one or the previous minor's
    /// (`kinit version` lists them) [default: from the config file, else the newest].
    #[arg(long, value_name = "VERSION", value_parser = versions::parse_kubernetes_version)]
    pub kubernetes_version: Option<String>,
}

/// The joining host's own settings.
#[derive(Debug, Clone, Default, Args)]
pub struct NodeArgs {
    /// The address the other hosts reach this one at [default: this host's address on the
    /// route to the API server].
    #[arg(long, value_name = "IP")]
    pub node_ip: Option<IpAddr>,

    /// The node's name [default: this host's name].
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<NodeName>,
}

impl ClusterArgs {
    /// What these flags ask of the cluster.
    pub fn requested(&self) -> cluster::Requested {
        cluster::Requested {
            node_ip: self.node_ip,
            hostname: self.hostname.clone(),
            service_cidr: self.service_cidr,
            dns_domain: self.dns_domain.clone(),
            pod_cidr: self.pod_cidr,
            kubernetes_version: self.kubernetes_version.clone(),
            ..Default::default()
        }
    }
}

/// Where release files and images come from (`kinit up`, `kinit join`).
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Where to download the kubelet, kubectl, cri-dockerd and the CNI plugins from: a base
    /// URL serving dl.k8s.io's paths and GitHub's release download paths, with a .sha256
    /// beside every file; file:// or http(s):// [default: from the config file, else
    /// dl.k8s.io and github.com].
    #[arg(long, value_name = "URL", value_parser = config::parse_mirror)]
    pub mirror: Option<String>,

    /// Pull the upstream images (etcd, kube-apiserver, ..., coredns/coredns, pause) from
    /// this repository, under registry.k8s.io's paths, as kubeadm's imageRepository
    /// [default: from the config file, else registry.k8s.io].
    #[arg(long, value_name = "REPO", value_parser = config::parse_image_repository)]
    pub image_repository: Option<String>,

    /// An offline bundle directory (scripts/build-bundle.sh): its images are loaded when
    /// Docker lacks them, and its binaries are used unless --mirror says otherwise.
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
}

impl SourceArgs {
    /// The sources these flags name, the config file's filling in, then `repository`
    /// (the one a cluster already pulls from) for the images.
    pub fn resolve(
        &self,
        config: &config::Config,
        repository: Option<&str>,
    ) -> anyhow::Result<config::Sources> {
        config::Sources::resolve(
            config,
            self.mirror.as_deref(),
            self.image_repository.as_deref().or(repository),
            self.bundle.as_deref(),
        )
    }
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    #[command(flatten)]
    pub sources: SourceArgs,

    /// The addons of a new cluster, comma-separated (`""` for none); an existing cluster
    /// gets those it lacks and keeps the others (`kinit addons disable` removes one)
    /// [default: from the config file, else storage,metrics-server].
    #[arg(long, value_name = "LIST", value_parser = addons::parse_list)]
    pub addons: Option<std::collections::BTreeSet<Addon>>,

    /// Where to install kubectl.
    #[arg(long, value_name = "DIR", default_value = "/usr/local/bin")]
    pub bin_dir: PathBuf,

    /// The kubeconfig to add the `kinit` context to [default: under sudo, the invoking
    /// user's ~/.kube/config; else the first file in $KUBECONFIG, else ~/.kube/config].
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    #[command(flatten)]
    pub components: ComponentArgs,
}

/// What the user adds to the components. Each replaces the cluster's as a whole, and is
/// kept by later runs that leave it out; flags win over the config file.
#[derive(Debug, Clone, Default, Args)]
pub struct ComponentArgs {
    /// Feature gates for every component that takes them: `A=true,B=false`; `''` for none
    /// [default: from the config file, else those the cluster has].
    #[arg(long, value_name = "GATES")]
    pub feature_gates: Option<FeatureGates>,

    /// A flag for one component (repeatable): apiserver, controller-manager, scheduler,
    /// kubelet or proxy, e.g. `apiserver:v=4`. Those given replace all the cluster's extra
    /// args; flags kinit sets itself are refused [default: from the config file, else
    /// those the cluster has].
    #[arg(long, value_name = "COMPONENT:FLAG=VALUE")]
    pub extra_arg: Vec<ExtraArg>,

    /// Remove every extra arg the cluster has.
    #[arg(long, conflicts_with = "extra_arg")]
    pub no_extra_args: bool,

    /// Have the API server write an audit log to <state>/logs/audit.log (rotated);
    /// `--audit-log=false` turns it off [default: from the config file, else as the
    /// cluster has it].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub audit_log: Option<bool>,

    /// The Pod Security Standard the API server enforces in every namespace but
    /// kube-system: privileged (nothing enforced), baseline or restricted; a namespace's
    /// own `pod-security.kubernetes.io/enforce` label still wins [default: from the config
    /// file, else as the cluster has it; a new cluster: privileged].
    #[arg(long, value_name = "LEVEL")]
    pub pod_security: Option<PodSecurity>,
}

impl ComponentArgs {
    /// The extra args these flags give: `None` when they name none.
    pub fn extra_args(&self) -> Result<Option<ExtraArgs>, String> {
        if self.no_extra_args {
            return Ok(Some(ExtraArgs::default()));
        }
        if self.extra_arg.is_empty() {
            return Ok(None);
        }
        ExtraArgs::from_list(&self.extra_arg).map(Some)
    }
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Also delete the state directory: certificates, etcd data, settings. Cannot be undone.
    #[arg(long)]
    pub purge: bool,
    /// On a joined host: leave even when the drain cannot finish (a PodDisruptionBudget
    /// refuses, the control plane does not answer). On the control-plane host: purge the
    /// cluster although other hosts are joined to it.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The component whose logs to show.
    #[arg(value_enum)]
    pub component: Component,

    /// Keep printing new lines as they come.
    #[arg(short, long)]
    pub follow: bool,

    /// Show only this many lines from the end.
    #[arg(long, value_name = "N")]
    pub tail: Option<u32>,
}

/// `kinit logs` takes every component, by the name `kinit status` shows.
impl ValueEnum for Component {
    fn value_variants<'a>() -> &'a [Self] {
        &Component::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let help = match self {
            Component::Kubelet => Some("The kubelet and cri-dockerd (the kinit-master container)"),
            Component::Proxy => Some("kube-proxy"),
            Component::Router => Some("kube-router: routes between the nodes, NetworkPolicy"),
            Component::Boot => Some("What kinit-boot did when the Docker daemon last started"),
            Component::Etcd
            | Component::ApiServer
            | Component::ControllerManager
            | Component::Scheduler
            | Component::CoreDns => None,
        };
        let value = PossibleValue::new(self.name());
        Some(match help {
            Some(help) => value.help(help),
            None => value,
        })
    }
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// The directory to write into; created when missing.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Args)]
#[command(arg_required_else_help = true)]
pub struct ExampleArgs {
    /// The tutorial to deploy: telescope, nginx or job.
    #[arg(required_unless_present = "list")]
    pub name: Option<String>,

    /// List the tutorials.
    #[arg(long, conflicts_with_all = ["name", "delete"])]
    pub list: bool,

    /// Remove the tutorial and everything it created.
    #[arg(long)]
    pub delete: bool,

    /// Use another image for one of the tutorial's containers (repeatable), e.g.
    /// `mongo=mongo:6` or, without registry access, an image loaded into Docker.
    #[arg(long, value_name = "NAME=IMAGE")]
    pub image_override: Vec<String>,
}
