//! Kubeconfig files as typed values, written with serde rather than text templates so a
//! name or certificate can never break the YAML.

use anyhow::{Context as _, Result, anyhow};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

/// The name of kinit's cluster and context in every kubeconfig it writes.
pub const CONTEXT: &str = "kinit";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    /// The one camelCase key of the format.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub clusters: Vec<Named<Cluster>>,
    pub users: Vec<Named<User>>,
    pub contexts: Vec<Named<NamedContext>>,
    pub current_context: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Named<T> {
    pub name: String,
    #[serde(flatten)]
    pub item: T,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub cluster: ClusterEntry,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ClusterEntry {
    pub server: String,
    pub certificate_authority_data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub user: UserEntry,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct UserEntry {
    pub client_certificate_data: String,
    pub client_key_data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedContext {
    pub context: ContextEntry,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextEntry {
    pub cluster: String,
    pub user: String,
}

impl Kubeconfig {
    /// A kubeconfig with one cluster, one user authenticated by a client certificate, and
    /// the context `kinit` selecting them.
    pub fn new(server: &str, ca_pem: &str, user: &str, cert_pem: &str, key_pem: &str) -> Self {
        let user_name = format!("{user}@{CONTEXT}");
        Self {
            api_version: "v1".into(),
            kind: "Config".into(),
            clusters: vec![Named {
                name: CONTEXT.into(),
                item: Cluster {
                    cluster: ClusterEntry {
                        server: server.into(),
                        certificate_authority_data: B64.encode(ca_pem),
                    },
                },
            }],
            users: vec![Named {
                name: user_name.clone(),
                item: User {
                    user: UserEntry {
                        client_certificate_data: B64.encode(cert_pem),
                        client_key_data: B64.encode(key_pem),
                    },
                },
            }],
            contexts: vec![Named {
                name: CONTEXT.into(),
                item: NamedContext {
                    context: ContextEntry {
                        cluster: CONTEXT.into(),
                        user: user_name,
                    },
                },
            }],
            current_context: CONTEXT.into(),
        }
    }

    pub fn to_yaml(&self) -> Result<String> {
        serde_yaml::to_string(self).context("cannot serialize a kubeconfig")
    }

    pub fn from_yaml(text: &[u8]) -> Result<Self> {
        serde_yaml::from_slice(text).context("not a kubeconfig kinit wrote")
    }

    /// The PEM client certificate and key of the first user.
    pub fn client_credentials(&self) -> Result<(String, String)> {
        let user = &self
            .users
            .first()
            .ok_or_else(|| anyhow!("the kubeconfig has no user"))?
            .item
            .user;
        Ok((
            decode(&user.client_certificate_data)?,
            decode(&user.client_key_data)?,
        ))
    }
}

/// `ours` merged into a user's kubeconfig text (`None`: no file yet): its cluster, user and
/// context replace entries of the same names, every other entry and setting is kept, and
/// the current context becomes kinit's, as `kind create cluster` does.
pub fn merge(existing: Option<&[u8]>, ours: &Kubeconfig) -> Result<String> {
    let mut doc = parse_user_file(existing)?;
    let ours_value = serde_yaml::to_value(ours).context("cannot serialize a kubeconfig")?;
    for key in ["clusters", "users", "contexts"] {
        let names: Vec<serde_yaml::Value> = list(&ours_value, key)
            .iter()
            .filter_map(|e| e.get("name").cloned())
            .collect();
        let mut entries: Vec<serde_yaml::Value> = list(&doc, key)
            .into_iter()
            .filter(|e| e.get("name").is_none_or(|n| !names.contains(n)))
            .collect();
        entries.extend(list(&ours_value, key));
        doc[key] = serde_yaml::Value::Sequence(entries);
    }
    doc["current-context"] = CONTEXT.into();
    serde_yaml::to_string(&doc).context("cannot serialize a kubeconfig")
}

/// A user's kubeconfig text without kinit's context, cluster and user (what `down --purge`
/// leaves behind); the current context is cleared when it was kinit's.
pub fn remove(existing: &[u8], ours: &Kubeconfig) -> Result<String> {
    let mut doc = parse_user_file(Some(existing))?;
    let ours_value = serde_yaml::to_value(ours).context("cannot serialize a kubeconfig")?;
    for key in ["clusters", "users", "contexts"] {
        let names: Vec<serde_yaml::Value> = list(&ours_value, key)
            .iter()
            .filter_map(|e| e.get("name").cloned())
            .collect();
        let kept: Vec<serde_yaml::Value> = list(&doc, key)
            .into_iter()
            .filter(|e| e.get("name").is_none_or(|n| !names.contains(n)))
            .collect();
        doc[key] = serde_yaml::Value::Sequence(kept);
    }
    if doc.get("current-context").and_then(|c| c.as_str()) == Some(CONTEXT) {
        doc["current-context"] = "".into();
    }
    serde_yaml::to_string(&doc).context("cannot serialize a kubeconfig")
}

fn parse_user_file(existing: Option<&[u8]>) -> Result<serde_yaml::Value> {
    let doc = match existing {
        Some(text) if !text.iter().all(u8::is_ascii_whitespace) => {
            serde_yaml::from_slice(text).context("the existing kubeconfig is not valid YAML")?
        }
        _ => serde_yaml::Value::Null,
    };
    let mut doc = match doc {
        serde_yaml::Value::Mapping(m) => serde_yaml::Value::Mapping(m),
        serde_yaml::Value::Null => serde_yaml::Value::Mapping(Default::default()),
        _ => return Err(anyhow!("the existing kubeconfig is not a YAML mapping")),
    };
    if doc.get("apiVersion").is_none() {
        doc["apiVersion"] = "v1".into();
    }
    if doc.get("kind").is_none() {
        doc["kind"] = "Config".into();
    }
    Ok(doc)
}

fn list(doc: &serde_yaml::Value, key: &str) -> Vec<serde_yaml::Value> {
    doc.get(key)
        .and_then(|v| v.as_sequence())
        .cloned()
        .unwrap_or_default()
}

fn decode(b64: &str) -> Result<String> {
    let bytes = B64.decode(b64).context("bad base64 in a kubeconfig")?;
    String::from_utf8(bytes).context("a kubeconfig credential is not PEM text")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(server: &str) -> Kubeconfig {
        Kubeconfig::new(server, "CA", "kubernetes-admin", "CERT", "KEY")
    }

    #[test]
    fn merging_keeps_other_contexts_and_replaces_our_own() {
        let other = b"apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster: {server: https://prod}\nusers:\n- name: me\n  user: {token: t}\ncontexts:\n- name: prod\n  context: {cluster: prod, user: me}\ncurrent-context: prod\npreferences: {colors: true}\n";
        let once = merge(Some(other), &ours("https://10.0.2.15:6443")).unwrap();
        let twice = merge(Some(once.as_bytes()), &ours("https://10.0.2.16:6443")).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&twice).unwrap();
        assert_eq!(doc["current-context"].as_str(), Some("kinit"));
        assert_eq!(doc["clusters"].as_sequence().unwrap().len(), 2);
        assert_eq!(doc["contexts"].as_sequence().unwrap().len(), 2);
        assert_eq!(doc["preferences"]["colors"].as_bool(), Some(true));
        assert!(twice.contains("https://10.0.2.16:6443") && !twice.contains("10.0.2.15"));
        let removed = remove(twice.as_bytes(), &ours("x")).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&removed).unwrap();
        assert_eq!(doc["clusters"].as_sequence().unwrap().len(), 1);
        assert_eq!(doc["users"][0]["name"].as_str(), Some("me"));
        assert_eq!(doc["current-context"].as_str(), Some(""));
    }

    #[test]
    fn a_new_or_empty_file_gets_a_whole_kubeconfig_and_garbage_is_refused() {
        for existing in [None, Some(&b""[..]), Some(&b"\n"[..])] {
            let text = merge(existing, &ours("https://h:6443")).unwrap();
            let parsed = Kubeconfig::from_yaml(text.as_bytes()).unwrap();
            assert_eq!(parsed, ours("https://h:6443"));
        }
        assert!(merge(Some(b"- a list"), &ours("x")).is_err());
        assert!(merge(Some(b"{unclosed"), &ours("x")).is_err());
    }
}
