//! Reads certificates back with x509-parser, an X.509 parser independent of the code that
//! wrote them, to decide whether an existing certificate can be kept.

use std::collections::BTreeSet;
use std::net::IpAddr;

use anyhow::{Context, Result, anyhow, bail};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The facts about a certificate that kinit cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub der: Vec<u8>,
    pub common_name: Option<String>,
    pub organizations: Vec<String>,
    pub dns_names: BTreeSet<String>,
    pub ip_addresses: BTreeSet<IpAddr>,
    pub is_ca: bool,
    pub key_cert_sign: bool,
    pub digital_signature: bool,
    pub server_auth: bool,
    pub client_auth: bool,
    pub not_before: i64,
    pub not_after: i64,
    /// The SubjectPublicKeyInfo, DER, for matching against a private key.
    pub public_key: Vec<u8>,
}

impl CertInfo {
    /// Parses the first certificate in a PEM document.
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem)
            .map_err(|e| anyhow!("not a PEM certificate: {e}"))?;
        if pem.label != "CERTIFICATE" {
            bail!("expected a CERTIFICATE, found {}", pem.label);
        }
        Self::from_der(&pem.contents)
    }

    pub fn from_der(der: &[u8]) -> Result<Self> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| anyhow!("not an X.509 certificate: {e}"))?;
        let mut dns_names = BTreeSet::new();
        let mut ip_addresses = BTreeSet::new();
        if let Some(san) = cert
            .subject_alternative_name()
            .context("bad subjectAltName")?
        {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => {
                        dns_names.insert(d.to_string());
                    }
                    GeneralName::IPAddress(bytes) => {
                        ip_addresses.insert(ip_from_bytes(bytes)?);
                    }
                    _ => {}
                }
            }
        }
        let key_usage = cert.key_usage().context("bad keyUsage")?;
        let eku = cert.extended_key_usage().context("bad extendedKeyUsage")?;
        let subject = cert.subject();
        Ok(Self {
            der: der.to_vec(),
            common_name: subject
                .iter_common_name()
                .next()
                .and_then(|a| a.as_str().ok())
                .map(str::to_string),
            organizations: subject
                .iter_organization()
                .filter_map(|a| a.as_str().ok())
                .map(str::to_string)
                .collect(),
            dns_names,
            ip_addresses,
            is_ca: cert
                .basic_constraints()
                .context("bad basicConstraints")?
                .is_some_and(|b| b.value.ca),
            key_cert_sign: key_usage.as_ref().is_some_and(|k| k.value.key_cert_sign()),
            digital_signature: key_usage
                .as_ref()
                .is_some_and(|k| k.value.digital_signature()),
            server_auth: eku.as_ref().is_some_and(|e| e.value.server_auth),
            client_auth: eku.as_ref().is_some_and(|e| e.value.client_auth),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            public_key: cert.public_key().raw.to_vec(),
        })
    }

    /// Checks that `issuer` signed this certificate and that its subject is our issuer.
    pub fn verify_signed_by(&self, issuer: &CertInfo) -> Result<()> {
        let (_, cert) = X509Certificate::from_der(&self.der).map_err(|e| anyhow!("{e}"))?;
        let (_, ca) = X509Certificate::from_der(&issuer.der).map_err(|e| anyhow!("{e}"))?;
        if cert.issuer().as_raw() != ca.subject().as_raw() {
            bail!("issued by {}, not by {}", cert.issuer(), ca.subject());
        }
        cert.verify_signature(Some(ca.public_key()))
            .map_err(|e| anyhow!("signature does not verify: {e}"))
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Result<IpAddr> {
    match bytes.len() {
        4 => Ok(IpAddr::from(<[u8; 4]>::try_from(bytes)?)),
        16 => Ok(IpAddr::from(<[u8; 16]>::try_from(bytes)?)),
        n => bail!("an IP SAN of {n} bytes"),
    }
}
