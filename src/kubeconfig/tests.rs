//! The format: kinit's own kubeconfigs, and merging into and out of a user's.

use serde_json::Value;

use super::*;

fn ours(server: &str) -> Kubeconfig {
    new(server, "CA", "kubernetes-admin", "CERT", "KEY")
}

/// kinit's files as earlier versions wrote them: `pki` compares credentials byte for byte.
const ADMIN: &str = "\
apiVersion: v1
kind: Config
clusters:
- name: kinit
  cluster:
    server: https://10.0.2.15:6443
    certificate-authority-data: Q0E=
users:
- name: kubernetes-admin@kinit
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
contexts:
- name: kinit
  context:
    cluster: kinit
    user: kubernetes-admin@kinit
current-context: kinit
";

#[test]
fn kinits_kubeconfig_is_written_as_before_with_its_key_in_the_clear() {
    let text = to_yaml(&ours("https://10.0.2.15:6443")).unwrap();
    // The keys kubectl reads, base64 as it expects; the key is written, not redacted.
    assert_eq!(text, ADMIN);
    let parsed = parse(text.as_bytes()).unwrap();
    assert_eq!(
        client_credentials(&parsed).unwrap(),
        ("CERT".to_string(), "KEY".to_string())
    );
    assert!(same(&parsed, &ours("https://10.0.2.15:6443")));
    assert!(!same(&parsed, &ours("https://10.0.2.16:6443")));
}

/// A user's file as kubectl writes it (keys in alphabetical order), with the things
/// kube's types must carry through unchanged: an exec plugin, extensions, preferences,
/// fields they do not model.
const USERS: &str = "\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: UFJPRENB
    extensions:
    - extension: {last-update: today}
      name: example.com/info
    server: https://prod.example:6443
  name: prod
contexts:
- context:
    cluster: prod
    namespace: shop
    user: me
  name: prod
current-context: prod
kind: Config
preferences:
  colors: true
users:
- name: me
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      args: [eks, get-token]
      command: aws
      env: [{name: AWS_PROFILE, value: prod}]
      interactiveMode: Never
      provideClusterInfo: false
- name: robot
  user:
    token: s3cret
x-custom: {kept: true}
";

/// Each entry of a list (clusters, users or contexts) as JSON, for comparisons that do
/// not depend on how a file spells them.
fn entries(config: &Kubeconfig, key: &str) -> Vec<Value> {
    serde_json::to_value(config).unwrap()[key]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn merging_then_removing_gives_back_every_entry_of_the_users() {
    let original = parse(USERS.as_bytes()).unwrap();
    let once = merged(Some(USERS.as_bytes()), &ours("https://10.0.2.15:6443"))
        .unwrap()
        .unwrap();
    let twice = merged(Some(once.as_bytes()), &ours("https://10.0.2.16:6443"))
        .unwrap()
        .unwrap();
    assert!(twice.contains("https://10.0.2.16:6443") && !twice.contains("10.0.2.15"));
    // The keys kubectl reads: the user's CA and kinit's, kinit's certificate and key.
    for (key, count) in [
        ("certificate-authority-data: ", 2),
        ("client-certificate-data: Q0VSVA==", 1),
        ("client-key-data: S0VZ", 1),
    ] {
        assert_eq!(twice.matches(key).count(), count, "{key}\n{twice}");
    }
    let merged_config = parse(twice.as_bytes()).unwrap();
    assert_eq!(merged_config.current_context.as_deref(), Some("kinit"));
    let names = |key: &str| -> Vec<String> {
        entries(&merged_config, key)
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("clusters"), ["prod", "kinit"]);
    assert_eq!(names("users"), ["me", "robot", "kubernetes-admin@kinit"]);
    assert_eq!(names("contexts"), ["prod", "kinit"]);

    let left = parse(removed(twice.as_bytes(), &ours("x")).unwrap().as_bytes()).unwrap();
    for key in ["clusters", "users", "contexts", "preferences", "x-custom"] {
        assert_eq!(
            serde_json::to_value(&left).unwrap()[key],
            serde_json::to_value(&original).unwrap()[key],
            "{key}"
        );
    }
    assert_eq!(left.current_context.as_deref(), Some(""));
    // Nothing else changed: with the current context back, it is the user's file.
    let back = Kubeconfig {
        current_context: Some("prod".into()),
        ..left
    };
    assert!(same(&back, &original));
}

#[test]
fn a_file_that_says_so_already_is_left_alone_however_it_is_spelled() {
    let text = merged(Some(USERS.as_bytes()), &ours("https://h:6443"))
        .unwrap()
        .unwrap();
    assert_eq!(
        merged(Some(text.as_bytes()), &ours("https://h:6443")).unwrap(),
        None
    );
    // The same content in flow style and another order.
    let respelled = serde_json::to_string(&parse(text.as_bytes()).unwrap()).unwrap();
    assert_eq!(
        merged(Some(respelled.as_bytes()), &ours("https://h:6443")).unwrap(),
        None
    );
    assert!(
        merged(Some(text.as_bytes()), &ours("https://other:6443"))
            .unwrap()
            .is_some()
    );
}

#[test]
fn a_new_or_empty_file_gets_a_whole_kubeconfig_and_garbage_is_refused() {
    for existing in [None, Some(&b""[..]), Some(&b"\n"[..])] {
        let text = merged(existing, &ours("https://10.0.2.15:6443"))
            .unwrap()
            .unwrap();
        assert_eq!(text, ADMIN);
    }
    for garbage in [&b"- a list"[..], b"{unclosed", b"clusters: 3", b"\xff\xfe"] {
        assert!(merged(Some(garbage), &ours("x")).is_err());
        assert!(removed(garbage, &ours("x")).is_err());
    }
}
