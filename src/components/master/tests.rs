use std::collections::BTreeSet;
use std::path::Path;

use super::*;
use crate::cgroup::tests::Fixture;

/// This test machine as recorded: cgroup v1, Docker's cgroupfs driver.
pub(crate) fn host() -> Host {
    recorded_host(&fixture("debian12-v1-cgroupfs"))
}

fn fixture(name: &str) -> Fixture {
    cgroup::tests::fixtures()
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no fixture {name}"))
}

fn recorded_host(fixture: &Fixture) -> Host {
    Host::new(
        fixture.engine.clone(),
        fixture.setup(),
        "/etc/resolv.conf".into(),
        fixture.exists(),
    )
}

fn rendered() -> Master {
    rendered_for(&host())
}

fn rendered_for(host: &Host) -> Master {
    rendered_with(
        &cluster::test_settings(),
        &Layout::new("/var/lib/kinit"),
        host,
    )
}

/// The master for these settings, state directory and host, with credentials `c0ffee`.
pub(super) fn rendered_with(settings: &Settings, layout: &Layout, host: &Host) -> Master {
    let images = Images::default();
    let inputs = Inputs {
        settings,
        layout,
        host,
        images: &images,
        node_image: "kinit/node:test",
        verbosity: 2,
    };
    render(&inputs, "c0ffee").unwrap()
}

pub(super) fn contents(m: &Master, name: &str) -> String {
    m.files
        .iter()
        .find(|f| f.path.ends_with(name))
        .unwrap_or_else(|| panic!("no {name}"))
        .contents
        .clone()
}

#[test]
fn the_master_container_sees_the_host() {
    let m = rendered();
    let spec = &m.spec;
    assert_eq!(spec.container_name(), "kinit-master");
    assert_eq!(spec.component, cluster::Container::Master.label());
    assert!(spec.privileged && spec.host_pid && spec.host_namespaces);
    assert_eq!(spec.devices, ["/dev/kmsg"]);
    let state = spec
        .binds
        .iter()
        .find(|b| b.host == "/var/lib/kinit")
        .unwrap();
    assert_eq!(state.container, "/var/lib/kinit");
    assert_eq!(state.propagation, Some(crate::docker::Propagation::Rshared));
    assert!(
        spec.binds
            .iter()
            .any(|b| b.host == "/var/lib/docker/containers" && !b.read_only)
    );
    assert_eq!(spec.image, "kinit/node:test");
    let usr = spec.binds.iter().find(|b| b.host == "/usr").unwrap();
    assert!(usr.read_only && usr.container == "/usr");
    assert!(spec.binds.iter().any(|b| b.host == "/etc" && b.read_only));
}

