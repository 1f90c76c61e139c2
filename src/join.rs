//! Kubernetes' bootstrap protocol for joining a host, as kubeadm speaks it: a bootstrap
//! token (`<id>.<secret>`, a Secret in kube-system with an expiry), the kube-public
//! `cluster-info` ConfigMap that the controller-manager's bootstrapsigner signs with every
//! token (a detached JWS, HMAC-SHA256 keyed by the token's secret), and the cluster's CA
//! pinned by the SHA-256 of its public key. A joining host that knows the token and the
//! pin can trust the CA it is handed before it trusts anything else, and the token only
//! lets it ask for a kubelet's client certificate.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use kube::config::Kubeconfig;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::pki::inspect::CertInfo;

pub mod approver;

/// The group every kinit bootstrap token authenticates as, besides
/// `system:bootstrappers`; manifests/join/rbac.yaml grants it what a joining kubelet needs.
pub const TOKEN_GROUP: &str = "system:bootstrappers:kinit:default-node-token";
/// The key of the cluster-info ConfigMap that holds the kubeconfig, and the prefix of the
/// keys that hold its signatures (one per token, by token ID).
pub const KUBECONFIG_KEY: &str = "kubeconfig";
pub const SIGNATURE_PREFIX: &str = "jws-kubeconfig-";

const ID_LEN: usize = 6;
const SECRET_LEN: usize = 16;
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A bootstrap token. Its secret is never printed by `Debug` or `Display`.
#[derive(Clone)]
pub struct Token {
    id: String,
    secret: SecretString,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}.<secret>)", self.id)
    }
}

impl Token {
    /// A new token from the system's random source.
    pub fn generate() -> Result<Self> {
        let rng = SystemRandom::new();
        let word = |len: usize| -> Result<String> {
            let mut out = String::with_capacity(len);
            while out.len() < len {
                let mut byte = [0u8; 1];
                rng.fill(&mut byte)
                    .map_err(|_| anyhow!("the system's random source failed"))?;
                // 252 = 7 * 36: bytes above it would favour the first letters.
                if byte[0] < 252 {
                    out.push(ALPHABET[usize::from(byte[0]) % ALPHABET.len()] as char);
                }
            }
            Ok(out)
        };
        Ok(Self {
            id: word(ID_LEN)?,
            secret: word(SECRET_LEN)?.into(),
        })
    }

