//! A Docker API interposer between cri-dockerd and the Docker engine that edits the
//! containers cri-dockerd creates:
//! - a negative `HostConfig.OomScoreAdj` is clamped to 0 on hosts whose capability
//!   bounding set lacks CAP_SYS_RESOURCE, which refuse it (runc then fails every sandbox);
//! - a privileged container gets, on hosts whose bounding set is incomplete (which refuse
//!   `Privileged`: runc cannot grant what the set lacks), every capability but those, with
//!   seccomp, AppArmor and the masked and read-only paths lifted: what kinit gives its own
//!   containers there (`docker::privilege`);
//! - the log is bounded (`HostConfig.LogConfig`, [`crate::docker::LOG_MAX_SIZE`]): cri-dockerd
//!   sets none and cannot rotate logs itself, so a chatty pod would fill the disk.
//!
//! - an image is removed only when the node pulled it ([`images`]): the kubelet's image
//!   garbage collector would otherwise remove other tools' images from the shared Docker.
//!
//! Everything else passes through untouched: one upstream connection per client connection
//! keeps the client's keep-alive behaviour, bodies stream, and hijacked streams (exec,
//! attach) are spliced once both sides have switched protocols.

use std::convert::Infallible;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use caps::{CapSet, Capability, CapsHashSet};
use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, TRANSFER_ENCODING};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;
use tracing::{debug, warn};

mod images;

type Body = BoxBody<Bytes, hyper::Error>;

/// What every connection shares.
struct Shared {
    upstream: PathBuf,
    rewrites: Rewrites,
    pulled: Arc<images::Record>,
}

/// Whether this host refuses negative oom_score_adj: this process's capability bounding
/// set lacks CAP_SYS_RESOURCE. False when the set cannot be read: clamping on a host that
/// allows negative values would quietly make system pods easier OOM victims.
pub fn host_refuses_negative_oom_adj() -> bool {
    caps::has_cap(None, CapSet::Bounding, Capability::CAP_SYS_RESOURCE).is_ok_and(|held| !held)
}

/// What the proxy changes in the containers cri-dockerd creates, decided once from what
/// this host allows ([`Rewrites::for_this_host`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrites {
    /// Clamp a negative `OomScoreAdj` to 0: the host lacks CAP_SYS_RESOURCE.
    pub clamp_oom_score_adj: bool,
    /// Where privileged containers are refused, the capabilities a privileged container
    /// must do without (`CAP_...` names); `None` where they work.
    pub privileged_without: Option<Vec<String>>,
}

impl Rewrites {
    /// From this process's bounding set, against what the kernel supports: the proxy runs
    /// in kinit-master, which holds every capability the host lets a container have.
    /// Nothing changes when the set cannot be read (see [`host_refuses_negative_oom_adj`]).
    pub fn for_this_host() -> Self {
        let Ok(bounding) = caps::read(None, CapSet::Bounding) else {
            return Self::default();
        };
        let supported = caps::runtime::procfs_all_supported(None).unwrap_or_else(|_| caps::all());
        Self::from_sets(&bounding, &supported)
    }

    fn from_sets(bounding: &CapsHashSet, supported: &CapsHashSet) -> Self {
        let mut lacking: Vec<Capability> = supported.difference(bounding).copied().collect();
        lacking.sort_by_key(Capability::index);
        Self {
            clamp_oom_score_adj: lacking.contains(&Capability::CAP_SYS_RESOURCE),
            // Only names every Docker engine kinit supports knows: Docker 20.10 refuses
            // CAP_PERFMON, CAP_BPF and CAP_CHECKPOINT_RESTORE (newer than CAP_AUDIT_READ)
            // in CapDrop, and never grants them either.
            privileged_without: (!lacking.is_empty()).then(|| {
                lacking
                    .iter()
                    .filter(|c| c.index() <= Capability::CAP_AUDIT_READ.index())
                    .map(Capability::to_string)
                    .collect()
            }),
        }
    }

    /// One line for the log: what this proxy changes.
    pub fn describe(&self) -> String {
        let oom = if self.clamp_oom_score_adj {
            "negative oom_score_adj clamped to 0"
        } else {
            "negative oom_score_adj passed through"
        };
        match &self.privileged_without {
            Some(without) => format!(
                "{oom}; privileged containers get every capability but {}",
                without.join(", ")
            ),
            None => format!("{oom}; privileged containers passed through"),
        }
    }
}

/// Serves the Docker API on the unix socket `listen` (removing a stale socket file first;
/// never following a symlink there: refuse if `listen` is a symlink), forwarding to the unix socket `upstream`.
/// Runs until the process is killed. `rewrites` says what to change in container creates;
/// `pulled` is the file that records the images the node pulled (without it, no image
/// removal goes through).
pub async fn serve(
    listen: &Path,
    upstream: &Path,
    rewrites: Rewrites,
    pulled: Option<&Path>,
) -> Result<()> {
    let listener = bind(listen)?;
    let shared = Arc::new(Shared {
        upstream: upstream.to_owned(),
        rewrites,
        pulled: Arc::new(images::Record::new(pulled.map(Path::to_owned))),
    });
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(e) => {
                // Usually out of descriptors: back off instead of spinning.
                warn!("runtime proxy: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = proxy_connection(client, shared).await {
                debug!("runtime proxy: connection ended: {e:#}");
            }
        });
    }
}

