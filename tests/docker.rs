//! Against a real Docker engine: what `kinit up` refuses before changing anything, what
//! `down --purge` refuses to delete, and the Docker layer's privilege fallback and errors.
//! The whole cluster's lifecycle is in tests/cluster.rs.
//!
//! These tests need a running Docker engine and the etcd image; `scripts/test.sh` provides
//! both. Without them they fail, never skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use caps::{CapSet, Capability};
use kinit::docker::{Applied, ContainerSpec, Docker};

mod common;
use common::cluster::inspect;
use common::{bundle, require_engine, run, run_ok, text};

/// `kinit down` removes every kinit container, so these tests take turns.
static DOCKER: Mutex<()> = Mutex::new(());

/// Runs kinit on a state directory. `up` gets the offline bundle (this host reaches no
/// registry or release server) and installs kubectl next to the state directory. PATH is
/// emptied so a kubectl elsewhere on the host cannot stand in for the one kinit installs.
fn kinit(state: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kinit"));
    cmd.arg("--state-dir").arg(state).args(args).env("PATH", "");
    if args.first() == Some(&"up") {
        cmd.arg("--bundle")
            .arg(bundle())
            .arg("--bin-dir")
            .arg(bin_dir(state));
    }
    cmd.output().expect("the kinit binary runs")
}

fn bin_dir(state: &Path) -> PathBuf {
    state.with_file_name("bin")
}

#[test]
fn preflight_names_the_process_holding_an_etcd_port() {
    let _turn = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    require_engine();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let listener =
        std::net::TcpListener::bind("127.0.0.1:2380").expect("port 2380 is free on the test host");
    let out = kinit(&state, &["up"]);
    drop(listener);
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(msg.contains("2380 (etcd peers) is held by"), "{msg}");
    assert!(
        msg.contains(&format!("(pid {})", std::process::id())),
        "{msg}"
    );
    assert!(!state.exists(), "a refused up created {}", state.display());
}

#[test]
fn purge_refuses_a_directory_kinit_did_not_make() {
    let _turn = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), "keep me").unwrap();
    let out = kinit(dir.path(), &["down", "--purge"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("does not look like a kinit state directory"),
        "{}",
        text(&out)
    );
    assert!(dir.path().join("precious.txt").exists());
}

#[test]
fn privileged_containers_fall_back_to_the_daemons_capabilities() {
    let _turn = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    require_engine();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(privileged_fallback());
}

async fn privileged_fallback() {
    let docker = Docker::connect().await.unwrap();
    let image = kinit::versions::Images::default().etcd();
    docker.ensure_image(&image).await.unwrap();
    let name = "kinit-test-privileged";
    docker.remove(name).await.unwrap();

    // Any long-running program will do; etcd on spare loopback ports is in the image.
    let data = tempfile::tempdir().unwrap();
    let mut spec = ContainerSpec {
        component: "test-privileged".into(),
        image,
        entrypoint: None,
        args: [
            "etcd",
            "--data-dir=/tmp/etcd",
            "--listen-client-urls=http://127.0.0.1:23790",
            "--advertise-client-urls=http://127.0.0.1:23790",
            "--listen-peer-urls=http://127.0.0.1:23800",
            "--initial-advertise-peer-urls=http://127.0.0.1:23800",
            "--initial-cluster=default=http://127.0.0.1:23800",
        ]
        .map(String::from)
        .to_vec(),
        env: vec![],
        binds: vec![kinit::docker::Bind {
            host: data.path().to_string_lossy().into_owned(),
            container: "/tmp/etcd".into(),
            read_only: false,
            propagation: None,
        }],
        privileged: true,
        ..Default::default()
    };
    assert_eq!(docker.apply(&spec).await.unwrap(), Applied::Created);
    let state = docker
        .inspect(name)
        .await
        .unwrap()
        .expect("container exists");
    assert!(state.running, "{state:?}");

    // Whichever way the host allowed it, the process must hold CAP_SYS_ADMIN and
    // CAP_NET_ADMIN, which a default container lacks.
    let pid = state.pid.expect("running container has a pid");
    let held = kinit::docker::held_capabilities(Some(pid.try_into().unwrap())).unwrap();
    for cap in [Capability::CAP_SYS_ADMIN, Capability::CAP_NET_ADMIN] {
        assert!(held.contains(&cap), "no {cap}: {held:?}");
    }
    let privileged = inspect(name, "{{.HostConfig.Privileged}}");
    let host_is_restricted =
        !caps::has_cap(None, CapSet::Bounding, Capability::CAP_SYS_RESOURCE).unwrap();
    if host_is_restricted {
        assert_eq!(
            privileged, "false",
            "a restricted host cannot run --privileged"
        );
        assert!(inspect(name, "{{.HostConfig.CapAdd}}").contains("CAP_SYS_ADMIN"));
        assert!(inspect(name, "{{.HostConfig.SecurityOpt}}").contains("seccomp=unconfined"));
    } else {
        assert_eq!(privileged, "true");
    }

    // The same spec again is a no-op; a stopped container is started; a changed spec replaces it.
    assert_eq!(docker.apply(&spec).await.unwrap(), Applied::Unchanged);
    docker.stop(name, 5).await.unwrap();
    assert_eq!(docker.apply(&spec).await.unwrap(), Applied::Started);
    spec.env.push("KINIT_TEST=1".into());
    assert_eq!(docker.apply(&spec).await.unwrap(), Applied::Replaced);
    assert!(docker.remove(name).await.unwrap());
    assert!(!docker.remove(name).await.unwrap());
}

