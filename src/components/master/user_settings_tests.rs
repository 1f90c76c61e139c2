//! The user's additions to the master: feature gates, extra args, the audit log, the Pod
//! Security level, and the refusal of what kinit sets itself.

use super::tests::{contents, host, rendered_with};
use super::*;
use crate::cluster::{ExtraArg, ExtraArgs};

fn with(gates: &str, extra: &[&str], audit_log: bool) -> Settings {
    let list: Vec<ExtraArg> = extra.iter().map(|a| a.parse().unwrap()).collect();
    Settings {
        feature_gates: gates.parse().unwrap(),
        extra_args: ExtraArgs::from_list(&list).unwrap(),
        audit_log,
        ..cluster::test_settings()
    }
}

fn rendered(settings: &Settings) -> Master {
    rendered_with(settings, &Layout::new("/var/lib/kinit"), &host())
}

fn refusal(settings: &Settings) -> String {
    let layout = Layout::new("/var/lib/kinit");
    let images = Images::default();
    let inputs = Inputs {
        settings,
        layout: &layout,
        host: &host(),
        images: &images,
        node_image: "n",
        verbosity: 2,
    };
    let err = render(&inputs, "c").err().expect("refused");
    format!("{err:#}")
}

/// A static pod's command line.
fn command(m: &Master, pod: &str) -> Vec<String> {
    let manifest: serde_yaml::Value =
        serde_yaml::from_str(&contents(m, &format!("{pod}.yaml"))).unwrap();
    serde_yaml::from_value(manifest["spec"]["containers"][0]["command"].clone()).unwrap()
}

#[test]
fn static_pods_get_the_gates_and_their_own_extra_args_last() {
    let m = rendered(&with(
        "InPlacePodVerticalScaling=true,AllAlpha=false",
        &["apiserver:runtime-config=api/all=true", "scheduler:v=4"],
        false,
    ));
    let gates = "--feature-gates=AllAlpha=false,InPlacePodVerticalScaling=true";
    let apiserver = command(&m, "kube-apiserver");
    assert_eq!(
        apiserver[apiserver.len() - 2..],
        [gates, "--runtime-config=api/all=true"]
    );
    let scheduler = command(&m, "kube-scheduler");
    assert_eq!(scheduler[scheduler.len() - 2..], [gates, "--v=4"]);
    let kcm = command(&m, "kube-controller-manager");
    assert_eq!(kcm.last().map(String::as_str), Some(gates));
    assert!(!kcm.iter().any(|a| a.starts_with("--v=")), "{kcm:?}");
}

#[test]
fn the_kubelet_gets_its_gates_merged_with_kinits_and_its_flags_after_kinits() {
    let m = rendered(&with(
        "ExtendWebSocketsToKubelet=false,InPlacePodVerticalScaling=true",
        &[
            "kubelet:max-pods=200",
            "kubelet:node-labels=tier=it's",
            "kubelet:v=4",
        ],
        false,
    ));
    let kubelet: serde_yaml::Value = serde_yaml::from_str(&contents(&m, "kubelet.yaml")).unwrap();
    let gates: BTreeMap<String, bool> =
        serde_yaml::from_value(kubelet["featureGates"].clone()).unwrap();
    assert_eq!(
        gates,
        BTreeMap::from([
            ("ExtendWebSocketsToKubelet".to_string(), false),
            ("InPlacePodVerticalScaling".to_string(), true),
        ])
    );
    let script = contents(&m, "master-entrypoint.sh");
    let tail = script.split("--v=2").nth(1).expect("kinit's verbosity");
    assert_eq!(
        tail, " \\\n  '--max-pods=200' \\\n  '--node-labels=tier=it'\\''s' \\\n  '--v=4'",
        "{script}"
    );
    // The gates reach the kubelet through its config file alone.
    assert!(!script.contains("--feature-gates"), "{script}");
}

