use super::*;

#[test]
fn a_cache_directory_others_may_change_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let me = nix::unistd::geteuid().as_raw();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    check_cache_dir(&cache, me).unwrap();
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
    check_cache_dir(&cache, me).unwrap();
    let err = check_cache_dir(&cache, me + 1).unwrap_err().to_string();
    assert!(err.contains(&format!("belongs to uid {me}")), "{err}");
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = check_cache_dir(&cache, me).unwrap_err().to_string();
    assert!(err.contains("may be written by others (mode 777)"), "{err}");
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&cache, &link).unwrap();
    let err = check_cache_dir(&link, me).unwrap_err().to_string();
    assert!(err.contains("is a symbolic link"), "{err}");
}

#[tokio::test]
async fn a_planted_part_file_link_is_not_written_through() {
    let f = fixture(b"kubectl bytes", None, "/");
    let victim = f.mirror.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let part = with_suffix(&f.cache.path().join(&f.kubectl.path), ".part");
    std::fs::create_dir_all(part.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&victim, &part).unwrap();
    let got = f.downloader.fetch(&f.kubectl).await.unwrap();
    assert_eq!(std::fs::read(&got.path).unwrap(), b"kubectl bytes");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
}

fn mirror_with(dir: &Path, rel: &str, content: &[u8], digest: Option<&str>) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    let real: String = Sha256::digest(content)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(dir.join(format!("{rel}.sha256")), digest.unwrap_or(&real)).unwrap();
}

/// A file mirror holding kubectl, an empty cache, and a downloader reading that mirror.
struct Fixture {
    mirror: tempfile::TempDir,
    cache: tempfile::TempDir,
    kubectl: Artifact,
    downloader: Downloader,
}

/// kubectl on the mirror is `content`, published with `digest` (`None`: its real one);
/// the mirror's URL is spelled with `trailing` after its path ("/" or "").
fn fixture(content: &[u8], digest: Option<&str>, trailing: &str) -> Fixture {
    let mirror = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let kubectl = Artifact::kubectl("v1.36.3");
    mirror_with(mirror.path(), &kubectl.path, content, digest);
    let url = format!("file://{}{trailing}", mirror.path().display());
    let downloader = Downloader::new(Some(&url), cache.path());
    Fixture {
        mirror,
        cache,
        kubectl,
        downloader,
    }
}

#[tokio::test]
async fn fetches_verifies_and_caches_from_a_file_mirror() {
    let f = fixture(b"#!/bin/sh\necho kubectl\n", None, "/");
    let (d, kubectl) = (&f.downloader, &f.kubectl);
    let got = d.fetch(kubectl).await.unwrap();
    assert_eq!(got.how, Fetched::Downloaded);
    assert_eq!(got.size, 23);
    assert_eq!(
        std::fs::read(&got.path).unwrap(),
        b"#!/bin/sh\necho kubectl\n"
    );
    // The second run reads nothing remote: the mirror may be gone.
    drop(f.mirror);
    let again = d.fetch(kubectl).await.unwrap();
    assert_eq!(again.how, Fetched::Cached);
    assert_eq!(again.sha256, got.sha256);
}

#[tokio::test]
async fn a_wrong_digest_is_refused_and_nothing_is_cached() {
    let f = fixture(b"tampered", Some(&"0".repeat(64)), "");
    let (d, kubectl, cache) = (&f.downloader, &f.kubectl, &f.cache);
    let err = format!("{:#}", d.fetch(kubectl).await.unwrap_err());
    assert!(
        err.contains("does not match its published SHA-256"),
        "{err}"
    );
    let dest = cache.path().join(&kubectl.path);
    assert!(!dest.exists());
    assert!(!with_suffix(&dest, ".part").exists());
    assert!(!with_suffix(&dest, ".sha256").exists());

    let missing = format!(
        "{:#}",
        d.fetch(&Artifact::kubelet("v9.9.9")).await.unwrap_err()
    );
    assert!(missing.contains("cannot read file://"), "{missing}");
}

