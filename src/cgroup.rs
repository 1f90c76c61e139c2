//! The host's cgroups as kinit's kubelet uses them: the version the host mounts, the driver
//! Docker uses, the root kinit's pods live under (`/kinit`, which the systemd driver names
//! `kinit.slice`), what the master creates at start and mounts from the host, what teardown
//! removes and which containers are kinit's. Pure functions over recorded inputs (the mount
//! table, Docker's driver, which paths exist); [`Setup::probe`] and [`Teardown::probe`] read
//! the live host.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

/// Where every layout kinit supports mounts its cgroup hierarchies.
pub const MOUNT_ROOT: &str = "/sys/fs/cgroup";

/// The kubelet's `cgroupRoot`, in the kubelet's own (cgroupfs) notation whatever the driver:
/// kinit's pods stay apart from anything else on the host, and are told from another
/// kubelet's by it.
pub const KUBELET_ROOT: &str = "/kinit";

/// The root's directory under the cgroupfs driver.
const ROOT_DIR: &str = "kinit";
/// What the systemd driver makes of [`KUBELET_ROOT`]: the kubelet turns each path component's
/// '-' into '_', joins the components with '-' and appends ".slice" (`CgroupName.ToSystemd`
/// in pkg/kubelet/cm), then refuses to start unless that cgroup exists in every hierarchy it
/// checks.
const ROOT_SLICE: &str = "kinit.slice";
/// The prefix every slice the kubelet makes under its root carries (`kinit-kubepods.slice`,
/// `kinit-kubepods-burstable-pod<uid>.slice`).
const SLICE_PREFIX: &str = "kinit-";

