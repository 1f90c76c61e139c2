//! The default addons end to end: a StatefulSet's claim bound by the storage addon, its
//! data surviving the pod and down + up; `kubectl top` through metrics-server; a
//! LoadBalancer Service on the node's address, from the host, through `kinit socks` and
//! from a neighbouring machine; and each addon disabled leaving none of its objects, then
//! enabled again.

use std::process::Command;
use std::time::Duration;

use crate::common::cluster::{Cluster, curl};
use crate::common::neighbour::Neighbour;
use crate::common::text;

/// A StatefulSet whose pod writes a token into its claim once, and keeps it.
const STATEFUL: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: keeper, namespace: default}
spec:
  serviceName: keeper
  replicas: 1
  selector: {matchLabels: {app: keeper}}
  template:
    metadata: {labels: {app: keeper}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: keeper
        image: kinit-examples/web:1
        imagePullPolicy: Never
        command: ["sh", "-c", "[ -f /data/token ] || cat /proc/sys/kernel/random/uuid > /data/token; exec sleep 100000"]
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 16Mi}}
"#;

/// Every kind an addon makes, for listing what is left of it by its label.
const KINDS: &str = "deployments,replicasets,pods,services,serviceaccounts,configmaps,roles,\
rolebindings,clusterroles,clusterrolebindings,namespaces,storageclasses,apiservices,ingressclasses";

fn keeper_ready(c: &Cluster) {
    c.wait_for("the keeper pod ready", Duration::from_secs(120), || {
        let out = c.kubectl(&[
            "get",
            "pod",
            "keeper-0",
            "-o",
            "jsonpath={.status.containerStatuses[0].ready}",
        ]);
        match String::from_utf8_lossy(&out.stdout).as_ref() {
            "true" => Ok(()),
            _ => Err(text(&out)),
        }
    });
}

/// The token the keeper pod wrote into its volume.
pub fn token(c: &Cluster) -> String {
    keeper_ready(c);
    let token = c.kubectl_ok(&["exec", "keeper-0", "--", "cat", "/data/token"]);
    assert_eq!(token.trim().len(), 36, "{token:?}");
    token
}

/// The claim binds within seconds to a volume under the state directory, and its data
/// survives the pod.
pub fn storage(c: &Cluster) -> String {
    let class = c.kubectl_ok(&["get", "storageclass", "standard", "-o", "json"]);
    let class: serde_json::Value = serde_json::from_str(&class).unwrap();
    assert_eq!(
        class["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"],
        "true"
    );
    c.apply(STATEFUL);
    // The StatefulSet's controller makes the claim: after a control-plane restart (the
    // phase before restarts it) that may take a moment, so "not found" means not yet.
    c.wait_for("the claim bound", Duration::from_secs(60), || {
        let out = c.kubectl(&[
            "get",
            "pvc",
            "data-keeper-0",
            "-o",
            "jsonpath={.status.phase}",
        ]);
        match String::from_utf8_lossy(&out.stdout).trim() {
            "Bound" => Ok(()),
            _ => Err(text(&out)),
        }
    });
    let first = token(c);
    let volumes = c.state.join("local-path");
    let dirs: Vec<_> = std::fs::read_dir(&volumes)
        .unwrap_or_else(|e| panic!("{}: {e}", volumes.display()))
        .collect();
    assert_eq!(dirs.len(), 1, "one volume under {}", volumes.display());
    c.kubectl_ok(&["delete", "pod", "keeper-0", "--wait=true"]);
    assert_eq!(token(c), first, "the data did not survive the pod");
    first
}

/// `kubectl top` answers once metrics-server has scraped the kubelet (it verifies the
/// kubelet's certificate: no --kubelet-insecure-tls).
pub fn metrics(c: &Cluster) {
    for what in [&["top", "nodes"][..], &["top", "pods", "-A"][..]] {
        c.wait_for(
            &format!("kubectl {what:?}"),
            Duration::from_secs(240),
            || {
                let out = c.kubectl(what);
                if out.status.success() && String::from_utf8_lossy(&out.stdout).lines().count() > 1
                {
                    Ok(())
                } else {
                    Err(text(&out))
                }
            },
        );
    }
}

