//! What a user with internet gets, with real servers on loopback standing in for the
//! internet: an HTTP server serving the offline bundle at the upstream release paths
//! (dl.k8s.io's and GitHub's), and a real OCI registry (go-containerregistry's) holding the
//! bundle's images under registry.k8s.io's paths. With no kinit or Kubernetes image in
//! Docker and an empty download cache, `kinit up --mirror URL --image-repository REPO`
//! reaches a Ready node with DNS, every image from the registry and every binary from the
//! mirror. Bad sources fail with one clear line and leave nothing half-made.
//!
//! Needs root, a running Docker engine, the bundle and its tools/ (scripts/test.sh).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kinit::release::{Artifact, node_artifacts};
use kinit::versions::{
    Images, KUBERNETES_VERSION, Release, SUPPORTED, docker_name, without_registry,
};

mod common;
use common::{bundle, docker_cli, require_engine, text};

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    l.local_addr().expect("bound").port()
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The stand-in internet: the mirror's HTTP server and the registry, stopped on drop.
struct Internet {
    http: Child,
    registry: Child,
    mirror: String,
    repository: String,
    access_log: PathBuf,
}

impl Internet {
    fn start(dir: &Path) -> Self {
        let bundle = bundle();
        let tools = bundle.join("tools");
        assert!(
            tools.join("registry").is_file() && tools.join("crane").is_file(),
            "no registry/crane in {} (scripts/build-bundle.sh builds them)",
            tools.display()
        );
        let http_port = free_port();
        let access_log = dir.join("mirror-access.log");
        let http = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
            .arg(&bundle)
            .arg(http_port.to_string())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&access_log).expect("the access log"))
            .spawn()
            .expect("python3 runs (scripts/test.sh installs it)");
        let registry_port = free_port();
        let registry = Command::new(tools.join("registry"))
            .arg(format!("-port={registry_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("registry.log")).expect("the registry log"))
            .spawn()
            .expect("the registry runs");
        wait_for_port(http_port, "the mirror's HTTP server");
        wait_for_port(registry_port, "the registry");
        let internet = Self {
            http,
            registry,
            mirror: format!("http://127.0.0.1:{http_port}"),
            repository: format!("127.0.0.1:{registry_port}"),
            access_log,
        };
        internet.push_images(&bundle, &tools.join("crane"));
        internet
    }

    /// Every upstream image of the bundle, into the registry under its upstream path.
    fn push_images(&self, bundle: &Path, crane: &Path) {
        let upstream: Vec<String> = SUPPORTED
            .iter()
            .flat_map(|r| everything(&Images::new(None, *r)))
            .collect();
        for archive in kinit::bundle::archives(bundle).expect("the bundle's image archives") {
            // Docker lists Docker Hub's images without their registry.
            let Some(image) = upstream
                .iter()
                .find(|u| archive.tags.iter().any(|t| t == docker_name(u)))
            else {
                continue;
            };
            let path = without_registry(image);
            let dest = format!("{}/{path}", self.repository);
            let out = Command::new(crane)
                .arg("push")
                .arg(&archive.path)
                .arg(&dest)
                .output()
                .expect("crane runs");
            assert!(out.status.success(), "crane push {dest}: {}", text(&out));
        }
    }

    /// The request lines the mirror served, e.g. `GET /release/... HTTP/1.1" 200`.
    fn requests(&self) -> String {
        std::fs::read_to_string(&self.access_log).unwrap_or_default()
    }
}

impl Drop for Internet {
    fn drop(&mut self) {
        let _ = self.http.kill();
        let _ = self.registry.kill();
        let _ = self.http.wait();
        let _ = self.registry.wait();
    }
}

/// Removes every image kinit would use (upstream names, the registry's, its node
/// images), so nothing is found present.
fn empty_image_store(repository: &str) {
    let mut names = Vec::new();
    for release in SUPPORTED {
        names.extend(everything(&Images::new(None, release)));
        names.extend(everything(&Images::new(Some(repository), release)));
    }
    let out = docker_cli(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
    names.extend(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("kinit.invalid/node:") || l.starts_with("kinit/node:"))
            .map(String::from),
    );
    // By ID, so that no other tag (an earlier run's registry port) keeps the layers.
    for name in names {
        let id = docker_cli(&["image", "inspect", "-f", "{{.Id}}", &name]);
        if id.status.success() {
            let id = String::from_utf8_lossy(&id.stdout).trim().to_string();
            let _ = docker_cli(&["image", "rm", "--force", &id]);
        }
    }
    let left = String::from_utf8_lossy(
        &docker_cli(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]).stdout,
    )
    .into_owned();
    for name in SUPPORTED.iter().flat_map(|r| Images::new(None, *r).all()) {
        assert!(!left.lines().any(|l| l == name), "{name} is still present");
    }
    assert!(
        !left.contains("kinit.invalid/node:"),
        "a node image is still present"
    );
}

