//! The end-to-end phase of `kinit up --feature-gates`, `--extra-arg`, `--audit-log` and
//! `--pod-security`: a flag kinit sets is refused and nothing changes; a scheduler flag
//! restarts the scheduler alone; a gate and an extra arg reach the running API server's
//! command line; the audit log records requests; the Pod Security level refuses pods
//! outside kube-system; clearing them all gives the cluster back kinit's own settings.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use super::cluster::{Cluster, component};
use super::text;

/// Known to every component of every release, and already its value: harmless to set.
const GATE: &str = "AllAlpha=false";
const GATE_FLAG: &str = "--feature-gates=AllAlpha=false";
const EXTRA: &str = "apiserver:event-ttl=2h0m0s";
const EXTRA_FLAG: &str = "--event-ttl=2h0m0s";
const AUDIT_FLAG: &str = "--audit-log-path=/var/log/kubernetes/audit/audit.log";
const ADMISSION_FLAG: &str = "--admission-control-config-file=/etc/kubernetes/admission.yaml";

/// Whether the API server admits a pod on the host's network (which the baseline level
/// forbids) in `namespace`; asked with a server-side dry run, so admission runs and
/// nothing is made.
fn admits_host_network_pod(c: &Cluster, namespace: &str) -> Result<(), String> {
    let out = c.kubectl(&[
        "run",
        "pod-security-probe",
        "--namespace",
        namespace,
        "--image=registry.k8s.io/pause:3.10",
        "--restart=Never",
        "--dry-run=server",
        r#"--overrides={"apiVersion":"v1","spec":{"hostNetwork":true}}"#,
    ]);
    if out.status.success() {
        Ok(())
    } else {
        Err(text(&out))
    }
}

const PODS: [&str; 3] = ["apiserver", "controller-manager", "scheduler"];

/// The command line of a component's running process, from /proc.
fn command_line(c: &Cluster, name: &str) -> Result<Vec<String>, String> {
    let status = c.try_status()?;
    let container = &component(&status, name)["container"];
    let pid = container["pid"]
        .as_i64()
        .filter(|pid| *pid > 0)
        .ok_or_else(|| format!("{name} runs no process: {container}"))?;
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).map_err(|e| e.to_string())?;
    Ok(raw
        .split(|b| *b == 0)
        .filter(|word| !word.is_empty())
        .map(|word| String::from_utf8_lossy(word).into_owned())
        .collect())
}

/// Waits until `name` runs with `flag` on its command line, or without it.
fn wait_for_flag(c: &Cluster, name: &str, flag: &str, present: bool) {
    let what = format!(
        "{name} running with{} {flag}",
        if present { "" } else { "out" }
    );
    c.wait_for(&what, Duration::from_secs(180), || {
        let words = command_line(c, name)?;
        if words.iter().any(|w| w == flag) == present {
            Ok(())
        } else {
            Err(words.join(" "))
        }
    });
}

/// When each of kinit's containers and each control-plane pod container started.
fn started(c: &Cluster) -> BTreeMap<String, String> {
    let status = c.status();
    let mut all: BTreeMap<String, String> = c.kinit_containers_started().into_iter().collect();
    for pod in PODS {
        let container = &component(&status, pod)["container"];
        all.insert(pod.into(), container["started_at"].to_string());
    }
    all
}