#[test]
fn an_image_neither_present_nor_pullable_is_a_clear_error() {
    let _turn = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    require_engine();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let err = runtime.block_on(async {
        let docker = Docker::connect().await.unwrap();
        docker
            .ensure_image("registry.k8s.io/kinit-test-no-such-image:0")
            .await
            .unwrap_err()
    });
    let msg = format!("{err:#}");
    assert!(
        msg.contains("cannot pull registry.k8s.io/kinit-test-no-such-image:0"),
        "{msg}"
    );
    assert!(msg.contains("docker load"), "{msg}");
}

/// While one kinit holds the host's lock, every command that changes the cluster refuses
/// at once, naming the lock, and changes nothing: two `kinit up` never interleave.
#[test]
fn a_second_kinit_refuses_while_one_holds_the_lock() {
    let _turn = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // A cluster state directory that `certs` could be pointed at.
    std::fs::create_dir(&state).unwrap();
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(kinit::layout::LOCK_FILE)
        .unwrap();
    held.try_lock()
        .expect("no other kinit runs during this test");
    let state_arg = state.to_str().unwrap();
    for args in [
        vec!["up"],
        vec!["down"],
        vec!["down", "--purge"],
        vec!["example", "nginx"],
        vec!["certs", "--out", state_arg],
    ] {
        let out = kinit(&state, &args);
        assert!(!out.status.success(), "kinit {args:?} ran: {}", text(&out));
        assert!(
            text(&out).contains("another kinit is changing this cluster right now"),
            "kinit {args:?}: {}",
            text(&out)
        );
    }
    assert_eq!(
        std::fs::read_dir(&state).unwrap().count(),
        0,
        "a refused command wrote into the state directory"
    );
    assert!(!bin_dir(&state).exists());
    drop(held);
    // Released: certs into the state directory goes ahead.
    let out = kinit(&state, &["certs", "--out", state_arg]);
    assert!(out.status.success(), "{}", text(&out));
}

/// `kinit images load` never re-points a name Docker has: an archive that carries one
/// (beside a new image) is refused before anything is loaded, unless `--all`.
#[test]
fn a_bundle_cannot_re_point_a_name_docker_has() {
    let _turn = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    require_engine();
    // The bundle's pause and etcd images stand in for any two images.
    let loaded = Command::new(env!("CARGO_BIN_EXE_kinit"))
        .args(["images", "load"])
        .arg(bundle())
        .output()
        .expect("kinit runs");
    assert!(loaded.status.success(), "{}", text(&loaded));
    let images = kinit::versions::Images::default();
    let (pause, etcd) = (images.pause(), images.etcd());
    let (new, held) = ("kinit.test/bundle-new:1", "kinit.test/bundle-held:1");
    let id = |name: &str| {
        let out = run(&["docker", "image", "inspect", "-f", "{{.Id}}", name]);
        out.status.success().then(|| text(&out).trim().to_string())
    };
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("both.tar");
    let archive_arg = archive.to_str().unwrap();
    run_ok(&["docker", "tag", &pause, new]);
    run_ok(&["docker", "tag", &pause, held]);
    run_ok(&["docker", "save", "-o", archive_arg, new, held]);
    // On this host the held name means another image; the new one is not there.
    run_ok(&["docker", "tag", &etcd, held]);
    run_ok(&["docker", "rmi", new]);
    let etcd_id = id(&etcd);

    let load = |all: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kinit"));
        cmd.args(["images", "load"]).arg(dir.path());
        if all {
            cmd.arg("--all");
        }
        cmd.output().expect("kinit runs")
    };
    let refused = load(false);
    let msg = text(&refused);
    let refused_ok = !refused.status.success()
        && msg.contains(&format!(
            "would re-point {held}, which Docker has as another image"
        ));
    let kept = id(held) == etcd_id && id(new).is_none();
    let forced = load(true);
    let forced_ok = forced.status.success() && id(held) == id(&pause) && id(new).is_some();
    run(&["docker", "rmi", new, held]);
    assert!(refused_ok, "{msg}");
    assert!(kept, "the refused load changed Docker's names");
    assert!(forced_ok, "{}", text(&forced));
}
