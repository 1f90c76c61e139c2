//! Every cgroup path kinit takes, over the hosts recorded under tests/fixtures/cgroup (each
//! fixture's `source` file says whether it was recorded or written, and from what).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::fixtures::kubelet_checks;
pub(crate) use super::fixtures::{Fixture, fixtures, kubelet_cgroup};
use super::*;

/// What each recorded host must give. Listed by hand, so that a change of behaviour shows
/// here as a diff.
struct Expected {
    name: &'static str,
    version: Version,
    describe: &'static str,
    driver: Driver,
    root_dirs: &'static [&'static str],
    binds: &'static [&'static str],
    systemd_running: bool,
}

const DEBIAN12_V1: &[&str] = &[
    "/sys/fs/cgroup/cpu/kinit",
    "/sys/fs/cgroup/cpuacct/kinit",
    "/sys/fs/cgroup/cpuset/kinit",
    "/sys/fs/cgroup/memory/kinit",
    "/sys/fs/cgroup/devices/kinit",
    "/sys/fs/cgroup/freezer/kinit",
    "/sys/fs/cgroup/blkio/kinit",
    "/sys/fs/cgroup/pids/kinit",
    "/sys/fs/cgroup/systemd/kinit",
];
const UBUNTU2004_HYBRID: &[&str] = &[
    "/sys/fs/cgroup/systemd/kinit.slice",
    "/sys/fs/cgroup/rdma/kinit.slice",
    "/sys/fs/cgroup/freezer/kinit.slice",
    "/sys/fs/cgroup/net_cls,net_prio/kinit.slice",
    "/sys/fs/cgroup/cpuset/kinit.slice",
    "/sys/fs/cgroup/blkio/kinit.slice",
    "/sys/fs/cgroup/cpu,cpuacct/kinit.slice",
    "/sys/fs/cgroup/perf_event/kinit.slice",
    "/sys/fs/cgroup/devices/kinit.slice",
    "/sys/fs/cgroup/pids/kinit.slice",
    "/sys/fs/cgroup/memory/kinit.slice",
    "/sys/fs/cgroup/hugetlb/kinit.slice",
];
const SYSTEMD_BINDS_ALL: &[&str] = &["/run/systemd", "/run/dbus"];
const HYBRID: &str = "v1 (hybrid, with a v2 hierarchy beside)";

/// Debian 12 and two Ubuntu releases agree on everything but the name.
const V2_SYSTEMD: Expected = Expected {
    name: "ubuntu2204-v2-systemd",
    version: Version::V2,
    describe: "v2",
    driver: Driver::Systemd,
    root_dirs: &["/sys/fs/cgroup/kinit.slice"],
    binds: SYSTEMD_BINDS_ALL,
    systemd_running: true,
};

const EXPECTED: &[Expected] = &[
    Expected {
        name: "debian12-v1-cgroupfs",
        version: Version::V1,
        describe: HYBRID,
        driver: Driver::Cgroupfs,
        root_dirs: DEBIAN12_V1,
        binds: &[],
        systemd_running: false,
    },
    // Recorded in the VM tier's guest.
    Expected {
        name: "debian12-v2-systemd",
        ..V2_SYSTEMD
    },
    Expected {
        name: "ubuntu2004-hybrid-systemd",
        version: Version::V1,
        describe: HYBRID,
        driver: Driver::Systemd,
        root_dirs: UBUNTU2004_HYBRID,
        binds: SYSTEMD_BINDS_ALL,
        systemd_running: true,
    },
    Expected {
        name: "ubuntu2204-v2-cgroupfs",
        version: Version::V2,
        describe: "v2",
        driver: Driver::Cgroupfs,
        root_dirs: &["/sys/fs/cgroup/kinit"],
        binds: &[],
        systemd_running: true,
    },
    V2_SYSTEMD,
    Expected {
        name: "ubuntu2404-v2-systemd",
        ..V2_SYSTEMD
    },
];

