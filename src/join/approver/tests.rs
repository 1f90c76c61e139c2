use rcgen::{CertificateParams, DnType, KeyPair, SanType};

use super::*;

fn csr(cn: &str, orgs: &[&str], sans: Vec<SanType>) -> Vec<u8> {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    for org in orgs {
        params
            .distinguished_name
            .push(DnType::OrganizationName, *org);
    }
    params.subject_alt_names = sans;
    params
        .serialize_request(&key)
        .expect("request")
        .pem()
        .expect("pem")
        .into_bytes()
}

fn node() -> NodeFacts {
    NodeFacts {
        name: "worker".into(),
        addresses: vec!["192.0.2.20".into(), "worker".into()],
    }
}

fn request(pem: Vec<u8>) -> Request {
    Request {
        signer: SIGNER.into(),
        username: "system:node:worker".into(),
        groups: vec!["system:nodes".into(), "system:authenticated".into()],
        usages: vec!["digital signature".into(), "server auth".into()],
        pem,
    }
}

fn good_pem() -> Vec<u8> {
    csr(
        "system:node:worker",
        &["system:nodes"],
        vec![
            SanType::DnsName("worker".try_into().expect("name")),
            SanType::IpAddress("192.0.2.20".parse().expect("ip")),
        ],
    )
}

fn refused(r: &Request, why: &str) {
    let err = check(r, &node()).expect_err("approved");
    assert!(
        format!("{err:#}").contains(why),
        "{err:#} (expected {why:?})"
    );
}

#[test]
fn a_kubelet_asking_for_its_own_names_is_approved() {
    let r = request(good_pem());
    assert_eq!(node_of(&r), Some("worker"));
    check(&r, &node()).expect("approved");
}

#[test]
fn other_signers_are_not_this_approvers() {
    let mut r = request(good_pem());
    r.signer = "kubernetes.io/kube-apiserver-client-kubelet".into();
    assert_eq!(node_of(&r), None);
    refused(&r, "signer");
}

#[test]
fn a_node_cannot_ask_for_another() {
    let mut r = request(good_pem());
    r.username = "system:node:master".into();
    refused(&r, "not by the node");
    let mut r = request(good_pem());
    r.groups = vec!["system:authenticated".into()];
    refused(&r, "not in system:nodes");
    let r = request(csr(
        "system:node:master",
        &["system:nodes"],
        vec![SanType::IpAddress("192.0.2.20".parse().expect("ip"))],
    ));
    refused(&r, "subject");
}

#[test]
fn client_usages_and_foreign_names_are_refused() {
    let mut r = request(good_pem());
    r.usages.push("client auth".into());
    refused(&r, "client auth");
    let mut r = request(good_pem());
    r.usages = vec!["digital signature".into()];
    refused(&r, "no server auth");

    let r = request(csr(
        "system:node:worker",
        &["system:nodes"],
        vec![SanType::IpAddress("192.0.2.99".parse().expect("ip"))],
    ));
    refused(&r, "192.0.2.99");
    let r = request(csr(
        "system:node:worker",
        &["system:nodes"],
        vec![SanType::DnsName(
            "kubernetes.default".try_into().expect("name"),
        )],
    ));
    refused(&r, "kubernetes.default");
    let r = request(csr(
        "system:node:worker",
        &["system:nodes"],
        vec![SanType::Rfc822Name(
            "a@example.com".try_into().expect("mail"),
        )],
    ));
    refused(&r, "other than hosts");
    let r = request(csr("system:node:worker", &["system:nodes"], vec![]));
    refused(&r, "names no host");
    let r = request(csr(
        "system:node:worker",
        &["system:masters"],
        vec![SanType::IpAddress("192.0.2.20".parse().expect("ip"))],
    ));
    refused(&r, "organizations");
}

#[test]
fn garbage_requests_are_refused() {
    refused(&request(b"not pem".to_vec()), "not PEM");
    let cert_pem = {
        let key = KeyPair::generate().expect("key");
        CertificateParams::new(vec!["worker".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert")
            .pem()
    };
    refused(&request(cert_pem.into_bytes()), "not a CERTIFICATE REQUEST");
}
