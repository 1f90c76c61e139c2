//! `kinit down` and `down --purge` against the real Docker engine and the host's iptables:
//! they remove what kinit made and nothing else (another kubelet's pods, another tool's
//! chains and rules, a bridge kinit did not make), and each one killed half way finishes
//! when run again.
//!
//! These tests need root and a running Docker engine, but no bundle: no cluster is
//! brought up. `kinit down` removes every kinit container on the engine, so each test
//! first waits until no kinit cluster runs on it.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;
use common::cluster::container_exists;
use common::{docker_cli, iptables_save, require_engine, run_ok, text};

/// The tests change the same host-wide things (containers, iptables), so they take turns.
static HOST: Mutex<()> = Mutex::new(());

/// How long a test waits for someone else's kinit cluster on this engine to go.
const CLUSTER_WAIT: Duration = Duration::from_secs(15 * 60);

/// Takes the test's turn once no kinit cluster is on the engine: `kinit down` would
/// remove it, and it is not this test's to remove.
fn turn() -> std::sync::MutexGuard<'static, ()> {
    let guard = HOST.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests change the host's containers and iptables and need root"
    );
    require_engine();
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let out = docker_cli(&["ps", "-aq", "--filter", "label=io.kinit.component"]);
        assert!(out.status.success(), "docker ps: {}", text(&out));
        if String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return guard;
        }
        assert!(
            Instant::now() < deadline,
            "a kinit cluster runs on this engine; these tests would remove it"
        );
        std::thread::sleep(Duration::from_secs(10));
    }
}

/// A state directory as `kinit up` leaves it, without running anything: the PKI and
/// kubeconfigs (`kinit certs`), the settings and kube-proxy's configuration.
fn state_dir(dir: &Path) -> PathBuf {
    let state = dir.join("state");
    let out = Command::new(env!("CARGO_BIN_EXE_kinit"))
        .args(["certs", "--out", state.to_str().unwrap()])
        .args(["--node-ip", "10.0.2.15", "--hostname", "kinit-test"])
        .output()
        .unwrap();
    assert!(out.status.success(), "kinit certs: {}", text(&out));
    std::fs::write(
        state.join("cluster.yaml"),
        "nodeIp: 10.0.2.15\nhostname: kinit-test\nserviceCidr: 10.96.0.0/12\n\
         dnsDomain: cluster.local\npodCidr: 10.244.0.0/16\n",
    )
    .unwrap();
    std::fs::create_dir_all(state.join("config")).unwrap();
    std::fs::write(state.join("config/kube-proxy.yaml"), "mode: iptables\n").unwrap();
    state
}

/// Runs kinit on a state directory, with a download cache of the test's own.
fn kinit(state: &Path, args: &[&str], crash_at: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kinit"));
    cmd.arg("--state-dir")
        .arg(state)
        .args(args)
        .env("PATH", "")
        .env("KINIT_CACHE_DIR", state.with_file_name("cache"));
    if let Some(point) = crash_at {
        cmd.env("KINIT_CRASH_AT", point);
    }
    cmd.output().expect("the kinit binary runs")
}

fn ok(state: &Path, args: &[&str]) -> String {
    let out = kinit(state, args, None);
    assert!(out.status.success(), "kinit {args:?}: {}", text(&out));
    text(&out)
}

/// Commands that undo a test's changes to the host, run even when it fails.
struct Undo(Vec<Vec<String>>);

impl Undo {
    fn add(&mut self, cmd: &[&str]) {
        self.0.push(cmd.iter().map(|s| s.to_string()).collect());
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        for cmd in self.0.iter().rev() {
            let _ = Command::new(&cmd[0]).args(&cmd[1..]).output();
        }
    }
}

fn iptables(args: &[&str]) {
    let mut cmd = vec!["iptables", "-w"];
    cmd.extend(args);
    run_ok(&cmd);
}

fn has_chain(save: &str, chain: &str) -> bool {
    save.lines().any(|l| l.starts_with(&format!(":{chain} ")))
}

/// A cni0 bridge with `address`, deleted by `undo`; on a host that has none already.
fn cni0_bridge(undo: &mut Undo, address: &str) {
    assert!(
        !Path::new("/sys/class/net/cni0").exists(),
        "this host has a cni0 bridge already; this test makes its own and will not touch it"
    );
    undo.add(&["ip", "link", "delete", "cni0"]);
    run_ok(&["ip", "link", "add", "cni0", "type", "bridge"]);
    run_ok(&["ip", "addr", "add", address, "dev", "cni0"]);
}

/// An empty image named `image`, removed again by `undo`: enough for containers that are
/// created, never started.
fn empty_image(dir: &Path, image: &str, undo: &mut Undo) {
    let empty = dir.join("empty.tar");
    run_ok(&["tar", "-cf", empty.to_str().unwrap(), "-T", "/dev/null"]);
    run_ok(&["docker", "import", empty.to_str().unwrap(), image]);
    undo.add(&["docker", "rmi", image]);
}