#[test]
fn every_config_file_is_valid_and_consistent() {
    let m = rendered();
    for f in &m.files {
        let name = f.path.to_string_lossy();
        if name.ends_with(".yaml") {
            let _: serde_yaml::Value = serde_yaml::from_str(&f.contents)
                .unwrap_or_else(|e| panic!("{name}: {e}\n{}", f.contents));
        }
    }
    let cni: serde_json::Value = serde_json::from_str(&contents(&m, "10-kinit.conflist")).unwrap();
    assert_eq!(
        cni["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
        "10.244.0.0/24"
    );
    assert_eq!(cni["plugins"][0]["bridge"], BRIDGE);
    let kubelet: serde_yaml::Value = serde_yaml::from_str(&contents(&m, "kubelet.yaml")).unwrap();
    assert_eq!(kubelet["clusterDNS"][0].as_str(), Some("10.96.0.10"));
    assert_eq!(kubelet["podCIDR"].as_str(), Some("10.244.0.0/24"));
    assert_eq!(kubelet["authentication"]["anonymous"]["enabled"], false);
    assert_eq!(kubelet["readOnlyPort"].as_i64(), Some(0));
    assert_eq!(kubelet["healthzPort"].as_i64(), Some(10248));
    let apiserver = contents(&m, "kube-apiserver.yaml");
    for flag in [
        "--etcd-servers=https://10.0.2.15:2379",
        "--authorization-mode=Node,RBAC",
        "--service-cluster-ip-range=10.96.0.0/12",
        "--authentication-config=",
    ] {
        assert!(apiserver.contains(flag), "{flag} missing");
    }
    assert!(!apiserver.contains("--insecure-port"));
    let kcm = contents(&m, "kube-controller-manager.yaml");
    assert!(kcm.contains("--cluster-cidr=10.244.0.0/16"));
    // Each serves and is probed on the port preflight keeps free for it.
    for (pod, port, probes) in [
        ("kube-controller-manager", 10257, 2),
        ("kube-scheduler", 10259, 3),
    ] {
        let manifest = contents(&m, &format!("{pod}.yaml"));
        assert!(
            manifest.contains(&format!("- --secure-port={port}\n")),
            "{pod}"
        );
        let probed = manifest
            .matches(&format!("port: {port}, scheme: HTTPS"))
            .count();
        assert_eq!(probed, probes, "{pod}");
    }
}

#[test]
fn every_static_pod_carries_the_credentials_it_started_with() {
    let m = rendered();
    for pod in cluster::Component::STATIC_PODS
        .into_iter()
        .filter_map(cluster::Component::pod)
    {
        let manifest: serde_yaml::Value =
            serde_yaml::from_str(&contents(&m, &format!("{pod}.yaml"))).unwrap();
        assert_eq!(
            manifest["metadata"]["annotations"]["kinit.io/credentials"].as_str(),
            Some("c0ffee"),
            "{pod}"
        );
    }
}

#[test]
fn the_kubelet_gets_only_feature_gates_its_version_knows() {
    assert!(contents(&rendered(), "kubelet.yaml").contains("ExtendWebSocketsToKubelet: false"));
    let previous = Settings {
        kubernetes_version: crate::versions::SUPPORTED[1].kubernetes.into(),
        ..cluster::test_settings()
    };
    let m = rendered_with(&previous, &Layout::new("/var/lib/kinit"), &host());
    let kubelet = contents(&m, "kubelet.yaml");
    assert!(!kubelet.contains("ExtendWebSocketsToKubelet"), "{kubelet}");
    let _: serde_yaml::Value = serde_yaml::from_str(&kubelet).unwrap();
}

#[test]
fn the_entrypoint_quotes_every_path() {
    let m = rendered_with(
        &cluster::test_settings(),
        &Layout::new("/srv/it's mine"),
        &host(),
    );
    let script = contents(&m, "master-entrypoint.sh");
    assert!(
        script.contains(r"--root-dir='/srv/it'\''s mine/kubelet'"),
        "{script}"
    );
    assert!(
        script.contains(" '/sys/fs/cgroup/memory/kinit' "),
        "{script}"
    );
}

#[test]
fn the_kubelet_gets_dockers_driver_and_kinits_root_on_every_recorded_host() {
    for fixture in cgroup::tests::fixtures() {
        let host = recorded_host(&fixture);
        let m = rendered_for(&host);
        let kubelet: serde_yaml::Value =
            serde_yaml::from_str(&contents(&m, "kubelet.yaml")).unwrap();
        let name = &fixture.name;
        assert_eq!(
            kubelet["cgroupDriver"].as_str(),
            Some(fixture.engine.cgroup_driver.as_str()),
            "{name}"
        );
        assert_eq!(kubelet["cgroupRoot"].as_str(), Some("/kinit"), "{name}");
        let script = contents(&m, "master-entrypoint.sh");
        let syntax = std::process::Command::new("sh")
            .args(["-n", "-c", &script])
            .output()
            .unwrap();
        assert!(syntax.status.success(), "{name}: {syntax:?}\n{script}");
        let systemd = fixture.engine.cgroup_driver == "systemd";
        assert_eq!(
            script.contains("SYSTEMD_IGNORE_CHROOT=1 systemctl start 'kinit.slice' ||"),
            systemd,
            "{name}: {script}"
        );
        // The host's systemd sockets, read-only, under the systemd driver; the system bus
        // wherever logind runs the host's shutdowns, for the kubelet's graceful shutdown.
        let run: Vec<_> = m
            .spec
            .binds
            .iter()
            .filter(|b| b.host.starts_with("/run/"))
            .collect();
        let paths: Vec<&str> = run.iter().map(|b| b.host.as_str()).collect();
        let exists = fixture.exists();
        let logind = exists(Path::new("/run/systemd/system"))
            && exists(Path::new("/run/dbus/system_bus_socket"));
        assert_eq!(host.graceful_shutdown, logind, "{name}");
        match (systemd, logind) {
            (true, _) => assert_eq!(paths, ["/run/systemd", "/run/dbus"], "{name}"),
            (false, true) => assert_eq!(paths, ["/run/dbus"], "{name}"),
            (false, false) => assert!(paths.is_empty(), "{name}: {paths:?}"),
        }
        assert!(
            run.iter().all(|b| b.read_only && b.container == b.host),
            "{name}"
        );
        let grace = kubelet["shutdownGracePeriod"].as_str();
        let critical = kubelet["shutdownGracePeriodCriticalPods"].as_str();
        if logind {
            assert_eq!(grace, Some("30s"), "{name}");
            assert_eq!(critical, Some("10s"), "{name}");
            assert!(
                script.contains("DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/dbus/system_bus_socket"),
                "{name}"
            );
        } else {
            assert_eq!((grace, critical), (None, None), "{name}");
        }
    }
}

/// Runs the entrypoint's cgroup lines against a copy of each recorded /sys/fs/cgroup
/// (directories and symlinks as `ls -la` showed them) and compares what they made with
/// what the kubelet looks for.
#[test]
fn the_entrypoint_makes_the_root_where_the_kubelet_looks_on_every_recorded_host() {
    for fixture in cgroup::tests::fixtures() {
        let name = &fixture.name;
        let sandbox = tempfile::tempdir().unwrap();
        let root = sandbox.path().join("sys/fs/cgroup");
        std::fs::create_dir_all(&root).unwrap();
        for entry in &fixture.listing {
            let path = root.join(&entry.name);
            match (entry.kind, &entry.target) {
                ('d', _) => std::fs::create_dir(&path).unwrap(),
                ('l', Some(target)) => std::os::unix::fs::symlink(target, &path).unwrap(),
                _ => std::fs::write(&path, "").unwrap(),
            }
        }
        let script = contents(
            &rendered_for(&recorded_host(&fixture)),
            "master-entrypoint.sh",
        );
        let start = script.find("for dir in").expect("the cgroup loop");
        let end = start + script[start..].find("\ndone\n").expect("its end") + 5;
        let cgroup_lines = script[start..end].replace("/sys/fs/cgroup", &root.to_string_lossy());
        let run = std::process::Command::new("sh")
            .args(["-eu", "-c", &cgroup_lines])
            .output()
            .unwrap();
        assert!(run.status.success(), "{name}: {run:?}\n{cgroup_lines}");

        // Every directory there now that the recorded host did not have.
        let recorded: BTreeSet<PathBuf> = fixture
            .listing
            .iter()
            .filter(|e| e.kind == 'd')
            .map(|e| root.join(&e.name))
            .collect();
        let made: BTreeSet<PathBuf> = directories(&root)
            .into_iter()
            .filter(|d| !recorded.contains(d))
            .map(|d| Path::new("/").join(d.strip_prefix(sandbox.path()).unwrap()))
            .collect();
        let kinit_dir = if fixture.engine.cgroup_driver == "systemd" {
            "kinit.slice"
        } else {
            "kinit"
        };
        let wanted: BTreeSet<PathBuf> = fixture
            .setup()
            .root_dirs()
            .into_iter()
            .inspect(|d| assert!(d.ends_with(kinit_dir), "{name}: {}", d.display()))
            .collect();
        assert_eq!(made, wanted, "{name}: the entrypoint made exactly the root");
    }
}

/// The directories under `dir`, not through symlinks.
fn directories(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            found.push(entry.path());
            found.extend(directories(&entry.path()));
        }
    }
    found
}

