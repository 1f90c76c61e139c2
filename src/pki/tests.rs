use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;

use super::*;

use crate::cluster::test_settings as settings;

/// Every file under `dir`, relative path to bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn cert(dir: &Path, rel: &str) -> CertInfo {
    CertInfo::from_pem(&std::fs::read(dir.join(rel)).unwrap()).unwrap()
}

/// The leaf certificate of a spec, wherever it is stored.
fn leaf_cert(dir: &Path, leaf: &LeafSpec) -> CertInfo {
    match leaf.store {
        Store::Files(path) => cert(dir, &format!("{path}.crt")),
        Store::Kubeconfig(file) => {
            let kc = kubeconfig::parse(&std::fs::read(dir.join(file)).unwrap()).unwrap();
            let (cert, _) = kubeconfig::client_credentials(&kc).unwrap();
            CertInfo::from_pem(cert.as_bytes()).unwrap()
        }
    }
}

#[test]
fn fresh_pki_has_every_file_with_the_right_modes() {
    let dir = tempfile::tempdir().unwrap();
    let report = ensure(dir.path(), &settings()).unwrap();
    assert!(report.kept.is_empty(), "{report:?}");
    let files = snapshot(dir.path());
    for name in [
        "pki/ca.crt",
        "pki/ca.key",
        "pki/apiserver.crt",
        "pki/apiserver.key",
        "pki/apiserver-kubelet-client.crt",
        "pki/apiserver-etcd-client.crt",
        "pki/front-proxy-ca.crt",
        "pki/front-proxy-client.crt",
        "pki/sa.key",
        "pki/sa.pub",
        "pki/etcd/ca.crt",
        "pki/etcd/server.crt",
        "pki/etcd/peer.crt",
        "pki/etcd/healthcheck-client.crt",
        "pki/kubelet.crt",
        "admin.conf",
        "controller-manager.conf",
        "scheduler.conf",
        "kubelet.conf",
        "kube-proxy.conf",
    ] {
        assert!(
            files.contains_key(name),
            "{name} missing; have {:?}",
            files.keys()
        );
    }
    for name in files.keys() {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        let private = name.ends_with(".key") || name.ends_with(".conf");
        assert_eq!(mode, if private { 0o600 } else { 0o644 }, "{name}");
    }
}

#[test]
fn every_leaf_chains_to_its_ca_with_its_subject_sans_and_usages() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings();
    ensure(dir.path(), &s).unwrap();
    let now = OffsetDateTime::now_utc().unix_timestamp();

    for id in CaId::ALL {
        let ca = cert(dir.path(), &format!("{}.crt", id.path()));
        assert!(ca.is_ca && ca.key_cert_sign, "{id:?} is not a CA");
        assert_eq!(ca.common_name.as_deref(), Some(id.common_name()));
        ca.verify_signed_by(&ca).unwrap();
    }
    for leaf in specs::leaves(&s) {
        let info = leaf_cert(dir.path(), &leaf);
        let ca = cert(dir.path(), &format!("{}.crt", leaf.ca.path()));
        info.verify_signed_by(&ca)
            .unwrap_or_else(|e| panic!("{}: {e}", leaf.name()));
        // ... and by no other CA.
        for other in CaId::ALL.into_iter().filter(|id| *id != leaf.ca) {
            let other = cert(dir.path(), &format!("{}.crt", other.path()));
            assert!(
                info.verify_signed_by(&other).is_err(),
                "{} verifies against a foreign CA",
                leaf.name()
            );
        }
        assert!(!info.is_ca, "{} is a CA", leaf.name());
        assert!(info.digital_signature, "{}", leaf.name());
        assert_eq!(info.server_auth, leaf.usage.server(), "{}", leaf.name());
        assert_eq!(info.client_auth, leaf.usage.client(), "{}", leaf.name());
        assert!(
            info.not_before <= now && info.not_after > now + 300 * 86400,
            "{}",
            leaf.name()
        );
    }
}

