//! End to end, against a real Docker engine and the real upstream binaries of the offline
//! bundle: `kinit up` to a Ready node, tutorial workloads through the real kubectl, the
//! cluster network from the host and through `kinit socks`, then resilience (a second up,
//! a crash, a removed container, down + up, a Docker restart), component settings (feature
//! gates, extra args, the audit log, Pod Security) and `down --purge` leaving nothing.
//!
//! One cluster, one named phase per concern (tests/common/phases.rs): a failed phase is
//! named, with the cluster's logs, pods and events at that moment; the phases that do not
//! need it still run. Phases check state through `kinit status -o json`, the API and the
//! host, not the wording of progress lines; the few messages checked are meant for a user
//! or a script, and say so.
//!
//! Needs root, a running Docker engine and the bundle (scripts/test.sh provides them).

use std::collections::BTreeMap;
use std::time::Duration;

use kinit::versions::{Images, KUBERNETES_VERSION};

#[path = "cluster/addons.rs"]
mod addons;
mod common;
use common::cluster::{
    COMPONENTS, Cluster, HOST_FILES, WORKLOADS, component, container_exists, curl, etcd_curl,
};
use common::component_settings::component_settings;
use common::phases::Phases;
use common::{docker_cli, lib_sh, require_engine, run_ok, text};

const UP: &str = "up to a Ready node";
const WORKLOADS_RUN: &str = "tutorial workloads run";
const SOCKS: &str = "kinit socks --detach";
const DOWN_UP: &str = "down keeps every object, up brings them back";
const STORAGE: &str = "a StatefulSet's volume survives its pod";
const METRICS: &str = "kubectl top answers";
const LOAD_BALANCER: &str = "a LoadBalancer Service answers on the node's address";
const DOCKER_RESTART: &str = "a Docker restart brings everything back";
const INGRESS: &str = "an Ingress answers by host name over HTTP and HTTPS";

#[test]
fn a_cluster_runs_tutorials_survives_restarts_and_purges_clean() {
    require_engine();
    let c = Cluster::new();
    let token = std::cell::RefCell::new(String::new());
    let mut phases = Phases::new(|| c.diagnostics());
    phases.run(UP, &[], || up(&c));
    phases.run("private files, no anonymous access", &[UP], || security(&c));
    phases.run(WORKLOADS_RUN, &[UP], || workloads(&c));
    phases.run(SOCKS, &[WORKLOADS_RUN], || socks(&c));
    phases.run("the tutorials, through kinit socks", &[SOCKS], || {
        tutorials(&c)
    });
    phases.run("status and logs of every component", &[UP], || {
        status_and_logs(&c)
    });
    phases.run("a second up changes nothing", &[UP], || second_up(&c));
    phases.run("Docker restarts a killed etcd", &[UP], || etcd_crash(&c));
    phases.run("up repairs a removed kinit-proxy, only it", &[UP], || {
        repair(&c)
    });
    phases.run(
        "a node image tag moved to another image is made again",
        &[UP],
        || moved_node_image_tag(&c),
    );
    phases.run("conflicting settings are refused", &[UP], || conflict(&c));
    phases.run(
        "feature gates, extra args, the audit log and Pod Security reach the components",
        &[UP],
        || component_settings(&c),
    );
    phases.run(STORAGE, &[UP], || *token.borrow_mut() = addons::storage(&c));
    phases.run(METRICS, &[UP], || addons::metrics(&c));
    phases.run("an HPA on CPU scales a Deployment", &[METRICS], || {
        addons::autoscaling(&c)
    });
    phases.run(LOAD_BALANCER, &[SOCKS], || {
        addons::load_balancer(&c, &socks_addr(&c).expect("a detached proxy"))
    });
    phases.run(INGRESS, &[LOAD_BALANCER], || {
        addons::ingress(&c, &socks_addr(&c).expect("a detached proxy"))
    });
    phases.run(
        "the ingress tutorial: served by host name, its data outlives its pod",
        &[INGRESS, STORAGE],
        || addons::tutorial(&c),
    );
    phases.run(DOWN_UP, &[WORKLOADS_RUN], || down_and_up(&c));
    phases.run("the volume survives down + up", &[STORAGE, DOWN_UP], || {
        assert_eq!(addons::token(&c), *token.borrow());
    });
    phases.run(DOCKER_RESTART, &[DOWN_UP], || docker_restart(&c));
    phases.run(
        "the volume survives a Docker restart",
        &[STORAGE, DOCKER_RESTART],
        || assert_eq!(addons::token(&c), *token.borrow()),
    );
    phases.run(
        "addons disabled leave nothing, enabled come back",
        &[STORAGE, METRICS, LOAD_BALANCER, INGRESS],
        || addons::disable_and_enable(&c),
    );
    // Runs whatever failed before: it is also what leaves the host clean.
    phases.run("down --purge leaves nothing", &[], || {
        c.ok(&["down", "--purge"]);
        c.assert_purged();
    });
    phases.finish();
}

