//! A Docker API interposer between cri-dockerd and the Docker engine that edits the
//! containers cri-dockerd creates:
//! - a negative `HostConfig.OomScoreAdj` is clamped to 0 on hosts whose capability
//!   bounding set lacks CAP_SYS_RESOURCE, which refuse it (runc then fails every sandbox);
//! - the log is bounded (`HostConfig.LogConfig`, [`crate::docker::LOG_MAX_SIZE`]): cri-dockerd
//!   sets none and cannot rotate logs itself, so a chatty pod would fill the disk.
//!
//! Everything else passes through untouched: one upstream connection per client connection
//! keeps the client's keep-alive behaviour, bodies stream, and hijacked streams (exec,
//! attach) are spliced once both sides have switched protocols.

use std::convert::Infallible;
use std::fs::{self, OpenOptions, Permissions};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
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

const CAP_SYS_RESOURCE: u32 = 24;

type Body = BoxBody<Bytes, hyper::Error>;

/// Whether this host refuses negative oom_score_adj: the capability bounding set of this
/// process (read from /proc/self/status, CapBnd, bit 24 = CAP_SYS_RESOURCE) lacks CAP_SYS_RESOURCE.
pub fn host_refuses_negative_oom_adj() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|status| lacks_sys_resource(&status))
}

/// False when the status cannot be parsed: clamping on a host that allows negative values
/// would quietly make system pods easier OOM victims.
fn lacks_sys_resource(status: &str) -> bool {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapBnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|bounding| bounding & (1 << CAP_SYS_RESOURCE) == 0)
}

/// Serves the Docker API on the unix socket `listen` (removing a stale socket file first;
/// never following a symlink there: refuse if `listen` is a symlink), forwarding to the unix socket `upstream`.
/// Runs until the process is killed. `clamp` enables the OomScoreAdj clamp.
pub async fn serve(listen: &Path, upstream: &Path, clamp: bool) -> Result<()> {
    let listener = bind(listen)?;
    let upstream: Arc<Path> = upstream.into();
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
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Err(e) = proxy_connection(client, &upstream, clamp).await {
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
    let listener = UnixListener::bind(listen)
        .with_context(|| format!("cannot listen on {}", listen.display()))?;
    // The Docker API is root-equivalent: narrow the umask's mode like docker.sock's. chmod by
    // name would follow a symlink swapped in after bind; an O_PATH descriptor pins the socket
    // and /proc/self/fd reaches it (fchmod refuses O_PATH descriptors).
    let chmod = || -> Result<()> {
        let socket = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_PATH | nix::libc::O_NOFOLLOW)
            .open(listen)?;
        if !socket.metadata()?.file_type().is_socket() {
            bail!("it was replaced after bind");
        }
        let by_fd = format!("/proc/self/fd/{}", socket.as_raw_fd());
        Ok(fs::set_permissions(by_fd, Permissions::from_mode(0o660))?)
    };
    chmod().with_context(|| format!("cannot set the mode of {}", listen.display()))?;
    Ok(listener)
}