#[test]
fn a_gate_kinit_sets_cannot_be_turned_around() {
    let err = refusal(&with("ExtendWebSocketsToKubelet=true", &[], false));
    assert!(
        err.contains(
            "--feature-gates ExtendWebSocketsToKubelet=true (kinit sets \
             ExtendWebSocketsToKubelet=false on the kubelet"
        ),
        "{err}"
    );
}

#[test]
fn flags_kinit_sets_itself_or_that_open_the_cluster_are_refused_all_at_once() {
    let refused = [
        (
            "apiserver:etcd-servers=https://x:2379",
            "kinit sets --etcd-servers of the API server",
        ),
        (
            "apiserver:tls-cert-file=/x",
            "kinit sets --tls-cert-file of the API server",
        ),
        ("apiserver:secure-port=7443", "kinit sets --secure-port"),
        (
            "apiserver:service-cluster-ip-range=10.0.0.0/16",
            "--service-cluster-ip-range",
        ),
        (
            "apiserver:anonymous-auth=true",
            "anonymous requests stay limited",
        ),
        ("apiserver:authorization-mode=AlwaysAllow", "Node and RBAC"),
        ("apiserver:authorization-config=/x", "Node and RBAC"),
        ("apiserver:insecure-port=8080", "no unauthenticated port"),
        (
            "controller-manager:cluster-cidr=10.0.0.0/16",
            "--cluster-cidr of the controller-manager",
        ),
        (
            "scheduler:kubeconfig=/x",
            "kinit sets --kubeconfig of the scheduler",
        ),
        ("scheduler:feature-gates=A=true", "use --feature-gates"),
        ("kubelet:config=/x", "kinit sets --config of the kubelet"),
        (
            "kubelet:client-ca-file=/x",
            "kinit sets --client-ca-file of the kubelet",
        ),
        ("kubelet:pod-manifest-path=/x", "--pod-manifest-path"),
        ("kubelet:cluster-dns=1.1.1.1", "--cluster-dns"),
        ("kubelet:read-only-port=10255", "no unauthenticated port"),
        ("kubelet:anonymous-auth=true", "anonymous requests"),
        ("kubelet:authorization-mode=AlwaysAllow", "Node and RBAC"),
        ("kubelet:tls-private-key-file=/x", "--tls-private-key-file"),
        (
            "kubelet:eviction-hard=memory.available<1Mi",
            "--eviction-hard",
        ),
    ];
    let args: Vec<&str> = refused.iter().map(|(arg, _)| *arg).collect();
    let err = refusal(&with("", &args, false));
    for (arg, why) in refused {
        let name = arg.split('=').next().unwrap();
        assert!(
            err.contains(&format!("--extra-arg {name} (")),
            "{arg}: {err}"
        );
        assert!(err.contains(why), "{arg}: {err}");
    }
    assert!(err.contains("--no-extra-args"), "{err}");
}

#[test]
fn the_audit_flags_are_kinits_while_its_audit_log_is_on() {
    let arg = ["apiserver:audit-log-path=-"];
    assert!(rendered(&with("", &arg, false)).apiserver_files.is_empty());
    let err = refusal(&with("", &arg, true));
    assert!(err.contains("kinit sets --audit-log-path"), "{err}");
}