/// Every component running, a Ready node, the admin context merged beside the user's own,
/// the pinned kubectl installed.
fn up(c: &Cluster) {
    c.ok(&["up"]);
    let status = c.status();
    assert_eq!(status["node"]["state"], "Ready", "{status:#}");
    for name in COMPONENTS {
        let container = &component(&status, name)["container"];
        assert_eq!(container["status"], "running", "{name}: {status:#}");
    }
    for file in HOST_FILES {
        assert!(std::path::Path::new(file).is_file(), "{file} not written");
    }
    let contexts = c.kubectl_ok(&["config", "get-contexts", "-o", "name"]);
    assert!(
        contexts.lines().any(|l| l == "prod") && contexts.lines().any(|l| l == "kinit"),
        "{contexts}"
    );
    assert_eq!(c.kubectl_ok(&["config", "current-context"]).trim(), "kinit");
    let version: serde_json::Value =
        serde_json::from_str(&c.kubectl_ok(&["version", "--client", "-o", "json"])).unwrap();
    assert_eq!(version["clientVersion"]["gitVersion"], KUBERNETES_VERSION);
    // Addons are applied, not awaited, by up: their pods may still be starting.
    c.wait_for(
        "every kube-system pod running",
        Duration::from_secs(90),
        || {
            let system = c.kubectl_ok(&[
                "get",
                "pods",
                "-n",
                "kube-system",
                "-o",
                r#"jsonpath={range .items[*]}{.metadata.name} {.status.phase}{"\n"}{end}"#,
            ]);
            for pod in [
                "kube-apiserver-",
                "kube-controller-manager-",
                "kube-scheduler-",
                "coredns-",
                "metrics-server-",
            ] {
                if !system.contains(pod) {
                    return Err(format!("{pod} missing:\n{system}"));
                }
            }
            if system.lines().all(|l| l.ends_with(" Running")) {
                Ok(())
            } else {
                Err(format!("not every kube-system pod runs:\n{system}"))
            }
        },
    );
}

/// The HTTP status code of `url`, asked without credentials.
fn anonymous_code(url: &str) -> String {
    run_ok(&["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", url])
}

fn security(c: &Cluster) {
    use std::os::unix::fs::PermissionsExt;
    for private in ["admin.conf", "pki/ca.key", "pki/sa.key", "kubelet.conf"] {
        let mode = std::fs::metadata(c.state.join(private)).unwrap();
        assert_eq!(mode.permissions().mode() & 0o777, 0o600, "{private}");
    }
    assert_eq!(
        anonymous_code("https://127.0.0.1:6443/api"),
        "401",
        "anonymous API access"
    );
    assert_eq!(
        anonymous_code("https://127.0.0.1:10250/pods"),
        "401",
        "anonymous kubelet access"
    );
    assert!(
        !etcd_curl(&c.state, "/health", false).status.success(),
        "etcd without a client cert"
    );
    assert!(etcd_curl(&c.state, "/health", true).status.success());
}

