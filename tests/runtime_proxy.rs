//! `kinit runtime-proxy` against the real Docker engine, without a cluster: the kubelet's
//! image garbage collector may remove only the images the node pulled through it. A user's
//! image is refused with 409 and stays; an image pulled through the proxy (from a registry
//! on loopback) is removed, and leaves the record.
//!
//! Needs root, a running Docker engine and the offline bundle's tools/ (registry, crane).
//! Every name it makes is unique to the run, and it removes everything it made.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

mod common;
use common::{bundle, docker_cli, require_engine, run_ok, text};

/// What the test made, removed on drop whatever happened.
struct Bed {
    dir: tempfile::TempDir,
    proxy: Child,
    registry: Child,
    images: Vec<String>,
}

impl Drop for Bed {
    fn drop(&mut self) {
        for child in [&mut self.proxy, &mut self.registry] {
            let _ = child.kill();
            let _ = child.wait();
        }
        for image in &self.images {
            let _ = docker_cli(&["image", "rm", image]);
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("proxy.log"));
            eprintln!("the proxy's log:\n{}", log.unwrap_or_default());
        }
    }
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `curl` through the proxy's socket: the status code and the body.
fn request(socket: &Path, method: &str, path: &str) -> (u16, String) {
    let out = run_ok(&[
        "curl",
        "--silent",
        "--unix-socket",
        socket.to_str().expect("utf-8"),
        "--request",
        method,
        "--write-out",
        "\n%{http_code}",
        &format!("http://docker/v1.41{path}"),
    ]);
    let (body, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
    (code.parse().expect("a status code"), body.to_owned())
}

fn image_id(name: &str) -> Option<String> {
    let out = docker_cli(&["image", "inspect", "--format", "{{.Id}}", name]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A one-file tar: the root file system of a tiny image.
fn layer(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let root = dir.join(name);
    std::fs::create_dir(&root).expect("mkdir");
    std::fs::write(root.join("hello"), contents).expect("write");
    let tar = dir.join(format!("{name}.tar"));
    let root = root.to_str().expect("utf-8");
    run_ok(&[
        "tar",
        "-cf",
        tar.to_str().expect("utf-8"),
        "-C",
        root,
        "hello",
    ]);
    tar
}

#[test]
fn the_node_removes_only_the_images_it_pulled() {
    require_engine();
    let tools = bundle().join("tools");
    let unique = format!(
        "gc-proxy-test-{}-{}",
        std::process::id(),
        SystemTime::UNIX_EPOCH.elapsed().expect("clock").as_nanos()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("proxy.sock");
    let record = dir.path().join("pulled-images");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let proxy = Command::new(env!("CARGO_BIN_EXE_kinit"))
        .args(["-vv", "runtime-proxy", "--upstream", "/var/run/docker.sock"])
        .arg("--listen")
        .arg(&socket)
        .arg("--pulled-images")
        .arg(&record)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("proxy.log")).expect("log"))
        .spawn()
        .expect("kinit runs");
    let registry = Command::new(tools.join("registry"))
        .arg(format!("-port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the registry runs");
    let user_image = format!("{unique}-user:1");
    let pulled = format!("127.0.0.1:{port}/{unique}:pulled");
    let mut bed = Bed {
        dir,
        proxy,
        registry,
        images: vec![user_image.clone(), pulled.clone()],
    };
    wait_for("the proxy", || socket.exists());
    wait_for("the registry", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });

    // A user's image, which the node never pulled: refused, and still there.
    let tar = layer(bed.dir.path(), "user", &unique);
    run_ok(&[
        "docker",
        "import",
        tar.to_str().expect("utf-8"),
        &user_image,
    ]);
    let user_id = image_id(&user_image).expect("the user's image");
    for name in [&user_image, &user_id] {
        let (code, body) = request(&socket, "DELETE", &format!("/images/{name}"));
        assert_eq!(code, 409, "{body}");
        let message: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(
            message["message"],
            format!(
                "kinit: {name} was not pulled by the cluster's node; kinit leaves it to its owner"
            )
        );
    }
    assert_eq!(
        image_id(&user_image),
        Some(user_id),
        "the user's image was removed"
    );

    // A pull that fails records nothing.
    let crane = tools.join("crane");
    let tar = layer(bed.dir.path(), "pulled", &format!("{unique} pulled"));
    let out = Command::new(&crane)
        .args(["append", "-f", tar.to_str().expect("utf-8"), "-t", &pulled])
        .output()
        .expect("crane runs");
    assert!(out.status.success(), "crane append: {}", text(&out));
    let repository = format!("127.0.0.1%3A{port}%2F{unique}");
    let (code, body) = request(
        &socket,
        "POST",
        &format!("/images/create?fromImage={repository}&tag=missing"),
    );
    assert!(code != 200 || body.contains("error"), "{code}: {body}");
    assert!(!record.exists(), "a failed pull was recorded");

    // An image that was there under the name before the node pulled it stays its owner's.
    run_ok(&["docker", "pull", "--quiet", &pulled]);
    let pull = format!("/images/create?fromImage={repository}&tag=pulled");
    let (code, body) = request(&socket, "POST", &pull);
    assert_eq!(code, 200, "{body}");
    assert!(
        !record.exists(),
        "an image the user pulled first was recorded"
    );
    let (code, body) = request(&socket, "DELETE", &format!("/images/{pulled}"));
    assert_eq!(code, 409, "{body}");
    run_ok(&["docker", "image", "rm", &pulled]);

    // An image pulled through the proxy: recorded, then removed through it.
    let (code, body) = request(&socket, "POST", &pull);
    assert_eq!(code, 200, "{body}");
    assert!(!body.contains("error"), "{body}");
    let pulled_id = image_id(&pulled).expect("the pulled image");
    let recorded = std::fs::read_to_string(&record).expect("the record");
    assert_eq!(recorded, format!("{pulled_id}\n"));
    let (code, body) = request(&socket, "DELETE", &format!("/images/{pulled}"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(image_id(&pulled), None, "the pulled image is still there");
    let recorded = std::fs::read_to_string(&record).expect("the record");
    assert_eq!(recorded, "", "the removed image is still recorded");

    // The user's image outlived all of it.
    assert!(image_id(&user_image).is_some());
    bed.images.retain(|image| image_id(image).is_some());
}
