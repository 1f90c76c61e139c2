//! A kinit cluster for the end-to-end tests: kinit and the kubectl it installed, run
//! against a state directory of the test's own, and the waits the tests share.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::{bundle, docker_cli, text, with_stdin};

pub const WORKLOADS: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: demo-secret, namespace: default}
stringData: {token: s3cr3t}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: kinit-examples/web:1
        imagePullPolicy: Never
        ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
---
# The Telescope + MongoDB pattern: two containers of one pod talking over localhost,
# sharing a memory-backed volume, one reading a Secret.
apiVersion: v1
kind: Pod
metadata: {name: twoc, namespace: default}
spec:
  containers:
  - name: web
    image: kinit-examples/web:1
    imagePullPolicy: Never
    volumeMounts:
    - {name: shared, mountPath: /shared}
    - {name: secret, mountPath: /etc/secret, readOnly: true}
  - name: client
    image: kinit-examples/web:1
    imagePullPolicy: Never
    command: ["sh", "-c", "echo from-client > /shared/hello; while true; do wget -qO- http://127.0.0.1:80/ | grep h1; sleep 5; done"]
    volumeMounts:
    - {name: shared, mountPath: /shared}
  volumes:
  - name: shared
    emptyDir: {medium: Memory}
  - name: secret
    secret: {secretName: demo-secret}
"#;

pub struct Cluster {
    _dir: tempfile::TempDir,
    pub state: PathBuf,
    pub bin: PathBuf,
    /// The user kubeconfig kinit merges into; it starts with someone else's context.
    pub kubeconfig: PathBuf,
}

impl Cluster {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let bin = dir.path().join("bin");
        let kubeconfig = dir.path().join("kube/config");
        std::fs::create_dir_all(kubeconfig.parent().unwrap()).unwrap();
        std::fs::write(
            &kubeconfig,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster: {server: 'https://prod.example:6443'}\n\
             users:\n- name: me\n  user: {token: secret}\ncontexts:\n- name: prod\n  context: {cluster: prod, user: me}\n\
             current-context: prod\n",
        )
        .unwrap();
        Self {
            _dir: dir,
            state,
            bin,
            kubeconfig,
        }
    }

    /// Runs kinit with PATH emptied, so nothing on the host stands in for what kinit
    /// installs or runs; `up` gets the bundle (this host reaches no registry).
    pub fn kinit(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kinit"));
        cmd.arg("--state-dir")
            .arg(&self.state)
            .args(args)
            .env("PATH", "");
        if args.first() == Some(&"up") {
            cmd.arg("--bundle")
                .arg(bundle())
                .arg("--bin-dir")
                .arg(&self.bin)
                .arg("--kubeconfig")
                .arg(&self.kubeconfig);
        }
        cmd.output().expect("the kinit binary runs")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kinit(args);
        assert!(
            out.status.success(),
            "kinit {args:?} failed:\n{}",
            text(&out)
        );
        text(&out)
    }

    /// The kubectl kinit installed, on the user kubeconfig kinit merged into.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(self.bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("kinit installed kubectl")
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.status.success(), "kubectl {args:?}:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn apply(&self, yaml: &str) {
        let out = with_stdin(
            Command::new(self.bin.join("kubectl"))
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(["apply", "-f", "-"]),
            yaml.as_bytes(),
        );
        assert!(out.status.success(), "kubectl apply:\n{}", text(&out));
    }

    /// Waits for `check` to hold, failing with what it last saw.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Result<(), String>,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            match check() {
                Ok(()) => return,
                Err(last) if Instant::now() >= deadline => {
                    panic!("{what}: not within {}s; last: {last}", timeout.as_secs())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    pub fn web_ready(&self, replicas: u32) {
        self.wait_for("web Deployment ready", Duration::from_secs(180), || {
            let out = self.kubectl(&[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.status.readyReplicas}/{.status.updatedReplicas}",
            ]);
            let got = String::from_utf8_lossy(&out.stdout).into_owned();
            if got == format!("{replicas}/{replicas}") {
                Ok(())
            } else {
                Err(format!("{got} {}", text(&out)))
            }
        });
    }

    pub fn twoc_ready(&self) {
        self.wait_for("pod twoc ready", Duration::from_secs(180), || {
            let out = self.kubectl(&[
                "get",
                "pod",
                "twoc",
                "-o",
                "jsonpath={.status.containerStatuses[*].ready}",
            ]);
            let got = String::from_utf8_lossy(&out.stdout).into_owned();
            if got == "true true" {
                Ok(())
            } else {
                Err(format!("{got} {}", text(&out)))
            }
        });
    }

    /// The web Service by ClusterIP, from the host: kube-proxy's rules and the pod network.
    pub fn service_answers(&self) -> String {
        let ip = self.kubectl_ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
        let mut last = String::new();
        for _ in 0..60 {
            let out = curl(&[&format!("http://{ip}/")]);
            last = text(&out);
            if out.status.success() && last.contains("Hello from web-") {
                return last;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("the web Service at {ip} does not answer from the host: {last}");
    }

    pub fn all_healthy(&self) {
        self.wait_for("every component healthy", Duration::from_secs(240), || {
            let out = self.kinit(&["status", "--output", "json"]);
            let status: serde_json::Value =
                serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {}", text(&out)))?;
            let bad: Vec<String> = status["components"]
                .as_array()
                .ok_or("no components")?
                .iter()
                .filter(|c| c["health"] != "healthy")
                .map(|c| format!("{}: {}", c["name"], c["health"]))
                .collect();
            if bad.is_empty() && status["node"]["state"] == "Ready" {
                Ok(())
            } else {
                Err(format!("{bad:?}, node {}", status["node"]["state"]))
            }
        });
    }
}

/// On failure: every component's last log lines, then a purge so the host is clean.
impl Drop for Cluster {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        eprintln!(
            "---- kubectl get pods -A ----\n{}",
            text(&self.kubectl(&["get", "pods", "-A", "-o", "wide"]))
        );
        for c in [
            "etcd",
            "kubelet",
            "apiserver",
            "controller-manager",
            "scheduler",
            "proxy",
            "coredns",
            "boot",
        ] {
            let out = self.kinit(&["logs", c, "--tail", "40"]);
            eprintln!("---- kinit logs {c} ----\n{}", text(&out));
        }
        let out = self.kinit(&["down", "--purge"]);
        eprintln!("---- kinit down --purge ----\n{}", text(&out));
    }
}

pub fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "5"])
        .args(args)
        .output()
        .expect("curl is installed (scripts/test.sh installs it)")
}

pub fn container_exists(name: &str) -> bool {
    docker_cli(&["inspect", name]).status.success()
}

pub fn inspect(name: &str, format: &str) -> String {
    let out = docker_cli(&["inspect", "--format", format, name]);
    assert!(
        out.status.success(),
        "docker inspect {name}: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// curl through an etcd client certificate, for etcd's own API.
pub fn etcd_curl(state: &Path, path: &str, with_cert: bool) -> Output {
    let pki = state.join("pki/etcd");
    let mut args: Vec<String> = vec!["--cacert".into(), pki.join("ca.crt").display().to_string()];
    if with_cert {
        args.extend([
            "--cert".into(),
            pki.join("healthcheck-client.crt").display().to_string(),
            "--key".into(),
            pki.join("healthcheck-client.key").display().to_string(),
        ]);
    }
    args.push(format!("https://127.0.0.1:2379{path}"));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    curl(&refs)
}
