//! What hosts do to a cluster, end to end against a real engine and the bundle's upstream
//! binaries: bounded logs and images, a neighbour on the LAN, a crashed runtime, a reboot
//! with nobody running kinit, an address that moves. One cluster, one named phase per
//! concern (tests/common/phases.rs): a failed phase is named, with the cluster's logs,
//! pods and events at that moment, and the other phases still run.
//!
//! Needs root, a running Docker engine and the bundle (scripts/test.sh provides them).

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod common;
use common::cluster::{Cluster, HOST_FILES, KINIT_CONTAINERS, WORKLOADS, curl, inspect};
use common::neighbour::{HOST_SIDE, Neighbour};
use common::phases::Phases;
use common::{docker_cli, lib_sh, run, run_ok, text};

const UP: &str = "up, with workloads";

#[test]
fn a_cluster_keeps_to_itself_and_survives_what_hosts_do_to_it() {
    common::require_engine();
    let c = Cluster::new();
    let mut phases = Phases::new(|| c.diagnostics());
    phases.run(UP, &[], || {
        c.ok(&["up"]);
        c.apply(WORKLOADS);
        c.web_ready(1);
        c.twoc_ready();
        for file in HOST_FILES {
            assert!(Path::new(file).is_file(), "{file} not written by up");
        }
    });
    phases.run("logs and images are bounded", &[UP], || bounded_disk(&c));
    phases.run("kinit logs -f follows a component", &[UP], || {
        follow_logs(&c)
    });
    phases.run("the LAN does not reach pods or Services", &[UP], || {
        lan_isolation(&c)
    });
    phases.run(
        "a neighbour's port scan finds only authenticated ports",
        &[UP],
        || port_scan(&c),
    );
    phases.run("a dead cri-dockerd restarts the node", &[UP], || {
        supervised(&c)
    });
    phases.run("a reboot, with nobody running kinit", &[UP], || reboot(&c));
    phases.run("the node follows its moved address", &[UP], || {
        moved_address(&c)
    });
    // Runs whatever failed before: it is also what leaves the host clean.
    phases.run("down --purge leaves nothing", &[], || {
        c.ok(&["down", "--purge"]);
        c.assert_purged();
    });
    phases.finish();
}

fn node_name(c: &Cluster) -> String {
    c.kubectl_ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"])
}

/// Every container kinit makes, and the pod containers its kubelet makes, rotate their
/// logs; the kubelet collects unused images.
fn bounded_disk(c: &Cluster) {
    let format = r#"{{.HostConfig.LogConfig.Type}} {{index .HostConfig.LogConfig.Config "max-size"}} {{index .HostConfig.LogConfig.Config "max-file"}}"#;
    let pod = run_ok(&[
        "docker",
        "ps",
        "-q",
        "--filter",
        "label=io.kubernetes.container.name=web",
    ]);
    let pod = pod.lines().next().expect("a running web container");
    for name in KINIT_CONTAINERS.into_iter().chain([pod]) {
        assert_eq!(inspect(name, format), "json-file 10m 3", "{name}");
    }
    let configz = c.kubectl_ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{}/proxy/configz", node_name(c)),
    ]);
    let configz: serde_json::Value = serde_json::from_str(&configz).unwrap();
    let kubelet = &configz["kubeletconfig"];
    assert_eq!(kubelet["imageGCHighThresholdPercent"], 85, "{kubelet}");
    assert_eq!(kubelet["imageGCLowThresholdPercent"], 80, "{kubelet}");
}