struct Run {
    dir: PathBuf,
    cache: PathBuf,
}

impl Run {
    fn kinit(&self, state: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_kinit"))
            .arg("--state-dir")
            .arg(self.dir.join(state))
            .args(args)
            .env("PATH", "")
            .env("KINIT_CACHE_DIR", &self.cache)
            .output()
            .expect("the kinit binary runs")
    }

    fn up(&self, state: &str, extra: &[&str]) -> Output {
        let bin = self.dir.join("bin");
        let kubeconfig = self.dir.join("kubeconfig");
        let mut args = vec![
            "up",
            "--bin-dir",
            bin.to_str().expect("utf-8 temp path"),
            "--kubeconfig",
            kubeconfig.to_str().expect("utf-8 temp path"),
        ];
        args.extend_from_slice(extra);
        self.kinit(state, &args)
    }

    /// Nothing unverified or half-written in the download cache.
    fn cache_is_clean(&self) {
        let mut stack = vec![self.cache.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let name = path.to_string_lossy().into_owned();
                assert!(
                    !name.ends_with(".part")
                        && !name.ends_with(".tar")
                        && !name.ends_with(".layer"),
                    "half-made file left in the cache: {name}"
                );
                if path.is_dir() {
                    stack.push(path);
                }
            }
        }
    }
}

/// A failed `kinit up`: non-zero, one `error:` line naming `needle`, no node image made,
/// and the host untouched: no state directory (certificates are written only after every
/// download and image is in place).
fn fails_with(out: &Output, needle: &str, state: &Path) {
    let all = text(out);
    assert!(!out.status.success(), "kinit up succeeded:\n{all}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "not one error line:\n{all}");
    assert!(
        errors[0].contains(needle),
        "{needle:?} not in: {}",
        errors[0]
    );
    let images = String::from_utf8_lossy(
        &docker_cli(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]).stdout,
    )
    .into_owned();
    assert!(
        !images.contains("kinit.invalid/node:"),
        "a node image was made:\n{images}"
    );
    assert!(!state.exists(), "{} was created", state.display());
}

