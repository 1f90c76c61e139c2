//! Against a real Docker engine: etcd brought up by `kinit up` with TLS and client-cert
//! auth, checked with curl, crashed, removed, taken down and brought back with its data;
//! and the Docker layer's privilege fallback.
//!
//! These tests need a running Docker engine and the etcd image; `scripts/test.sh` provides
//! both. Without them they fail, never skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kinit::docker::{Applied, ContainerSpec, Docker};

mod common;
use common::{bundle, docker_cli, require_engine, text};

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

fn ok(state: &Path, args: &[&str]) -> String {
    let out = kinit(state, args);
    assert!(
        out.status.success(),
        "kinit {args:?} failed:\n{}",
        text(&out)
    );
    text(&out)
}

/// curl against etcd on loopback with the health-check client certificate.
struct Etcd {
    pki: PathBuf,
}

impl Etcd {
    fn curl(&self, path: &str, body: Option<&str>, with_cert: bool) -> Output {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--fail", "--max-time", "5", "--cacert"])
            .arg(self.pki.join("ca.crt"));
        if with_cert {
            cmd.arg("--cert")
                .arg(self.pki.join("healthcheck-client.crt"));
            cmd.arg("--key")
                .arg(self.pki.join("healthcheck-client.key"));
        }
        if let Some(body) = body {
            cmd.args(["-X", "POST", "-d", body]);
        }
        cmd.arg(format!("https://127.0.0.1:2379{path}"));
        cmd.output()
            .expect("curl is installed (scripts/test.sh installs it)")
    }

