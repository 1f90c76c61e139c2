//! Which kubelet serving certificates kinit approves. A joined host's kubelet asks for its
//! serving certificate with a CertificateSigningRequest (`serverTLSBootstrap`); the API
//! server checks kubelets' certificates against the cluster's CA, so the request must be
//! approved, and nothing in Kubernetes approves this signer by itself. Approved only when
//! a node asks for itself, for server use only, and for names its Node object has: the
//! checks kubeadm's documentation asks of whoever approves these.

use std::collections::BTreeSet;
use std::net::IpAddr;

use anyhow::{Result, anyhow, bail, ensure};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

pub const SIGNER: &str = "kubernetes.io/kubelet-serving";
const NODE_PREFIX: &str = "system:node:";
const NODES_GROUP: &str = "system:nodes";
/// The usages a kubelet asks for (RSA keys add key encipherment, ECDSA keys do not).
const ALLOWED_USAGES: [&str; 3] = ["digital signature", "key encipherment", "server auth"];

/// A CertificateSigningRequest as the API server recorded it: who asked (set by the API
/// server from the requester's credentials, not by the requester) and what for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub signer: String,
    pub username: String,
    pub groups: Vec<String>,
    pub usages: Vec<String>,
    /// The PKCS#10 request, PEM.
    pub pem: Vec<u8>,
}

/// The Node a request names, as the API server has it.
#[derive(Debug, Clone, Default)]
pub struct NodeFacts {
    pub name: String,
    /// status.addresses: InternalIP, ExternalIP, Hostname...
    pub addresses: Vec<String>,
}

/// The node a kubelet-serving request comes from, or None for a request of another kind.
pub fn node_of(request: &Request) -> Option<&str> {
    if request.signer != SIGNER {
        return None;
    }
    request.username.strip_prefix(NODE_PREFIX)
}

/// Ok when `request` may be approved for `node`; otherwise why not.
pub fn check(request: &Request, node: &NodeFacts) -> Result<()> {
    ensure!(
        request.signer == SIGNER,
        "signer {} is not {SIGNER}",
        request.signer
    );
    let expected_user = format!("{NODE_PREFIX}{}", node.name);
    ensure!(
        request.username == expected_user,
        "requested by {}, not by the node {}",
        request.username,
        node.name
    );
    ensure!(
        request.groups.iter().any(|g| g == NODES_GROUP),
        "the requester is not in {NODES_GROUP}"
    );
    ensure!(
        request.usages.iter().any(|u| u == "server auth"),
        "no server auth usage"
    );
    if let Some(other) = request
        .usages
        .iter()
        .find(|u| !ALLOWED_USAGES.contains(&u.as_str()))
    {
        bail!("usage {other:?} is not for a kubelet's server");
    }

    let names = Names::parse(&request.pem)?;
    ensure!(
        names.common_name.as_deref() == Some(expected_user.as_str()),
        "the request's subject is {:?}, not {expected_user}",
        names.common_name
    );
    ensure!(
        names.organizations == [NODES_GROUP],
        "the request's organizations are {:?}, not [{NODES_GROUP}]",
        names.organizations
    );
    ensure!(
        !names.other,
        "the request names something other than hosts and addresses"
    );
    ensure!(
        !names.dns.is_empty() || !names.ips.is_empty(),
        "the request names no host"
    );
    let known_names: BTreeSet<&str> = node.addresses.iter().map(String::as_str).collect();
    for dns in &names.dns {
        ensure!(
            known_names.contains(dns.as_str()),
            "the name {dns} is not one of the Node's addresses"
        );
    }
    let known_ips: BTreeSet<IpAddr> = node
        .addresses
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    for ip in &names.ips {
        ensure!(
            known_ips.contains(ip),
            "the address {ip} is not one of the Node's addresses"
        );
    }
    Ok(())
}

/// What a request's subject and subjectAltName say.
#[derive(Debug, Default)]
struct Names {
    common_name: Option<String>,
    organizations: Vec<String>,
    dns: Vec<String>,
    ips: Vec<IpAddr>,
    /// Any other kind of alternative name (e-mail, URI...).
    other: bool,
}

impl Names {
    fn parse(pem: &[u8]) -> Result<Self> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem)
            .map_err(|e| anyhow!("the request is not PEM: {e}"))?;
        ensure!(
            pem.label == "CERTIFICATE REQUEST",
            "the request is a {}, not a CERTIFICATE REQUEST",
            pem.label
        );
        let (_, csr) = X509CertificationRequest::from_der(&pem.contents)
            .map_err(|e| anyhow!("the request is not PKCS#10: {e}"))?;
        // The key that signed it is the key the certificate would carry.
        csr.verify_signature()
            .map_err(|e| anyhow!("the request's signature does not verify: {e}"))?;
        let subject = &csr.certification_request_info.subject;
        let text = |attr: &x509_parser::x509::AttributeTypeAndValue<'_>| {
            attr.as_str()
                .map(str::to_string)
                .map_err(|e| anyhow!("unreadable subject: {e}"))
        };
        let mut names = Names {
            common_name: subject.iter_common_name().next().map(text).transpose()?,
            organizations: subject
                .iter_organization()
                .map(text)
                .collect::<Result<_>>()?,
            ..Default::default()
        };
        for extension in csr.requested_extensions().into_iter().flatten() {
            if let ParsedExtension::SubjectAlternativeName(san) = extension {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => names.dns.push(d.to_string()),
                        GeneralName::IPAddress(bytes) => names.ips.push(ip(bytes)?),
                        _ => names.other = true,
                    }
                }
            }
        }
        Ok(names)
    }
}

fn ip(bytes: &[u8]) -> Result<IpAddr> {
    match bytes.len() {
        4 => Ok(IpAddr::from(<[u8; 4]>::try_from(bytes)?)),
        16 => Ok(IpAddr::from(<[u8; 16]>::try_from(bytes)?)),
        n => bail!("an IP address of {n} bytes"),
    }
}

#[cfg(test)]
mod tests;
