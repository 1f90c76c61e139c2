//! End to end, against a real Docker engine and the real upstream binaries of the offline
//! bundle: `kinit up` to a Ready node, tutorial workloads through the real kubectl, the
//! cluster network from the host and through `kinit socks`, then resilience (a second up,
//! a crash, a removed container, down + up, a Docker restart) and `down --purge` leaving
//! nothing. When something fails, every component's last log lines are printed and the
//! cluster is purged.
//!
//! Needs root, a running Docker engine and the bundle (scripts/test.sh provides them).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod common;
use common::cluster::{Cluster, WORKLOADS, container_exists, curl, etcd_curl, inspect};
use common::{docker_cli, require_engine, text};

#[test]
fn a_cluster_runs_tutorials_survives_restarts_and_purges_clean() {
    require_engine();
    let c = Cluster::new();

    // ---- up: every step, a Ready node, the admin context merged beside the user's own.
    let first = c.ok(&["up"]);
    for expected in [
        "Starting etcd: created, healthy",
        "Starting the control plane (kinit-master): created; API server ready",
        "Starting kube-proxy (kinit-proxy): created",
        "Applying cluster DNS and RBAC: applied",
        "Waiting for the cluster to be ready: node",
        "Downloading release files: ",
        "Assembling the node image: ",
        "Surviving reboots (kinit-boot): ",
        "Installing kubectl: kubectl v1.36.3 (cached) installed in",
        "Writing the kubeconfig: context \"kinit\" in",
        "Cluster \"kinit\" is ready in",
    ] {
        assert!(
            first.contains(expected),
            "{expected:?} missing from:\n{first}"
        );
    }
    let contexts = c.kubectl_ok(&["config", "get-contexts", "-o", "name"]);
    assert!(
        contexts.contains("prod") && contexts.contains("kinit"),
        "{contexts}"
    );
    assert_eq!(c.kubectl_ok(&["config", "current-context"]).trim(), "kinit");
    let nodes = c.kubectl_ok(&["get", "nodes", "--no-headers"]);
    assert!(nodes.contains(" Ready "), "{nodes}");
    let system = c.kubectl_ok(&["get", "pods", "-n", "kube-system", "--no-headers"]);
    for pod in [
        "kube-apiserver-",
        "kube-controller-manager-",
        "kube-scheduler-",
        "coredns-",
    ] {
        assert!(system.contains(pod), "{pod} missing:\n{system}");
    }
    assert!(
        system.lines().all(|l| l.contains("Running")),
        "not every kube-system pod runs:\n{system}"
    );

    // Security: private files are private; nothing answers without credentials.
    for private in ["admin.conf", "pki/ca.key", "pki/sa.key", "kubelet.conf"] {
        let mode = std::fs::metadata(c.state.join(private)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600, "{private}");
    }
    let anonymous = Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "https://127.0.0.1:6443/api",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&anonymous.stdout),
        "401",
        "anonymous API access"
    );
    let kubelet = Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "https://127.0.0.1:10250/pods",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&kubelet.stdout),
        "401",
        "anonymous kubelet access"
    );
    assert!(
        !etcd_curl(&c.state, "/health", false).status.success(),
        "etcd without a client cert"
    );
    assert!(etcd_curl(&c.state, "/health", true).status.success());

    // ---- tutorial workloads: a Deployment scaled to 3 behind a Service, a two-container pod.
    c.apply(WORKLOADS);
    c.kubectl_ok(&["scale", "deployment", "web", "--replicas=3"]);
    c.web_ready(3);
    c.twoc_ready();
    // Load-balanced: all three pods answer (once kube-proxy has every endpoint; the
    // Service's endpoints trail the pods' readiness by a moment).
    let mut servers = std::collections::BTreeSet::new();
    c.wait_for(
        "all three pods answering the Service",
        Duration::from_secs(60),
        || {
            let page = c.service_answers();
            if let Some(line) = page.lines().find(|l| l.contains("Hello from")) {
                servers.insert(line.to_string());
            }
            if servers.len() == 3 {
                Ok(())
            } else {
                Err(format!("{servers:?}"))
            }
        },
    );
    // A pod IP from the host.
    let pod_ip = c.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].status.podIP}",
    ]);
    assert!(text(&curl(&[&format!("http://{pod_ip}/")])).contains("Hello from"));
    // DNS from a pod, and exec.
    let web_pod = c.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    let by_name = c.kubectl_ok(&[
        "exec",
        &web_pod,
        "--",
        "wget",
        "-qO-",
        "http://web.default.svc.cluster.local/",
    ]);
    assert!(by_name.contains("Hello from"), "{by_name}");
    // Two containers sharing localhost, a memory volume and a Secret.
    let shared = c.kubectl_ok(&[
        "exec",
        "twoc",
        "-c",
        "web",
        "--",
        "cat",
        "/shared/hello",
        "/etc/secret/token",
    ]);
    assert_eq!(shared, "from-client\ns3cr3t");
    c.wait_for(
        "the client container's logs",
        Duration::from_secs(60),
        || {
            let logs = text(&c.kubectl(&["logs", "twoc", "-c", "client"]));
            if logs.contains("Hello from twoc") {
                Ok(())
            } else {
                Err(logs)
            }
        },
    );
    let web_logs = c.kubectl_ok(&["logs", &web_pod]);
    assert!(web_logs.contains("start-web"), "{web_logs}");

    // ---- kinit socks in the background: a pod IP and a Service name through it.
    let detached = c.ok(&["socks", "--detach", "--port", "0"]);
    assert!(
        detached.contains("Running in the background as pid"),
        "{detached}"
    );
    let addr = detached
        .split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in: {detached}"))
        .to_string();
    let again = c.kinit(&["socks", "--detach"]);
    assert!(
        text(&again).contains("already running in the background"),
        "{}",
        text(&again)
    );
    let via_name = curl(&[
        "--socks5-hostname",
        &addr,
        "http://web.default.svc.cluster.local/",
    ]);
    let via_ip = curl(&["--socks5", &addr, &format!("http://{pod_ip}/")]);
    assert!(
        text(&via_name).contains("Hello from"),
        "{}",
        text(&via_name)
    );
    assert!(text(&via_ip).contains("Hello from"), "{}", text(&via_ip));
    let outside = curl(&["--socks5", &addr, "http://192.0.2.254:9/"]);
    assert!(
        !outside.status.success(),
        "a destination outside the cluster was reached"
    );

    // ---- the tutorials: each deploys, is opened through kinit socks, and is removed.
    let web = "kinit-examples/web:1";
    let examples: [(&str, Vec<String>, &str); 3] = [
        (
            "telescope",
            vec![
                format!("telescope={web}"),
                "mongo=kinit-examples/db:1".into(),
            ],
            "Hello from telescope",
        ),
        ("nginx", vec![format!("nginx={web}")], "Hello from nginx-"),
        ("job", vec![format!("busybox={web}")], ""),
    ];
    for (name, overrides, page) in &examples {
        let mut args = vec!["example", name];
        for o in overrides {
            args.extend(["--image-override", o]);
        }
        let out = c.ok(&args);
        if *name == "job" {
            assert!(
                out.contains("The secret says: Hello from a Kubernetes Secret"),
                "{out}"
            );
            assert!(out.contains("Computed: 42"), "{out}");
        } else {
            let url = format!("http://{name}.default.svc.cluster.local/");
            assert!(out.contains(&url), "{out}");
            // kube-proxy programs a new Service a moment after its endpoints are ready.
            c.wait_for(
                &format!("{url} through kinit socks"),
                Duration::from_secs(30),
                || {
                    let through = curl(&["--socks5-hostname", &addr, &url]);
                    if text(&through).contains(page) {
                        Ok(())
                    } else {
                        Err(text(&through))
                    }
                },
            );
            // And each pod IP the example printed: nginx's 3 replicas, telescope's one pod.
            let pod_urls: Vec<&str> = out
                .split_whitespace()
                .filter(|w| w.starts_with("http://10.244."))
                .collect();
            let replicas = if *name == "nginx" { 3 } else { 1 };
            assert_eq!(pod_urls.len(), replicas, "{out}");
            for pod_url in pod_urls {
                let direct = curl(&["--socks5", &addr, pod_url]);
                assert!(
                    text(&direct).contains("Hello from"),
                    "{pod_url}: {}",
                    text(&direct)
                );
            }
        }
        if *name == "telescope" {
            let env = c.kubectl_ok(&[
                "exec",
                "telescope",
                "-c",
                "telescope",
                "--",
                "sh",
                "-c",
                "echo $MONGO_URL",
            ]);
            assert_eq!(env.trim(), "mongodb://localhost:27017/app");
        }
        let again = c.ok(&args);
        assert!(
            again.contains("0 of"),
            "re-deploying {name} changed something: {again}"
        );
        let removed = c.ok(&["example", name, "--delete"]);
        assert!(removed.contains("deleted"), "{removed}");
        let left = c.kubectl_ok(&[
            "get",
            "all,secrets",
            "-l",
            &format!("kinit.io/example={name}"),
            "-o",
            "name",
        ]);
        assert!(left.trim().is_empty(), "{name} left: {left}");
        let gone = c.ok(&["example", name, "--delete"]);
        assert!(gone.contains("nothing of it was there"), "{gone}");
    }

    // ---- status and logs of every component.
    let status: serde_json::Value =
        serde_json::from_str(&c.ok(&["status", "--output", "json"])).unwrap();
    let names: Vec<&str> = status["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "etcd",
            "kubelet",
            "apiserver",
            "controller-manager",
            "scheduler",
            "proxy",
            "coredns",
            "boot"
        ]
    );
    for comp in status["components"].as_array().unwrap() {
        assert_eq!(comp["health"], "healthy", "{comp}");
        assert_eq!(comp["container"]["status"], "running", "{comp}");
    }
    assert_eq!(status["node"]["state"], "Ready");
    assert_eq!(status["socks"]["listen"], addr.as_str());
    // The line vagrant/Vagrantfile looks for before it starts another proxy.
    let human = c.ok(&["status"]);
    assert!(
        human
            .lines()
            .any(|l| l.starts_with("kinit socks: running") && l.contains(addr.as_str())),
        "{human}"
    );
    assert_eq!(
        status["versions"]["apiServer"],
        kinit::versions::KUBERNETES_VERSION
    );
    for comp in [
        "etcd",
        "kubelet",
        "apiserver",
        "controller-manager",
        "scheduler",
        "proxy",
        "coredns",
        "boot",
    ] {
        let logs = c.ok(&["logs", comp, "--tail", "5"]);
        assert!(!logs.trim().is_empty(), "no log lines for {comp}");
    }

    // ---- resilience: a second up is a no-op.
    let again = c.ok(&["up"]);
    assert!(again.contains("Nothing to do"), "{again}");

    // A crash: Docker's restart policy brings etcd back, with the data.
    let restarts: u32 = inspect("kinit-etcd", "{{.RestartCount}}").parse().unwrap();
    let pid = inspect("kinit-etcd", "{{.State.Pid}}");
    assert!(
        Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success()
    );
    c.wait_for("etcd restarted by Docker", Duration::from_secs(60), || {
        let n: u32 = inspect("kinit-etcd", "{{.RestartCount}}").parse().unwrap();
        if n > restarts {
            Ok(())
        } else {
            Err(n.to_string())
        }
    });
    c.all_healthy();

    // A component removed behind kinit's back: up repairs that one and only that one.
    assert!(docker_cli(&["rm", "-f", "kinit-proxy"]).status.success());
    let repaired = c.ok(&["up"]);
    assert!(
        repaired.contains("Starting kube-proxy (kinit-proxy): created"),
        "{repaired}"
    );
    assert!(
        repaired.contains("Starting etcd: running and healthy (already done)"),
        "{repaired}"
    );
    assert!(
        repaired.contains("API server ready at https://")
            && repaired.contains("(kinit-master): API server ready"),
        "{repaired}"
    );
    c.service_answers();

    // Conflicting settings for the existing cluster are refused, nothing changes.
    let conflict = c.kinit(&["up", "--pod-cidr", "10.200.0.0/16"]);
    assert!(!conflict.status.success());
    assert!(
        text(&conflict).contains("--pod-cidr (cluster has 10.244.0.0/16)"),
        "{}",
        text(&conflict)
    );

    // ---- down keeps every object; up brings them back.
    let down = c.ok(&["down"]);
    assert!(
        down.contains("Removed kinit-master, kinit-proxy, kinit-etcd"),
        "{down}"
    );
    assert!(down.contains("Stopped kinit socks"), "{down}");
    assert!(
        !curl(&["--socks5", &addr, &format!("http://{pod_ip}/")])
            .status
            .success()
    );
    let leftovers = docker_cli(&["ps", "-aq", "--filter", "label=io.kubernetes.docker.type"]);
    assert!(
        String::from_utf8_lossy(&leftovers.stdout).trim().is_empty(),
        "pod containers survived down"
    );
    assert!(!container_exists("kinit-master"));
    // As on an air-gapped host: an image gone from Docker comes back from the bundle.
    assert!(
        docker_cli(&["rmi", "--force", &kinit::versions::Images::default().etcd()])
            .status
            .success()
    );
    let back = c.ok(&["up"]);
    assert!(
        back.contains("Making images available: 1 loaded from the bundle, 0 pulled"),
        "{back}"
    );
    c.web_ready(3);
    c.twoc_ready();
    c.service_answers();
    let secret = c.kubectl_ok(&[
        "get",
        "secret",
        "demo-secret",
        "-o",
        "jsonpath={.data.token}",
    ]);
    assert_eq!(secret, "czNjcjN0"); // base64 of s3cr3t

    // ---- the Docker daemon restarts: everything comes back by itself, with every object.
    let restart = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}/scripts/lib.sh && restart_docker",
            env!("CARGO_MANIFEST_DIR")
        ))
        .output()
        .unwrap();
    assert!(
        restart.status.success(),
        "restarting Docker: {}",
        text(&restart)
    );
    c.all_healthy();
    c.web_ready(3);
    c.twoc_ready();
    c.service_answers();

    // ---- down --purge leaves nothing.
    let purge = c.ok(&["down", "--purge"]);
    assert!(purge.contains("Deleted"), "{purge}");
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
    let rules = Command::new("iptables-save")
        .output()
        .expect("iptables-save (scripts/test.sh installs iptables)");
    let rules = String::from_utf8_lossy(&rules.stdout);
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
        !mounts.contains(c.state.to_str().unwrap()),
        "mounts left under the state directory"
    );
    assert!(!c.state.exists(), "the state directory is left");
    let config = std::fs::read_to_string(&c.kubeconfig).unwrap();
    assert!(
        !config.contains("kinit"),
        "the kinit context is left:\n{config}"
    );
    assert!(
        config.contains("prod.example"),
        "the user's own context is gone:\n{config}"
    );
}