/// A pod container as cri-dockerd makes them, in the cgroup `parent`; never started.
fn pod_container(name: &str, image: &str, parent: &str) {
    run_ok(&[
        "docker",
        "create",
        "--name",
        name,
        "--label",
        "io.kubernetes.docker.type=container",
        "--label",
        "io.kubernetes.pod.namespace=default",
        "--label",
        &format!("io.kubernetes.container.name={name}"),
        "--cgroup-parent",
        parent,
        image,
        "/pause",
    ]);
}

#[test]
fn down_and_purge_leave_another_kubelets_pods() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let state = state_dir(dir.path());
    let mut undo = Undo(vec![]);

    let image = "kinit-test-teardown-pod:1";
    empty_image(dir.path(), image, &mut undo);
    let foreign = "kinit-test-other-kubelets-pod";
    let ours = "kinit-test-kinits-pod";
    undo.add(&["docker", "rm", "-f", foreign]);
    undo.add(&["docker", "rm", "-f", ours]);
    pod_container(foreign, image, "/kubepods/besteffort/pod-other");

    for args in [&["down"][..], &["down", "--purge"]] {
        pod_container(ours, image, "/kinit/kubepods/besteffort/pod-kinit");
        let out = ok(&state, args);
        assert!(!container_exists(ours), "{args:?} left kinit's pod:\n{out}");
        assert!(
            container_exists(foreign),
            "{args:?} removed another kubelet's pod:\n{out}"
        );
    }
}