/// A file:// mirror with only `files` (path, content, .sha256 content).
fn file_mirror(dir: &Path, files: &[(&Artifact, &[u8], &str)]) -> String {
    for (artifact, content, sum) in files {
        let path = dir.join(&artifact.path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mirror dir");
        std::fs::write(&path, content).expect("mirror file");
        std::fs::write(format!("{}.sha256", path.display()), sum).expect("mirror digest");
    }
    format!("file://{}", dir.display())
}

#[test]
fn up_from_a_mirror_and_a_registry_with_nothing_local() {
    require_engine();
    let tmp = tempfile::tempdir().expect("a temp dir");
    let internet = Internet::start(tmp.path());
    let run = Run {
        dir: tmp.path().to_path_buf(),
        cache: tmp.path().join("cache"),
    };
    let registry_flag = ["--image-repository", internet.repository.as_str()];
    let artifacts = node_artifacts(KUBERNETES_VERSION);

    empty_image_store(&internet.repository);

    // ---- bad sources: each one line naming what and where, nothing half-made.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let mut args = vec!["--mirror", closed.as_str()];
    args.extend(registry_flag);
    let bad_state = run.dir.join("bad");
    fails_with(&run.up("bad", &args), &closed, &bad_state);
    run.cache_is_clean();

    let bad_sum = tmp.path().join("bad-sum");
    let mirror = file_mirror(
        &bad_sum,
        &[(&artifacts.kubelet, b"not a kubelet", &"0".repeat(64))],
    );
    let mut args = vec!["--mirror", mirror.as_str()];
    args.extend(registry_flag);
    fails_with(
        &run.up("bad", &args),
        "does not match its published SHA-256",
        &bad_state,
    );
    run.cache_is_clean();
    assert!(!run.cache.join(&artifacts.kubelet.path).exists());

    let missing = tmp.path().join("missing");
    let kubelet =
        std::fs::read(bundle().join(&artifacts.kubelet.path)).expect("the bundle's kubelet");
    let sum = std::fs::read_to_string(bundle().join(format!("{}.sha256", artifacts.kubelet.path)))
        .expect("the bundle's kubelet digest");
    let mirror = file_mirror(&missing, &[(&artifacts.kubelet, &kubelet, &sum)]);
    let mut args = vec!["--mirror", mirror.as_str()];
    args.extend(registry_flag);
    fails_with(
        &run.up("bad", &args),
        artifacts.cri_dockerd.file_name(),
        &bad_state,
    );
    run.cache_is_clean();

    let lacking = format!("{}/nothing-here", internet.repository);
    fails_with(
        &run.up(
            "bad",
            &["--mirror", &internet.mirror, "--image-repository", &lacking],
        ),
        &format!("{lacking}/"),
        &bad_state,
    );
    let out = run.up(
        "bad",
        &[
            "--mirror",
            &internet.mirror,
            "--kubernetes-version",
            "v1.20.0",
        ],
    );
    fails_with(&out, "supported: v1.", &bad_state);
    assert!(
        !run.dir.join("bad").exists(),
        "an unsupported version changed the host"
    );

    // ---- the user's first run, for each supported version: nothing local.
    for release in SUPPORTED {
        first_run(&run, &internet, release);
    }

    // Leave the engine as the other tests expect it: the bundle's images loaded.
    let out = Command::new(env!("CARGO_BIN_EXE_kinit"))
        .args(["images", "load"])
        .arg(bundle())
        .output()
        .expect("kinit runs");
    assert!(out.status.success(), "{}", text(&out));
}

/// `kinit up --kubernetes-version V` with an empty image store and download cache: every
/// image from the registry, every binary from the mirror, then a second run that reads
/// nothing remote, then a purge.
fn first_run(run: &Run, internet: &Internet, release: Release) {
    let version = release.kubernetes;
    empty_image_store(&internet.repository);
    std::fs::remove_dir_all(&run.cache).ok();
    let started = Instant::now();
    let args = [
        "--mirror",
        internet.mirror.as_str(),
        "--image-repository",
        internet.repository.as_str(),
        "--kubernetes-version",
        version,
        // Every addon, the ingress controller too: each image from its upstream registry.
        "--addons",
        "storage,metrics-server,load-balancer,ingress",
    ];
    let state = format!("state-{version}");
    let out = run.up(&state, &args);
    let printed = text(&out);
    assert!(
        out.status.success(),
        "kinit up {version} failed:\n{printed}"
    );
    eprintln!(
        "---- kinit up {version} from the stand-in internet ({:.1}s) ----\n{printed}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        printed.contains(&format!("assembled kinit.invalid/node:{version}-")),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("Kubernetes {version} at")),
        "{printed}"
    );
    let artifacts = node_artifacts(version);
    for artifact in [
        &artifacts.kubelet,
        &artifacts.cri_dockerd,
        &artifacts.cni_plugins,
    ] {
        let from = artifact.url(Some(&internet.mirror));
        assert!(
            printed.contains(&from),
            "{} not downloaded from {from}:\n{printed}",
            artifact.name
        );
    }

    // Every binary came from the mirror...
    let requests = internet.requests();
    let kubectl = Artifact::kubectl(version);
    for artifact in [
        &artifacts.kubelet,
        &artifacts.cri_dockerd,
        &artifacts.cni_plugins,
        &kubectl,
    ] {
        for path in [artifact.path.clone(), format!("{}.sha256", artifact.path)] {
            assert!(
                requests.contains(&format!("\"GET /{path} HTTP/1.1\" 200")),
                "{path} was not served by the mirror:\n{requests}"
            );
        }
        assert!(run.cache.join(&artifact.path).is_file());
    }
    // ...and every image from the registry: none under its upstream name.
    let images = String::from_utf8_lossy(
        &docker_cli(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]).stdout,
    )
    .into_owned();
    let upstream = everything(&Images::new(None, release));
    let mirrored = everything(&Images::new(Some(&internet.repository), release));
    for (upstream, mirrored) in upstream.iter().zip(&mirrored) {
        assert!(
            images.lines().any(|l| l == mirrored),
            "{mirrored} missing:\n{images}"
        );
        assert!(
            !images.lines().any(|l| l == docker_name(upstream)),
            "{upstream} present:\n{images}"
        );
    }
    // Upstream cri-dockerd runs behind kinit's interposer, which clamps exactly on hosts
    // that refuse a negative oom_score_adj (these test machines do).
    let master = text(&docker_cli(&["logs", "kinit-master"]));
    let expected = if kinit::runtime_proxy::host_refuses_negative_oom_adj() {
        "negative oom_score_adj clamped to 0"
    } else {
        "negative oom_score_adj passed through"
    };
    assert!(master.contains(expected), "{expected:?} not in:\n{master}");
    let status = run.kinit(&state, &["status", "--output", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    assert_eq!(status["node"]["state"], "Ready", "{status}");
    assert_eq!(status["versions"]["kubernetes"], version, "{status}");

    // A second run, without flags, reads nothing remote and changes nothing: the version
    // and image repository are the cluster's, the files cached.
    let served = internet.requests().lines().count();
    let again = run.up(&state, &[]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("Nothing to do"), "{}", text(&again));
    assert_eq!(
        internet.requests().lines().count(),
        served,
        "the second run downloaded again:\n{}",
        internet.requests()
    );

    let out = run.kinit(&state, &["down", "--purge"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Removed the node image"),
        "{}",
        text(&out)
    );
}

/// The images `kinit up` makes present with every addon: the cluster's and theirs.
fn everything(images: &Images) -> Vec<String> {
    images.all().into_iter().chain(images.addons()).collect()
}
