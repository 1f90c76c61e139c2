use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

use super::*;

fn ca_pem() -> String {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.self_signed(&key).expect("CA").pem()
}

fn token() -> Token {
    Token::parse("abcdef.0123456789abcdef").expect("token")
}

fn kubeconfig_with(ca: &str) -> String {
    let config = crate::kubeconfig::new("https://192.0.2.10:6443", ca, "x", "", "");
    let mut config = config;
    // cluster-info carries the cluster only, as the control plane publishes it.
    config.auth_infos.clear();
    serde_yaml::to_string(&config).expect("yaml")
}

fn cluster_info(content: &str, token: &Token) -> BTreeMap<String, String> {
    BTreeMap::from([
        (KUBECONFIG_KEY.to_string(), content.to_string()),
        (
            format!("{SIGNATURE_PREFIX}{}", token.id()),
            sign(content, token),
        ),
    ])
}

#[test]
fn generated_tokens_parse_and_differ() {
    let a = Token::generate().expect("token");
    let b = Token::generate().expect("token");
    assert_ne!(a.expose(), b.expose());
    let again = Token::parse(&a.expose()).expect("parses");
    assert_eq!(again.id(), a.id());
    assert_eq!(again.secret(), a.secret());
    assert_eq!(a.secret_name(), format!("bootstrap-token-{}", a.id()));
    assert!(
        !format!("{a:?}").contains(a.secret()),
        "Debug shows the secret"
    );
}

#[test]
fn malformed_tokens_are_refused() {
    for bad in [
        "",
        "abcdef",
        "abcdef.",
        "abcdef.0123456789abcde",
        "abcdef.0123456789abcdefg",
        "ABCDEF.0123456789abcdef",
        "abcde.0123456789abcdef0",
        "abc-ef.0123456789abcdef",
        "abcdef:0123456789abcdef",
    ] {
        assert!(Token::parse(bad).is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn ca_hash_round_trips_and_pins_the_public_key() {
    let ca = ca_pem();
    let hash = CaHash::of_pem(ca.as_bytes()).expect("hash");
    let text = hash.to_string();
    assert!(
        text.starts_with("sha256:") && text.len() == 7 + 64,
        "{text}"
    );
    assert_eq!(CaHash::parse(&text).expect("parses"), hash);
    assert_ne!(CaHash::of_pem(ca_pem().as_bytes()).expect("hash"), hash);
    for bad in [
        "",
        "sha256:",
        "md5:00",
        &text[7..],
        &format!("{text}0"),
        &text.replace('a', "g"),
    ] {
        if bad != text {
            assert!(CaHash::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}

#[test]
fn signatures_verify_only_for_their_token_and_content() {
    let t = token();
    let signed = sign("hello", &t);
    assert!(signed.contains(".."), "{signed}");
    verify(&signed, "hello", &t).expect("verifies");
    assert!(verify(&signed, "hello!", &t).is_err());
    let other = Token::parse("abcdef.fedcba9876543210").expect("token");
    assert!(verify(&signed, "hello", &other).is_err());
    let other_id = Token::parse("zzzzzz.0123456789abcdef").expect("token");
    assert!(verify(&signed, "hello", &other_id).is_err());
    assert!(verify("not a jws", "hello", &t).is_err());
}

#[test]
fn a_signature_in_another_header_encoding_still_verifies() {
    // go-jose may order or space the header differently; what is signed is whatever
    // header the signer wrote.
    let t = token();
    let header = B64URL.encode(r#"{"kid":"abcdef", "alg":"HS256"}"#);
    let key = hmac::Key::new(hmac::HMAC_SHA256, t.secret().as_bytes());
    let tag = hmac::sign(&key, format!("{header}.{}", B64URL.encode("x")).as_bytes());
    let detached = format!("{header}..{}", B64URL.encode(tag.as_ref()));
    verify(&detached, "x", &t).expect("verifies");
    let none = format!("{}..", B64URL.encode(r#"{"alg":"none","kid":"abcdef"}"#));
    assert!(verify(&none, "x", &t).is_err(), "alg none was accepted");
}

#[test]
fn cluster_info_is_used_only_when_signed_and_pinned() {
    let ca = ca_pem();
    let pin = CaHash::of_pem(ca.as_bytes()).expect("hash");
    let t = token();
    let content = kubeconfig_with(&ca);
    let info = check_cluster_info(&cluster_info(&content, &t), &t, &pin).expect("accepted");
    assert_eq!(info.server, "https://192.0.2.10:6443");
    assert_eq!(info.ca_pem, ca);

    // Another CA, correctly signed: someone else's cluster, or someone in between.
    let other = kubeconfig_with(&ca_pem());
    let err = check_cluster_info(&cluster_info(&other, &t), &t, &pin).expect_err("refused");
    assert!(format!("{err:#}").contains("not the cluster"), "{err:#}");

    // Content changed after signing.
    let mut tampered = cluster_info(&content, &t);
    tampered.insert(
        KUBECONFIG_KEY.into(),
        content.replace("192.0.2.10", "192.0.2.66"),
    );
    assert!(check_cluster_info(&tampered, &t, &pin).is_err());

    // No signature for this token (unknown or expired).
    let mut unsigned = cluster_info(&content, &t);
    unsigned.retain(|k, _| k == KUBECONFIG_KEY);
    let err = check_cluster_info(&unsigned, &t, &pin).expect_err("refused");
    assert!(format!("{err:#}").contains("no signature"), "{err:#}");

    // Not base64 CA data.
    let garbled = content.replace(&B64.encode(&ca)[..20], "!!!!");
    assert!(check_cluster_info(&cluster_info(&garbled, &t), &t, &pin).is_err());
}