#[test]
fn the_entrypoint_stops_when_the_hosts_layout_changed_since_kinit_up() {
    // Rendered for a v1 host, run where that hierarchy is gone.
    let script = contents(&rendered(), "master-entrypoint.sh");
    let start = script.find("for dir in").unwrap();
    let end = start + script[start..].find("\ndone\n").unwrap() + 5;
    let sandbox = tempfile::tempdir().unwrap();
    let lines = script[start..end].replace("/sys/fs/cgroup", &sandbox.path().to_string_lossy());
    let run = std::process::Command::new("sh")
        .args(["-eu", "-c", &lines])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("the host's cgroup layout changed since `kinit up`"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(sandbox.path()).unwrap().count(), 0);
}

/// A pod's packet for a Service IP that kube-proxy did not translate (a port no Service has)
/// is refused in KINIT-FORWARD, ahead of the bridge's ACCEPT; an IPv6 Service range has no
/// such rule (the pods have IPv4 addresses only).
#[test]
fn the_entrypoint_refuses_service_ports_no_service_has() {
    let reject = "iptables -w -I KINIT-FORWARD 1 -d '10.96.0.0/12' -j REJECT";
    let script = contents(&rendered(), "master-entrypoint.sh");
    assert!(script.contains(reject), "{script}");
    let v6 = Settings {
        service_cidr: "fd00:10:96::/108".parse().unwrap(),
        ..cluster::test_settings()
    };
    let script = contents(
        &rendered_with(&v6, &Layout::new("/var/lib/kinit"), &host()),
        "master-entrypoint.sh",
    );
    assert!(!script.contains("-j REJECT"), "{script}");
    assert!(
        script.contains("guard_range 'ip6tables' 'fd00:10:96::/108'"),
        "{script}"
    );
}