fn bind(listen: &Path) -> Result<UnixListener> {
    match fs::symlink_metadata(listen) {
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", listen.display())),
        Ok(meta) if meta.file_type().is_socket() => fs::remove_file(listen)
            .with_context(|| format!("cannot remove the stale socket {}", listen.display()))?,
        Ok(meta) => bail!(
            "refusing to listen on {}: it is {}",
            listen.display(),
            if meta.file_type().is_symlink() {
                "a symbolic link"
            } else {
                "not a socket"
            }
        ),
    }
    // The Docker API is root-equivalent: the socket gets docker.sock's mode 0660 from the
    // umask at bind. (A chmod afterwards has to name the path, which may be swapped for a
    // link by then; pinning it with an O_PATH descriptor first worked with glibc, but the
    // static musl build opened the socket itself and failed with ENXIO.)
    let umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o117));
    let bound = UnixListener::bind(listen);
    nix::sys::stat::umask(umask);
    let listener = bound.with_context(|| format!("cannot listen on {}", listen.display()))?;
    Ok(listener)
}

async fn proxy_connection(client: UnixStream, shared: Arc<Shared>) -> Result<()> {
    let engine = UnixStream::connect(&shared.upstream)
        .await
        .with_context(|| format!("cannot connect to {}", shared.upstream.display()))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(engine)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            debug!("runtime proxy: upstream connection ended: {e}");
        }
    });
    // HTTP/1 serves one request at a time, so the lock is never contended; it only lets
    // the per-request futures share the sender.
    let sender = Arc::new(Mutex::new(sender));
    let service = service_fn(move |req| {
        let sender = sender.clone();
        let shared = shared.clone();
        async move {
            let res = forward(req, &sender, &shared).await;
            Ok::<_, Infallible>(res.unwrap_or_else(bad_gateway))
        }
    });
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(client), service)
        .with_upgrades()
        .await?;
    Ok(())
}

async fn forward(
    mut req: Request<Incoming>,
    upstream: &Mutex<SendRequest<Body>>,
    shared: &Shared,
) -> Result<Response<Body>> {
    let client_upgrade = hyper::upgrade::on(&mut req);
    let image = images::classify(&req);
    // The image ID the request's name gave before it went to Docker.
    let mut known = None;
    match &image {
        Some(images::ImageRequest::Pull(reference)) => {
            known = images::image_id(&shared.upstream, reference).await?;
        }
        Some(images::ImageRequest::Delete(name)) => {
            match images::check_delete(&shared.upstream, &shared.pulled, name).await? {
                Ok(id) => known = id,
                Err(refused) => return Ok(refused),
            }
        }
        None => {}
    }
    let req = if is_container_create(&req) {
        rewrite_create(req, &shared.rewrites).await?
    } else {
        req.map(BodyExt::boxed)
    };
    let mut res = {
        let mut sender = upstream.lock().await;
        sender
            .ready()
            .await
            .context("the Docker engine closed the connection")?;
        sender
            .send_request(req)
            .await
            .context("the Docker engine did not answer")?
    };
    if res.status() == StatusCode::SWITCHING_PROTOCOLS {
        tokio::spawn(splice(client_upgrade, hyper::upgrade::on(&mut res)));
    }
    match image {
        Some(images::ImageRequest::Pull(reference)) => Ok(images::watch_pull(
            res,
            shared.upstream.clone(),
            shared.pulled.clone(),
            reference,
            known,
        )),
        Some(images::ImageRequest::Delete(_)) if res.status().is_success() => {
            if let Some(id) = known {
                images::deleted(&shared.upstream, &shared.pulled, &id).await;
            }
            Ok(res.map(BodyExt::boxed))
        }
        _ => Ok(res.map(BodyExt::boxed)),
    }
}

/// Exec and attach hijack the connection after 101; both upgrades resolve once hyper has
/// handed over the raw sockets (the client's after our 101 has been written).
async fn splice(client: OnUpgrade, upstream: OnUpgrade) {
    let result = async {
        let (client, upstream) = tokio::try_join!(client, upstream)?;
        tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(upstream))
            .await?;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        debug!("runtime proxy: hijacked stream ended: {e:#}");
    }
}

fn is_container_create<B>(req: &Request<B>) -> bool {
    req.method() == Method::POST && unversioned(req.uri().path()) == "/containers/create"
}

/// The path without the API version Docker accepts as an optional "/v1.xx" prefix.
fn unversioned(path: &str) -> &str {
    path.strip_prefix("/v")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(version, _)| {
            !version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.')
        })
        .map_or(path, |(version, _)| &path[2 + version.len()..])
}

