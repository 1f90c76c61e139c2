//! The cluster's PKI: three CAs, the leaf certificates a kubeadm-style node needs, the
//! service-account key pair and the component kubeconfigs.
//!
//! [`ensure`] is idempotent. A valid CA and every leaf that still matches its spec are kept
//! byte for byte; a leaf whose SANs, subject or issuer no longer match, or that expires
//! within [`RENEW_BEFORE_DAYS`], is issued again, and nothing else is touched.

pub mod inspect;
pub mod specs;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use tracing::debug;

use crate::cluster::Settings;
use crate::fs::{self, Mode};
use crate::kubeconfig;
use inspect::CertInfo;
use specs::{CaId, LeafSpec, Store};

const CA_VALIDITY_DAYS: i64 = 3650;
const LEAF_VALIDITY_DAYS: i64 = 365;
/// `kinit up` renews leaves this close to expiry, so a cluster left running keeps working.
pub const RENEW_BEFORE_DAYS: i64 = 30;
/// Backdating covers small clock differences between the host and whoever checks.
const BACKDATE: Duration = Duration::minutes(5);

/// What [`ensure`] did, by file name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub issued: Vec<String>,
    pub kept: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.issued.len(), self.kept.len()) {
            (0, kept) => write!(f, "all {kept} valid, kept"),
            (issued, 0) => write!(f, "{issued} issued"),
            (issued, kept) => write!(
                f,
                "{issued} issued ({}), {kept} kept",
                self.issued.join(", ")
            ),
        }
    }
}