async fn proxy_connection(client: UnixStream, upstream: &Path, clamp: bool) -> Result<()> {
    let engine = UnixStream::connect(upstream)
        .await
        .with_context(|| format!("cannot connect to {}", upstream.display()))?;
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
        async move {
            let res = forward(req, &sender, clamp).await;
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
    clamp: bool,
) -> Result<Response<Body>> {
    let client_upgrade = hyper::upgrade::on(&mut req);
    let req = if is_container_create(&req) {
        rewrite_create(req, clamp).await?
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
    Ok(res.map(BodyExt::boxed))
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
    if req.method() != Method::POST {
        return false;
    }
    let path = req.uri().path();
    // Docker accepts the API version as an optional "/v1.xx" prefix.
    let unversioned = path
        .strip_prefix("/v")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(version, _)| {
            !version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.')
        })
        .map_or(path, |(version, _)| &path[2 + version.len()..]);
    unversioned == "/containers/create"
}

async fn rewrite_create(req: Request<Incoming>, clamp: bool) -> Result<Request<Body>> {
    let (mut parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .context("cannot read the request body")?
        .to_bytes();
    let body = match rewrite_create_body(&body, clamp) {
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
/// or nothing to change).
fn rewrite_create_body(body: &[u8], clamp: bool) -> Option<(Vec<u8>, Vec<String>)> {
    let mut create: serde_json::Value = serde_json::from_slice(body).ok()?;
    let host = create.get_mut("HostConfig")?.as_object_mut()?;
    let mut changes = Vec::new();
    if clamp
        && let Some(adj) = host.get_mut("OomScoreAdj")
        && let Some(old) = adj.as_i64().filter(|&v| v < 0)
    {
        *adj = 0.into();
        changes.push(format!("OomScoreAdj {old} clamped to 0"));
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
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::header::UPGRADE;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Answers every request with the body it received and the number of the connection it
    /// came on; upgrade requests get 101 and an echo of the raw stream.
    async fn fake_engine(listener: UnixListener) {
        let connections = Arc::new(AtomicUsize::new(0));
        while let Ok((stream, _)) = listener.accept().await {
            let id = connections.fetch_add(1, Ordering::SeqCst);
            let service = service_fn(move |mut req: Request<Incoming>| async move {
                let upgrade = hyper::upgrade::on(&mut req);
                let wants_upgrade = req.headers().contains_key(UPGRADE);
                let body = req.into_body().collect().await?.to_bytes();
                let mut res = Response::new(full(body));
                res.headers_mut()
                    .insert("x-connection", HeaderValue::from(id));
                if wants_upgrade {
                    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                    res.headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("Upgrade"));
                    res.headers_mut()
                        .insert(UPGRADE, HeaderValue::from_static("tcp"));
                    tokio::spawn(async move {
                        let io = TokioIo::new(upgrade.await.expect("upgrade"));
                        let (mut read, mut write) = tokio::io::split(io);
                        tokio::io::copy(&mut read, &mut write).await.expect("echo");
                        write.shutdown().await.expect("shutdown");
                    });
                }
                Ok::<_, hyper::Error>(res)
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades(),
            );
        }
    }

    async fn start(clamp: bool) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = dir.path().join("docker.sock");
        tokio::spawn(fake_engine(UnixListener::bind(&engine).expect("bind")));
        let listen = dir.path().join("proxy.sock");
        let proxy = listen.clone();
        tokio::spawn(async move { serve(&proxy, &engine, clamp).await.expect("serve") });
        (dir, listen)
    }

    async fn connect(listen: &Path) -> SendRequest<Full<Bytes>> {
        for _ in 0..200 {
            if let Ok(stream) = UnixStream::connect(listen).await {
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .expect("handshake");
                tokio::spawn(conn.with_upgrades());
                return sender;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the proxy never listened on {}", listen.display());
    }

    /// Returns what the engine received and the connection it came on.
    async fn post(
        sender: &mut SendRequest<Full<Bytes>>,
        uri: &str,
        body: &str,
    ) -> (String, String) {
        let req = Request::post(uri)
            .header("host", "docker")
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("request");
        sender.ready().await.expect("ready");
        let res = sender.send_request(req).await.expect("response");
        assert_eq!(res.status(), StatusCode::OK);
        let connection = res.headers()["x-connection"]
            .to_str()
            .expect("id")
            .to_owned();
        let body = res.into_body().collect().await.expect("body").to_bytes();
        (String::from_utf8(body.to_vec()).expect("utf-8"), connection)
    }

    const CREATE: &str = r#"{"HostConfig":{"OomScoreAdj":-998},"Image":"p"}"#;

    #[tokio::test]
    async fn clamps_negative_oom_score_adj_only_when_enabled() {
        for (clamp, want) in [(true, 0), (false, -998)] {
            let (_dir, listen) = start(clamp).await;
            let mut sender = connect(&listen).await;
            let mode = fs::metadata(&listen).expect("socket").permissions().mode();
            assert_eq!(mode & 0o777, 0o660);
            let (body, _) = post(&mut sender, "/v1.41/containers/create?name=x", CREATE).await;
            let create: serde_json::Value = serde_json::from_str(&body).expect("json");
            assert_eq!(create["HostConfig"]["OomScoreAdj"], want, "clamp={clamp}");
            assert_eq!(create["Image"], "p");
            let log = &create["HostConfig"]["LogConfig"];
            assert_eq!(log["Type"], "json-file");
            assert_eq!(log["Config"]["max-size"], crate::docker::LOG_MAX_SIZE);
            assert_eq!(log["Config"]["max-file"], crate::docker::LOG_MAX_FILES);
        }
    }

    #[tokio::test]
    async fn other_bodies_pass_byte_for_byte_on_one_connection() {
        let (_dir, listen) = start(true).await;
        let mut sender = connect(&listen).await;
        let cases = [
            (
                "/containers/create",
                r#"{ "HostConfig": {"OomScoreAdj": 500, "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m"}}} }"#,
            ),
            (
                "/containers/create",
                r#"{ "HostConfig": {"LogConfig": {"Type": "journald"}} }"#,
            ),
            ("/v1.41/containers/create?name=y", "not json"),
            ("/v1.41/containers/abc/update", CREATE),
            ("/v1.41/images/create?fromImage=p", CREATE),
        ];
        let mut connections = Vec::new();
        for (uri, body) in cases {
            let (received, connection) = post(&mut sender, uri, body).await;
            assert_eq!(received, body, "{uri}");
            connections.push(connection);
        }
        // Keep-alive: every request reused the first upstream connection.
        assert!(
            connections.iter().all(|c| *c == connections[0]),
            "{connections:?}"
        );
    }

    #[tokio::test]
    async fn upgraded_streams_carry_raw_bytes_both_ways() {
        let (_dir, listen) = start(true).await;
        let mut sender = connect(&listen).await;
        let req = Request::post("/v1.41/exec/abc/start")
            .header("host", "docker")
            .header(CONNECTION, "Upgrade")
            .header(UPGRADE, "tcp")
            .body(Full::new(Bytes::from_static(b"{}")))
            .expect("request");
        let res = sender.send_request(req).await.expect("response");
        assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
        let mut stream = TokioIo::new(hyper::upgrade::on(res).await.expect("upgrade"));
        stream
            .write_all(b"raw \x00\xff bytes")
            .await
            .expect("write");
        let mut echoed = [0; 12];
        stream.read_exact(&mut echoed).await.expect("read");
        assert_eq!(&echoed, b"raw \x00\xff bytes");
        // Half-close travels through: the echo ends its side when ours ends.
        stream.shutdown().await.expect("shutdown");
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.expect("read to end");
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn refuses_to_listen_on_a_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let listen = dir.path().join("proxy.sock");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &listen).expect("symlink");
        let err = serve(&listen, &dir.path().join("docker.sock"), true).await;
        assert!(format!("{:#}", err.expect_err("serve")).contains("symbolic link"));
        assert!(!dir.path().join("elsewhere").exists());
    }

    #[test]
    fn pod_logs_get_bounded_unless_someone_chose_otherwise() {
        let rewrite = |body: &str| {
            rewrite_create_body(body.as_bytes(), false)
                .map(|(b, _)| serde_json::from_slice::<serde_json::Value>(&b).expect("json"))
        };
        for body in [
            r#"{"HostConfig":{}}"#,
            r#"{"HostConfig":{"LogConfig":{"Type":"","Config":{}}}}"#,
            r#"{"HostConfig":{"LogConfig":{"Type":"","Config":null}}}"#,
            r#"{"HostConfig":{"LogConfig":null}}"#,
            r#"{"HostConfig":{"LogConfig":{"Type":"json-file","Config":{"max-file":"9"}}}}"#,
        ] {
            let create = rewrite(body).expect("rewritten");
            let log = &create["HostConfig"]["LogConfig"];
            assert_eq!(log["Type"], "json-file", "{body}");
            assert_eq!(log["Config"]["max-size"], "10m", "{body}");
        }
        // An explicit max-file stays.
        let kept = rewrite(
            r#"{"HostConfig":{"LogConfig":{"Type":"json-file","Config":{"max-file":"9"}}}}"#,
        )
        .expect("rewritten");
        assert_eq!(kept["HostConfig"]["LogConfig"]["Config"]["max-file"], "9");
        assert!(rewrite(r#"{"HostConfig":{"LogConfig":{"Type":"none"}}}"#).is_none());
        assert!(
            rewrite(
                r#"{"HostConfig":{"LogConfig":{"Type":"json-file","Config":{"max-size":"1g"}}}}"#
            )
            .is_none()
        );
        assert!(rewrite(r#"{"Image":"p"}"#).is_none());
    }

    #[test]
    fn version_prefix_is_optional() {
        let create = |uri: &str| is_container_create(&Request::post(uri).body(()).expect("req"));
        assert!(create("/containers/create"));
        assert!(create("/v1.41/containers/create?name=k8s_POD"));
        assert!(!create("/v1.41/containers/created"));
        assert!(!create("/vx/containers/create"));
        assert!(!is_container_create(
            &Request::get("/containers/create").body(()).expect("req")
        ));
    }

    #[test]
    fn cap_bnd_bit_24_is_cap_sys_resource() {
        let status = |bnd: &str| format!("Name:\tkinit\nCapEff:\t0\nCapBnd:\t{bnd}\nSeccomp:\t2\n");
        assert!(!lacks_sys_resource(&status("000001ffffffffff")));
        assert!(lacks_sys_resource(&status("000001fffeffffff")));
        assert!(lacks_sys_resource(&status("00000000a80425fb")));
        assert!(!lacks_sys_resource(&status("garbage")));
        assert!(!lacks_sys_resource("Name:\tkinit\n"));
    }
}