/// runc's systemd driver takes systemd as running only when this directory exists.
const SYSTEMD_RUNNING: &str = "/run/systemd/system";
/// The kubelet (through runc) reaches systemd over the D-Bus system bus and, as root, falls
/// back to systemd's private socket; systemctl as root tries them the other way round.
/// Either one is enough.
const SYSTEMD_SOCKETS: [&str; 2] = ["/run/dbus/system_bus_socket", "/run/systemd/private"];
/// The directories holding those sockets, mounted into the master read-only: connecting to
/// a Unix socket needs no write access to the filesystem it is on.
const SYSTEMD_BINDS: [&str; 2] = ["/run/systemd", "/run/dbus"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// The cgroup hierarchies mounted under /sys/fs/cgroup, as the host's mount table has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounts {
    version: Version,
    /// One directory per v1 hierarchy (a controller, a few together, or systemd's named one),
    /// in mount order; empty on v2.
    v1: Vec<PathBuf>,
    /// The cgroup2 hierarchy: /sys/fs/cgroup itself on v2, `unified` beside the v1 ones on a
    /// hybrid host.
    unified: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fs {
    CgroupV1,
    CgroupV2,
    Other,
}

impl Mounts {
    /// This process's mount table; kinit runs in the host's mount namespace, and the master
    /// container binds the host's /sys/fs/cgroup at the same place.
    pub fn read() -> Result<Self> {
        let path = "/proc/self/mountinfo";
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {path}"))?;
        Self::parse(&String::from_utf8_lossy(&bytes))
    }

    /// Reads `/proc/<pid>/mountinfo` text (format: the kernel's
    /// Documentation/filesystems/proc.rst). Lines that do not have that format are skipped:
    /// only cgroup mounts matter here, and an odd line elsewhere must not stop kinit.
    pub fn parse(mountinfo: &str) -> Result<Self> {
        // A later mount at the same place hides the earlier one.
        let mut visible: Vec<(PathBuf, Fs)> = Vec::new();
        for (point, fs) in mountinfo.lines().filter_map(parse_mount) {
            match visible.iter_mut().find(|(p, _)| *p == point) {
                Some(entry) => entry.1 = fs,
                None => visible.push((point, fs)),
            }
        }
        let root = Path::new(MOUNT_ROOT);
        if visible
            .iter()
            .any(|(p, fs)| p == root && *fs == Fs::CgroupV2)
        {
            return Ok(Self {
                version: Version::V2,
                v1: Vec::new(),
                unified: Some(root.to_path_buf()),
            });
        }
        let under_root = |fs: Fs| -> Vec<PathBuf> {
            visible
                .iter()
                .filter(|(p, f)| *f == fs && p.parent() == Some(root))
                .map(|(p, _)| p.clone())
                .collect()
        };
        let v1 = under_root(Fs::CgroupV1);
        if v1.is_empty() {
            bail!(
                "no cgroup hierarchy is mounted at {MOUNT_ROOT} (neither cgroup2 there nor cgroup \
                 v1 controllers under it), and the kubelet needs one; this host's init did not \
                 mount them"
            );
        }
        Ok(Self {
            version: Version::V1,
            v1,
            unified: under_root(Fs::CgroupV2).into_iter().next(),
        })
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// How the host's layout reads in a message.
    pub fn describe(&self) -> &'static str {
        match (self.version, &self.unified) {
            (Version::V2, _) => "v2",
            (Version::V1, Some(_)) => "v1 (hybrid, with a v2 hierarchy beside)",
            (Version::V1, None) => "v1",
        }
    }

    /// Every hierarchy's directory: the v1 ones and the cgroup2 one.
    fn hierarchies(&self) -> impl Iterator<Item = &PathBuf> {
        self.v1.iter().chain(&self.unified)
    }
}

/// One mountinfo line's mount point and filesystem kind.
fn parse_mount(line: &str) -> Option<(PathBuf, Fs)> {
    let fields: Vec<&str> = line.split(' ').collect();
    let point = fields.get(4)?;
    // Optional fields (shared:N, master:N) run from the seventh field to a lone "-".
    let separator = 6 + fields.get(6..)?.iter().position(|f| *f == "-")?;
    let fs = match *fields.get(separator + 1)? {
        "cgroup" => Fs::CgroupV1,
        "cgroup2" => Fs::CgroupV2,
        _ => Fs::Other,
    };
    Some((PathBuf::from(unescape(point)), fs))
}

/// The kernel writes space, tab, newline and backslash in a mount point as `\ooo` octal.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0')));
        match octal.and_then(|n| u8::try_from(n).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How Docker, and so the kubelet, manage cgroups. The kubelet must use Docker's: Docker
/// creates the pods' containers in the cgroups the kubelet names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Cgroupfs,
    Systemd,
}

impl Driver {
    pub const ALL: [Driver; 2] = [Driver::Cgroupfs, Driver::Systemd];

    /// Docker's `CgroupDriver` as `docker info` reports it.
    pub fn from_docker(name: &str) -> Result<Self> {
        match name {
            "cgroupfs" => Ok(Self::Cgroupfs),
            "systemd" => Ok(Self::Systemd),
            other => bail!(
                "Docker uses the cgroup driver {other:?}; the kubelet supports cgroupfs and systemd"
            ),
        }
    }

    /// The kubelet's `cgroupDriver` value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cgroupfs => "cgroupfs",
            Self::Systemd => "systemd",
        }
    }

    /// kinit's root as a directory of each hierarchy.
    fn root_dir(self) -> &'static str {
        match self {
            Self::Cgroupfs => ROOT_DIR,
            Self::Systemd => ROOT_SLICE,
        }
    }

    /// Whether a container's `HostConfig.CgroupParent` is under kinit's root as this driver
    /// names it. cgroupfs: the kubelet's path, `/kinit/kubepods/burstable/pod<uid>`. systemd:
    /// cri-dockerd hands Docker only the last slice, `kinit-kubepods-burstable-pod<uid>.slice`
    /// (a whole `/kinit.slice/...` path is taken too).
    pub fn owns(self, parent: &str) -> bool {
        match self {
            Self::Cgroupfs => parent
                .strip_prefix('/')
                .unwrap_or(parent)
                .strip_prefix(ROOT_DIR)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|rest| !rest.is_empty()),
            Self::Systemd => parent
                .rsplit('/')
                .next()
                .and_then(|slice| slice.strip_suffix(".slice"))
                .and_then(|name| name.strip_prefix(SLICE_PREFIX))
                .is_some_and(|rest| !rest.is_empty()),
        }
    }
}

/// Whether kinit's kubelet made a container with this cgroup parent, under either driver:
/// Docker's driver may have changed since, and the pods made before are still kinit's.
pub fn is_kinits(parent: &str) -> bool {
    Driver::ALL.iter().any(|d| d.owns(parent))
}

/// The host's cgroups as kinit's kubelet uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    pub mounts: Mounts,
    pub driver: Driver,
}