fn web_pod_ip(c: &Cluster) -> String {
    c.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].status.podIP}",
    ])
}

/// A Deployment scaled to 3 behind a Service, a two-container pod: reached from the host,
/// by cluster DNS from a pod, through exec and logs.
fn workloads(c: &Cluster) {
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
    let pod_ip = web_pod_ip(c);
    assert!(text(&curl(&[&format!("http://{pod_ip}/")])).contains("Hello from"));
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
}

/// The detached proxy's address, as `kinit status` lists it.
fn socks_addr(c: &Cluster) -> Option<String> {
    c.status()["socks"]["listen"].as_str().map(String::from)
}

/// `kinit socks` in the background: a pod IP and a Service name through it, nothing else.
fn socks(c: &Cluster) {
    c.ok(&["socks", "--detach", "--port", "0"]);
    let first = c.status()["socks"].clone();
    let addr = first["listen"]
        .as_str()
        .unwrap_or_else(|| panic!("kinit status lists no detached proxy: {first}"));
    let again = c.kinit(&["socks", "--detach"]);
    assert!(!again.status.success(), "a second proxy started");
    // The refusal is for the user: it must say why.
    assert!(
        text(&again).contains("already running in the background"),
        "{}",
        text(&again)
    );
    assert_eq!(
        c.status()["socks"],
        first,
        "the second --detach replaced it"
    );
    let via_name = curl(&[
        "--socks5-hostname",
        addr,
        "http://web.default.svc.cluster.local/",
    ]);
    assert!(
        text(&via_name).contains("Hello from"),
        "{}",
        text(&via_name)
    );
    let via_ip = curl(&["--socks5", addr, &format!("http://{}/", web_pod_ip(c))]);
    assert!(text(&via_ip).contains("Hello from"), "{}", text(&via_ip));
    let outside = curl(&["--socks5", addr, "http://192.0.2.254:9/"]);
    assert!(
        !outside.status.success(),
        "a destination outside the cluster was reached"
    );
    // vagrant/Vagrantfile looks for this line before it starts another proxy.
    let human = c.ok(&["status"]);
    assert!(
        human
            .lines()
            .any(|l| l.starts_with("kinit socks: running") && l.contains(addr)),
        "{human}"
    );
}

/// What identifies an example's objects and their specs: a re-deploy that recreates or
/// changes one changes this. Generation where the kind has one (a status update does not
/// bump it), the resourceVersion where it does not (Secrets and Services have no status
/// that moves).
fn example_objects(c: &Cluster, name: &str) -> BTreeMap<String, String> {
    let list: serde_json::Value = serde_json::from_str(&c.kubectl_ok(&[
        "get",
        "deployments,pods,jobs,services,secrets",
        "-l",
        &format!("kinit.io/example={name}"),
        "-o",
        "json",
    ]))
    .unwrap();
    let meta = |o: &serde_json::Value, key: &str| o["metadata"][key].to_string();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let version = match o["metadata"]["generation"].is_null() {
                true => meta(o, "resourceVersion"),
                false => meta(o, "generation"),
            };
            let key = format!("{}/{}", o["kind"], meta(o, "name"));
            (key, format!("{} {version}", meta(o, "uid")))
        })
        .collect()
}