#[test]
fn purge_leaves_other_tools_iptables_rules_and_bridge() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let state = state_dir(dir.path());
    let mut undo = Undo(vec![]);

    // Another tool's: a bridge named like kinit's, a chain with kube-proxy's prefix, a
    // chain of its own, another CNI network's pod chain, and a rule in FORWARD.
    cni0_bridge(&mut undo, "192.0.2.1/24");
    let foreign_rules: [(&str, &[&str]); 5] = [
        ("filter", &["-A", "KUBE-OTHER-TOOL", "-j", "RETURN"]),
        ("filter", &["-A", "FORWARD", "-j", "KUBE-OTHER-TOOL"]),
        ("filter", &["-A", "KINIT-TEST-FOREIGN", "-j", "ACCEPT"]),
        (
            "filter",
            &[
                "-A",
                "FORWARD",
                "-s",
                "192.0.2.0/24",
                "-j",
                "KINIT-TEST-FOREIGN",
            ],
        ),
        (
            "nat",
            &[
                "-A",
                "POSTROUTING",
                "-s",
                "192.0.2.5/32",
                "-m",
                "comment",
                "--comment",
                "name: \"othernet\" id: \"kinit-test\"",
                "-j",
                "CNI-KINIT-TEST-OTHER",
            ],
        ),
    ];
    for (table, chain) in [
        ("filter", "KUBE-OTHER-TOOL"),
        ("filter", "KINIT-TEST-FOREIGN"),
        ("nat", "CNI-KINIT-TEST-OTHER"),
    ] {
        undo.add(&["iptables", "-w", "-t", table, "-X", chain]);
        undo.add(&["iptables", "-w", "-t", table, "-F", chain]);
        iptables(&["-t", table, "-N", chain]);
    }
    for (table, rule) in &foreign_rules {
        let mut delete = vec!["iptables", "-w", "-t", table, "-D"];
        delete.extend(&rule[1..]);
        undo.add(&delete);
        let mut add = vec!["-t", table];
        add.extend(*rule);
        iptables(&add);
    }
    // kinit's: its FORWARD chain and one pod's masquerade chain.
    let pod_chain = "CNI-KINIT-TEST-POD";
    undo.add(&["iptables", "-w", "-t", "nat", "-X", pod_chain]);
    undo.add(&["iptables", "-w", "-t", "nat", "-F", pod_chain]);
    iptables(&["-t", "nat", "-N", pod_chain]);
    iptables(&["-t", "nat", "-A", pod_chain, "-j", "MASQUERADE"]);
    let pod_rule = [
        "POSTROUTING",
        "-s",
        "10.244.0.5/32",
        "-m",
        "comment",
        "--comment",
        "name: \"kinit\" id: \"kinit-test\"",
        "-j",
        pod_chain,
    ];
    let mut delete = vec!["iptables", "-w", "-t", "nat", "-D"];
    delete.extend(pod_rule);
    undo.add(&delete);
    let mut add = vec!["-t", "nat", "-A"];
    add.extend(pod_rule);
    iptables(&add);
    if !has_chain(&iptables_save(), "KINIT-FORWARD") {
        undo.add(&["iptables", "-w", "-X", "KINIT-FORWARD"]);
        iptables(&["-N", "KINIT-FORWARD"]);
    }
    // Undone only when the purge failed to: their removal is what is tested.
    undo.add(&[
        "iptables",
        "-w",
        "-D",
        "KINIT-FORWARD",
        "-i",
        "cni0",
        "-j",
        "ACCEPT",
    ]);
    undo.add(&["iptables", "-w", "-D", "FORWARD", "-j", "KINIT-FORWARD"]);
    iptables(&["-A", "KINIT-FORWARD", "-i", "cni0", "-j", "ACCEPT"]);
    iptables(&["-I", "FORWARD", "1", "-j", "KINIT-FORWARD"]);

    // Another tool keeps inserting rules at the top of FORWARD while the purge runs,
    // which shifts the numbers of every rule below.
    let stop = AtomicBool::new(false);
    let (out, inserted) = std::thread::scope(|s| {
        let inserter = s.spawn(|| {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let comment = format!("kinit-test-during-{n}");
                let status = Command::new("iptables")
                    .args(["-w", "-I", "FORWARD", "1", "-m", "comment", "--comment"])
                    .args([comment.as_str(), "-j", "ACCEPT"])
                    .status()
                    .unwrap();
                assert!(status.success());
                n += 1;
            }
            n
        });
        let out = kinit(&state, &["down", "--purge"], None);
        stop.store(true, Ordering::Relaxed);
        (out, inserter.join().unwrap())
    });
    for n in 0..inserted {
        undo.add(&[
            "iptables",
            "-w",
            "-D",
            "FORWARD",
            "-m",
            "comment",
            "--comment",
            &format!("kinit-test-during-{n}"),
            "-j",
            "ACCEPT",
        ]);
    }
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");

    let save = iptables_save();
    assert!(!has_chain(&save, "KINIT-FORWARD"), "{save}");
    assert!(!has_chain(&save, pod_chain), "{save}");
    assert!(
        !save.contains("kinit-test\\\" -j CNI-KINIT-TEST-POD"),
        "{save}"
    );
    for chain in [
        "KUBE-OTHER-TOOL",
        "KINIT-TEST-FOREIGN",
        "CNI-KINIT-TEST-OTHER",
    ] {
        assert!(has_chain(&save, chain), "the purge deleted {chain}:\n{msg}");
    }
    for rule in [
        "-A KUBE-OTHER-TOOL -j RETURN",
        "-A FORWARD -j KUBE-OTHER-TOOL",
        "-A KINIT-TEST-FOREIGN -j ACCEPT",
        "-A FORWARD -s 192.0.2.0/24 -j KINIT-TEST-FOREIGN",
        "-A POSTROUTING -s 192.0.2.5/32 -m comment --comment \"name: \\\"othernet\\\" id: \\\"kinit-test\\\"\" -j CNI-KINIT-TEST-OTHER",
    ] {
        assert!(
            save.lines().any(|l| l == rule),
            "the purge deleted `{rule}`:\n{msg}"
        );
    }
    let during = save
        .lines()
        .filter(|l| l.contains("kinit-test-during-"))
        .count();
    assert_eq!(
        during, inserted,
        "rules inserted during the purge were deleted:\n{msg}"
    );
    assert!(
        Path::new("/sys/class/net/cni0").exists(),
        "the purge deleted a cni0 bridge kinit did not make:\n{msg}"
    );
    assert!(msg.contains("Left the bridge cni0 alone"), "{msg}");
}

#[test]
fn purge_deletes_the_bridge_kinit_made() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let state = state_dir(dir.path());
    let mut undo = Undo(vec![]);
    // As the bridge plugin leaves it: the gateway of the node's pod range.
    cni0_bridge(&mut undo, "10.244.0.1/24");
    let out = ok(&state, &["down", "--purge"]);
    assert!(!Path::new("/sys/class/net/cni0").exists(), "{out}");
    assert!(out.contains("Deleted the bridge cni0"), "{out}");
}

#[test]
fn purge_deletes_kinits_marked_bridge_with_a_veth_still_attached() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let state = state_dir(dir.path());
    let mut undo = Undo(vec![]);
    // As kinit's master makes it, with a veth of a pod whose network namespace the kernel
    // has not torn down yet.
    cni0_bridge(&mut undo, "10.244.0.1/24");
    run_ok(&[
        "ip",
        "link",
        "set",
        "dev",
        "cni0",
        "alias",
        kinit::components::master::BRIDGE_MARK,
    ]);
    undo.add(&["ip", "link", "delete", "kinit-test0"]);
    run_ok(&[
        "ip",
        "link",
        "add",
        "kinit-test0",
        "type",
        "veth",
        "peer",
        "name",
        "kinit-test1",
    ]);
    run_ok(&["ip", "link", "set", "kinit-test0", "master", "cni0"]);
    let out = ok(&state, &["down", "--purge"]);
    assert!(!Path::new("/sys/class/net/cni0").exists(), "{out}");
    assert!(out.contains("Deleted the bridge cni0"), "{out}");
}