impl Setup {
    /// The live host's mounts with Docker's driver.
    pub fn probe(docker_driver: &str) -> Result<Self> {
        Ok(Self {
            driver: Driver::from_docker(docker_driver)?,
            mounts: Mounts::read()?,
        })
    }

    /// The kubelet's `cgroupRoot`.
    pub fn kubelet_root(&self) -> &'static str {
        KUBELET_ROOT
    }

    /// The kubelet's `cgroupDriver`.
    pub fn kubelet_driver(&self) -> &'static str {
        self.driver.name()
    }

    /// Under the systemd driver, the slice the master asks the host's systemd to start, so
    /// that systemd owns kinit's root from the first (`systemctl status kinit.slice` shows
    /// kinit's pods).
    pub fn root_slice(&self) -> Option<&'static str> {
        (self.driver == Driver::Systemd).then_some(ROOT_SLICE)
    }

    /// The directories that must exist before the kubelet starts: kinit's root, under the
    /// driver's name for it, in every hierarchy the kubelet checks. On v1 that is each v1
    /// hierarchy (systemd starting a slice creates it only in the hierarchies whose
    /// controllers the slice uses, none yet); never the hybrid host's cgroup2 one, which the
    /// kubelet ignores on v1.
    pub fn root_dirs(&self) -> Vec<PathBuf> {
        let name = self.driver.root_dir();
        match self.mounts.version {
            Version::V2 => vec![Path::new(MOUNT_ROOT).join(name)],
            Version::V1 => self.mounts.v1.iter().map(|h| h.join(name)).collect(),
        }
    }

    /// Host paths the master mounts read-only, of those that exist: systemd's and D-Bus's
    /// socket directories when the kubelet must reach systemd.
    pub fn master_binds(&self, exists: impl Fn(&Path) -> bool) -> Vec<String> {
        if self.driver != Driver::Systemd {
            return Vec::new();
        }
        SYSTEMD_BINDS
            .into_iter()
            .filter(|p| exists(Path::new(p)))
            .map(String::from)
            .collect()
    }

    /// Under the systemd driver the kubelet cannot start without systemd running the host
    /// and a socket to reach it by.
    pub fn check_systemd(&self, exists: impl Fn(&Path) -> bool) -> Result<()> {
        if self.driver != Driver::Systemd {
            return Ok(());
        }
        if !exists(Path::new(SYSTEMD_RUNNING)) {
            bail!(
                "Docker uses the systemd cgroup driver, but systemd does not run this host \
                 ({SYSTEMD_RUNNING} is missing); set \"exec-opts\": \
                 [\"native.cgroupdriver=cgroupfs\"] in /etc/docker/daemon.json and restart Docker"
            );
        }
        if !SYSTEMD_SOCKETS.iter().any(|s| exists(Path::new(s))) {
            bail!(
                "Docker uses the systemd cgroup driver, so the kubelet creates its cgroups \
                 through systemd, but neither {} nor {} exists; start D-Bus (sudo systemctl \
                 start dbus) and run `kinit up` again",
                SYSTEMD_SOCKETS[0],
                SYSTEMD_SOCKETS[1]
            );
        }
        Ok(())
    }
}

/// What teardown does to the host's cgroups once kinit's containers are gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Teardown {
    /// Stopped first (`systemctl stop`), so that systemd forgets the slices the kubelet had
    /// it make and removes their cgroups itself.
    pub stop_slice: Option<&'static str>,
    /// Then removed deepest first, with rmdir (a cgroup's files go with its directory):
    /// kinit's root under both drivers' names in every hierarchy, cgroup2 one included,
    /// since Docker's driver may have changed since the cluster was made.
    pub trees: Vec<PathBuf>,
}

impl Teardown {
    /// For the live host; works with Docker stopped.
    pub fn probe() -> Result<Self> {
        Ok(Self::new(
            &Mounts::read()?,
            Path::new(SYSTEMD_RUNNING).exists(),
        ))
    }

    pub fn new(mounts: &Mounts, systemd_running: bool) -> Self {
        Self {
            stop_slice: systemd_running.then_some(ROOT_SLICE),
            trees: mounts
                .hierarchies()
                .flat_map(|h| Driver::ALL.map(|d| h.join(d.root_dir())))
                .collect(),
        }
    }
}

#[cfg(test)]
mod fixtures;
#[cfg(test)]
pub(crate) mod tests;