pub fn component_settings(c: &Cluster) {
    // A flag kinit sets, and one that would open the kubelet: refused, nothing changes.
    let before = started(c);
    let refused = c.kinit(&[
        "up",
        "--extra-arg",
        "apiserver:etcd-servers=https://127.0.0.1:2379",
        "--extra-arg",
        "kubelet:anonymous-auth=true",
    ]);
    let msg = text(&refused);
    assert!(!refused.status.success(), "{msg}");
    for named in [
        "--extra-arg apiserver:etcd-servers",
        "--extra-arg kubelet:anonymous-auth",
    ] {
        assert!(msg.contains(named), "{named}: {msg}");
    }
    assert!(c.status()["cluster"]["extraArgs"].is_null());
    assert_eq!(started(c), before, "a refused up restarted something");

    // A scheduler flag restarts the scheduler alone.
    c.ok(&["up", "--extra-arg", "scheduler:v=3"]);
    wait_for_flag(c, "scheduler", "--v=3", true);
    c.all_healthy();
    let after = started(c);
    for (name, was) in &before {
        if name == "scheduler" {
            assert_ne!(&after[name], was, "the scheduler did not restart");
        } else {
            assert_eq!(&after[name], was, "a scheduler flag restarted {name}");
        }
    }

    // A gate, an API server flag and the audit log reach the running API server; the
    // new set of extra args replaces the scheduler's.
    c.ok(&[
        "up",
        "--feature-gates",
        GATE,
        "--extra-arg",
        EXTRA,
        "--audit-log",
        "--pod-security",
        "baseline",
    ]);
    for flag in [GATE_FLAG, EXTRA_FLAG, AUDIT_FLAG, ADMISSION_FLAG] {
        wait_for_flag(c, "apiserver", flag, true);
    }
    wait_for_flag(c, "scheduler", GATE_FLAG, true);
    wait_for_flag(c, "scheduler", "--v=3", false);
    c.all_healthy();
    let recorded = &c.status()["cluster"];
    assert_eq!(
        recorded["featureGates"],
        serde_json::json!({"AllAlpha": false})
    );
    assert_eq!(
        recorded["extraArgs"],
        serde_json::json!({"apiserver": {"event-ttl": "2h0m0s"}})
    );
    assert_eq!(recorded["auditLog"], true);
    assert_eq!(recorded["podSecurity"], "baseline");
    let refused = admits_host_network_pod(c, "default").expect_err("admitted under baseline");
    assert!(
        refused.contains(r#"violates PodSecurity "baseline:latest""#),
        "{refused}"
    );
    admits_host_network_pod(c, "kube-system").expect("kube-system is exempt");
    let kubelet = std::fs::read_to_string(c.state.join("config/kubelet.yaml")).unwrap();
    assert!(kubelet.contains("\"AllAlpha\": false"), "{kubelet}");

    // Requests are audited, Secrets without their contents, in a file only root reads.
    c.kubectl_ok(&["get", "secrets", "--all-namespaces"]);
    let log = c.state.join("logs/audit.log");
    c.wait_for(
        "the audit log records a secrets list",
        Duration::from_secs(30),
        || {
            let lines = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
            let secrets: Vec<&str> = lines
                .lines()
                .filter(|l| l.contains(r#""resource":"secrets""#) && l.contains(r#""verb":"list""#))
                .collect();
            match secrets.first() {
                None => Err(format!("{} lines, none for secrets", lines.lines().count())),
                Some(line) => {
                    assert!(line.contains(r#""level":"Metadata""#), "{line}");
                    assert!(!line.contains("responseObject"), "{line}");
                    Ok(())
                }
            }
        },
    );
    for (path, mode) in [(log.clone(), 0o600), (c.state.join("logs"), 0o700)] {
        let got = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(got, mode, "{}", path.display());
    }

    // A plain up keeps them.
    let again = c.ok(&["up"]);
    assert!(again.contains("Nothing to do"), "{again}");
    assert_eq!(c.status()["cluster"]["auditLog"], true);

    // Cleared, the components run kinit's own flags again; the log stays.
    c.ok(&[
        "up",
        "--feature-gates=",
        "--no-extra-args",
        "--audit-log=false",
        "--pod-security=privileged",
    ]);
    for flag in [GATE_FLAG, EXTRA_FLAG, AUDIT_FLAG, ADMISSION_FLAG] {
        wait_for_flag(c, "apiserver", flag, false);
    }
    c.all_healthy();
    admits_host_network_pod(c, "default").expect("privileged again");
    let recorded = &c.status()["cluster"];
    for field in ["featureGates", "extraArgs", "auditLog", "podSecurity"] {
        assert!(recorded[field].is_null(), "{field}: {recorded}");
    }
    assert!(log.exists());
    // The API server's files for settings now off are gone with them.
    for file in ["config/audit-policy.yaml", "config/admission.yaml"] {
        assert!(!c.state.join(file).exists(), "{file} left behind");
    }
}