#[test]
fn apiserver_sans_cover_every_name_clients_use() {
    let dir = tempfile::tempdir().unwrap();
    ensure(dir.path(), &settings()).unwrap();
    let api = cert(dir.path(), "pki/apiserver.crt");
    for dns in [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "kinit-test",
        "localhost",
    ] {
        assert!(
            api.dns_names.contains(dns),
            "missing DNS SAN {dns}: {:?}",
            api.dns_names
        );
    }
    for ip in ["10.0.2.15", "127.0.0.1", "10.96.0.1"] {
        assert!(
            api.ip_addresses.contains(&ip.parse::<IpAddr>().unwrap()),
            "missing IP SAN {ip}"
        );
    }
    assert!(api.server_auth && !api.client_auth);
    let etcd = cert(dir.path(), "pki/etcd/server.crt");
    assert!(etcd.server_auth && etcd.client_auth);
    assert!(
        etcd.ip_addresses
            .contains(&"10.0.2.15".parse::<IpAddr>().unwrap())
    );
}

#[test]
fn only_admin_is_a_superuser_and_components_have_their_identities() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings();
    ensure(dir.path(), &s).unwrap();
    let mut subjects = BTreeMap::new();
    for leaf in specs::leaves(&s) {
        let info = leaf_cert(dir.path(), &leaf);
        subjects.insert(leaf.name(), (info.common_name.unwrap(), info.organizations));
    }
    let subject = |name: &str| subjects[name].clone();
    assert_eq!(
        subject("admin.conf"),
        ("kubernetes-admin".into(), vec!["system:masters".into()])
    );
    assert_eq!(
        subject("kubelet.conf"),
        ("system:node:kinit-test".into(), vec!["system:nodes".into()])
    );
    assert_eq!(
        subject("controller-manager.conf").0,
        "system:kube-controller-manager"
    );
    assert_eq!(subject("scheduler.conf").0, "system:kube-scheduler");
    assert_eq!(subject("kube-proxy.conf").0, "system:kube-proxy");
    assert_eq!(
        subject("etcd/healthcheck-client").0,
        "kube-etcd-healthcheck-client"
    );
    let masters: Vec<_> = subjects
        .iter()
        .filter(|(_, (_, orgs))| orgs.iter().any(|o| o == "system:masters"))
        .map(|(name, _)| *name)
        .collect();
    assert_eq!(masters, ["admin.conf"]);

    let admin = kubeconfig::parse(&std::fs::read(dir.path().join("admin.conf")).unwrap()).unwrap();
    let cluster = admin.clusters[0].cluster.as_ref().unwrap();
    assert_eq!(cluster.server.as_deref(), Some("https://10.0.2.15:6443"));
    assert_eq!(admin.current_context.as_deref(), Some("kinit"));
}

#[test]
fn second_run_keeps_everything_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    ensure(dir.path(), &settings()).unwrap();
    let before = snapshot(dir.path());
    let report = ensure(dir.path(), &settings()).unwrap();
    assert!(report.issued.is_empty(), "{report:?}");
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn changed_node_ip_reissues_only_the_affected_leaves() {
    let dir = tempfile::tempdir().unwrap();
    ensure(dir.path(), &settings()).unwrap();
    let before = snapshot(dir.path());
    let moved = Settings {
        node_ip: "10.0.2.16".parse().unwrap(),
        ..settings()
    };
    let report = ensure(dir.path(), &moved).unwrap();
    let after = snapshot(dir.path());

    let mut issued = report.issued.clone();
    issued.sort();
    assert_eq!(
        issued,
        [
            "admin.conf",
            "apiserver",
            "controller-manager.conf",
            "etcd/peer",
            "etcd/server",
            "kube-proxy.conf",
            "kubelet",
            "kubelet.conf",
            "scheduler.conf",
        ]
    );
    for unchanged in [
        "pki/ca.crt",
        "pki/ca.key",
        "pki/etcd/ca.crt",
        "pki/front-proxy-client.crt",
        "pki/sa.key",
    ] {
        assert_eq!(before[unchanged], after[unchanged], "{unchanged} changed");
    }
    let api = cert(dir.path(), "pki/apiserver.crt");
    assert!(
        api.ip_addresses
            .contains(&"10.0.2.16".parse::<IpAddr>().unwrap())
    );
    assert!(
        !api.ip_addresses
            .contains(&"10.0.2.15".parse::<IpAddr>().unwrap())
    );
}

