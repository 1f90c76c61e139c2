//! The offline bundle holds the real upstream programs at the pinned versions: each image
//! runs its binary under the upstream name kinit uses, the release files sit in the upstream
//! servers' layouts (dl.k8s.io, the cri-dockerd and CNI plugins GitHub release assets) and
//! every one of them matches the SHA-256 published beside it. Needs Docker and the full
//! bundle (scripts/test.sh builds both).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use kinit::release::{Artifact, arch};
use kinit::versions::{
    CNI_PLUGINS_VERSION, COREDNS_VERSION, CRI_DOCKERD_VERSION, ETCD_IMAGE_TAG, ETCD_VERSION,
    KUBERNETES_VERSION, PAUSE_VERSION,
};
use sha2::{Digest, Sha256};

mod common;
use common::{bundle, docker_cli, require_engine, text, with_stdin};

fn run_in(image: &str, args: &[&str]) -> String {
    let mut full = vec!["run", "--rm", "--network", "none", image];
    full.extend(args);
    let out = docker_cli(&full);
    assert!(out.status.success(), "docker {full:?}: {}", text(&out));
    text(&out)
}

#[test]
fn every_image_runs_its_pinned_binary() {
    require_engine();
    let k8s = format!("Kubernetes {KUBERNETES_VERSION}");
    for component in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-proxy",
    ] {
        let image = format!("registry.k8s.io/{component}:{KUBERNETES_VERSION}");
        let out = run_in(&image, &[component, "--version"]);
        assert!(out.contains(&k8s), "{image}: {out}");
    }
    let etcd = run_in(
        &format!("registry.k8s.io/etcd:{ETCD_IMAGE_TAG}"),
        &["etcd", "--version"],
    );
    assert!(
        etcd.contains(&format!("etcd Version: {ETCD_VERSION}")),
        "{etcd}"
    );
    let coredns = run_in(
        &format!("registry.k8s.io/coredns/coredns:{COREDNS_VERSION}"),
        &["-version"],
    );
    assert!(
        coredns.contains(&format!(
            "CoreDNS-{}",
            COREDNS_VERSION.trim_start_matches('v')
        )),
        "{coredns}"
    );

    // pause runs until told to stop, then exits at once.
    let pause = format!("registry.k8s.io/pause:{PAUSE_VERSION}");
    let id = text(&docker_cli(&["run", "-d", "--network", "none", &pause]))
        .trim()
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let running = text(&docker_cli(&[
        "inspect",
        "--format",
        "{{.State.Running}}",
        &id,
    ]));
    let stopped = docker_cli(&["stop", "--time", "5", &id]);
    let code = text(&docker_cli(&[
        "inspect",
        "--format",
        "{{.State.ExitCode}}",
        &id,
    ]));
    docker_cli(&["rm", "-f", &id]);
    assert_eq!(running.trim(), "true", "pause did not keep running");
    assert!(stopped.status.success());
    assert_eq!(code.trim(), "0", "pause did not exit cleanly on SIGTERM");
}

