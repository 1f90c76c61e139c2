//! The offline bundle holds the real upstream programs at the pinned versions: each image
//! runs its binary under the upstream name kinit uses, and every binary in the release
//! layout matches the SHA-256 published beside it. Needs Docker and the full bundle
//! (scripts/test.sh builds both).

use std::path::Path;
use std::process::Command;

use kinit::versions::{
    COREDNS_VERSION, CRI_DOCKERD_VERSION, ETCD_IMAGE_TAG, ETCD_VERSION, KUBERNETES_VERSION,
    PAUSE_VERSION,
};
use sha2::{Digest, Sha256};

mod common;
use common::{bundle, docker_cli, require_engine, text};

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
    let node = format!("kinit/node:{KUBERNETES_VERSION}");
    assert!(run_in(&node, &["kubelet", "--version"]).contains(&k8s));
    let cri = run_in(&node, &["cri-dockerd", "--version"]);
    assert!(
        cri.contains(CRI_DOCKERD_VERSION.trim_start_matches('v')),
        "cri-dockerd: {cri}"
    );
    for plugin in ["bridge", "host-local", "loopback", "portmap"] {
        let path = format!("/opt/cni/bin/{plugin}");
        run_in(&node, &["test", "-x", &path]);
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
    let bin = dir.join(format!("release/{KUBERNETES_VERSION}/bin/linux/amd64"));
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
    check_digest(&dir.join(format!("cri-dockerd/{CRI_DOCKERD_VERSION}/cri-dockerd")));
}

fn check_digest(file: &Path) {
    let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let actual: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let published = std::fs::read_to_string(file.with_file_name(format!(
        "{}.sha256",
        file.file_name().unwrap().to_string_lossy()
    )))
    .unwrap_or_else(|e| panic!("{}.sha256: {e}", file.display()));
    assert_eq!(
        published.split_whitespace().next(),
        Some(actual.as_str()),
        "{}",
        file.display()
    );
}
