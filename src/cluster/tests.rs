use super::*;

fn settings() -> Settings {
    test_settings()
}

/// The node and name of [`test_settings`], as flags would give them.
fn requested() -> Requested {
    Requested {
        node_ip: Some("10.0.2.15".parse().unwrap()),
        hostname: Some("kinit-test".parse().unwrap()),
        ..Default::default()
    }
}

#[test]
fn a_new_cluster_gets_defaults_for_what_was_not_asked() {
    assert_eq!(Settings::new(&requested()).unwrap(), settings());
    let asked = Requested {
        service_cidr: Some("10.100.0.0/16".parse().unwrap()),
        dns_domain: Some("example.test".parse().unwrap()),
        pod_cidr: Some("10.200.0.0/16".parse().unwrap()),
        ..requested()
    };
    let s = Settings::new(&asked).unwrap();
    assert_eq!(s.service_cidr.to_string(), "10.100.0.0/16");
    assert_eq!(s.dns_domain.as_str(), "example.test");
    assert_eq!(s.pod_cidr.to_string(), "10.200.0.0/16");
}

#[test]
fn the_api_server_url_brackets_ipv6() {
    let s = settings();
    assert_eq!(s.api_server_url(), "https://10.0.2.15:6443");
    let v6 = Settings {
        node_ip: "fd00::5".parse().unwrap(),
        ..s
    };
    assert_eq!(v6.api_server_url(), "https://[fd00::5]:6443");
}

#[test]
fn ranges_must_not_overlap_each_other_or_hold_the_node() {
    let overlapping = Requested {
        pod_cidr: Some("10.96.0.0/16".parse().unwrap()),
        ..requested()
    };
    let err = Settings::new(&overlapping).unwrap_err().to_string();
    assert!(err.contains("overlaps the Service range"), "{err}");
    let holding_node = Requested {
        pod_cidr: Some("10.0.0.0/16".parse().unwrap()),
        ..requested()
    };
    let err = Settings::new(&holding_node).unwrap_err().to_string();
    assert!(err.contains("is inside the pod range"), "{err}");
    let services_holding_node = Requested {
        service_cidr: Some("10.0.0.0/16".parse().unwrap()),
        ..requested()
    };
    let err = Settings::new(&services_holding_node)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is inside the Service range 10.0.0.0/16"),
        "{err}"
    );
}

#[test]
fn the_node_follows_its_address() {
    let primary = || Ok("192.168.1.20".parse().unwrap());
    let gone = |_| false;
    let here = |_| true;
    // A flag moves it, whether the old address is still there or not.
    let mut s = settings();
    let flag = Some("10.0.2.16".parse().unwrap());
    assert_eq!(
        s.follow_node_ip(flag, here, primary).unwrap(),
        Some("10.0.2.15".parse().unwrap())
    );
    assert_eq!(s.node_ip.to_string(), "10.0.2.16");
    // Without one, only a lost address moves it, to the primary one.
    let mut s = settings();
    assert_eq!(s.follow_node_ip(None, here, primary).unwrap(), None);
    assert_eq!(s, settings());
    assert!(s.follow_node_ip(None, gone, primary).unwrap().is_some());
    assert_eq!(s.node_ip.to_string(), "192.168.1.20");
    // The same address is no move; an address inside the pod range is refused.
    let mut s = settings();
    assert_eq!(
        s.follow_node_ip(Some(s.node_ip), gone, primary).unwrap(),
        None
    );
    let err = s
        .follow_node_ip(Some("10.244.3.3".parse().unwrap()), here, primary)
        .unwrap_err()
        .to_string();
    assert!(err.contains("10.244.0.0/16"), "{err}");
    // Flags that name the cluster's identity are still refused by reconcile; the node
    // IP is not one of them.
    let moved = Requested {
        node_ip: Some("10.9.9.9".parse().unwrap()),
        ..Default::default()
    };
    assert_eq!(Settings::reconcile(settings(), &moved).unwrap(), settings());
}

#[test]
fn reconcile_refuses_conflicting_flags_only() {
    assert_eq!(
        Settings::reconcile(settings(), &requested()).unwrap(),
        settings()
    );
    let other = Requested {
        service_cidr: Some("10.100.0.0/16".parse().unwrap()),
        hostname: Some("other".parse().unwrap()),
        dns_domain: Some("cluster.local.".parse().unwrap()),
        ..Default::default()
    };
    let err = Settings::reconcile(settings(), &other)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "other settings: --hostname (cluster has kinit-test), \
             --service-cidr (cluster has 10.96.0.0/12); leave"
        ),
        "{err}"
    );
}