/// A digest of every certificate, key and kubeconfig in `dir` (a PKI [`ensure`] made).
/// Components read them when they start; a component whose manifest or container carries
/// this digest is restarted when any of them changes (a renewal, a moved node address).
pub fn digest(dir: &Path) -> Result<String> {
    let mut files = Vec::new();
    collect(&dir.join("pki"), &mut files)?;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "conf") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let mut hash = Sha256::new();
    for file in files {
        let bytes = fs::read_optional(&file)?.unwrap_or_default();
        hash.update(file.to_string_lossy().as_bytes());
        hash.update((bytes.len() as u64).to_be_bytes());
        hash.update(&bytes);
    }
    Ok(hash.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot read {}", dir.display()))?
            .path();
        if path.is_dir() {
            collect(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

/// Makes `dir` hold a complete, valid PKI for `settings`.
pub fn ensure(dir: &Path, settings: &Settings) -> Result<Report> {
    ensure_at(dir, settings, OffsetDateTime::now_utc())
}

/// A file to write once everything has been generated.
struct Output {
    path: PathBuf,
    bytes: Vec<u8>,
    mode: Mode,
}

struct Ca {
    id: CaId,
    pem: String,
    info: CertInfo,
    key: KeyPair,
}

fn ensure_at(dir: &Path, settings: &Settings, now: OffsetDateTime) -> Result<Report> {
    let mut report = Report::default();
    let mut outputs = Vec::new();

    let mut cas = Vec::new();
    for id in CaId::ALL {
        let name = format!("{}.crt", id.path().trim_start_matches("pki/"));
        let ca = match load_ca(dir, id, now)? {
            Stored::Complete(ca) => {
                report.kept.push(name);
                ca
            }
            Stored::KeyOnly(key) => {
                let ca = new_ca(id, now, Some(key))?;
                write_ca(dir, &ca, false)?;
                report.issued.push(name);
                ca
            }
            Stored::Missing => {
                let ca = new_ca(id, now, None)?;
                write_ca(dir, &ca, true)?;
                report.issued.push(name);
                ca
            }
        };
        cas.push(ca);
    }

    ensure_service_account_keys(dir, &mut report, &mut outputs)?;

    for leaf in specs::leaves(settings) {
        let ca = cas
            .iter()
            .find(|ca| ca.id == leaf.ca)
            .ok_or_else(|| anyhow!("no CA {:?}", leaf.ca))?;
        match current_leaf(dir, &leaf, ca, settings, now) {
            Ok(()) => report.kept.push(leaf.name().to_string()),
            Err(reason) => {
                debug!("issuing {}: {reason:#}", leaf.name());
                outputs.extend(issue_leaf(dir, &leaf, ca, settings, now)?);
                report.issued.push(leaf.name().to_string());
            }
        }
    }

    for out in outputs {
        fs::write_file(&out.path, &out.bytes, out.mode)?;
    }
    Ok(report)
}

/// A CA as found on disk.
enum Stored {
    Missing,
    /// Only the key: a run died between writing the key and the certificate (the key is
    /// written first). A certificate made again from the same key and name verifies
    /// everything the key signed, so nothing is lost.
    KeyOnly(KeyPair),
    Complete(Ca),
}

/// Writes a new CA, its key first: a run that dies in between leaves a key
/// [`load_ca`] completes, never a certificate without its key, which nothing could
/// complete.
fn write_ca(dir: &Path, ca: &Ca, with_key: bool) -> Result<()> {
    if with_key {
        let key = dir.join(format!("{}.key", ca.id.path()));
        fs::write_file(&key, ca.key.serialize_pem().as_bytes(), Mode::Private)?;
        crate::crash::point("ca-key-written");
    }
    let cert = dir.join(format!("{}.crt", ca.id.path()));
    fs::write_file(&cert, ca.pem.as_bytes(), Mode::Public)
}

/// Loads a CA. A certificate without its key, or a broken one, is an error, never
/// silently replaced: every certificate it signed would stop working.
fn load_ca(dir: &Path, id: CaId, now: OffsetDateTime) -> Result<Stored> {
    let cert_path = dir.join(format!("{}.crt", id.path()));
    let key_path = dir.join(format!("{}.key", id.path()));
    let cert = fs::read_optional(&cert_path)?;
    let key = fs::read_optional(&key_path)?;
    let broken = |what: String| {
        anyhow!(
            "the certificate authority {} {what}; restore it, or delete {} to start a new PKI \
             (for a cluster: `kinit down --purge`)",
            cert_path.display(),
            dir.join("pki").display()
        )
    };
    let parse_key = |key: Vec<u8>| {
        let text = String::from_utf8(key)
            .map_err(|_| broken("has a private key that is not PEM text".into()))?;
        KeyPair::from_pem(&text).map_err(|e| broken(format!("has an unreadable private key ({e})")))
    };
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(Stored::Missing),
        (Some(_), None) => {
            return Err(broken(format!("has no private key {}", key_path.display())));
        }
        (None, Some(key)) => return Ok(Stored::KeyOnly(parse_key(key)?)),
        (Some(c), Some(k)) => (c, parse_key(k)?),
    };
    let info = CertInfo::from_pem(&cert).map_err(|e| broken(format!("cannot be read ({e})")))?;
    let pem = String::from_utf8(cert).map_err(|_| broken("is not PEM text".into()))?;
    if !info.is_ca || !info.key_cert_sign {
        return Err(broken("is not a CA certificate".into()));
    }
    if info.public_key != key.subject_public_key_info() {
        return Err(broken("does not match its private key".into()));
    }
    if info.not_after <= now.unix_timestamp() {
        return Err(broken("has expired".into()));
    }
    Ok(Stored::Complete(Ca { id, pem, info, key }))
}

/// A new CA certificate, for `key` or a new key.
fn new_ca(id: CaId, now: OffsetDateTime, key: Option<KeyPair>) -> Result<Ca> {
    let key = match key {
        Some(key) => key,
        None => KeyPair::generate().context("cannot generate a CA key")?,
    };
    let mut params = CertificateParams::default();
    params.distinguished_name = name(id.common_name(), None);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
    params.serial_number = Some(serial(&key, now));
    let cert = params
        .self_signed(&key)
        .with_context(|| format!("cannot create the CA {}", id.common_name()))?;
    let pem = cert.pem();
    let info = CertInfo::from_der(cert.der())?;
    Ok(Ca { id, pem, info, key })
}

/// The key pair the API server signs service-account tokens with. Kept when present; the
/// public half is derived from the private one.
fn ensure_service_account_keys(
    dir: &Path,
    report: &mut Report,
    outputs: &mut Vec<Output>,
) -> Result<()> {
    let key_path = dir.join("pki/sa.key");
    let pub_path = dir.join("pki/sa.pub");
    let key = match fs::read_optional(&key_path)? {
        Some(pem) => {
            let text = String::from_utf8(pem)
                .map_err(|_| anyhow!("{} is not PEM text", key_path.display()))?;
            let key = KeyPair::from_pem(&text).map_err(|e| {
                anyhow!(
                    "{} is not a private key ({e}); restore it or delete it to sign tokens with a new key",
                    key_path.display()
                )
            })?;
            report.kept.push("sa.key".into());
            key
        }
        None => {
            let key = KeyPair::generate().context("cannot generate the service-account key")?;
            outputs.push(Output {
                path: key_path,
                bytes: key.serialize_pem().into(),
                mode: Mode::Private,
            });
            report.issued.push("sa.key".into());
            key
        }
    };
    let public = key.public_key_pem().into_bytes();
    if fs::read_optional(&pub_path)?.as_deref() != Some(public.as_slice()) {
        outputs.push(Output {
            path: pub_path,
            bytes: public,
            mode: Mode::Public,
        });
    }
    Ok(())
}

/// `Ok` when the stored leaf is still what the spec asks for; otherwise why not.
fn current_leaf(
    dir: &Path,
    leaf: &LeafSpec,
    ca: &Ca,
    settings: &Settings,
    now: OffsetDateTime,
) -> Result<()> {
    let (cert_pem, key_pem) = match leaf.store {
        Store::Files(path) => {
            let cert = fs::read_optional(&dir.join(format!("{path}.crt")))?
                .ok_or_else(|| anyhow!("missing"))?;
            let key = fs::read_optional(&dir.join(format!("{path}.key")))?
                .ok_or_else(|| anyhow!("key missing"))?;
            (String::from_utf8(cert)?, String::from_utf8(key)?)
        }
        Store::Kubeconfig(file) => {
            let text = fs::read_optional(&dir.join(file))?.ok_or_else(|| anyhow!("missing"))?;
            let (cert, key) = kubeconfig::client_credentials(&kubeconfig::parse(&text)?)?;
            // Server, CA and names must all still match: compare with what we would write.
            let expected = kubeconfig::to_yaml(&kubeconfig::new(
                &settings.api_server_url(),
                &ca.pem,
                &leaf.common_name,
                &cert,
                &key,
            ))?;
            if expected.as_bytes() != text.as_slice() {
                bail!("server, CA or names changed");
            }
            (cert, key)
        }
    };
    let info = CertInfo::from_pem(cert_pem.as_bytes())?;
    info.verify_signed_by(&ca.info)?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| anyhow!("bad key: {e}"))?;
    if key.subject_public_key_info() != info.public_key {
        bail!("certificate and key do not match");
    }
    if info.not_after - now.unix_timestamp() < Duration::days(RENEW_BEFORE_DAYS).whole_seconds() {
        bail!("expires within {RENEW_BEFORE_DAYS} days");
    }
    if info.common_name.as_deref() != Some(leaf.common_name.as_str())
        || info.organizations != leaf.organization.iter().cloned().collect::<Vec<_>>()
    {
        bail!("subject changed");
    }
    if info.dns_names != leaf.dns_names.iter().cloned().collect()
        || info.ip_addresses != leaf.ip_addresses.iter().copied().collect()
    {
        bail!("SANs changed");
    }
    if info.is_ca
        || info.server_auth != leaf.usage.server()
        || info.client_auth != leaf.usage.client()
    {
        bail!("usage changed");
    }
    Ok(())
}

fn issue_leaf(
    dir: &Path,
    leaf: &LeafSpec,
    ca: &Ca,
    settings: &Settings,
    now: OffsetDateTime,
) -> Result<Vec<Output>> {
    let key = KeyPair::generate().context("cannot generate a key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(&leaf.common_name, leaf.organization.as_deref());
    for dns in &leaf.dns_names {
        let ia5 = dns
            .clone()
            .try_into()
            .with_context(|| format!("'{dns}' cannot be a DNS SAN"))?;
        params.subject_alt_names.push(SanType::DnsName(ia5));
    }
    params
        .subject_alt_names
        .extend(leaf.ip_addresses.iter().map(|ip| SanType::IpAddress(*ip)));
    params.is_ca = IsCa::ExplicitNoCa;
    // ECDSA keys only sign; keyEncipherment would be meaningless for them.
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if leaf.usage.server() {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if leaf.usage.client() {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(LEAF_VALIDITY_DAYS);
    params.serial_number = Some(serial(&key, now));
    let issuer = Issuer::from_ca_cert_pem(&ca.pem, &ca.key).context("cannot use the CA")?;
    let cert = params
        .signed_by(&key, &issuer)
        .with_context(|| format!("cannot issue {}", leaf.name()))?;
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());

    Ok(match leaf.store {
        Store::Files(path) => vec![
            Output {
                path: dir.join(format!("{path}.crt")),
                bytes: cert_pem.into(),
                mode: Mode::Public,
            },
            Output {
                path: dir.join(format!("{path}.key")),
                bytes: key_pem.into(),
                mode: Mode::Private,
            },
        ],
        Store::Kubeconfig(file) => {
            let config = kubeconfig::new(
                &settings.api_server_url(),
                &ca.pem,
                &leaf.common_name,
                &cert_pem,
                &key_pem,
            );
            vec![Output {
                path: dir.join(file),
                bytes: kubeconfig::to_yaml(&config)?.into(),
                mode: Mode::Private,
            }]
        }
    })
}

fn name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

/// A positive 128-bit serial unique to this key and moment, as RFC 5280 asks.
fn serial(key: &KeyPair, now: OffsetDateTime) -> SerialNumber {
    let mut hash = Sha256::new();
    hash.update(key.subject_public_key_info());
    hash.update(now.unix_timestamp_nanos().to_be_bytes());
    let mut bytes: [u8; 16] = hash.finalize()[..16].try_into().unwrap_or([1; 16]);
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

#[cfg(test)]
mod tests;