/// Each tutorial deploys, is opened through kinit socks, re-deploys as a no-op and is
/// removed.
fn tutorials(c: &Cluster) {
    let addr = socks_addr(c).expect("the detached proxy runs");
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
        c.ok(&args);
        if *name == "job" {
            let succeeded =
                c.kubectl_ok(&["get", "job", "hello", "-o", "jsonpath={.status.succeeded}"]);
            assert_eq!(succeeded, "1", "the job example's Job");
            let out = c.kubectl_ok(&["logs", "job/hello"]);
            assert!(
                out.contains("The secret says: Hello from a Kubernetes Secret"),
                "{out}"
            );
            assert!(out.contains("Computed: 42"), "{out}");
        } else {
            let url = format!("http://{name}.default.svc.cluster.local/");
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
            // And each pod IP: nginx's 3 replicas, telescope's one pod.
            let ips = c.kubectl_ok(&[
                "get",
                "pods",
                "-l",
                &format!("kinit.io/example={name}"),
                "-o",
                "jsonpath={.items[*].status.podIP}",
            ]);
            let ips: Vec<&str> = ips.split_whitespace().collect();
            let replicas = if *name == "nginx" { 3 } else { 1 };
            assert_eq!(ips.len(), replicas, "{ips:?}");
            for ip in ips {
                let direct = curl(&["--socks5", &addr, &format!("http://{ip}/")]);
                assert!(
                    text(&direct).contains("Hello from"),
                    "{ip}: {}",
                    text(&direct)
                );
            }
        }
        if *name == "telescope" {
            let env = c.kubectl_ok(&[
                "exec",
                "deploy/telescope",
                "-c",
                "telescope",
                "--",
                "sh",
                "-c",
                "echo $MONGO_URL",
            ]);
            assert_eq!(env.trim(), "mongodb://localhost:27017/app");
        }
        let deployed = example_objects(c, name);
        assert!(!deployed.is_empty(), "no objects labelled for {name}");
        c.ok(&args);
        assert_eq!(
            example_objects(c, name),
            deployed,
            "re-deploying {name} changed something"
        );
        // Deleting twice: the second finds nothing and is no error.
        for _ in 0..2 {
            c.ok(&["example", name, "--delete"]);
            let left = c.kubectl_ok(&[
                "get",
                "all,secrets",
                "-l",
                &format!("kinit.io/example={name}"),
                "-o",
                "name",
            ]);
            assert!(left.trim().is_empty(), "{name} left: {left}");
        }
    }
}