#[tokio::test]
async fn a_corrupted_cache_file_is_fetched_again_and_purge_keeps_foreign_files() {
    let f = fixture(b"kubectl", None, "");
    let (d, kubectl, cache, mirror) = (&f.downloader, &f.kubectl, &f.cache, &f.mirror);
    let first = d.fetch(kubectl).await.unwrap();
    std::fs::write(&first.path, b"bit rot").unwrap();
    let again = d.fetch(kubectl).await.unwrap();
    assert_eq!(again.how, Fetched::Downloaded);
    assert_eq!(std::fs::read(&again.path).unwrap(), b"kubectl");

    let sums = mirror.path().join(format!("{}.sha256", kubectl.path));
    std::fs::write(&sums, "not-a-digest").unwrap();
    std::fs::remove_file(&again.path).unwrap();
    let err = format!("{:#}", d.fetch(kubectl).await.unwrap_err());
    assert!(err.contains("does not hold a SHA-256 digest"), "{err}");

    std::fs::write(cache.path().join("kinit-node-x.tar"), b"").unwrap();
    std::fs::write(cache.path().join("someone-elses"), b"").unwrap();
    Downloader::purge(cache.path()).unwrap();
    let left: Vec<String> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["someone-elses"]);
}

/// A loopback HTTP server for one request: reads it, then `respond` answers on the
/// connection. Returns its base URL.
async fn serve_one<F, Fut>(respond: F) -> String
where
    F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = conn.read(&mut buf).await;
        respond(conn).await;
    });
    format!("http://{addr}")
}

/// One canned HTTP response on a loopback port, standing in for api.github.com.
async fn serve_once(body: &'static str) -> String {
    serve_one(move |mut conn| async move {
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(reply.as_bytes()).await.unwrap();
    })
    .await
}

#[tokio::test]
async fn github_asset_digests_are_read_from_the_release_api() {
    crate::tls::install_crypto_provider();
    let digest = "a".repeat(64);
    let body: &'static str = Box::leak(
        format!(
            r#"{{"tag_name":"v0.4.6","assets":[{{"name":"other.tgz","digest":null}},{{"name":"cri-dockerd-0.4.6.amd64.tgz","digest":"sha256:{digest}"}}]}}"#
        )
        .into_boxed_str(),
    );
    let api = serve_once(body).await;
    let got = github_asset_digest(
        &api,
        "Mirantis/cri-dockerd",
        "v0.4.6",
        "cri-dockerd-0.4.6.amd64.tgz",
    )
    .await
    .unwrap();
    assert_eq!(got, digest);
    let api = serve_once(body).await;
    let err = github_asset_digest(&api, "Mirantis/cri-dockerd", "v0.4.6", "other.tgz")
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("publishes no SHA-256"),
        "{err:#}"
    );
}

#[test]
fn a_digest_file_holds_one_digest_first() {
    let hex = "AB".repeat(32);
    for text in [
        format!("{hex}  kubectl\n"),
        hex.clone(),
        format!("sha256:{hex}\n"),
    ] {
        assert_eq!(
            digest_in_sums(text.as_bytes()),
            Some(hex.to_lowercase()),
            "{text}"
        );
    }
    for bad in [
        &b""[..],
        b"  \n",
        b"abc kubectl",
        b"\xff\xfe",
        &[b'a'; 65][..],
    ] {
        assert_eq!(digest_in_sums(bad), None, "{bad:?}");
    }
}

#[tokio::test]
async fn a_digest_file_larger_than_the_limit_is_refused() {
    let f = fixture(b"kubectl", None, "");
    let sums = f.mirror.path().join(format!("{}.sha256", f.kubectl.path));
    std::fs::write(&sums, vec![b'a'; (MAX_SMALL + 1) as usize]).unwrap();
    let err = format!("{:#}", f.downloader.fetch(&f.kubectl).await.unwrap_err());
    assert!(err.contains("is larger than 4194304 bytes"), "{err}");
}

#[tokio::test]
async fn a_server_that_never_stops_sending_is_cut_off() {
    crate::tls::install_crypto_provider();
    let url = serve_one(|mut conn| async move {
        // No length: chunks until the client stops reading.
        let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        if conn.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = format!("10000\r\n{}\r\n", "0".repeat(0x10000));
        while conn.write_all(chunk.as_bytes()).await.is_ok() {}
    })
    .await;
    // Bounded, so that a read without a limit fails the test rather than hanging it.
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        read_small(&format!("{url}/x.sha256")),
    )
    .await
    .expect("the endless body was read for a minute");
    let err = format!("{:#}", read.unwrap_err());
    assert!(err.contains("is larger than"), "{err}");
}