/// A line written to etcd's stderr, as etcd itself would, reaches a running
/// `kinit logs etcd -f`.
fn follow_logs(c: &Cluster) {
    use std::io::{BufRead, BufReader, Write};
    let mut follow = Command::new(env!("CARGO_BIN_EXE_kinit"))
        .args(["--state-dir", c.state.to_str().unwrap()])
        .args(["logs", "etcd", "-f", "--tail", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // The last line already there arrives first: the stream is open.
    seen.recv_timeout(Duration::from_secs(20))
        .expect("kinit logs -f printed nothing");
    let marker = format!("kinit-follow-marker-{}", std::process::id());
    let pid = inspect("kinit-etcd", "{{.State.Pid}}");
    let mut stderr = std::fs::OpenOptions::new()
        .append(true)
        .open(format!("/proc/{pid}/fd/2"))
        .unwrap();
    writeln!(stderr, "{marker}").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match seen.recv_timeout(left) {
            Ok(line) if line.contains(&marker) => break,
            Ok(_) => {}
            Err(e) => panic!("kinit logs -f did not show the new line: {e}"),
        }
    }
    assert!(
        follow.try_wait().unwrap().is_none(),
        "kinit logs -f stopped following"
    );
    let _ = follow.kill();
    let _ = follow.wait();
}

fn lan_isolation(c: &Cluster) {
    let pod_ip = c.kubectl_ok(&[
        "get",
        "pod",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].status.podIP}",
    ]);
    let service_ip = c.kubectl_ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let lan = Neighbour::new();
    // The neighbour reaches the host itself: what it cannot reach below is filtered.
    let listener = TcpListener::bind((HOST_SIDE, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let reach = lan.run(
        "bash",
        &["-c", &format!("exec 3<>/dev/tcp/{HOST_SIDE}/{port}")],
    );
    assert!(
        reach.status.success(),
        "the neighbour cannot reach the host: {}",
        text(&reach)
    );
    for target in [&pod_ip, &service_ip] {
        let out = lan.run(
            "curl",
            &["-sS", "--max-time", "4", &format!("http://{target}/")],
        );
        assert!(
            !out.status.success(),
            "a neighbour reached {target}: {}",
            text(&out)
        );
    }
    // The host and the pods themselves still do.
    assert!(
        curl(&[&format!("http://{pod_ip}/")]).status.success(),
        "the host no longer reaches {pod_ip}"
    );
    c.service_answers();
    c.twoc_ready();
}

/// The ports of the node address that a neighbour finds open and that a cluster process
/// holds. README.md's security section lists them; keep both in step.
const EXPOSED: [u16; 4] = [2379, 2380, 6443, 10250];

const CLUSTER_PROCESSES: [&str; 9] = [
    "etcd",
    "kube-apiserver",
    "kube-controller",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "cri-dockerd",
    "coredns",
    "kinit",
];

fn port_scan(c: &Cluster) {
    let node_ip = c.node_address().unwrap();
    let lan = Neighbour::new();
    lan.route_to(&node_ip);
    // Every TCP port, many at a time: closed ones answer with a reset at once.
    let scan = lan.run(
        "python3",
        &[
            "-c",
            r#"
import socket, sys, concurrent.futures as cf
host = sys.argv[1]
def probe(port):
    s = socket.socket()
    s.settimeout(1.0)
    try:
        return port if s.connect_ex((host, port)) == 0 else None
    finally:
        s.close()
with cf.ThreadPoolExecutor(256) as pool:
    print(" ".join(str(p) for p in pool.map(probe, range(1, 65536)) if p))
"#,
            &node_ip,
        ],
    );
    assert!(scan.status.success(), "the scan: {}", text(&scan));
    let open: Vec<u16> = String::from_utf8_lossy(&scan.stdout)
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    // Other programs on a test host may listen too; only the cluster's count here.
    let ours: Vec<u16> = open
        .iter()
        .copied()
        .filter(|&port| {
            kinit::net::listeners(port).iter().any(|l| {
                l.command
                    .as_deref()
                    .is_some_and(|cmd| CLUSTER_PROCESSES.iter().any(|p| cmd.starts_with(p)))
            })
        })
        .collect();
    assert_eq!(ours, EXPOSED, "open on {node_ip}: {open:?}");
    for port in EXPOSED {
        // No client certificate, no token: TLS refused (etcd) or 401, never an answer.
        for path in [
            "/", "/healthz", "/version", "/metrics", "/pods", "/v2/keys", "/health",
        ] {
            let out = lan.run(
                "curl",
                &[
                    "-sk",
                    "--max-time",
                    "5",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    &format!("https://{node_ip}:{port}{path}"),
                ],
            );
            let code = String::from_utf8_lossy(&out.stdout).into_owned();
            // The API server's health paths are open to anonymous requests, for the
            // kubelet's probes (manifests/master/authentication.yaml); README lists them.
            let health = port == 6443 && ["/healthz", "/livez", "/readyz"].contains(&path);
            // 000: TLS refused; 401: authenticate first; 404: no such path (the kubelet
            // answers unknown paths so before asking who is there).
            assert!(
                ["000", "401", "404"].contains(&code.as_str()) || (health && code == "200"),
                "https://{node_ip}:{port}{path} answered {code} without credentials"
            );
        }
        let plain = lan.run(
            "curl",
            &[
                "-s",
                "--max-time",
                "5",
                &format!("http://{node_ip}:{port}/"),
            ],
        );
        assert!(
            !String::from_utf8_lossy(&plain.stdout).contains("\"major\""),
            "plain HTTP on {port}: {}",
            text(&plain)
        );
    }
}

/// The pid of the host process whose command name is `name` (there is one cri-dockerd).
fn pid_of(name: &str) -> Option<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .find(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|comm| comm.trim() == name)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

fn supervised(c: &Cluster) {
    let restarts: u32 = inspect("kinit-master", "{{.RestartCount}}")
        .parse()
        .unwrap();
    let pid = pid_of("cri-dockerd").expect("cri-dockerd runs");
    run_ok(&["kill", "-9", &pid]);
    c.wait_for(
        "kinit-master restarted by Docker",
        Duration::from_secs(60),
        || {
            let n: u32 = inspect("kinit-master", "{{.RestartCount}}")
                .parse()
                .map_err(|e| format!("{e}"))?;
            if n > restarts {
                Ok(())
            } else {
                Err(format!("restart count {n}"))
            }
        },
    );
    c.wait_for(
        "a new cri-dockerd",
        Duration::from_secs(60),
        || match pid_of("cri-dockerd") {
            Some(new) if new != pid => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    c.all_healthy();
    c.web_ready(1);
}

/// Ready node, every object back and Services answering, checked only through kubectl,
/// curl and Docker: no kinit command runs after the "reboot".
fn back_by_itself(c: &Cluster, node: &str) {
    c.wait_for("the node Ready", Duration::from_secs(240), || {
        let out = c.kubectl(&[
            "get",
            "node",
            node,
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
        ]);
        let got = String::from_utf8_lossy(&out.stdout).into_owned();
        if got == "True" {
            Ok(())
        } else {
            Err(format!("{got} {}", text(&out)))
        }
    });
    c.workloads_back(1);
    for name in KINIT_CONTAINERS {
        assert_eq!(inspect(name, "{{.State.Running}}"), "true", "{name}");
    }
}

fn reboot(c: &Cluster) {
    let node = node_name(c);
    lib_sh(&format!("simulate_reboot {}", c.state.display()));
    back_by_itself(c, &node);
    // It came back because kinit-boot set the host up again and started what Docker
    // could not: the master's state directory bind needs / to propagate mounts. Its log
    // is the only witness of who started the master.
    let boot = text(&docker_cli(&["logs", "kinit-boot"]));
    assert!(boot.contains("starting kinit-master"), "{boot}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mounts
            .lines()
            .any(|l| l.split(' ').nth(4) == Some("/") && l.contains(" shared:")),
        "/ does not propagate mounts"
    );
    assert!(Path::new("/run/xtables.lock").is_file());
    for key in [
        "/proc/sys/net/ipv4/ip_forward",
        "/proc/sys/net/bridge/bridge-nf-call-iptables",
    ] {
        assert_eq!(std::fs::read_to_string(key).unwrap().trim(), "1", "{key}");
    }
}

/// etcd's member list, through its JSON gateway.
fn etcd_members(c: &Cluster) -> String {
    let pki = c.state.join("pki/etcd");
    let out = curl(&[
        "--cacert",
        pki.join("ca.crt").to_str().unwrap(),
        "--cert",
        pki.join("healthcheck-client.crt").to_str().unwrap(),
        "--key",
        pki.join("healthcheck-client.key").to_str().unwrap(),
        "-X",
        "POST",
        "-d",
        "{}",
        "https://127.0.0.1:2379/v3/cluster/member/list",
    ]);
    assert!(out.status.success(), "etcd member list: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The address as the API server's certificate must name it: curl verifies the chain and
/// the name, and an answer of 401 (no credentials) means TLS held.
fn api_server_verifies_as(c: &Cluster, ip: &str) {
    let out = run(&[
        "curl",
        "-sS",
        "--max-time",
        "5",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--cacert",
        c.state.join("pki/ca.crt").to_str().unwrap(),
        &format!("https://{ip}:6443/version"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "401",
        "https://{ip}:6443: {}",
        text(&out)
    );
}

fn moved_address(c: &Cluster) {
    const MOVED: &str = "192.0.2.77";
    let node = node_name(c);
    let before = c.node_address().unwrap();
    // A second address on an interface of its own, as a new DHCP lease would give; a veth
    // pair, since the test hosts' kernels have no dummy interfaces.
    let _ = run(&["ip", "link", "delete", "kinit-dummy0"]);
    run_ok(&[
        "ip",
        "link",
        "add",
        "kinit-dummy0",
        "type",
        "veth",
        "peer",
        "name",
        "kinit-dummy1",
    ]);
    run_ok(&["ip", "link", "set", "kinit-dummy1", "up"]);
    run_ok(&[
        "ip",
        "addr",
        "add",
        &format!("{MOVED}/32"),
        "dev",
        "kinit-dummy0",
    ]);
    run_ok(&["ip", "link", "set", "kinit-dummy0", "up"]);

    c.ok(&["up", "--node-ip", MOVED]);
    settled_at(c, &node, MOVED);

    // As DHCP does: the address is gone, and a plain `kinit up` follows the host.
    run_ok(&["ip", "link", "delete", "kinit-dummy0"]);
    c.ok(&["up"]);
    settled_at(c, &node, &before);
}

/// The whole cluster at `ip`: kinit's settings and the node report it, every object is
/// back, the API server's certificate names it and etcd advertises it.
fn settled_at(c: &Cluster, node: &str, ip: &str) {
    assert_eq!(c.status()["cluster"]["nodeIp"], ip);
    c.wait_for("the node at its address", Duration::from_secs(120), || {
        let got = c.node_address()?;
        if got == ip { Ok(()) } else { Err(got) }
    });
    back_by_itself(c, node);
    api_server_verifies_as(c, ip);
    let members = etcd_members(c);
    assert!(
        members.contains(&format!("https://{ip}:2380")),
        "etcd's peer URL did not follow: {members}"
    );
}
