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

fn decode(b64: &str) -> Result<String> {
    let bytes = B64.decode(b64).context("bad base64 in a kubeconfig")?;
    String::from_utf8(bytes).context("a kubeconfig credential is not PEM text")
}