fn each(mut check: impl FnMut(&Fixture, &Expected)) {
    let fixtures = fixtures();
    let names: Vec<&str> = fixtures.iter().map(|f| f.name.as_str()).collect();
    let expected: Vec<&str> = EXPECTED.iter().map(|e| e.name).collect();
    assert_eq!(names, expected, "every fixture has its expectations");
    for (fixture, expected) in fixtures.iter().zip(EXPECTED) {
        check(fixture, expected);
    }
}

#[test]
fn the_version_comes_from_the_mount_table_and_agrees_with_the_tree_and_docker() {
    each(|fixture, expected| {
        let setup = fixture.setup();
        assert_eq!(setup.mounts.version(), expected.version, "{}", fixture.name);
        assert_eq!(
            setup.mounts.describe(),
            expected.describe,
            "{}",
            fixture.name
        );
        // What preflight used to read, and what Docker saw.
        let controllers = fixture
            .entry("cgroup.controllers")
            .is_some_and(|e| e.kind == '-');
        assert_eq!(
            controllers,
            expected.version == Version::V2,
            "{}",
            fixture.name
        );
        let docker = match expected.version {
            Version::V1 => "1",
            Version::V2 => "2",
        };
        assert_eq!(fixture.engine.cgroup_version, docker, "{}", fixture.name);
    });
}

#[test]
fn the_driver_is_dockers() {
    each(|fixture, expected| {
        assert_eq!(fixture.setup().driver, expected.driver, "{}", fixture.name);
        assert_eq!(
            fixture.setup().kubelet_driver(),
            fixture.engine.cgroup_driver,
            "{}",
            fixture.name
        );
        assert_eq!(fixture.setup().kubelet_root(), "/kinit");
    });
    for other in ["none", ""] {
        let err = Driver::from_docker(other).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "Docker uses the cgroup driver {other:?}; the kubelet supports cgroupfs and systemd"
            )
        );
    }
}

#[test]
fn the_root_is_made_wherever_the_kubelet_looks_for_it() {
    each(|fixture, expected| {
        let setup = fixture.setup();
        let dirs = setup.root_dirs();
        let wanted: Vec<PathBuf> = expected.root_dirs.iter().map(PathBuf::from).collect();
        assert_eq!(dirs, wanted, "{}", fixture.name);
        let made: BTreeSet<PathBuf> = dirs.iter().cloned().collect();
        let checks = kubelet_checks(fixture);
        assert!(!checks.is_empty(), "{}", fixture.name);
        assert!(
            checks.is_subset(&made),
            "{}: the kubelet checks {checks:?}, the master makes {made:?}",
            fixture.name
        );
        // Each under a real hierarchy of the recorded tree, never through a symlink.
        for dir in &dirs {
            let parent = dir.parent().unwrap();
            if parent != Path::new(MOUNT_ROOT) {
                let name = parent.file_name().unwrap().to_string_lossy();
                let entry = fixture
                    .entry(&name)
                    .unwrap_or_else(|| panic!("{}: no {name} in the tree", fixture.name));
                assert_eq!(entry.kind, 'd', "{}: {name}", fixture.name);
            }
        }
        assert_eq!(
            setup.root_slice(),
            (expected.driver == Driver::Systemd).then_some("kinit.slice"),
            "{}",
            fixture.name
        );
    });
}

#[test]
fn the_master_mounts_systemds_sockets_only_for_the_systemd_driver() {
    each(|fixture, expected| {
        let binds = fixture.setup().master_binds(fixture.exists());
        assert_eq!(binds, expected.binds, "{}", fixture.name);
    });
    // Only the directories the host has.
    let ubuntu = fixtures()
        .into_iter()
        .find(|f| f.name == "ubuntu2404-v2-systemd")
        .unwrap();
    let binds = ubuntu
        .setup()
        .master_binds(|p| p == Path::new("/run/systemd"));
    assert_eq!(binds, ["/run/systemd"]);
}