fn status_and_logs(c: &Cluster) {
    let status = c.status();
    let names: Vec<&str> = status["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, COMPONENTS);
    for comp in status["components"].as_array().unwrap() {
        assert_eq!(comp["health"], "healthy", "{comp}");
        assert_eq!(comp["container"]["status"], "running", "{comp}");
    }
    assert_eq!(status["node"]["state"], "Ready");
    assert_eq!(status["versions"]["apiServer"], KUBERNETES_VERSION);
    for comp in COMPONENTS {
        let logs = c.ok(&["logs", comp, "--tail", "5"]);
        assert!(!logs.trim().is_empty(), "no log lines for {comp}");
    }
}

fn second_up(c: &Cluster) {
    let before = c.kinit_containers_started();
    let again = c.ok(&["up"]);
    // The user is told that nothing needed doing.
    assert!(again.contains("Nothing to do"), "{again}");
    assert_eq!(
        c.kinit_containers_started(),
        before,
        "up restarted a container"
    );
}

/// Docker's restart policy brings a killed etcd back, with its data.
fn etcd_crash(c: &Cluster) {
    let etcd = component(&c.status(), "etcd")["container"].clone();
    let restarts = etcd["restart_count"]
        .as_i64()
        .unwrap_or_else(|| panic!("no restart count: {etcd}"));
    run_ok(&["kill", "-9", &etcd["pid"].to_string()]);
    c.wait_for("etcd restarted by Docker", Duration::from_secs(60), || {
        let status = c.try_status()?;
        let now = &component(&status, "etcd")["container"];
        match now["restart_count"].as_i64() {
            Some(n) if n > restarts => Ok(()),
            _ => Err(now.to_string()),
        }
    });
    c.all_healthy();
}

/// The node image's tag moved to another image (as `docker tag` or a pull could): `kinit
/// up` finds the tag no longer names the image it recorded, assembles it again, and the
/// tag names kinit's image once more; the running containers keep theirs.
fn moved_node_image_tag(c: &Cluster) {
    let inspect = |what: &str| {
        let out = run_ok(&["docker", "inspect", "-f", what, "kinit-master"]);
        out.trim().to_string()
    };
    let (tag, id) = (inspect("{{.Config.Image}}"), inspect("{{.Image}}"));
    assert!(tag.starts_with("kinit.invalid/node:"), "{tag}");
    let image_id = |name: &str| {
        let out = run_ok(&["docker", "image", "inspect", "-f", "{{.Id}}", name]);
        out.trim().to_string()
    };
    let pause = Images::default().pause();
    run_ok(&["docker", "tag", &pause, &tag]);
    assert_ne!(image_id(&tag), id);
    let before = c.kinit_containers_started();
    let out = c.ok(&["up"]);
    assert!(
        out.contains("its tag had been moved to another image"),
        "{out}"
    );
    assert_eq!(image_id(&tag), id, "the tag still names another image");
    assert_eq!(
        c.kinit_containers_started(),
        before,
        "up restarted a container"
    );
}

/// A component removed behind kinit's back: up makes that one again and leaves the
/// others running as they are.
fn repair(c: &Cluster) {
    let before = c.kinit_containers_started();
    run_ok(&["docker", "rm", "-f", "kinit-proxy"]);
    c.ok(&["up"]);
    let after = c.kinit_containers_started();
    for ((name, was), (_, is)) in before.iter().zip(&after) {
        if name == "proxy" {
            assert_ne!(is, was, "kinit-proxy was not made again");
        } else {
            assert_eq!(is, was, "up restarted {name}");
        }
    }
    c.all_healthy();
    c.service_answers();
}

/// Settings that contradict the existing cluster are refused, and nothing changes.
fn conflict(c: &Cluster) {
    let before = c.kinit_containers_started();
    let refused = c.kinit(&["up", "--pod-cidr", "10.200.0.0/16"]);
    assert!(!refused.status.success(), "{}", text(&refused));
    // The refusal is for the user: it names the flag and what the cluster has.
    assert!(
        text(&refused).contains("--pod-cidr (cluster has 10.244.0.0/16)"),
        "{}",
        text(&refused)
    );
    assert_eq!(c.status()["cluster"]["podCidr"], "10.244.0.0/16");
    assert_eq!(c.kinit_containers_started(), before);
}

/// `down` removes every container and the proxy but keeps the data; an image gone from
/// Docker comes back from the bundle, as on an air-gapped host; every object is back.
fn down_and_up(c: &Cluster) {
    let proxy = socks_addr(c);
    c.ok(&["down"]);
    let status = c.status();
    for name in COMPONENTS {
        let container = &component(&status, name)["container"];
        assert!(container.is_null(), "{name} left: {container}");
    }
    assert!(status["socks"].is_null(), "kinit socks left: {status:#}");
    if let Some(addr) = proxy {
        assert!(
            std::net::TcpStream::connect(&addr).is_err(),
            "kinit socks still listens on {addr}"
        );
    }
    let pods = docker_cli(&["ps", "-aq", "--filter", "label=io.kubernetes.docker.type"]);
    assert!(
        String::from_utf8_lossy(&pods.stdout).trim().is_empty(),
        "pod containers survived down"
    );
    assert!(!container_exists("kinit-master"));
    let etcd = Images::default().etcd();
    run_ok(&["docker", "rmi", "--force", &etcd]);
    c.ok(&["up"]);
    // This host reaches no registry: the image is back because up loaded it.
    assert!(
        docker_cli(&["image", "inspect", &etcd]).status.success(),
        "{etcd} is not back"
    );
    assert_eq!(
        component(&c.status(), "etcd")["container"]["image"],
        etcd.as_str()
    );
    c.workloads_back(3);
}

/// The Docker daemon restarts: everything comes back by itself, with every object.
fn docker_restart(c: &Cluster) {
    lib_sh("restart_docker");
    c.all_healthy();
    c.workloads_back(3);
}