#[test]
fn a_purge_killed_half_way_finishes_when_run_again() {
    let _turn = turn();
    for point in ["containers-removed", "state-partly-deleted"] {
        let dir = tempfile::tempdir().unwrap();
        let state = state_dir(dir.path());
        let killed = kinit(&state, &["down", "--purge"], Some(point));
        assert_eq!(
            killed.status.signal(),
            Some(9),
            "{point}: {}",
            text(&killed)
        );
        assert!(state.exists(), "{point}");
        let out = ok(&state, &["down", "--purge"]);
        assert!(!state.exists(), "{point}: {out}");
    }
}

#[test]
fn a_corrupt_socks_record_does_not_block_down() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let state = state_dir(dir.path());
    // The pid of this test: a process a corrupt record must never lead kinit to signal.
    std::fs::write(
        state.join("socks.json"),
        format!("{{\"pid\": {}, \"listen\":", std::process::id()),
    )
    .unwrap();
    let out = ok(&state, &["down"]);
    assert!(out.contains("corrupt kinit socks record"), "{out}");
    assert!(!state.join("socks.json").exists(), "{out}");
}

#[test]
fn an_invalid_kubeconfig_does_not_abort_a_purge() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let state = state_dir(dir.path());
    let kubeconfig = dir.path().join("config");
    let mine = b"apiVersion: v1\nclusters: [ this is not: valid\n";
    std::fs::write(&kubeconfig, mine).unwrap();
    std::fs::write(
        state.join("kubeconfig-target"),
        kubeconfig.to_str().unwrap(),
    )
    .unwrap();
    let out = ok(&state, &["down", "--purge"]);
    assert!(
        out.contains(&format!("Left {} as it is", kubeconfig.display())),
        "{out}"
    );
    assert_eq!(std::fs::read(&kubeconfig).unwrap(), mine);
    assert!(!state.exists(), "{out}");
}

/// A tmpfs mounted at `path`, unmounted when dropped (if it still is).
struct Mounted(PathBuf);

impl Mounted {
    fn tmpfs(path: PathBuf) -> Self {
        std::fs::create_dir_all(&path).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &path,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap_or_else(|e| panic!("mount tmpfs at {}: {e}", path.display()));
        Self(path)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn mounted(path: &Path) -> bool {
    let table = std::fs::read("/proc/self/mountinfo").unwrap();
    kinit::fs::mount_points(&table).iter().any(|p| p == path)
}

/// Any user can mount a FUSE filesystem at a path that is not UTF-8, so the mount table
/// holds bytes: `kinit down` reads it as such, unmounts the pod volumes under its state
/// directory (one with such a name too) and leaves the other mount be.
#[test]
fn a_mount_path_that_is_not_utf8_does_not_stop_down() {
    use std::os::unix::ffi::OsStrExt;
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let state = state_dir(dir.path());
    let theirs = Mounted::tmpfs(dir.path().join(std::ffi::OsStr::from_bytes(b"theirs-\xff")));
    let volume = state
        .join("kubelet/pods/uid/volumes")
        .join(std::ffi::OsStr::from_bytes(b"vol-\xfe"));
    let _ours = Mounted::tmpfs(volume.clone());
    let out = ok(&state, &["down"]);
    assert!(out.contains("Unmounted 1 pod volumes"), "{out}");
    assert!(!mounted(&volume), "{out}");
    assert!(
        mounted(&theirs.0),
        "kinit down unmounted another's mount:\n{out}"
    );
}

/// cri-dockerd copies a pod's labels onto its containers, so a pod can carry kinit's own:
/// such a container (another kubelet's, here) is not one of kinit's components, and
/// `kinit down` neither stops nor removes it.
#[test]
fn a_pod_with_kinits_labels_is_not_a_component() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let state = state_dir(dir.path());
    let mut undo = Undo(vec![]);
    let image = "kinit-test-teardown-labels:1";
    empty_image(dir.path(), image, &mut undo);
    let impostor = "k8s_etcd_impostor_default_uid_0";
    undo.add(&["docker", "rm", "-f", impostor]);
    run_ok(&[
        "docker",
        "create",
        "--name",
        impostor,
        "--label",
        "io.kinit.managed=true",
        "--label",
        "io.kinit.component=etcd",
        "--label",
        "io.kubernetes.docker.type=container",
        "--cgroup-parent",
        "/kubepods/besteffort/pod-other",
        image,
        "/pause",
    ]);
    let out = ok(&state, &["down"]);
    assert!(out.contains("No kinit containers to remove"), "{out}");
    assert!(
        container_exists(impostor),
        "kinit down removed a pod:\n{out}"
    );
}