#[test]
fn the_audit_log_gives_the_api_server_a_policy_a_private_log_and_rotation() {
    let m = rendered(&with("", &[], true));
    let [policy] = &m.apiserver_files[..] else {
        panic!("not one file: {:?}", m.apiserver_files.len());
    };
    assert_eq!(
        policy.path,
        PathBuf::from("/var/lib/kinit/config/audit-policy.yaml")
    );
    let doc: serde_yaml::Value = serde_yaml::from_str(&policy.contents).unwrap();
    assert_eq!(doc["kind"], "Policy");
    let rules = doc["rules"].as_sequence().unwrap();
    // Secrets at Metadata, never with their bodies; the last rule catches the rest.
    let secrets = rules
        .iter()
        .find(|r| r["resources"][0]["resources"][0] == "secrets")
        .unwrap();
    assert_eq!(secrets["level"], "Metadata");
    assert_eq!(rules.last().unwrap()["level"], "Metadata");
    assert!(
        !policy.contents.contains("level: Request"),
        "{}",
        policy.contents
    );

    let apiserver = contents(&m, "kube-apiserver.yaml");
    for flag in [
        "--audit-policy-file=/etc/kubernetes/audit-policy.yaml",
        "--audit-log-path=/var/log/kubernetes/audit/audit.log",
        "--audit-log-maxsize=50",
        "--audit-log-maxbackup=3",
    ] {
        assert!(
            command(&m, "kube-apiserver").iter().any(|a| a == flag),
            "{flag}"
        );
    }
    let pod: serde_yaml::Value = serde_yaml::from_str(&apiserver).unwrap();
    let volumes = pod["spec"]["volumes"].as_sequence().unwrap();
    let log = volumes.iter().find(|v| v["name"] == "audit-log").unwrap();
    let layout = Layout::new("/var/lib/kinit");
    assert_eq!(log["hostPath"]["path"], path(layout.logs()));
    // The file `kinit status` names.
    assert_eq!(
        layout.audit_log(),
        PathBuf::from("/var/lib/kinit/logs/audit.log")
    );
    let mounts = pod["spec"]["containers"][0]["volumeMounts"]
        .as_sequence()
        .unwrap();
    let mount = mounts.iter().find(|v| v["name"] == "audit-log").unwrap();
    assert_eq!(mount["mountPath"], "/var/log/kubernetes/audit");
    // A new policy restarts the API server.
    assert_eq!(
        pod["metadata"]["annotations"]["kinit.io/audit-policy"].as_str(),
        Some(crate::docker::short_digest(policy.contents.as_bytes()).as_str())
    );
}

#[test]
fn a_pod_security_level_is_the_api_servers_default_outside_kube_system() {
    let layout = Layout::new("/var/lib/kinit");
    let privileged = rendered(&cluster::test_settings());
    assert!(privileged.apiserver_files.is_empty());
    // Both optional files, written for other settings, go once no API server mounts them.
    assert_eq!(
        privileged.retired_files,
        [
            layout.config().join("audit-policy.yaml"),
            layout.config().join("admission.yaml")
        ]
    );
    let flag = "--admission-control-config-file=/etc/kubernetes/admission.yaml";
    assert!(
        !command(&privileged, "kube-apiserver")
            .iter()
            .any(|a| a == flag)
    );

    let settings = Settings {
        pod_security: cluster::PodSecurity::Baseline,
        ..cluster::test_settings()
    };
    let m = rendered_with(&settings, &layout, &host());
    let [config] = &m.apiserver_files[..] else {
        panic!("not one file: {:?}", m.apiserver_files.len());
    };
    assert_eq!(config.path, layout.config().join("admission.yaml"));
    assert_eq!(m.retired_files, [layout.config().join("audit-policy.yaml")]);
    let doc: serde_yaml::Value = serde_yaml::from_str(&config.contents).unwrap();
    let psa = &doc["plugins"][0];
    assert_eq!(psa["name"], "PodSecurity");
    for mode in ["enforce", "audit", "warn"] {
        assert_eq!(psa["configuration"]["defaults"][mode], "baseline", "{mode}");
    }
    assert_eq!(
        psa["configuration"]["exemptions"]["namespaces"],
        serde_yaml::to_value(["kube-system"]).unwrap()
    );
    assert!(command(&m, "kube-apiserver").iter().any(|a| a == flag));
    let pod: serde_yaml::Value =
        serde_yaml::from_str(&contents(&m, "kube-apiserver.yaml")).unwrap();
    let volumes = pod["spec"]["volumes"].as_sequence().unwrap();
    let volume = volumes.iter().find(|v| v["name"] == "admission").unwrap();
    assert_eq!(volume["hostPath"]["path"], path(config.path.clone()));
    // Another level restarts the API server; the static pods' other files stay as they are.
    assert_eq!(
        pod["metadata"]["annotations"]["kinit.io/admission"].as_str(),
        Some(crate::docker::short_digest(config.contents.as_bytes()).as_str())
    );
    let restricted = Settings {
        pod_security: cluster::PodSecurity::Restricted,
        ..cluster::test_settings()
    };
    let other = rendered_with(&restricted, &layout, &host());
    assert_eq!(differing(&m, &other), ["kube-apiserver.yaml"]);
    // kinit's flag while it is on.
    let arg: ExtraArg = "apiserver:admission-control-config-file=/x"
        .parse()
        .unwrap();
    let err = refusal(&Settings {
        extra_args: ExtraArgs::from_list(&[arg]).unwrap(),
        ..settings
    });
    assert!(
        err.contains("kinit sets --admission-control-config-file"),
        "{err}"
    );
}

