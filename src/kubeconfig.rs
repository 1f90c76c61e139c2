//! Kubeconfig files, as kube's typed [`Kubeconfig`]: the ones kinit writes for itself and
//! its components (one cluster, one user with a client certificate, context `kinit`), and
//! the user's kubeconfig that `kinit up` merges that context into and `kinit down --purge`
//! takes it out of. Under sudo the user's file is theirs, owned by them, and reached
//! without following any link they could have made (see [`fs::Dir`]).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use kube::config::{
    AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};
use nix::unistd::User;
use secrecy::ExposeSecret;

use crate::fs;

/// The name of kinit's cluster and context in every kubeconfig it writes.
pub const CONTEXT: &str = "kinit";

/// A kubeconfig with one cluster, one user authenticated by a client certificate, and
/// the context `kinit` selecting them.
pub fn new(server: &str, ca_pem: &str, user: &str, cert_pem: &str, key_pem: &str) -> Kubeconfig {
    let user_name = format!("{user}@{CONTEXT}");
    Kubeconfig {
        clusters: vec![NamedCluster {
            name: CONTEXT.into(),
            cluster: Some(Cluster {
                server: Some(server.into()),
                certificate_authority_data: Some(B64.encode(ca_pem)),
                ..Default::default()
            }),
            ..Default::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: user_name.clone(),
            auth_info: Some(AuthInfo {
                client_certificate_data: Some(B64.encode(cert_pem)),
                client_key_data: Some(B64.encode(key_pem).into()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        contexts: vec![NamedContext {
            name: CONTEXT.into(),
            context: Some(Context {
                cluster: CONTEXT.into(),
                user: Some(user_name),
                ..Default::default()
            }),
            ..Default::default()
        }],
        current_context: Some(CONTEXT.into()),
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        ..Default::default()
    }
}

/// The file's text. `apiVersion` and `kind` come first, where kinit has always written
/// them: `pki` compares the credentials it would write with the files byte for byte, so
/// another order would re-issue every one of them once.
/// The cluster alone, no user: what kube-public/cluster-info publishes.
pub fn cluster_only(server: &str, ca_pem: &str) -> Kubeconfig {
    let mut config = new(server, ca_pem, "", "", "");
    config.auth_infos.clear();
    config.contexts.clear();
    config.current_context = None;
    config
}

/// A kubelet's bootstrap kubeconfig: the cluster and a bootstrap token, which the kubelet
/// trades for its client certificate (TLS bootstrapping).
pub fn with_token(server: &str, ca_pem: &str, user: &str, token: &str) -> Kubeconfig {
    let mut config = new(server, ca_pem, user, "", "");
    for named in &mut config.auth_infos {
        named.auth_info = Some(AuthInfo {
            token: Some(token.to_string().into()),
            ..Default::default()
        });
    }
    config
}

/// A kubeconfig whose client certificate and key are files another program renews (the
/// kubelet's `kubelet-client-current.pem`, both in one file).
pub fn with_cert_file(server: &str, ca_pem: &str, user: &str, cert_and_key: &str) -> Kubeconfig {
    let mut config = new(server, ca_pem, user, "", "");
    for named in &mut config.auth_infos {
        named.auth_info = Some(AuthInfo {
            client_certificate: Some(cert_and_key.to_string()),
            client_key: Some(cert_and_key.to_string()),
            ..Default::default()
        });
    }
    config
}

pub fn to_yaml(config: &Kubeconfig) -> Result<String> {
    let serde_yaml::Value::Mapping(mut fields) =
        serde_yaml::to_value(config).context("cannot serialize a kubeconfig")?
    else {
        return Err(anyhow!("a kubeconfig did not serialize to a mapping"));
    };
    let mut ordered = serde_yaml::Mapping::new();
    for key in ["apiVersion", "kind"] {
        if let Some(value) = fields.remove(key) {
            ordered.insert(key.into(), value);
        }
    }
    ordered.extend(fields);
    serde_yaml::to_string(&ordered).context("cannot serialize a kubeconfig")
}

/// A kubeconfig's text read (an empty text is an empty kubeconfig).
pub fn parse(text: &[u8]) -> Result<Kubeconfig> {
    let text = std::str::from_utf8(text).context("a kubeconfig that is not UTF-8 text")?;
    Kubeconfig::from_yaml(text).context("not a valid kubeconfig")
}

/// The PEM client certificate and key of the first user.
pub fn client_credentials(config: &Kubeconfig) -> Result<(String, String)> {
    let user = config
        .auth_infos
        .first()
        .and_then(|u| u.auth_info.as_ref())
        .ok_or_else(|| anyhow!("the kubeconfig has no user"))?;
    let cert = user.client_certificate_data.as_deref();
    let key = user.client_key_data.as_ref().map(|k| k.expose_secret());
    match (cert, key) {
        (Some(cert), Some(key)) => Ok((decode(cert)?, decode(key)?)),
        _ => Err(anyhow!("the kubeconfig's user has no client certificate")),
    }
}

fn decode(b64: &str) -> Result<String> {
    let bytes = B64.decode(b64).context("bad base64 in a kubeconfig")?;
    String::from_utf8(bytes).context("a kubeconfig credential is not PEM text")
}

/// `ours` merged into `config`: its cluster, user and context replace entries of the same
/// names, every other entry and setting is kept, and the current context becomes kinit's,
/// as `kind create cluster` does.
pub fn merge(mut config: Kubeconfig, ours: &Kubeconfig) -> Kubeconfig {
    splice(&mut config, ours, true);
    config.current_context = Some(CONTEXT.into());
    config
}

/// `config` without the cluster, user and context of `ours` (what `down --purge` leaves
/// behind); the current context is cleared when it was kinit's.
pub fn remove(mut config: Kubeconfig, ours: &Kubeconfig) -> Kubeconfig {
    splice(&mut config, ours, false);
    if config.current_context.as_deref() == Some(CONTEXT) {
        config.current_context = Some(String::new());
    }
    config
}

/// Takes the entries named as those of `ours` out of `config` and, with `add`, puts those
/// of `ours` after the rest: the one routine of [`merge`] and [`remove`].
fn splice(config: &mut Kubeconfig, ours: &Kubeconfig, add: bool) {
    fn named<T: Clone>(entries: &mut Vec<T>, ours: &[T], name: fn(&T) -> &str, add: bool) {
        entries.retain(|e| ours.iter().all(|o| name(o) != name(e)));
        if add {
            entries.extend_from_slice(ours);
        }
    }
    named(&mut config.clusters, &ours.clusters, |c| &c.name, add);
    named(&mut config.auth_infos, &ours.auth_infos, |u| &u.name, add);
    named(&mut config.contexts, &ours.contexts, |c| &c.name, add);
    config.api_version.get_or_insert_with(|| "v1".into());
    config.kind.get_or_insert_with(|| "Config".into());
}

/// The text of a user's kubeconfig (`None`: no file yet) with context `kinit` from `admin`
/// merged in; `None` when it says so already, however its file spells it.
fn merged(existing: Option<&[u8]>, admin: &Kubeconfig) -> Result<Option<String>> {
    let before = existing.map(parse).transpose()?;
    let after = merge(before.clone().unwrap_or_default(), admin);
    if before.is_some_and(|b| same(&b, &after)) {
        return Ok(None);
    }
    to_yaml(&after).map(Some)
}

/// The text of a user's kubeconfig without kinit's context.
fn removed(existing: &[u8], admin: &Kubeconfig) -> Result<String> {
    to_yaml(&remove(parse(existing)?, admin))
}

/// Whether two kubeconfigs say the same, however their files spell it.
fn same(a: &Kubeconfig, b: &Kubeconfig) -> bool {
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// A kubeconfig file, and for whom it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub path: PathBuf,
    /// Under sudo, the invoking user: the file is theirs when it lies in their home, as
    /// found on disk by handle (not by how the path is spelled). `None` when kinit runs
    /// for root itself, or when only the file's current owner should be kept.
    pub owner: Option<fs::HomeUser>,
}

/// kinit's admin kubeconfig, as `kinit up` wrote it.
pub fn read_admin(path: &Path) -> Result<Kubeconfig> {
    let bytes = fs::read_optional(path)?
        .ok_or_else(|| anyhow!("{} is missing; run `sudo kinit up`", path.display()))?;
    parse(&bytes).with_context(|| format!("cannot read {}", path.display()))
}

/// `--kubeconfig` when given; under sudo, the invoking user's ~/.kube/config; otherwise
/// the first file of $KUBECONFIG, or ~/.kube/config — where kubectl will look.
pub fn resolve_target(flag: Option<&Path>) -> Result<Target> {
    let sudo_user = sudo_user()?.map(|u| fs::HomeUser {
        uid: u.uid,
        gid: u.gid,
        home: u.dir,
    });
    if let Some(path) = flag {
        let path = std::path::absolute(path)
            .with_context(|| format!("cannot resolve {}", path.display()))?;
        // Whether it is in their home (theirs) or elsewhere (root's) is decided when the
        // directory is opened.
        return Ok(Target {
            path,
            owner: sudo_user,
        });
    }
    if let Some(user) = sudo_user {
        return Ok(Target {
            path: user.home.join(".kube/config"),
            owner: Some(user),
        });
    }
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .as_ref()
        .and_then(|v| std::env::split_paths(v).find(|p| !p.as_os_str().is_empty()))
    {
        return Ok(Target {
            path: first,
            owner: None,
        });
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .or_else(|| {
            User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.dir)
        })
        .ok_or_else(|| {
            anyhow!("cannot find a home directory for the kubeconfig; pass --kubeconfig")
        })?;
    Ok(Target {
        path: home.join(".kube/config"),
        owner: None,
    })
}

/// The user who ran `sudo kinit ...`, when it was not root.
fn sudo_user() -> Result<Option<User>> {
    match std::env::var("SUDO_USER") {
        Ok(name) if name != "root" => {
            User::from_name(&name).context("cannot read the user database")
        }
        _ => Ok(None),
    }
}

/// Adds (or refreshes) context `kinit` from `admin` in the target file; returns whether
/// the file changed (a file that already says so is not rewritten).
pub fn merge_into(target: &Target, admin: &Kubeconfig) -> Result<bool> {
    update(target, |existing| {
        let text = merged(existing, admin)
            .with_context(|| format!("cannot merge into {}", target.path.display()))?;
        Ok(text.map(String::into_bytes))
    })
}

/// Takes context `kinit` (as in `admin`) out of the target file; returns whether there
/// was a file to change. Nothing is created when the file or its directory is gone.
///
/// For `kinit down --purge`: reading the file by path and writing the result with
/// `update` would let a link swapped in between have root copy whatever it points at
/// into the user's file; here the file is read and replaced through one handle.
pub fn remove_from(target: &Target, admin: &Kubeconfig) -> Result<bool> {
    let Some(dir) = fs::Dir::open_existing(parent(&target.path), target.owner.as_ref())
        .with_context(|| format!("cannot open {}", target.path.display()))?
    else {
        return Ok(false);
    };
    rewrite(&dir, target, |existing| {
        existing
            .map(|bytes| {
                removed(bytes, admin)
                    .map(String::into_bytes)
                    .with_context(|| {
                        format!(
                            "cannot take the kinit context out of {}",
                            target.path.display()
                        )
                    })
            })
            .transpose()
    })
}

/// Rewrites the target file (0600) with what `edit` makes of its content (`None`: no
/// file; an edit of `None`: leave it as it is); returns whether it wrote. A missing
/// directory (~/.kube) is created, as the user's when in their home.
///
/// The file is read and replaced through one directory handle, so what is written is
/// derived from the very file it replaces; a link at the file or on the way there is
/// refused (the error names it) before anything is written. The new file is the user's
/// when it lies in their home; elsewhere it keeps the owner the old file had, unless that
/// was root: the atomic rewrite would otherwise make a user's file root's, while a
/// root-owned file stays root's.
fn update(
    target: &Target,
    edit: impl FnOnce(Option<&[u8]>) -> Result<Option<Vec<u8>>>,
) -> Result<bool> {
    let dir = fs::Dir::open(parent(&target.path), target.owner.as_ref())
        .with_context(|| format!("cannot write {}", target.path.display()))?;
    rewrite(&dir, target, edit)
}

fn rewrite(
    dir: &fs::Dir,
    target: &Target,
    edit: impl FnOnce(Option<&[u8]>) -> Result<Option<Vec<u8>>>,
) -> Result<bool> {
    let name = target
        .path
        .file_name()
        .ok_or_else(|| anyhow!("{} names no file", target.path.display()))?;
    let existing = dir.read(name)?;
    let Some(new) = edit(existing.as_ref().map(|e| e.bytes.as_slice()))? else {
        return Ok(false);
    };
    let keep = existing
        .map(|e| (e.uid, e.gid))
        .filter(|(uid, _)| !uid.is_root());
    dir.write(name, &new, fs::Mode::Private, keep)?;
    Ok(true)
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

#[cfg(test)]
mod file_tests;
#[cfg(test)]
mod tests;