#[test]
fn release_binaries_match_their_digests_and_kubectl_is_pinned() {
    let dir = bundle();
    let bin = dir.join(format!("release/{KUBERNETES_VERSION}/bin/linux/{}", arch()));
    for name in [
        "kubectl",
        "kubelet",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-proxy",
    ] {
        check_digest(&bin.join(name));
    }
    let kubectl = Command::new(bin.join("kubectl"))
        .args(["version", "--client"])
        .output()
        .unwrap();
    assert!(
        text(&kubectl).contains(&format!("Client Version: {KUBERNETES_VERSION}")),
        "{}",
        text(&kubectl)
    );
    let kubelet = Command::new(bin.join("kubelet"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(
        text(&kubelet).contains(&format!("Kubernetes {KUBERNETES_VERSION}")),
        "{}",
        text(&kubelet)
    );
}

/// Every file of the mirror (everything kinit fetches with --mirror) has a `.sha256` beside it
/// whose first token is its digest, and what older bundles held outside that layout is gone.
#[test]
fn every_mirror_file_matches_its_published_digest() {
    let dir = bundle();
    let mut files = Vec::new();
    for top in ["release", "Mirantis", "containernetworking"] {
        walk(&dir.join(top), &mut files);
    }
    let (sums, payload): (Vec<PathBuf>, Vec<PathBuf>) = files
        .into_iter()
        .partition(|f| f.extension().is_some_and(|e| e == "sha256"));
    for file in &payload {
        check_digest(file);
        // A sha256sum-format file ("<hex>  <name>") must name the file it is beside.
        let sum = std::fs::read_to_string(sha256_file(file)).unwrap();
        if let Some(name) = sum.split_whitespace().nth(1) {
            assert_eq!(
                Some(name),
                file.file_name().and_then(|n| n.to_str()),
                "{}.sha256",
                file.display()
            );
        }
    }
    for sum in &sums {
        assert!(
            sum.with_extension("").is_file(),
            "{} has no file beside it",
            sum.display()
        );
    }
    let relative: BTreeSet<String> = payload
        .iter()
        .map(|f| f.strip_prefix(&dir).unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        format!("release/{KUBERNETES_VERSION}/bin/linux/{}/kubelet", arch()),
        cri_dockerd_tgz(),
        cni_tgz(),
    ] {
        assert!(
            relative.contains(&expected),
            "{expected} not in {relative:?}"
        );
    }
    for stale in ["cri-dockerd", "cni-plugins", "etcd"] {
        assert!(!dir.join(stale).exists(), "stale {stale}/ in the bundle");
    }
    let images: Vec<String> = std::fs::read_dir(dir.join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !images.iter().any(|n| n.starts_with("kinit_node_")),
        "stale kinit/node archive in the bundle: {images:?}"
    );
}

/// As the upstream release asset: `cri-dockerd/` and the executable `cri-dockerd/cri-dockerd`,
/// owned by 0:0, and the program is cri-dockerd at the pinned version.
#[test]
fn cri_dockerd_archive_is_the_upstream_asset_at_the_pinned_version() {
    let tgz = bundle().join(cri_dockerd_tgz());
    let entries = archive_entries(&tgz);
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["cri-dockerd/", "cri-dockerd/cri-dockerd"],
        "{}",
        tgz.display()
    );
    for e in &entries {
        assert_eq!(
            (e.uid, e.gid, e.mode),
            (0, 0, 0o755),
            "{}: {}",
            tgz.display(),
            e.path
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    unpack(&tgz, tmp.path());
    let out = Command::new(tmp.path().join("cri-dockerd/cri-dockerd"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(
        text(&out).contains(CRI_DOCKERD_VERSION.trim_start_matches('v')),
        "cri-dockerd --version: {}",
        text(&out)
    );
}

/// As the upstream release asset (flat, `./<plugin>`), with the four plugins kinit uses;
/// each answers the CNI VERSION command.
#[test]
fn cni_archive_holds_the_four_plugins() {
    let tgz = bundle().join(cni_tgz());
    let entries = archive_entries(&tgz);
    let plugins = ["bridge", "host-local", "loopback", "portmap"];
    for e in &entries {
        assert!(
            e.path.starts_with("./"),
            "{}: {} is not flat",
            tgz.display(),
            e.path
        );
        assert_eq!(
            (e.uid, e.gid, e.mode),
            (0, 0, 0o755),
            "{}: {}",
            tgz.display(),
            e.path
        );
    }
    let paths: BTreeSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    for plugin in plugins {
        assert!(
            paths.contains(format!("./{plugin}").as_str()),
            "{plugin} not in {paths:?}"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    unpack(&tgz, tmp.path());
    for plugin in plugins {
        let out = with_stdin(
            Command::new(tmp.path().join(plugin)).env("CNI_COMMAND", "VERSION"),
            br#"{"cniVersion":"1.0.0"}"#,
        );
        assert!(
            out.status.success() && text(&out).contains("supportedVersions"),
            "{plugin} VERSION: {}",
            text(&out)
        );
    }
}

/// tools/ (the test bed's stand-in registry) holds go-containerregistry's registry and crane
/// at the version bundle.env names.
#[test]
fn tools_are_the_pinned_go_containerregistry() {
    let dir = bundle();
    let version = read_versions_env("GO_CONTAINERREGISTRY_VERSION");
    let crane = Command::new(dir.join("tools/crane"))
        .arg("version")
        .output()
        .unwrap();
    assert_eq!(text(&crane).trim(), version.trim_start_matches('v'));
    let registry = Command::new(dir.join("tools/registry"))
        .arg("-h")
        .output()
        .unwrap();
    assert!(text(&registry).contains("-port"), "{}", text(&registry));
}

/// Go's name for this machine's architecture, as the release layouts use it.
/// The paths kinit reads (release.rs checks them against the upstream URLs).
fn cri_dockerd_tgz() -> String {
    Artifact::cri_dockerd(CRI_DOCKERD_VERSION).path
}

fn cni_tgz() -> String {
    Artifact::cni_plugins(CNI_PLUGINS_VERSION).path
}

/// A key of the bundle's bundle.env (a copy of scripts/versions.env), for versions kinit
/// itself does not pin.
fn read_versions_env(key: &str) -> String {
    let env = std::fs::read_to_string(bundle().join("bundle.env")).unwrap();
    env.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("bundle.env has no {key}"))
        .trim_matches('"')
        .to_string()
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, files);
        } else {
            files.push(path);
        }
    }
}

struct ArchiveEntry {
    path: String,
    mode: u32,
    uid: u64,
    gid: u64,
}

fn open_tgz(tgz: &Path) -> tar::Archive<flate2::read::GzDecoder<std::fs::File>> {
    let file = std::fs::File::open(tgz).unwrap_or_else(|e| panic!("{}: {e}", tgz.display()));
    tar::Archive::new(flate2::read::GzDecoder::new(file))
}

fn archive_entries(tgz: &Path) -> Vec<ArchiveEntry> {
    let mut archive = open_tgz(tgz);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            ArchiveEntry {
                path: String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
            }
        })
        .collect()
}

fn unpack(tgz: &Path, dest: &Path) {
    open_tgz(tgz)
        .unpack(dest)
        .unwrap_or_else(|e| panic!("{}: {e}", tgz.display()));
}

fn check_digest(file: &Path) {
    let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let actual: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let published = std::fs::read_to_string(sha256_file(file))
        .unwrap_or_else(|e| panic!("{}.sha256: {e}", file.display()));
    assert_eq!(
        published.split_whitespace().next(),
        Some(actual.as_str()),
        "{}",
        file.display()
    );
}

fn sha256_file(file: &Path) -> PathBuf {
    file.with_file_name(format!(
        "{}.sha256",
        file.file_name().unwrap().to_string_lossy()
    ))
}

/// The bundle passes kinit's own download checks for every release file `kinit up`
/// fetches, at both Kubernetes versions: the same code that verifies upstream's files,
/// reading the bundle as a `file://` mirror. A copy with one byte changed fails them.
#[test]
fn kinit_accepts_the_bundles_release_files_and_refuses_a_changed_one() {
    let dir = bundle();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mirror = format!("file://{}", dir.display());
    for release in kinit::versions::SUPPORTED {
        let node = kinit::release::node_artifacts(release.kubernetes);
        for artifact in [
            node.kubelet,
            node.cri_dockerd,
            node.cni_plugins,
            Artifact::kubectl(release.kubernetes),
        ] {
            let cache = tempfile::tempdir().unwrap();
            let downloader = kinit::download::Downloader::new(Some(&mirror), cache.path());
            let got = runtime
                .block_on(downloader.fetch(&artifact))
                .unwrap_or_else(|e| panic!("{}: {e:#}", artifact.path));
            assert_eq!(
                got.sha256,
                hex_sha256(&std::fs::read(dir.join(&artifact.path)).unwrap()),
                "{}",
                artifact.path
            );
        }
    }

    // A mirror whose kubelet differs by one byte from its published digest.
    let changed = tempfile::tempdir().unwrap();
    let kubelet = Artifact::kubelet(KUBERNETES_VERSION);
    let copy = changed.path().join(&kubelet.path);
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    let mut bytes = std::fs::read(dir.join(&kubelet.path)).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&copy, bytes).unwrap();
    std::fs::copy(sha256_file(&dir.join(&kubelet.path)), sha256_file(&copy)).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mirror = format!("file://{}", changed.path().display());
    let downloader = kinit::download::Downloader::new(Some(&mirror), cache.path());
    let err = runtime
        .block_on(downloader.fetch(&kubelet))
        .expect_err("a changed kubelet was accepted");
    assert!(format!("{err:#}").contains("SHA-256"), "{err:#}");
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The addons' images run their pinned programs under their upstream names; the storage
/// addon's also has the shell its helper pods run.
#[test]
fn addon_images_run_their_pinned_programs() {
    require_engine();
    let images = kinit::versions::Images::default();
    let provisioner = images.local_path_provisioner();
    let version = run_in(&provisioner, &["local-path-provisioner", "--version"]);
    assert!(
        version.contains(kinit::versions::LOCAL_PATH_PROVISIONER_VERSION),
        "{version}"
    );
    let helper = run_in(
        &provisioner,
        &[
            "sh",
            "-c",
            "mkdir -m 0777 -p /tmp/v && rm -rf /tmp/v && echo ok",
        ],
    );
    assert_eq!(helper.trim(), "ok");
    let metrics = run_in(&images.metrics_server(), &["--version"]);
    assert_eq!(metrics.trim(), kinit::versions::METRICS_SERVER_VERSION);
}