/// The files that differ between two renders, by name.
fn differing(a: &Master, b: &Master) -> Vec<String> {
    a.files
        .iter()
        .zip(&b.files)
        .filter(|(x, y)| x.contents != y.contents)
        .map(|(x, _)| x.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_change_reaches_only_the_components_it_is_for() {
    let before = rendered(&with("", &[], false));
    let kinit_proxy = proxy_of(&cluster::test_settings());
    for (settings, changed, kubelet_restarts) in [
        (
            with("", &["scheduler:v=4"], false),
            vec!["kube-scheduler.yaml"],
            false,
        ),
        (
            with("", &["controller-manager:v=4"], false),
            vec!["kube-controller-manager.yaml"],
            false,
        ),
        (
            with("", &["apiserver:v=4"], true),
            vec!["kube-apiserver.yaml"],
            false,
        ),
        (
            with("", &["kubelet:v=4"], false),
            vec!["master-entrypoint.sh"],
            true,
        ),
    ] {
        let after = rendered(&settings);
        let what = settings.extra_args.to_string();
        assert_eq!(differing(&before, &after), changed, "{what}");
        // kinit-master is made again only when the files the kubelet starts with change.
        assert_eq!(after.spec.hash(), before.spec.hash(), "{what}");
        let kubelet_changed = kubelet_reads(&after) != kubelet_reads(&before);
        assert_eq!(kubelet_changed, kubelet_restarts, "{what}");
        // kinit-proxy not at all.
        assert_eq!(proxy_of(&settings), kinit_proxy, "{what}");
    }
    // Gates go to every component.
    let gated = with("InPlacePodVerticalScaling=true", &[], false);
    assert_eq!(
        differing(&before, &rendered(&gated)),
        [
            "kubelet.yaml",
            "kube-apiserver.yaml",
            "kube-controller-manager.yaml",
            "kube-scheduler.yaml"
        ]
    );
    assert_ne!(proxy_of(&gated), kinit_proxy);
}

/// What the kubelet reads only when it starts (the master step digests it into the
/// container's hash): every file but the static pods.
fn kubelet_reads(m: &Master) -> Vec<&str> {
    m.files
        .iter()
        .filter(|f| !f.path.starts_with("/var/lib/kinit/manifests"))
        .map(|f| f.contents.as_str())
        .collect()
}

/// kube-proxy's container and configuration for these settings.
fn proxy_of(settings: &Settings) -> (String, String) {
    let layout = Layout::new("/var/lib/kinit");
    let p = crate::components::proxy::render(settings, &layout, &Images::default()).unwrap();
    (p.spec.hash(), p.config.contents)
}

#[test]
fn the_check_before_any_change_names_every_components_refusals() {
    let settings = with(
        "",
        &[
            "apiserver:client-ca-file=/x",
            "proxy:proxy-mode=ipvs",
            "scheduler:v=4",
        ],
        false,
    );
    let layout = Layout::new("/var/lib/kinit");
    let mut own = owned(&settings, &layout, &host(), &Images::default()).unwrap();
    let proxy = crate::components::proxy::owned(&settings, &layout, &Images::default()).unwrap();
    own.push((Component::Proxy, proxy));
    let err = format!("{:#}", owned::check(&settings, &own).unwrap_err());
    assert!(err.contains("apiserver:client-ca-file"), "{err}");
    assert!(err.contains("proxy:proxy-mode"), "{err}");
    assert!(!err.contains("scheduler:v"), "{err}");
}