#[test]
fn the_kubernetes_version_of_a_cluster_never_changes() {
    let previous = crate::versions::SUPPORTED[1].kubernetes;
    let new = Settings::new(&Requested {
        kubernetes_version: Some(previous.into()),
        ..requested()
    })
    .unwrap();
    assert_eq!(new.release().unwrap(), crate::versions::SUPPORTED[1]);
    let same = Requested {
        kubernetes_version: Some(previous.into()),
        ..Default::default()
    };
    assert_eq!(Settings::reconcile(new.clone(), &same).unwrap(), new);
    let err = Settings::reconcile(
        new,
        &Requested {
            kubernetes_version: Some(Release::default().kubernetes.into()),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&format!("runs Kubernetes {previous}")),
        "{err}"
    );
    assert!(err.contains("upgrades are not supported"), "{err}");

    // A state file from before the version was a setting ran v1.36.3.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    std::fs::write(
        &path,
        "nodeIp: 10.0.2.15\nhostname: old\nserviceCidr: 10.96.0.0/12\ndnsDomain: cluster.local\n",
    )
    .unwrap();
    let old = Settings::load(&path).unwrap().unwrap();
    assert_eq!(old.kubernetes_version, "v1.36.3");
    // One no kinit here runs still loads (status, down work); up says what to do.
    std::fs::write(&path, "nodeIp: 10.0.2.15\nhostname: old\nserviceCidr: 10.96.0.0/12\ndnsDomain: cluster.local\nkubernetesVersion: v1.20.0\n").unwrap();
    let unknown = Settings::load(&path).unwrap().unwrap();
    let err = unknown.release().unwrap_err().to_string();
    assert!(
        err.contains("runs Kubernetes v1.20.0, which this kinit does not run"),
        "{err}"
    );
}

/// `cluster.yaml` as the kinit before typed settings wrote it.
const WRITTEN_BEFORE: &str = "# Written by kinit up; the settings this cluster was created with.
nodeIp: 10.0.2.15
hostname: kinit-test
serviceCidr: 10.96.0.0/12
dnsDomain: cluster.local
podCidr: 10.244.0.0/16
kubernetesVersion: VERSION
imageRepository: 127.0.0.1:5000/k8s
";

#[test]
fn state_files_of_earlier_kinits_load_and_save_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    let text = WRITTEN_BEFORE.replace("VERSION", Release::default().kubernetes);
    std::fs::write(&path, &text).unwrap();
    let loaded = Settings::load(&path).unwrap().unwrap();
    assert_eq!(
        loaded,
        Settings {
            image_repository: Some("127.0.0.1:5000/k8s".into()),
            ..settings()
        }
    );
    loaded.save(&path).unwrap();
    // Saving records the addons such a cluster gets: the defaults.
    let with_addons = format!("{text}addons:\n- storage\n- metrics-server\n- load-balancer\n");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), with_addons);
    assert_eq!(Settings::load(&path).unwrap().unwrap(), loaded);
    // One from before the pod range was saved reads as the default.
    let old = "nodeIp: 10.0.2.15\nhostname: kinit-test\nserviceCidr: 10.96.0.0/12\ndnsDomain: cluster.local\n";
    let read: Settings = serde_yaml::from_str(old).unwrap();
    assert_eq!(
        read,
        Settings {
            kubernetes_version: "v1.36.3".into(),
            ..settings()
        }
    );
}

#[test]
fn state_file_round_trip_and_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    assert!(Settings::load(&path).unwrap().is_none());
    settings().save(&path).unwrap();
    assert_eq!(Settings::load(&path).unwrap(), Some(settings()));
    for (bad, why) in [
        ("nodeIp: [not an ip\n", "nodeIp"),
        (
            "nodeIp: 10.0.2.15\nhostname: BAD\nserviceCidr: 10.96.0.0/12\ndnsDomain: x\n",
            "'BAD' is not a valid host name",
        ),
        (
            "nodeIp: 10.0.2.15\nhostname: a\nserviceCidr: 10.0.0.0/8\ndnsDomain: x\n",
            "the Service range needs a prefix from /12 to /28",
        ),
        (
            "nodeIp: 10.0.2.15\nhostname: a\nserviceCidr: 10.96.0.0/12\ndnsDomain: x\npodCidr: 10.96.0.0/16\n",
            "overlaps the Service range",
        ),
    ] {
        std::fs::write(&path, bad).unwrap();
        let err = format!("{:#}", Settings::load(&path).unwrap_err());
        assert!(err.contains("is corrupt"), "{err}");
        assert!(err.contains(why), "{bad}: {err}");
    }
}