async fn rewrite_create(req: Request<Incoming>, rewrites: &Rewrites) -> Result<Request<Body>> {
    let (mut parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .context("cannot read the request body")?
        .to_bytes();
    let body = match rewrite_create_body(&body, rewrites) {
        Some((rewritten, changes)) => {
            let name = parts
                .uri
                .query()
                .and_then(|query| query.split('&').find_map(|pair| pair.strip_prefix("name=")));
            debug!(
                "container {}: {}",
                name.unwrap_or("<unnamed>"),
                changes.join(", ")
            );
            Bytes::from(rewritten)
        }
        None => body,
    };
    // The body is now in one piece whatever its framing was.
    parts.headers.remove(TRANSFER_ENCODING);
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    Ok(Request::from_parts(parts, full(body)))
}

/// The rewritten body and what changed, or None to forward the body as it came (not JSON,
/// or nothing to change). Its input is whatever cri-dockerd sends for a pod's container,
/// so it is fuzzed (fuzz/fuzz_targets/container_create.rs).
pub fn rewrite_create_body(body: &[u8], rewrites: &Rewrites) -> Option<(Vec<u8>, Vec<String>)> {
    let mut create: serde_json::Value = serde_json::from_slice(body).ok()?;
    let host = create.get_mut("HostConfig")?.as_object_mut()?;
    let mut changes = Vec::new();
    if rewrites.clamp_oom_score_adj
        && let Some(adj) = host.get_mut("OomScoreAdj")
        && let Some(old) = adj.as_i64().filter(|&v| v < 0)
    {
        *adj = 0.into();
        changes.push(format!("OomScoreAdj {old} clamped to 0"));
    }
    if let Some(without) = &rewrites.privileged_without
        && unprivilege(host, without)
    {
        changes.push(format!(
            "privileged: every capability but {}",
            without.join(", ")
        ));
    }
    if bound_log(host) {
        changes.push(format!(
            "log rotated at {} x {}",
            crate::docker::LOG_MAX_FILES,
            crate::docker::LOG_MAX_SIZE
        ));
    }
    if changes.is_empty() {
        return None;
    }
    Some((serde_json::to_vec(&create).ok()?, changes))
}

/// Turns a privileged container into what privileged means on a host that refuses it:
/// every capability Docker knows (`ALL`) but those the host lacks, no seccomp or AppArmor
/// profile, nothing masked or read-only under /proc and /sys. What stays out of reach is
/// what only `Privileged` grants: the host's devices and a writable /sys.
fn unprivilege(host: &mut serde_json::Map<String, serde_json::Value>, without: &[String]) -> bool {
    if host.get("Privileged").and_then(serde_json::Value::as_bool) != Some(true) {
        return false;
    }
    let mut security: Vec<serde_json::Value> = host
        .get("SecurityOpt")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter(|opt| {
            let opt = opt.as_str().unwrap_or_default();
            !opt.starts_with("seccomp") && !opt.starts_with("apparmor")
        })
        .cloned()
        .collect();
    security.extend(["seccomp=unconfined".into(), "apparmor=unconfined".into()]);
    host.insert("Privileged".into(), false.into());
    host.insert("CapAdd".into(), serde_json::json!(["ALL"]));
    host.insert("CapDrop".into(), serde_json::json!(without));
    host.insert("SecurityOpt".into(), security.into());
    host.insert("MaskedPaths".into(), serde_json::json!([]));
    host.insert("ReadonlyPaths".into(), serde_json::json!([]));
    true
}

/// Gives a json-file (or default-driver) log without a size limit kinit's rotation. A
/// driver someone chose on purpose, or a limit already set, is left alone; the default
/// driver becomes json-file, the one cri-dockerd serves `kubectl logs` from.
fn bound_log(host: &mut serde_json::Map<String, serde_json::Value>) -> bool {
    // cri-dockerd's Go structs send `null` for what they leave unset.
    let log = host.entry("LogConfig").or_insert(serde_json::Value::Null);
    if log.is_null() {
        *log = serde_json::json!({});
    }
    let Some(log) = log.as_object_mut() else {
        return false;
    };
    let driver = log.get("Type").and_then(|t| t.as_str()).unwrap_or("");
    if !driver.is_empty() && driver != crate::docker::LOG_DRIVER {
        return false;
    }
    let options = log.entry("Config").or_insert(serde_json::Value::Null);
    if options.is_null() {
        *options = serde_json::json!({});
    }
    let Some(options) = options.as_object_mut() else {
        return false;
    };
    if options.contains_key("max-size") {
        return false;
    }
    for (key, value) in crate::docker::log_options() {
        options.entry(key).or_insert(value.into());
    }
    log.insert("Type".into(), crate::docker::LOG_DRIVER.into());
    true
}

/// Docker's error shape, so the client reports the message; the upstream connection may be
/// gone, so this client connection closes too.
fn bad_gateway(err: anyhow::Error) -> Response<Body> {
    warn!("runtime proxy: {err:#}");
    let message = serde_json::json!({ "message": format!("kinit runtime proxy: {err:#}") });
    let mut res = Response::new(full(Bytes::from(message.to_string())));
    *res.status_mut() = StatusCode::BAD_GATEWAY;
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    res
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

#[cfg(test)]
mod tests;
