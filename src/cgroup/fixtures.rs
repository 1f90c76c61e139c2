//! The hosts recorded under tests/fixtures/cgroup, loaded for the tests of every module
//! that decides something from a host's cgroup layout.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bollard::models::{SystemInfo, SystemVersion};

use super::*;
use crate::docker::EngineInfo;

pub(crate) struct Fixture {
    pub name: String,
    pub mountinfo: String,
    /// `ls -la /sys/fs/cgroup`.
    pub listing: Vec<Entry>,
    pub engine: EngineInfo,
    /// Which of systemd's and D-Bus's paths exist there.
    pub run_paths: BTreeSet<PathBuf>,
}

/// One line of `ls -la`.
#[derive(Debug)]
pub(crate) struct Entry {
    pub name: String,
    /// `d`, `l` or `-`, as ls prints it.
    pub kind: char,
    pub target: Option<String>,
}

impl Fixture {
    pub fn setup(&self) -> Setup {
        Setup {
            mounts: Mounts::parse(&self.mountinfo)
                .unwrap_or_else(|e| panic!("{}: {e:#}", self.name)),
            driver: Driver::from_docker(&self.engine.cgroup_driver)
                .unwrap_or_else(|e| panic!("{}: {e:#}", self.name)),
        }
    }

    /// The host's paths as the code under test asks about them: the recorded /run entries,
    /// and the system directories every host has.
    pub fn exists(&self) -> impl Fn(&Path) -> bool + '_ {
        |p| self.run_paths.contains(p) || ["/usr", "/bin", "/etc"].iter().any(|s| p == Path::new(s))
    }

    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.listing.iter().find(|e| e.name == name)
    }
}

pub(crate) fn fixtures() -> Vec<Fixture> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cgroup");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    dirs.iter().map(|dir| load(dir)).collect()
}

fn load(dir: &Path) -> Fixture {
    let read = |file: &str| {
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()))
    };
    let info: SystemInfo = serde_json::from_str(&read("docker-info.json")).unwrap();
    let version = SystemVersion {
        version: info.server_version.clone(),
        ..Default::default()
    };
    Fixture {
        name: dir.file_name().unwrap().to_string_lossy().into_owned(),
        mountinfo: read("mountinfo"),
        listing: read("cgroup-dirs").lines().filter_map(parse_ls).collect(),
        engine: EngineInfo::new(version, info),
        run_paths: read("run-paths").lines().map(PathBuf::from).collect(),
    }
}

fn parse_ls(line: &str) -> Option<Entry> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let name = (*fields.get(8)?).to_string();
    if name == "." || name == ".." {
        return None;
    }
    Some(Entry {
        kind: fields[0].chars().next()?,
        target: (fields.get(9) == Some(&"->")).then(|| fields[10].to_string()),
        name,
    })
}

/// The cgroup the kubelet looks for, named as pkg/kubelet/cm names it: cgroupfs keeps the
/// path; systemd turns '-' into '_' in each component, joins them with '-', appends
/// ".slice" and expands that into the path of its parent slices.
pub(crate) fn kubelet_cgroup(driver: Driver, components: &[&str]) -> String {
    match driver {
        Driver::Cgroupfs => format!("/{}", components.join("/")),
        Driver::Systemd => {
            let escaped: Vec<String> = components.iter().map(|c| c.replace('-', "_")).collect();
            (1..=escaped.len())
                .map(|n| format!("/{}.slice", escaped[..n].join("-")))
                .collect()
        }
    }
}

/// Where the kubelet checks that its cgroupRoot exists: on v2 the one hierarchy; on v1 the
/// hierarchies of cpu, cpuacct, cpuset, memory, pids, hugetlb and systemd's named one.
pub(crate) fn kubelet_checks(fixture: &Fixture) -> BTreeSet<PathBuf> {
    let setup = fixture.setup();
    let root = kubelet_cgroup(setup.driver, &["kinit"]);
    let checked = [
        "cpu",
        "cpuacct",
        "cpuset",
        "memory",
        "pids",
        "hugetlb",
        "name=systemd",
    ];
    match setup.mounts.version() {
        Version::V2 => BTreeSet::from([PathBuf::from(format!("{MOUNT_ROOT}{root}"))]),
        Version::V1 => fixture
            .mountinfo
            .lines()
            .filter_map(|line| {
                let (mount, fs) = line.split_once(" - ")?;
                let fs: Vec<&str> = fs.split(' ').collect();
                let point = mount.split(' ').nth(4)?;
                let options = fs.get(2)?;
                (fs[0] == "cgroup" && options.split(',').any(|o| checked.contains(&o)))
                    .then(|| PathBuf::from(format!("{point}{root}")))
            })
            .collect(),
    }
}