/// `kinit addons list`: each addon's enabled column and state.
fn listed(c: &Cluster) -> Vec<(String, String, String)> {
    c.ok(&["addons", "list"])
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next()?.to_string();
            let enabled = words.next()?.to_string();
            Some((name, enabled, words.collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

/// Every addon listed; those named enabled and ready, the others disabled with nothing left.
fn all_ready(c: &Cluster, enabled: &[&str]) {
    c.wait_for(
        &format!("addons {enabled:?} enabled and ready, the others disabled"),
        Duration::from_secs(240),
        || {
            let list = listed(c);
            let as_wanted = list.iter().all(|(name, e, s)| {
                if enabled.contains(&name.as_str()) {
                    e == "yes" && s == "ready"
                } else {
                    e == "no" && s == "-"
                }
            });
            if list.len() == ADDONS.len() && as_wanted {
                Ok(())
            } else {
                Err(format!("{list:?}"))
            }
        },
    );
}

/// Every addon, in the order they can be disabled (the ingress controller needs the load
/// balancer).
const ADDONS: [&str; 4] = ["ingress", "storage", "metrics-server", "load-balancer"];
const DEFAULTS: [&str; 3] = ["storage", "metrics-server", "load-balancer"];

fn left_of(c: &Cluster, addon: &str) -> String {
    let selector = format!("kinit/addon={addon}");
    c.kubectl_ok(&["get", KINDS, "-A", "-l", &selector, "-o", "name"])
}

/// Storage refuses to go while its volume exists; each addon disabled leaves none of its
/// objects and is listed as disabled; enabled again, each is ready.
pub fn disable_and_enable(c: &Cluster) {
    all_ready(c, &ADDONS);
    // The load balancer cannot go while the ingress controller needs it, and the ingress
    // tutorial does not deploy without the ingress controller.
    let out = c.kinit(&["addons", "disable", "load-balancer"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("the ingress addon needs load-balancer"),
        "{}",
        text(&out)
    );
    let out = c.kinit(&["addons", "disable", "storage"]);
    assert!(!out.status.success(), "{}", text(&out));
    let volume = c.kubectl_ok(&[
        "get",
        "pvc",
        "data-keeper-0",
        "-o",
        "jsonpath={.spec.volumeName}",
    ]);
    assert!(text(&out).contains(&volume), "{}", text(&out));
    c.kubectl_ok(&["delete", "statefulset", "keeper", "--wait=true"]);
    c.kubectl_ok(&["delete", "pvc", "data-keeper-0", "--wait=true"]);
    let volumes = c.state.join("local-path");
    c.wait_for(
        "the volume and its data deleted",
        Duration::from_secs(120),
        || {
            let pvs = c.kubectl_ok(&["get", "pv", "-o", "name"]);
            let dirs = std::fs::read_dir(&volumes).map(|d| d.count()).unwrap_or(0);
            if pvs.trim().is_empty() && dirs == 0 {
                Ok(())
            } else {
                Err(format!("volumes: {pvs:?}, {dirs} directories"))
            }
        },
    );
    for addon in ADDONS {
        c.ok(&["addons", "disable", addon]);
        let left = left_of(c, addon);
        assert!(left.trim().is_empty(), "{addon} left:\n{left}");
        c.ok(&["addons", "disable", addon]); // idempotent
    }
    // No Service keeps the address the load balancer gave it.
    assert_eq!(external_ip(c, LB_SERVICE), "");
    assert!(
        listed(c).iter().all(|(_, e, s)| e == "no" && s == "-"),
        "{:?}",
        listed(c)
    );
    assert!(!c.kubectl(&["top", "nodes"]).status.success());
    let out = c.kinit(&["example", "telescope-ingress"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("needs the storage and ingress addons"),
        "{}",
        text(&out)
    );
    for addon in DEFAULTS {
        c.ok(&["addons", "enable", addon]);
        c.ok(&["addons", "enable", addon]); // idempotent
    }
    all_ready(c, &DEFAULTS);
    metrics(c);
    wait_external_ip(c, LB_SERVICE, &node_ip(c));
}

/// The tutorial's web pods behind a LoadBalancer Service on port 8088.
const LB_SERVICE: &str = "web-lb";
const LB_PORT: u16 = 8088;

fn lb_service(name: &str, port: u16) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  type: LoadBalancer
  selector: {{app: web}}
  ports:
  - {{port: {port}, targetPort: 80, protocol: TCP}}
"
    )
}

fn node_ip(c: &Cluster) -> String {
    c.node_address()
        .unwrap_or_else(|e| panic!("the node's address: {e}"))
}

fn external_ip(c: &Cluster, service: &str) -> String {
    external_ip_in(c, "default", service)
}

fn external_ip_in(c: &Cluster, namespace: &str, service: &str) -> String {
    c.kubectl_ok(&[
        "get",
        "service",
        "-n",
        namespace,
        service,
        "-o",
        "jsonpath={.status.loadBalancer.ingress[*].ip}",
    ])
}

fn wait_external_ip(c: &Cluster, service: &str, want: &str) {
    wait_external_ip_in(c, "default", service, want);
}

fn wait_external_ip_in(c: &Cluster, namespace: &str, service: &str, want: &str) {
    c.wait_for(
        &format!("Service {namespace}/{service} to get the address {want}"),
        Duration::from_secs(60),
        || match external_ip_in(c, namespace, service) {
            ip if ip == want => Ok(()),
            ip => Err(format!("it has {ip:?}")),
        },
    );
}

/// A LoadBalancer Service gets the node's address and answers on it from the host,
/// through `kinit socks` (at `socks`) and from a neighbouring machine; a port another
/// Service or a host program holds leaves a Service pending, with an event saying why.
pub fn load_balancer(c: &Cluster, socks: &str) {
    let ip = node_ip(c);
    c.apply(&lb_service(LB_SERVICE, LB_PORT));
    wait_external_ip(c, LB_SERVICE, &ip);
    let url = format!("http://{ip}:{LB_PORT}/");
    // kube-proxy programs the address a moment after the status shows it.
    c.wait_for(
        &format!("{url} to answer from the host"),
        Duration::from_secs(30),
        || {
            let direct = curl(&[&url]);
            if text(&direct).contains("Hello from") {
                Ok(())
            } else {
                Err(text(&direct))
            }
        },
    );
    let proxied = curl(&["--socks5", socks, &url]);
    assert!(text(&proxied).contains("Hello from"), "{}", text(&proxied));
    let lan = Neighbour::new();
    lan.route_to(&ip);
    let neighbour = lan.run("curl", &["-sS", "--max-time", "10", &url]);
    assert!(
        text(&neighbour).contains("Hello from"),
        "{}",
        text(&neighbour)
    );
    drop(lan);

    // The same port again, the API server's port and SSH's: all wait, and say why.
    c.apply(&lb_service("web-lb-again", LB_PORT));
    c.apply(&lb_service("web-lb-api", 6443));
    c.apply(&lb_service("web-lb-ssh", 22));
    for (service, why) in [
        (
            "web-lb-again",
            format!("{LB_PORT}/TCP is Service default/{LB_SERVICE}'s"),
        ),
        (
            "web-lb-api",
            "6443/TCP is reserved for the API server".to_string(),
        ),
        ("web-lb-ssh", "22/TCP is reserved for SSH".to_string()),
    ] {
        wait_event(c, service, &why);
        assert_eq!(external_ip(c, service), "", "{service} got an address");
    }
    // The API server still answers on its port: the waiting Service took nothing.
    let api = curl(&["-k", &format!("https://{ip}:6443/readyz")]);
    assert!(text(&api).contains("ok"), "{}", text(&api));

    // A Service that has the address gives it up once a program on the host listens on
    // one of its ports: kube-proxy would otherwise cut that program off.
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    c.apply(&lb_service("web-lb-held", port));
    wait_external_ip(c, "web-lb-held", &ip);
    let _listener = std::net::TcpListener::bind(("0.0.0.0", port)).expect("the port is still free");
    wait_event(
        c,
        "web-lb-held",
        &format!("a program on the host listens on {port}/TCP"),
    );
    wait_external_ip(c, "web-lb-held", "");
    // web-lb stays, for the addon's disable and enable.
    c.kubectl_ok(&[
        "delete",
        "service",
        "web-lb-api",
        "web-lb-again",
        "web-lb-ssh",
        "web-lb-held",
    ]);
}

/// Waits until an event on the Service says `why`.
fn wait_event(c: &Cluster, service: &str, why: &str) {
    c.wait_for(
        &format!("an event on {service} saying why it waits"),
        Duration::from_secs(60),
        || {
            let events = c.kubectl_ok(&[
                "get",
                "events",
                "--field-selector",
                &format!("involvedObject.name={service}"),
                "-o",
                "jsonpath={.items[*].message}",
            ]);
            if events.contains(why) {
                Ok(())
            } else {
                Err(format!("events: {events:?}"))
            }
        },
    );
}

/// An Ingress routing the host web.kinit.test to the tutorial's web Service, and one
/// routing the path /hostname of any host there.
const INGRESS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: default}
spec:
  rules:
  - host: web.kinit.test
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: web, port: {number: 80}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web-path, namespace: default}
spec:
  rules:
  - http:
      paths:
      - path: /hostname
        pathType: Exact
        backend: {service: {name: web, port: {number: 80}}}
"#;

/// `kinit addons enable ingress` (which the default set leaves out): an Ingress without a
/// class (the default one) answers by host name over HTTP and HTTPS on the node's address,
/// from the host and through `kinit socks`, another by path; other host names and paths
/// get Traefik's 404.
pub fn ingress(c: &Cluster, socks: &str) {
    c.ok(&["addons", "enable", "ingress"]);
    all_ready(c, &ADDONS);
    let ip = node_ip(c);
    wait_external_ip_in(c, "kube-system", "traefik", &ip);
    c.apply(INGRESS);
    c.wait_for(
        "the Ingress to route web.kinit.test",
        Duration::from_secs(60),
        || {
            let out = curl(&[
                "--resolve",
                &format!("web.kinit.test:80:{ip}"),
                "http://web.kinit.test/",
            ]);
            if text(&out).contains("Hello from") {
                Ok(())
            } else {
                Err(text(&out))
            }
        },
    );
    let https = curl(&[
        "-k",
        "--resolve",
        &format!("web.kinit.test:443:{ip}"),
        "https://web.kinit.test/",
    ]);
    assert!(text(&https).contains("Hello from"), "{}", text(&https));
    let proxied = curl(&[
        "--socks5",
        socks,
        "-H",
        "Host: web.kinit.test",
        &format!("http://{ip}/"),
    ]);
    assert!(text(&proxied).contains("Hello from"), "{}", text(&proxied));
    let other = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .args(["-H", "Host: other.kinit.test", &format!("http://{ip}/")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&other.stdout), "404");
    // By path: /hostname of any host is routed, and answers with a web pod's name.
    c.wait_for(
        "the Ingress to route /hostname",
        Duration::from_secs(30),
        || {
            let by_path = curl(&[
                "-H",
                "Host: other.kinit.test",
                &format!("http://{ip}/hostname"),
            ]);
            if String::from_utf8_lossy(&by_path.stdout).starts_with("web-") {
                Ok(())
            } else {
                Err(text(&by_path))
            }
        },
    );
    // The Ingress reports the address it is served at.
    c.wait_for("the Ingress's address", Duration::from_secs(60), || {
        let address = c.kubectl_ok(&[
            "get",
            "ingress",
            "web",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[*].ip}",
        ]);
        if address == ip {
            Ok(())
        } else {
            Err(format!("{address:?}"))
        }
    });
}

