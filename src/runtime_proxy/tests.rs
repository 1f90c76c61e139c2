use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::header::UPGRADE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use std::os::unix::fs::PermissionsExt;

/// Answers every request (but an image look-up) with the body it received and the number of the connection it
/// came on; upgrade requests get 101 and an echo of the raw stream.
async fn fake_engine(listener: UnixListener) {
    let connections = Arc::new(AtomicUsize::new(0));
    while let Ok((stream, _)) = listener.accept().await {
        let id = connections.fetch_add(1, Ordering::SeqCst);
        let service = service_fn(move |mut req: Request<Incoming>| async move {
            let upgrade = hyper::upgrade::on(&mut req);
            // No image is there: the interposer's image look-ups get Docker's 404.
            if req.method() == Method::GET && req.uri().path().starts_with("/images/") {
                let mut res = Response::new(full(Bytes::from_static(b"{}")));
                *res.status_mut() = StatusCode::NOT_FOUND;
                return Ok(res);
            }
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

/// The capabilities whose bits are set in `mask`.
fn caps_in(mask: u64) -> CapsHashSet {
    caps::all()
        .into_iter()
        .filter(|c| mask & c.bitmask() != 0)
        .collect()
}

/// What this host gets: a kernel with 41 capabilities, CAP_SYS_RESOURCE not bounded.
fn restricted() -> Rewrites {
    Rewrites::from_sets(&caps_in(0x1fffeffffff), &caps_in(0x1ffffffffff))
}

async fn start(rewrites: Rewrites) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = dir.path().join("docker.sock");
    tokio::spawn(fake_engine(UnixListener::bind(&engine).expect("bind")));
    let listen = dir.path().join("proxy.sock");
    let proxy = listen.clone();
    tokio::spawn(async move { serve(&proxy, &engine, rewrites, None).await.expect("serve") });
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
async fn post(sender: &mut SendRequest<Full<Bytes>>, uri: &str, body: &str) -> (String, String) {
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
        let rewrites = if clamp {
            restricted()
        } else {
            Rewrites::default()
        };
        let (_dir, listen) = start(rewrites).await;
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
    let (_dir, listen) = start(restricted()).await;
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
    let (_dir, listen) = start(restricted()).await;
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
    let err = serve(&listen, &dir.path().join("docker.sock"), restricted(), None).await;
    assert!(format!("{:#}", err.expect_err("serve")).contains("symbolic link"));
    assert!(!dir.path().join("elsewhere").exists());
}

#[test]
fn pod_logs_get_bounded_unless_someone_chose_otherwise() {
    let rewrite = |body: &str| {
        rewrite_create_body(body.as_bytes(), &Rewrites::default())
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
    let kept =
        rewrite(r#"{"HostConfig":{"LogConfig":{"Type":"json-file","Config":{"max-file":"9"}}}}"#)
            .expect("rewritten");
    assert_eq!(kept["HostConfig"]["LogConfig"]["Config"]["max-file"], "9");
    assert!(rewrite(r#"{"HostConfig":{"LogConfig":{"Type":"none"}}}"#).is_none());
    assert!(
        rewrite(r#"{"HostConfig":{"LogConfig":{"Type":"json-file","Config":{"max-size":"1g"}}}}"#)
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
fn rewrites_follow_the_bounding_set() {
    let all = caps_in(0x1ffffffffff);
    assert_eq!(Rewrites::from_sets(&all, &all), Rewrites::default());
    // This host: CAP_SYS_RESOURCE (bit 24) not bounded; inside kinit-master also not the
    // three Docker 20.10 does not know, which Docker never grants anyway.
    for bounding in [0x1fffeffffff, 0x3ffeffffff] {
        let got = Rewrites::from_sets(&caps_in(bounding), &all);
        assert!(got.clamp_oom_score_adj, "{bounding:x}");
        assert_eq!(
            got.privileged_without.as_deref(),
            Some(&["CAP_SYS_RESOURCE".to_string()][..]),
            "{bounding:x}"
        );
    }
    // Docker's default set only (kinit inside an unprivileged container).
    let got = Rewrites::from_sets(&caps_in(0xa80425fb), &all);
    assert!(got.clamp_oom_score_adj);
    let without = got.privileged_without.expect("privileged refused");
    assert!(
        without.contains(&"CAP_SYS_ADMIN".to_string()),
        "{without:?}"
    );
    assert!(!without.contains(&"CAP_CHOWN".to_string()), "{without:?}");
    assert!(!without.contains(&"CAP_BPF".to_string()), "{without:?}");
    // Only CAP_BPF missing: privileged refused, but nothing Docker 20.10 could drop.
    let got = Rewrites::from_sets(&caps_in(0x17fffffffff), &all);
    assert!(!got.clamp_oom_score_adj);
    assert_eq!(got.privileged_without, Some(Vec::new()));
    // An older kernel without the newest three: nothing missing.
    let old = caps_in(0x3fffffffff);
    assert_eq!(Rewrites::from_sets(&old, &old), Rewrites::default());
}

#[test]
fn privileged_containers_get_every_capability_the_host_has() {
    let create = |body: &str, rewrites: &Rewrites| {
        rewrite_create_body(body.as_bytes(), rewrites)
            .map(|(b, _)| serde_json::from_slice::<serde_json::Value>(&b).expect("json"))
            .expect("rewritten")
    };
    let privileged = r#"{"HostConfig":{"Privileged":true,"CapAdd":null,"CapDrop":null,
        "SecurityOpt":["seccomp=unconfined","label=disable","apparmor:docker-default"],
        "MaskedPaths":null,"ReadonlyPaths":null,"Binds":["/a:/b"]},"Image":"p"}"#;
    let got = create(privileged, &restricted());
    let host = &got["HostConfig"];
    assert_eq!(host["Privileged"], false);
    assert_eq!(host["CapAdd"], serde_json::json!(["ALL"]));
    assert_eq!(host["CapDrop"], serde_json::json!(["CAP_SYS_RESOURCE"]));
    assert_eq!(
        host["SecurityOpt"],
        serde_json::json!(["label=disable", "seccomp=unconfined", "apparmor=unconfined"])
    );
    assert_eq!(host["MaskedPaths"], serde_json::json!([]));
    assert_eq!(host["ReadonlyPaths"], serde_json::json!([]));
    assert_eq!(host["Binds"], serde_json::json!(["/a:/b"]));
    assert_eq!(got["Image"], "p");
    // Where privileged containers work, and for unprivileged ones: untouched.
    assert_eq!(
        create(privileged, &Rewrites::default())["HostConfig"]["Privileged"],
        true
    );
    let plain = create(
        r#"{"HostConfig":{"Privileged":false,"CapAdd":["NET_ADMIN"]}}"#,
        &restricted(),
    );
    assert_eq!(plain["HostConfig"]["Privileged"], false);
    assert_eq!(
        plain["HostConfig"]["CapAdd"],
        serde_json::json!(["NET_ADMIN"])
    );
    assert!(plain["HostConfig"].get("CapDrop").is_none());
}