#[test]
fn component_settings_are_kept_until_named_again_and_then_replaced_whole() {
    let gates = |s: &str| Some(s.parse::<FeatureGates>().unwrap());
    let args = |list: &[&str]| {
        let parsed: Vec<ExtraArg> = list.iter().map(|a| a.parse().unwrap()).collect();
        Some(ExtraArgs::from_list(&parsed).unwrap())
    };
    let first = Settings::new(&Requested {
        feature_gates: gates("A=true,B=false"),
        extra_args: args(&["apiserver:v=4", "scheduler:v=2"]),
        audit_log: Some(true),
        ..requested()
    })
    .unwrap();
    assert!(first.audit_log);
    // A plain `kinit up` keeps everything.
    let kept = Settings::reconcile(first.clone(), &requested()).unwrap();
    assert_eq!(kept, first);
    // A set given again replaces the whole set; the others stay.
    let replaced = Settings::reconcile(
        first.clone(),
        &Requested {
            extra_args: args(&["kubelet:max-pods=200"]),
            ..requested()
        },
    )
    .unwrap();
    assert_eq!(replaced.extra_args.to_string(), "kubelet:max-pods=200");
    assert_eq!(replaced.feature_gates, first.feature_gates);
    // Empty sets and false clear them.
    let cleared = Settings::reconcile(
        first,
        &Requested {
            feature_gates: gates(""),
            extra_args: Some(ExtraArgs::default()),
            audit_log: Some(false),
            ..requested()
        },
    )
    .unwrap();
    assert_eq!(cleared, settings());
}

#[test]
fn component_settings_are_saved_only_when_given() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    let given = Settings {
        feature_gates: "A=true".parse().unwrap(),
        extra_args: ExtraArgs::from_list(&["apiserver:v=4".parse().unwrap()]).unwrap(),
        audit_log: true,
        ..settings()
    };
    given.save(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(
            "featureGates:\n  A: true\nextraArgs:\n  apiserver:\n    v: '4'\nauditLog: true\n"
        ),
        "{text}"
    );
    assert_eq!(Settings::load(&path).unwrap(), Some(given));
    // Without them, the file is as an earlier kinit wrote it.
    settings().save(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("featureGates") && !text.contains("auditLog"),
        "{text}"
    );
    // A broken value is a corrupt file, not a silent default.
    std::fs::write(&path, format!("{text}extraArgs: {{etcd: {{v: 4}}}}\n")).unwrap();
    let err = format!("{:#}", Settings::load(&path).unwrap_err());
    assert!(
        err.contains("is corrupt") && err.contains("'etcd'"),
        "{err}"
    );
}

#[test]
fn addons_a_new_cluster_gets_exactly_an_existing_one_only_gains() {
    use crate::addons::Addon;
    let only_storage: std::collections::BTreeSet<Addon> = [Addon::Storage].into();
    let mut new = settings();
    assert_eq!(new.addons, Addon::defaults());
    assert!(new.request_addons(&only_storage, true).is_empty());
    assert_eq!(new.addons, only_storage);
    assert!(new.request_addons(&Default::default(), true).is_empty());
    assert!(new.addons.is_empty());

    // The ingress controller brings the load balancer its address needs.
    let mut ingress = settings();
    ingress.request_addons(&[Addon::Ingress].into(), true);
    assert_eq!(ingress.addons, [Addon::LoadBalancer, Addon::Ingress].into());

    let mut existing = settings();
    let kept = existing.request_addons(&only_storage, false);
    assert_eq!(kept, [Addon::MetricsServer, Addon::LoadBalancer]);
    assert_eq!(existing.addons, Addon::defaults());
    existing.addons.clear();
    assert!(existing.request_addons(&only_storage, false).is_empty());
    assert_eq!(existing.addons, only_storage);

    // Saved and read back; a file with an unknown addon is refused as corrupt.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    existing.save(&path).unwrap();
    assert_eq!(Settings::load(&path).unwrap().unwrap(), existing);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("- storage", "- gateway");
    std::fs::write(&path, text).unwrap();
    let err = format!("{:#}", Settings::load(&path).unwrap_err());
    assert!(
        err.contains("is corrupt") && err.contains("gateway"),
        "{err}"
    );
}