/// `kinit example telescope-ingress` with the bundle's web stand-in in both slots (it has
/// a shell to write with): served by its Ingress host name, and what the database writes
/// on its claim outlives its pod.
pub fn tutorial(c: &Cluster) {
    let out = c.ok(&[
        "example",
        "telescope-ingress",
        "--image-override",
        "telescope=kinit-examples/web:1",
        "--image-override",
        "mongo=kinit-examples/web:1",
    ]);
    assert!(out.contains("http://telescope.kinit.test/"), "{out}");
    let ip = node_ip(c);
    let page = curl(&[
        "--resolve",
        &format!("telescope.kinit.test:80:{ip}"),
        "http://telescope.kinit.test/",
    ]);
    assert!(text(&page).contains("Hello from"), "{}", text(&page));
    only_telescope_reaches_the_database(c);
    let db = "deployment/telescope-ingress-db";
    c.kubectl_ok(&[
        "exec",
        db,
        "--",
        "sh",
        "-c",
        "echo kept > /data/db/kinit-token",
    ]);
    c.kubectl_ok(&[
        "delete",
        "pod",
        "-l",
        "app=telescope-ingress-db",
        "--wait=true",
    ]);
    c.wait_for("the database pod back", Duration::from_secs(120), || {
        let out = c.kubectl(&["exec", db, "--", "cat", "/data/db/kinit-token"]);
        match String::from_utf8_lossy(&out.stdout).trim() {
            "kept" => Ok(()),
            _ => Err(text(&out)),
        }
    });
    c.ok(&["example", "telescope-ingress", "--delete"]);
    let left = c.kubectl_ok(&[
        "get",
        "pvc,deploy,svc,ingress",
        "-l",
        "kinit.io/example=telescope-ingress",
        "-o",
        "name",
    ]);
    assert!(left.trim().is_empty(), "left: {left}");
}