    /// Reads `<id>.<secret>`: six and sixteen characters of `[a-z0-9]`.
    pub fn parse(text: &str) -> Result<Self> {
        let valid =
            |s: &str, len: usize| s.len() == len && s.bytes().all(|b| ALPHABET.contains(&b));
        match text.split_once('.') {
            Some((id, secret)) if valid(id, ID_LEN) && valid(secret, SECRET_LEN) => Ok(Self {
                id: id.to_string(),
                secret: secret.to_string().into(),
            }),
            _ => bail!(
                "the token must look like abcdef.0123456789abcdef (6 and 16 characters of a-z and 0-9, \
                 as `kinit join-command` prints it)"
            ),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn secret(&self) -> &str {
        self.secret.expose_secret()
    }

    /// `<id>.<secret>`, as the join command and a bearer header carry it.
    pub fn expose(&self) -> String {
        format!("{}.{}", self.id, self.secret.expose_secret())
    }

    /// The name of the Secret that holds this token.
    pub fn secret_name(&self) -> String {
        format!("bootstrap-token-{}", self.id)
    }
}

/// The pin of a CA: the SHA-256 of its SubjectPublicKeyInfo (kubeadm's
/// `--discovery-token-ca-cert-hash`), written `sha256:<64 hex digits>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaHash([u8; 32]);

impl CaHash {
    pub fn of_pem(ca_pem: &[u8]) -> Result<Self> {
        let ca = CertInfo::from_pem(ca_pem).context("the cluster's CA certificate")?;
        Ok(Self(Sha256::digest(&ca.public_key).into()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let hex = text.strip_prefix("sha256:").ok_or_else(|| {
            anyhow!("the CA certificate hash must start with sha256: (as `kinit join-command` prints it)")
        })?;
        ensure!(
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "the CA certificate hash must be sha256: and 64 hexadecimal digits"
        );
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .context("bad hexadecimal digit in the CA certificate hash")?;
        }
        Ok(Self(out))
    }
}

impl fmt::Display for CaHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The detached JWS the bootstrapsigner writes for `content` and `token`:
/// `<header>..<signature>`, HS256 keyed by the token's secret, the token ID as `kid`.
pub fn sign(content: &str, token: &Token) -> String {
    let header = B64URL.encode(format!(r#"{{"alg":"HS256","kid":"{}"}}"#, token.id()));
    let key = hmac::Key::new(hmac::HMAC_SHA256, token.secret().as_bytes());
    let input = format!("{header}.{}", B64URL.encode(content));
    let tag = hmac::sign(&key, input.as_bytes());
    format!("{header}..{}", B64URL.encode(tag.as_ref()))
}

/// Checks a detached JWS of `content` against `token`: the header must name HS256 and the
/// token's ID, and the HMAC must match (compared in constant time).
pub fn verify(detached: &str, content: &str, token: &Token) -> Result<()> {
    let (header, signature) = detached
        .split_once("..")
        .ok_or_else(|| anyhow!("the signature is not a detached JWS"))?;
    let fields: BTreeMap<String, serde_json::Value> = serde_json::from_slice(
        &B64URL
            .decode(header)
            .context("the signature's header is not base64url")?,
    )
    .context("the signature's header is not a JSON object")?;
    ensure!(
        fields.get("alg").and_then(|v| v.as_str()) == Some("HS256"),
        "the signature is not HS256"
    );
    ensure!(
        fields.get("kid").and_then(|v| v.as_str()) == Some(token.id()),
        "the signature is for another token"
    );
    let tag = B64URL
        .decode(signature)
        .context("the signature is not base64url")?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, token.secret().as_bytes());
    let input = format!("{header}.{}", B64URL.encode(content));
    hmac::verify(&key, input.as_bytes(), &tag)
        .map_err(|_| anyhow!("the signature does not match the token"))
}

/// What a joining host learns from cluster-info once it has checked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// The API server's URL, as the control plane wrote it.
    pub server: String,
    pub ca_pem: String,
}

/// Checks the cluster-info ConfigMap's data: signed with `token` (so the control plane
/// that knows the token wrote it), and its CA pinned by `pin` (so it is the cluster the
/// user meant). Nothing of it may be used before this returns.
pub fn check_cluster_info(
    data: &BTreeMap<String, String>,
    token: &Token,
    pin: &CaHash,
) -> Result<ClusterInfo> {
    let content = data
        .get(KUBECONFIG_KEY)
        .ok_or_else(|| anyhow!("cluster-info has no kubeconfig"))?;
    let signature = data
        .get(&format!("{SIGNATURE_PREFIX}{}", token.id()))
        .ok_or_else(|| {
            anyhow!(
                "cluster-info has no signature for the token {}: the token is unknown, expired, \
                 or the controller-manager has not signed it yet",
                token.id()
            )
        })?;
    verify(signature, content, token).context("cluster-info's signature")?;
    let config = Kubeconfig::from_yaml(content).context("cluster-info's kubeconfig")?;
    let cluster = config
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| anyhow!("cluster-info's kubeconfig has no cluster"))?;
    let server = cluster
        .server
        .clone()
        .ok_or_else(|| anyhow!("cluster-info's kubeconfig has no server"))?;
    let ca = cluster
        .certificate_authority_data
        .as_ref()
        .ok_or_else(|| anyhow!("cluster-info's kubeconfig has no CA"))?;
    let ca_pem = String::from_utf8(B64.decode(ca).context("cluster-info's CA is not base64")?)
        .context("cluster-info's CA is not PEM text")?;
    let found = CaHash::of_pem(ca_pem.as_bytes())?;
    ensure!(
        &found == pin,
        "the cluster's CA has the hash {found}, not {pin}: this is not the cluster the join \
         command was made for (or someone between the hosts answered in its place)"
    );
    Ok(ClusterInfo { server, ca_pem })
}

#[cfg(test)]
mod tests;