    fn healthy(&self) -> bool {
        let out = self.curl("/health", None, true);
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(r#""health":"true""#)
    }

    fn wait_healthy(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.healthy() {
            assert!(
                Instant::now() < deadline,
                "etcd not healthy within 60s after {what}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Writes a key through etcd's JSON gateway (keys and values are base64).
    fn put(&self, key: &str, value: &str) {
        let body = format!(r#"{{"key":"{}","value":"{}"}}"#, b64(key), b64(value));
        let out = self.curl("/v3/kv/put", Some(&body), true);
        assert!(out.status.success(), "put failed: {}", text(&out));
    }

    fn get(&self, key: &str) -> Option<String> {
        let out = self.curl(
            "/v3/kv/range",
            Some(&format!(r#"{{"key":"{}"}}"#, b64(key))),
            true,
        );
        assert!(out.status.success(), "range failed: {}", text(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let value = json["kvs"][0]["value"].as_str()?;
        Some(String::from_utf8(unb64(value)).unwrap())
    }
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn unb64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn inspect(name: &str, format: &str) -> String {
    let out = docker_cli(&["inspect", "--format", format, name]);
    assert!(
        out.status.success(),
        "docker inspect {name}: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn container_exists(name: &str) -> bool {
    docker_cli(&["inspect", name]).status.success()
}

#[test]
fn etcd_lifecycle_keeps_its_data_through_crashes_removal_and_down() {
    let _turn = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    require_engine();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // Whatever an earlier failed run left behind would make this one meaningless.
    docker_cli(&["rm", "-f", "kinit-etcd"]);

    let first = ok(&state, &["up"]);
    assert!(first.contains("Starting etcd: created, healthy"), "{first}");
    assert!(first.contains("Not started yet"), "{first}");
    assert!(
        first.contains("Installing kubectl: kubectl v1.36.3 installed in"),
        "{first}"
    );
    let kubectl = Command::new(bin_dir(&state).join("kubectl"))
        .args(["version", "--client"])
        .output()
        .unwrap();
    assert!(text(&kubectl).contains(&format!(
        "Client Version: {}",
        kinit::versions::KUBERNETES_VERSION
    )));
    let etcd = Etcd {
        pki: state.join("pki/etcd"),
    };
    assert!(
        etcd.healthy(),
        "etcd does not answer /health with the client certificate"
    );

    // TLS with client-certificate auth: no certificate, no answer; no plain HTTP either.
    assert!(
        !etcd.curl("/health", None, false).status.success(),
        "etcd answered without a client cert"
    );
    let plain = Command::new("curl")
        .args(["-sS", "--max-time", "5", "http://127.0.0.1:2379/health"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&plain.stdout).contains("\"health\""),
        "etcd answered plain HTTP"
    );

    etcd.put("/kinit-test/greeting", "hello");
    assert_eq!(etcd.get("/kinit-test/greeting").as_deref(), Some("hello"));
    assert_eq!(
        inspect(
            "kinit-etcd",
            "{{index .Config.Labels \"io.kinit.managed\"}}"
        ),
        "true"
    );
    assert_eq!(
        inspect(
            "kinit-etcd",
            "{{.HostConfig.NetworkMode}} {{.HostConfig.RestartPolicy.Name}}"
        ),
        "host unless-stopped"
    );

    // A second `up` changes nothing.
    let again = ok(&state, &["up"]);
    assert!(again.contains("Nothing to do"), "{again}");
    assert!(
        again.contains("Starting etcd: running and healthy (already done)"),
        "{again}"
    );
    assert!(
        again.contains("Installing kubectl: kubectl v1.36.3 at"),
        "{again}"
    );

    // A crash: Docker's restart policy brings etcd back with its data.
    let pid = inspect("kinit-etcd", "{{.State.Pid}}");
    let restarts: u32 = inspect("kinit-etcd", "{{.RestartCount}}").parse().unwrap();
    assert!(
        Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while inspect("kinit-etcd", "{{.RestartCount}}")
        .parse::<u32>()
        .unwrap()
        <= restarts
    {
        assert!(
            Instant::now() < deadline,
            "Docker did not restart etcd after it was killed"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    etcd.wait_healthy("a crash");
    assert_eq!(etcd.get("/kinit-test/greeting").as_deref(), Some("hello"));

    // The container removed behind kinit's back: `up` repairs it, data intact.
    assert!(docker_cli(&["rm", "-f", "kinit-etcd"]).status.success());
    let repaired = ok(&state, &["up"]);
    assert!(
        repaired.contains("Starting etcd: created, healthy"),
        "{repaired}"
    );
    assert!(
        repaired.contains("Writing certificates: 17 certificates valid (already done)"),
        "{repaired}"
    );
    assert_eq!(etcd.get("/kinit-test/greeting").as_deref(), Some("hello"));

    let status: serde_json::Value =
        serde_json::from_str(&ok(&state, &["status", "--output", "json"])).unwrap();
    assert_eq!(status["components"][0]["name"], "etcd");
    assert_eq!(status["components"][0]["container"]["status"], "running");
    assert_eq!(status["components"][0]["health"], "healthy");
    let logs = ok(&state, &["logs", "etcd", "--tail", "50"]);
    assert!(logs.contains("etcd"), "no etcd log lines: {logs}");

    // down keeps the data, up brings the same cluster back.
    let down = ok(&state, &["down"]);
    assert!(down.contains("Removed kinit-etcd"), "{down}");
    assert!(!container_exists("kinit-etcd"));
    assert!(state.join("etcd/member").is_dir() && state.join("pki/ca.crt").is_file());
    // As on an air-gapped host: the image is gone from Docker and comes back from the bundle.
    // (--force only untags it when some other container still runs it.)
    let image = kinit::versions::etcd_image();
    assert!(docker_cli(&["rmi", "--force", &image]).status.success());
    let back = ok(&state, &["up"]);
    assert!(
        back.contains("Making images available: 1 loaded from the bundle, 0 pulled"),
        "{back}"
    );
    assert_eq!(etcd.get("/kinit-test/greeting").as_deref(), Some("hello"));

    // A second cluster with other settings in the same state directory is refused.
    let conflict = kinit(&state, &["up", "--service-cidr", "10.100.0.0/16"]);
    assert!(!conflict.status.success());
    assert!(
        text(&conflict).contains("--service-cidr (cluster has 10.96.0.0/12)"),
        "{}",
        text(&conflict)
    );

    // down --purge leaves nothing.
    let purge = ok(&state, &["down", "--purge"]);
    assert!(purge.contains("Deleted"), "{purge}");
    assert!(!container_exists("kinit-etcd"));
    assert!(!state.exists());
    assert!(
        !Path::new("/var/cache/kinit").exists(),
        "the download cache survived --purge"
    );
    let leftovers = docker_cli(&["ps", "-aq", "--filter", "label=io.kinit.managed=true"]);
    assert!(String::from_utf8_lossy(&leftovers.stdout).trim().is_empty());
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
    let image = kinit::versions::etcd_image();
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
        host_pid: false,
        privileged: true,
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
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    let cap_eff = u64::from_str_radix(cap_eff, 16).unwrap();
    assert!(cap_eff & (1 << 21) != 0, "no CAP_SYS_ADMIN: {cap_eff:x}");
    assert!(cap_eff & (1 << 12) != 0, "no CAP_NET_ADMIN: {cap_eff:x}");
    let privileged = inspect(name, "{{.HostConfig.Privileged}}");
    let own_bounding = std::fs::read_to_string("/proc/self/status").unwrap();
    let host_is_restricted = own_bounding
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap() & (1 << 24) == 0)
        .unwrap();
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
