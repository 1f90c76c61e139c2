//! A kinit cluster for the end-to-end tests: kinit and the kubectl it installed, run
//! against a state directory of the test's own, and the waits the tests share.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::{bundle, docker_cli, iptables_save, text, with_stdin};

/// The components of `kinit status` and `kinit logs`, in their order.
pub const COMPONENTS: [&str; 9] = [
    "etcd",
    "kubelet",
    "apiserver",
    "controller-manager",
    "scheduler",
    "proxy",
    "router",
    "coredns",
    "boot",
];

/// The containers kinit itself makes (the control plane's are pods of kinit-master).
pub const KINIT_CONTAINERS: [&str; 4] = ["kinit-etcd", "kinit-master", "kinit-proxy", "kinit-boot"];

/// What `kinit up` writes on the host outside its state directory.
pub const HOST_FILES: [&str; 2] = [
    "/etc/sysctl.d/99-kinit.conf",
    "/etc/modules-load.d/kinit.conf",
];

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

    /// The node's InternalIP, or what kubectl said instead (the API server may be
    /// restarting).
    pub fn node_address(&self) -> Result<String, String> {
        let out = self.kubectl(&[
            "get",
            "nodes",
            "-o",
            r#"jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}"#,
        ]);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(text(&out))
        }
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

    /// `kinit status -o json`, or why there is none.
    pub fn try_status(&self) -> Result<serde_json::Value, String> {
        let out = self.kinit(&["status", "--output", "json"]);
        if !out.status.success() {
            return Err(text(&out));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {}", text(&out)))
    }

    pub fn status(&self) -> serde_json::Value {
        self.try_status()
            .unwrap_or_else(|e| panic!("kinit status -o json: {e}"))
    }

    /// When each of kinit's own containers started: `up` must leave the running ones be.
    pub fn kinit_containers_started(&self) -> Vec<(String, String)> {
        let status = self.status();
        ["etcd", "kubelet", "proxy", "boot"]
            .into_iter()
            .map(|name| {
                let container = &component(&status, name)["container"];
                let started = container["started_at"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name} has no start time: {container}"));
                (name.to_string(), started.to_string())
            })
            .collect()
    }

    pub fn all_healthy(&self) {
        self.wait_for("every component healthy", Duration::from_secs(240), || {
            let status = self.try_status()?;
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

    /// The objects of WORKLOADS are all there and serve: `replicas` web pods, the
    /// two-container pod, the Service, the Secret.
    pub fn workloads_back(&self, replicas: u32) {
        self.web_ready(replicas);
        self.twoc_ready();
        self.service_answers();
        let secret = self.kubectl_ok(&[
            "get",
            "secret",
            "demo-secret",
            "-o",
            "jsonpath={.data.token}",
        ]);
        assert_eq!(secret, "czNjcjN0"); // base64 of s3cr3t
    }

    /// The cluster as it is now, for a reader of a failure: kinit's view, the
    /// containers, the pods and events, and every component's last log lines.
    pub fn diagnostics(&self) {
        eprintln!("---- kinit status ----\n{}", text(&self.kinit(&["status"])));
        let containers = docker_cli(&[
            "ps",
            "-a",
            "--filter",
            "label=io.kinit.managed=true",
            "--format",
            "table {{.Names}}\t{{.Status}}\t{{.Image}}",
        ]);
        eprintln!("---- kinit's containers ----\n{}", text(&containers));
        // Bounded: a cluster without an API server must not hold the report up.
        let timeout = "--request-timeout=10s";
        let pods = self.kubectl(&["get", "pods", "-A", "-o", "wide", timeout]);
        eprintln!("---- kubectl get pods -A -o wide ----\n{}", text(&pods));
        let events = self.kubectl(&["get", "events", "-A", "--sort-by=.lastTimestamp", timeout]);
        let events = text(&events);
        let last: Vec<&str> = events.lines().rev().take(30).collect();
        eprintln!("---- the last 30 events ----");
        last.iter().rev().for_each(|l| eprintln!("{l}"));
        for c in COMPONENTS {
            let out = self.kinit(&["logs", c, "--tail", "40"]);
            eprintln!("---- kinit logs {c} --tail 40 ----\n{}", text(&out));
        }
    }

    /// `kinit down --purge` left nothing: no container, iptables rule, bridge, mount,
    /// state, host setting or kubeconfig context of kinit's, and the user's own context.
    pub fn assert_purged(&self) {
        let containers = docker_cli(&["ps", "-aq", "--filter", "label=io.kinit.managed=true"]);
        assert!(
            String::from_utf8_lossy(&containers.stdout)
                .trim()
                .is_empty(),
            "kinit containers left"
        );
        let pods = docker_cli(&["ps", "-aq", "--filter", "label=io.kubernetes.docker.type"]);
        assert!(
            String::from_utf8_lossy(&pods.stdout).trim().is_empty(),
            "pod containers left"
        );
        let rules = iptables_save();
        let ours: Vec<&str> = rules
            .lines()
            .filter(|l| l.contains("KUBE-") || l.contains("CNI-") || l.contains("KINIT-"))
            .collect();
        assert!(ours.is_empty(), "iptables rules left: {ours:#?}");
        assert!(
            !Path::new("/sys/class/net/cni0").exists(),
            "the cni0 bridge is left"
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(self.state.to_str().unwrap()),
            "mounts left under the state directory"
        );
        assert!(!self.state.exists(), "the state directory is left");
        for file in HOST_FILES {
            assert!(!Path::new(file).exists(), "{file} is left");
        }
        let config = std::fs::read_to_string(&self.kubeconfig).unwrap();
        assert!(
            !config.contains("kinit"),
            "the kinit context is left:\n{config}"
        );
        assert!(
            config.contains("prod.example"),
            "the user's own context is gone:\n{config}"
        );
    }
}

/// A failed test purges what it brought up, so the host is clean for the next; the
/// phases have printed the diagnostics already.
impl Drop for Cluster {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let out = self.kinit(&["down", "--purge"]);
        eprintln!("---- kinit down --purge ----\n{}", text(&out));
    }
}

/// One component of `kinit status -o json`, by name.
pub fn component<'s>(status: &'s serde_json::Value, name: &str) -> &'s serde_json::Value {
    status["components"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no component {name} in the status:\n{status:#}"))
}

pub fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "5"])
        .args(args)
        .output()
        .expect("curl is installed (scripts/test.sh installs it)")
}

pub fn container_exists(name: &str) -> bool {
    docker_cli(&["inspect", "--type", "container", name])
        .status
        .success()
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