/// A Deployment that keeps a CPU busy, and an HPA that wants it at half of its request.
const BUSY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: busy, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: busy}}
  template:
    metadata: {labels: {app: busy}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: busy
        image: kinit-examples/web:1
        imagePullPolicy: Never
        command: ["sh", "-c", "while :; do :; done"]
        resources: {requests: {cpu: 20m}, limits: {cpu: 100m}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: busy, namespace: default}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: busy}
  minReplicas: 1
  maxReplicas: 2
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
"#;

/// An HPA on CPU, fed by metrics-server, scales a busy Deployment up.
/// The example's NetworkPolicy: the database's pod takes connections from Telescope's pod
/// only. (The web stand-in in the database's slot serves HTTP on port 80.) A pod of no
/// policy reaches Telescope's pod, and not the database's.
fn only_telescope_reaches_the_database(c: &Cluster) {
    let pod_ip = |app: &str| {
        c.kubectl_ok(&[
            "get",
            "pod",
            "-l",
            &format!("app={app}"),
            "-o",
            "jsonpath={.items[0].status.podIP}",
        ])
    };
    let (app, db) = (pod_ip("telescope-ingress"), pod_ip("telescope-ingress-db"));
    let get = |ip: &str| {
        format!("printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {ip} 80 | head -n 1")
    };
    c.wait_for(
        "Telescope's pod reaches the database",
        Duration::from_secs(60),
        || {
            let out = c.kubectl(&[
                "exec",
                "deploy/telescope-ingress",
                "--",
                "sh",
                "-c",
                &get(&db),
            ]);
            if String::from_utf8_lossy(&out.stdout).contains("200 OK") {
                Ok(())
            } else {
                Err(text(&out))
            }
        },
    );
    let probe = format!("echo app: $({}); echo db: $({})", get(&app), get(&db));
    // Run to completion, then read: an attached `kubectl run -i` may miss early output.
    c.kubectl_ok(&[
        "run",
        "policy-probe",
        "--restart=Never",
        "--image=kinit-examples/web:1",
        "--image-pull-policy=Never",
        "--command",
        "--",
        "sh",
        "-c",
        &probe,
    ]);
    c.kubectl_ok(&[
        "wait",
        "--for=jsonpath={.status.phase}=Succeeded",
        "pod/policy-probe",
        "--timeout=120s",
    ]);
    let out = c.kubectl_ok(&["logs", "policy-probe"]);
    c.kubectl_ok(&["delete", "pod", "policy-probe", "--wait=false"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("app:") && l.contains("200 OK")),
        "the probe pod did not reach Telescope's pod:\n{out}"
    );
    assert!(
        out.lines().any(|l| l.trim() == "db:"),
        "a pod the policy does not allow reached the database:\n{out}"
    );
}

pub fn autoscaling(c: &Cluster) {
    c.apply(BUSY);
    c.wait_for(
        "the HPA to scale busy to 2 replicas",
        Duration::from_secs(300),
        || {
            let replicas = c.kubectl_ok(&[
                "get",
                "deployment",
                "busy",
                "-o",
                "jsonpath={.spec.replicas}",
            ]);
            if replicas == "2" {
                Ok(())
            } else {
                let hpa = c.kubectl(&["describe", "hpa", "busy"]);
                Err(format!("{replicas} replicas; {}", text(&hpa)))
            }
        },
    );
    c.kubectl_ok(&["delete", "hpa,deployment", "busy"]);
}