#[test]
fn the_systemd_driver_needs_systemd_and_a_socket_to_it() {
    each(|fixture, expected| {
        let setup = fixture.setup();
        setup
            .check_systemd(fixture.exists())
            .unwrap_or_else(|e| panic!("{}: {e:#}", fixture.name));
        let nothing = setup.check_systemd(|_| false);
        if expected.driver == Driver::Cgroupfs {
            nothing.unwrap();
            return;
        }
        let err = nothing.unwrap_err().to_string();
        assert!(err.contains("(/run/systemd/system is missing)"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        let without_sockets = setup.check_systemd(|p| p == Path::new("/run/systemd/system"));
        let err = without_sockets.unwrap_err().to_string();
        assert!(
            err.contains("neither /run/dbus/system_bus_socket nor /run/systemd/private exists"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
        for socket in ["/run/dbus/system_bus_socket", "/run/systemd/private"] {
            setup
                .check_systemd(|p| p == Path::new("/run/systemd/system") || p == Path::new(socket))
                .unwrap_or_else(|e| panic!("{}: with {socket}: {e:#}", fixture.name));
        }
    });
}

#[test]
fn teardown_removes_the_root_under_both_names_in_every_hierarchy() {
    each(|fixture, expected| {
        let setup = fixture.setup();
        let systemd = fixture.run_paths.contains(Path::new("/run/systemd/system"));
        assert_eq!(systemd, expected.systemd_running, "{}", fixture.name);
        let teardown = Teardown::new(&setup.mounts, systemd);
        assert_eq!(
            teardown.stop_slice,
            systemd.then_some("kinit.slice"),
            "{}",
            fixture.name
        );
        let trees: BTreeSet<&PathBuf> = teardown.trees.iter().collect();
        assert_eq!(
            trees.len(),
            teardown.trees.len(),
            "{}: no duplicates",
            fixture.name
        );
        // Whatever the master made, under either driver.
        for driver in Driver::ALL {
            let other = Setup {
                driver,
                ..setup.clone()
            };
            for dir in other.root_dirs() {
                assert!(trees.contains(&dir), "{}: {}", fixture.name, dir.display());
            }
        }
        // Every real hierarchy of the recorded tree (what the old teardown went through).
        let hierarchies: Vec<PathBuf> = match setup.mounts.version() {
            Version::V2 => vec![PathBuf::from(MOUNT_ROOT)],
            Version::V1 => fixture
                .listing
                .iter()
                .filter(|e| e.kind == 'd')
                .map(|e| Path::new(MOUNT_ROOT).join(&e.name))
                .collect(),
        };
        for hierarchy in &hierarchies {
            for name in ["kinit", "kinit.slice"] {
                assert!(
                    trees.contains(&hierarchy.join(name)),
                    "{}: {}/{name}",
                    fixture.name,
                    hierarchy.display()
                );
            }
        }
        assert_eq!(trees.len(), hierarchies.len() * 2, "{}", fixture.name);
        // Never through a symlink (cpu -> cpu,cpuacct): the same tree twice.
        for entry in fixture.listing.iter().filter(|e| e.kind == 'l') {
            assert!(
                entry.target.is_some(),
                "{}: {} has no target",
                fixture.name,
                entry.name
            );
            let link = Path::new(MOUNT_ROOT).join(&entry.name);
            assert!(
                !trees.iter().any(|t| t.starts_with(&link)),
                "{}",
                fixture.name
            );
        }
    });
}

#[test]
fn a_cgroup_parent_is_kinits_under_the_driver_that_made_it() {
    let uid = "0f5c6a34-1b2c-4d5e-8f90-123456789abc";
    let pod = format!("pod{uid}");
    // cri-dockerd hands Docker the kubelet's path (cgroupfs) or its last slice (systemd).
    let parent = |driver, components: &[&str]| {
        let full = kubelet_cgroup(driver, components);
        match driver {
            Driver::Cgroupfs => full,
            Driver::Systemd => full.rsplit('/').next().unwrap().to_string(),
        }
    };
    let kinit_burstable = parent(Driver::Cgroupfs, &["kinit", "kubepods", "burstable", &pod]);
    assert_eq!(
        kinit_burstable,
        format!("/kinit/kubepods/burstable/pod{uid}")
    );
    let kinit_besteffort = parent(Driver::Systemd, &["kinit", "kubepods", "besteffort", &pod]);
    assert_eq!(
        kinit_besteffort,
        format!(
            "kinit-kubepods-besteffort-pod{}.slice",
            uid.replace('-', "_")
        )
    );
    let kinit_guaranteed = parent(Driver::Systemd, &["kinit", "kubepods", &pod]);
    let other_cgroupfs = parent(Driver::Cgroupfs, &["kubepods", "burstable", &pod]);
    let other_systemd = parent(Driver::Systemd, &["kubepods", "besteffort", &pod]);
    assert_eq!(
        other_systemd,
        format!("kubepods-besteffort-pod{}.slice", uid.replace('-', "_"))
    );
    let full_systemd = kubelet_cgroup(Driver::Systemd, &["kinit", "kubepods", &pod]);

    let cases: &[(&str, Option<Driver>)] = &[
        (&kinit_burstable, Some(Driver::Cgroupfs)),
        ("kinit/kubepods/besteffort/pod1", Some(Driver::Cgroupfs)),
        (&kinit_besteffort, Some(Driver::Systemd)),
        (&kinit_guaranteed, Some(Driver::Systemd)),
        (&full_systemd, Some(Driver::Systemd)),
        (&other_cgroupfs, None),
        (&other_systemd, None),
        ("system.slice/docker-4f1e2d3c4b5a.scope", None),
        ("/docker/4f1e2d3c4b5a", None),
        ("", None),
        ("/kinit", None),
        ("/kinit/", None),
        ("/kinitx/kubepods/pod1", None),
        ("kinit.slice", None),
        ("kinit-.slice", None),
        ("kinit-kubepods", None),
        ("/kubepods/kinit/pod1", None),
    ];
    for (parent, owner) in cases {
        for driver in Driver::ALL {
            assert_eq!(
                driver.owns(parent),
                *owner == Some(driver),
                "{parent:?} under {driver:?}"
            );
        }
        assert_eq!(is_kinits(parent), owner.is_some(), "{parent:?}");
    }
}

#[test]
fn the_mount_table_is_read_as_the_kernel_writes_it() {
    // A mount point with a space, written \040.
    let escaped = "30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
         31 30 0:27 / /sys/fs/cgroup/name\\040x rw shared:9 - cgroup cgroup rw,name=x\n";
    let mounts = Mounts::parse(escaped).unwrap();
    assert_eq!(mounts.v1, [PathBuf::from("/sys/fs/cgroup/name x")]);
    // Without optional fields, and with several.
    let fields = "31 30 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
    assert_eq!(Mounts::parse(fields).unwrap().version(), Version::V2);
    let fields = "31 30 0:27 / /sys/fs/cgroup rw shared:9 master:3 - cgroup2 cgroup2 rw\n";
    assert_eq!(Mounts::parse(fields).unwrap().version(), Version::V2);
    // A tmpfs mounted over the cgroup2 root hides it: the v1 hierarchies under it count.
    let stacked = "31 22 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n\
         40 22 0:40 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
         41 40 0:41 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
    let mounts = Mounts::parse(stacked).unwrap();
    assert_eq!(mounts.version(), Version::V1);
    assert_eq!(mounts.unified, None);
    // cgroup mounts elsewhere are not the host's hierarchies.
    let elsewhere = "31 22 0:27 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
         41 31 0:41 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
         42 27 0:42 / /run/lxcfs/controllers/cpu rw - cgroup cgroup rw,cpu\n\
         43 27 0:43 / /sys/fs/cgroup/memory/nested rw - cgroup cgroup rw,pids\n\
         garbage line\n";
    assert_eq!(
        Mounts::parse(elsewhere).unwrap().v1,
        [PathBuf::from("/sys/fs/cgroup/memory")]
    );
    let none =
        "22 27 0:21 / /sys rw - sysfs sysfs rw\n31 22 0:27 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n";
    let err = Mounts::parse(none).unwrap_err().to_string();
    assert!(
        err.starts_with("no cgroup hierarchy is mounted at /sys/fs/cgroup"),
        "{err}"
    );
}