#[test]
fn leaves_near_expiry_are_renewed_and_the_ca_kept() {
    let dir = tempfile::tempdir().unwrap();
    let start = OffsetDateTime::now_utc();
    ensure_at(dir.path(), &settings(), start).unwrap();
    let ca_before = std::fs::read(dir.path().join("pki/ca.crt")).unwrap();
    let later = start + Duration::days(LEAF_VALIDITY_DAYS - RENEW_BEFORE_DAYS + 1);
    let report = ensure_at(dir.path(), &settings(), later).unwrap();
    assert_eq!(
        report.issued.len(),
        specs::leaves(&settings()).len(),
        "{report:?}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("pki/ca.crt")).unwrap(),
        ca_before
    );
}

#[test]
fn damaged_leaves_are_reissued() {
    let dir = tempfile::tempdir().unwrap();
    ensure(dir.path(), &settings()).unwrap();
    std::fs::write(dir.path().join("pki/apiserver.crt"), "garbage").unwrap();
    std::fs::remove_file(dir.path().join("pki/etcd/peer.key")).unwrap();
    std::fs::write(dir.path().join("scheduler.conf"), "not: [yaml").unwrap();
    let report = ensure(dir.path(), &settings()).unwrap();
    let mut issued = report.issued.clone();
    issued.sort();
    assert_eq!(issued, ["apiserver", "etcd/peer", "scheduler.conf"]);
}

#[test]
fn a_broken_ca_is_an_error_not_a_silent_replacement() {
    let dir = tempfile::tempdir().unwrap();
    ensure(dir.path(), &settings()).unwrap();
    std::fs::remove_file(dir.path().join("pki/ca.key")).unwrap();
    let err = format!("{:#}", ensure(dir.path(), &settings()).unwrap_err());
    assert!(err.contains("has no private key"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    ensure(dir.path(), &settings()).unwrap();
    // Swap the etcd CA key for the front-proxy one: a mismatched pair.
    std::fs::copy(
        dir.path().join("pki/front-proxy-ca.key"),
        dir.path().join("pki/etcd/ca.key"),
    )
    .unwrap();
    let err = format!("{:#}", ensure(dir.path(), &settings()).unwrap_err());
    assert!(err.contains("does not match its private key"), "{err}");
}

#[test]
fn a_ca_key_without_its_certificate_is_completed_and_its_leaves_kept() {
    // What a run killed between writing the CA key and its certificate leaves behind.
    let dir = tempfile::tempdir().unwrap();
    ensure(dir.path(), &settings()).unwrap();
    let key = std::fs::read(dir.path().join("pki/ca.key")).unwrap();
    std::fs::remove_file(dir.path().join("pki/ca.crt")).unwrap();
    let report = ensure(dir.path(), &settings()).unwrap();
    // Kubeconfigs embed the CA certificate, so they are written again; certificates in
    // files verify against the completed CA and are kept.
    let mut issued = report.issued.clone();
    issued.sort();
    assert_eq!(
        issued,
        [
            "admin.conf",
            "ca.crt",
            "controller-manager.conf",
            "kube-proxy.conf",
            "kubelet.conf",
            "scheduler.conf"
        ]
    );
    assert!(report.kept.contains(&"apiserver".to_string()), "{report:?}");
    assert_eq!(std::fs::read(dir.path().join("pki/ca.key")).unwrap(), key);
    let again = ensure(dir.path(), &settings()).unwrap();
    assert!(again.issued.is_empty(), "{again:?}");
}

#[test]
fn the_credentials_digest_follows_every_certificate_and_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    ensure(dir.path(), &crate::cluster::test_settings()).unwrap();
    let first = digest(dir.path()).unwrap();
    assert_eq!(first, digest(dir.path()).unwrap());
    // A moved node address re-issues the certificates and kubeconfigs naming it.
    let moved = Settings {
        node_ip: "10.0.2.99".parse().unwrap(),
        ..crate::cluster::test_settings()
    };
    ensure(dir.path(), &moved).unwrap();
    let second = digest(dir.path()).unwrap();
    assert_ne!(first, second);
    std::fs::write(dir.path().join("admin.conf"), "changed").unwrap();
    assert_ne!(second, digest(dir.path()).unwrap());
}
