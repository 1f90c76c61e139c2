//! `kinit socks` as users run it: the real binary, driven by the real `curl` through to
//! an HTTP server started here, cluster names resolved by a real dnsmasq, and raw TCP
//! clients for broken and hostile handshakes. No Docker; everything on 127.0.0.1 with
//! ephemeral ports. curl and dnsmasq are required (scripts/test.sh installs them).

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The handshake bound the proxies here run with (`--handshake-timeout`).
const HANDSHAKE_SECS: u64 = 2;
/// A connection must be answered or closed within this.
const BOUND: Duration = Duration::from_secs(HANDSHAKE_SECS + 3);
const BODY_LEN: usize = 4 * 1024 * 1024 + 17;

/// A running `kinit socks`; killed when dropped.
struct Socks {
    child: Child,
    addr: SocketAddr,
    banner: String,
    stderr: Arc<Mutex<String>>,
}

impl Socks {
    fn start(state_dir: &Path, args: &[&str]) -> Socks {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kinit"))
            .arg("-v")
            .arg("--state-dir")
            .arg(state_dir)
            .args(["socks", "--port", "0"])
            .args(["--handshake-timeout", &HANDSHAKE_SECS.to_string()])
            .args(args)
            .env_remove("KINIT_SOCKS_AUTH")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the kinit binary runs");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("stderr is piped");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let out_pipe = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out_pipe).lines();
            let mut banner = String::new();
            // The banner ends with the Ctrl-C line; keep draining so the pipe never fills.
            while let Some(Ok(line)) = lines.next() {
                banner.push_str(&line);
                banner.push('\n');
                if line.starts_with("Ctrl-C") {
                    let _ = tx.send(banner.clone());
                }
            }
        });
        let banner = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(b) => b,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("kinit socks printed no banner: {}", stderr.lock().unwrap());
            }
        };
        let addr: SocketAddr = banner
            .lines()
            .next()
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in the banner: {banner}"));
        // The banner is printed after the socket is bound, so the port accepts now.
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("the proxy accepts");
        Socks {
            child,
            addr,
            banner,
            stderr,
        }
    }

    fn proxy(&self) -> String {
        self.addr.to_string()
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for every needle to appear in the log: lines arrive through a pipe and a
    /// reader thread, and a tunnel's line only once both ends have closed.
    fn wait_for_log(&self, needles: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !needles.iter().all(|n| self.log().contains(n)) {
            assert!(
                Instant::now() < deadline,
                "{needles:?} not in the log: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Socks {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The deterministic body every HTTP response carries.
fn body() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..BODY_LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn sha256(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// An HTTP/1.0 server on 127.0.0.1 that answers every request with [`body`].
fn http_server() -> SocketAddr {
    http_server_on(Ipv4Addr::LOCALHOST.into())
}

fn http_server_on(ip: std::net::IpAddr) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0))
        .unwrap_or_else(|e| panic!("cannot listen on {ip} (is IPv6 loopback disabled?): {e}"));
    let addr = listener.local_addr().unwrap();
    let body = Arc::new(body());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let body = body.clone();
            std::thread::spawn(move || serve_http(stream, &body));
        }
    });
    addr
}

fn serve_http(mut stream: TcpStream, body: &[u8]) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let head = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

/// Fails, never skips, when a program the tests drive is missing.
fn require(program: &str, package: &str) {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "these tests need `{program}` (Debian package {package}; scripts/test.sh installs it)"
    );
}

fn curl(args: &[&str]) -> Output {
    require("curl", "curl");
    Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "30"])
        .args(args)
        .output()
        .expect("curl runs")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Fetches `url` through the proxy and checks the body byte for byte.
fn fetch_ok(mode: &str, proxy: &str, url: &str, extra: &[&str]) {
    let mut args = vec![mode, proxy];
    args.extend_from_slice(extra);
    args.push(url);
    let out = curl(&args);
    assert!(out.status.success(), "curl {mode} {url}: {}", text(&out));
    assert_eq!(out.stdout.len(), BODY_LEN, "curl {mode} {url}: body length");
    assert_eq!(
        sha256(&out.stdout),
        sha256(&body()),
        "curl {mode} {url}: body"
    );
}

/// curl's exit status 97 is "proxy handshake failed"; its message names the SOCKS reply.
fn fetch_refused(mode: &str, proxy: &str, url: &str, extra: &[&str]) -> String {
    let mut args = vec![mode, proxy];
    args.extend_from_slice(extra);
    args.push(url);
    let out = curl(&args);
    assert!(!out.status.success(), "curl {mode} {url} got through");
    assert!(out.stdout.is_empty());
    text(&out)
}

fn state_with_cluster(node_ip: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cluster.yaml"),
        format!(
            "# Written by kinit up; the settings this cluster was created with.\n\
             nodeIp: {node_ip}\nhostname: kinit-test\nserviceCidr: 10.96.0.0/12\ndnsDomain: cluster.local\n"
        ),
    )
    .unwrap();
    dir
}

/// A dnsmasq on 127.0.0.1 answering only the given names; killed when dropped.
struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
}

impl Dnsmasq {
    fn start(names: &[(&str, &str)]) -> Dnsmasq {
        require("dnsmasq", "dnsmasq-base");
        let port = free_udp_and_tcp_port();
        let mut cmd = Command::new("dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--pid-file=",
            &format!("--port={port}"),
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
        ]);
        if nix::unistd::geteuid().is_root() {
            // Drop to nobody as soon as the port is bound.
            cmd.arg("--user=nobody");
        }
        for (name, ip) in names {
            cmd.arg(format!("--address=/{name}/{ip}"));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq starts");
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut d = Dnsmasq { child, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("dnsmasq exited at once: {status}");
            }
            assert!(Instant::now() < deadline, "dnsmasq did not start on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_udp_and_tcp_port() -> u16 {
    loop {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

// ---- raw SOCKS clients ----

fn connect(proxy: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&proxy, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(BOUND)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads until the server closes the connection; fails when it keeps it open past
/// [`BOUND`]. Returns what it sent before closing.
fn until_closed(mut s: TcpStream, what: &str) -> Vec<u8> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "{what}: the server kept the connection open for {:?} (got {got:?})",
                    start.elapsed()
                )
            }
            Err(e) => panic!("{what}: {e}"),
        }
        assert!(
            start.elapsed() < BOUND,
            "{what}: still open after {BOUND:?}"
        );
    }
}

/// The method negotiation for "no authentication"; asserts the server accepts it.
fn greet(s: &mut TcpStream) {
    s.write_all(&[5, 1, 0]).unwrap();
    let mut reply = [0u8; 2];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply, [5, 0]);
}

/// A request's reply code (the second byte of the reply).
fn request(proxy: SocketAddr, req: &[u8]) -> u8 {
    let mut s = connect(proxy);
    greet(&mut s);
    s.write_all(req).unwrap();
    let mut head = [0u8; 2];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 5, "reply version");
    head[1]
}

fn connect_request(cmd: u8, addr: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(a) = addr else {
        panic!("IPv4 only here")
    };
    let mut r = vec![5, cmd, 0, 1];
    r.extend_from_slice(&a.ip().octets());
    r.extend_from_slice(&a.port().to_be_bytes());
    r
}

// ---- tests ----

#[test]
fn curl_fetches_byte_exact_through_ip_and_hostname_targets() {
    let web = http_server();
    let state = tempfile::tempdir().unwrap();
    let socks = Socks::start(state.path(), &["--allow", "127.0.0.1"]);
    let proxy = socks.proxy();
    assert!(
        socks.banner.contains("destinations allowed: 127.0.0.1/32"),
        "{}",
        socks.banner
    );
    fetch_ok("--socks5", &proxy, &format!("http://{web}/"), &[]);
    // The host resolver: localhost resolves through /etc/hosts to an allowed address.
    fetch_ok(
        "--socks5-hostname",
        &proxy,
        &format!("http://localhost:{}/", web.port()),
        &[],
    );
    // An IPv6 target.
    let web6 = http_server_on(std::net::Ipv6Addr::LOCALHOST.into());
    let v6 = Socks::start(state.path(), &["--allow", "::1"]);
    fetch_ok("--socks5", &v6.proxy(), &format!("http://{web6}/"), &[]);
    fetch_refused("--socks5", &v6.proxy(), &format!("http://{web}/"), &[]);
    // Several at once.
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (proxy, url) = (proxy.clone(), format!("http://{web}/"));
            std::thread::spawn(move || fetch_ok("--socks5", &proxy, &url, &[]))
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // The per-connection debug line: client, target, bytes, duration.
    socks.wait_for_log(&[&format!("-> {web} ({web}): "), "bytes received"]);
}

#[test]
fn destinations_outside_the_allowlist_are_refused_with_reply_2() {
    let web = http_server();
    let state = tempfile::tempdir().unwrap();
    let socks = Socks::start(state.path(), &["--allow", "127.0.0.1/32"]);
    let proxy = socks.proxy();
    // 127.0.0.2 is loopback too, so the server would answer there: only policy refuses.
    let other = SocketAddr::from(([127, 0, 0, 2], web.port()));
    let err = fetch_refused("--socks5", &proxy, &format!("http://{other}/"), &[]);
    assert!(err.contains("(2)") || err.contains("not allowed"), "{err}");
    assert_eq!(request(socks.addr, &connect_request(1, other)), 2);
    // An IPv4-mapped IPv6 target is the IPv4 host, refused the same way.
    let mut mapped = vec![5, 1, 0, 4];
    mapped.extend_from_slice(
        &std::net::Ipv4Addr::new(127, 0, 0, 2)
            .to_ipv6_mapped()
            .octets(),
    );
    mapped.extend_from_slice(&web.port().to_be_bytes());
    assert_eq!(request(socks.addr, &mapped), 2);
    // And a name whose address is outside (ip6-localhost may be missing: use 127.0.0.2).
    let mut by_name = vec![5, 1, 0, 3, 9];
    by_name.extend_from_slice(b"127.0.0.2");
    by_name.extend_from_slice(&web.port().to_be_bytes());
    assert_eq!(request(socks.addr, &by_name), 2);
    socks.wait_for_log(&["refused 127.0.0.2"]);
    // The allowed one still works.
    fetch_ok("--socks5", &proxy, &format!("http://{web}/"), &[]);
}

#[test]
fn allow_any_keeps_loopback_and_link_local_closed_unless_named() {
    let web = http_server();
    let state = tempfile::tempdir().unwrap();
    let metadata = SocketAddr::from(([169, 254, 169, 254], 80));
    let any = Socks::start(state.path(), &["--allow-any"]);
    // Refused by policy (reply 2) at once, not tried: a connect to 169.254.169.254 would
    // hang until the connect timeout where no metadata service answers.
    assert_eq!(request(any.addr, &connect_request(1, web)), 2);
    assert_eq!(request(any.addr, &connect_request(1, metadata)), 2);
    let zero = SocketAddr::from(([0, 0, 0, 0], web.port()));
    assert_eq!(request(any.addr, &connect_request(1, zero)), 2);
    let mut by_name = vec![5, 1, 0, 3, 9];
    by_name.extend_from_slice(b"localhost");
    by_name.extend_from_slice(&web.port().to_be_bytes());
    assert_eq!(request(any.addr, &by_name), 2);
    any.wait_for_log(&["stay closed under --allow-any"]);

    // Named with --allow, 127.0.0.1 opens; the rest of loopback and link-local stays shut.
    let named = Socks::start(state.path(), &["--allow-any", "--allow", "127.0.0.1/32"]);
    fetch_ok("--socks5", &named.proxy(), &format!("http://{web}/"), &[]);
    let other = SocketAddr::from(([127, 0, 0, 2], web.port()));
    assert_eq!(request(named.addr, &connect_request(1, other)), 2);
    assert_eq!(request(named.addr, &connect_request(1, metadata)), 2);
}

#[test]
fn clients_outside_allow_client_are_closed_before_the_handshake() {
    let web = http_server();
    let state = tempfile::tempdir().unwrap();
    let socks = Socks::start(
        state.path(),
        &["--allow", "127.0.0.1", "--allow-client", "10.0.0.0/8"],
    );
    let mut s = connect(socks.addr);
    // The server may close before or after this write lands.
    let _ = s.write_all(&[5, 1, 0]);
    let got = until_closed(s, "refused client");
    assert!(got.is_empty(), "a refused client got {got:?}");
    let err = fetch_refused("--socks5", &socks.proxy(), &format!("http://{web}/"), &[]);
    assert!(!err.is_empty());
    socks.wait_for_log(&["refused client 127.0.0.1:"]);
}

#[test]
fn auth_refuses_wrong_and_missing_credentials() {
    let web = http_server();
    let state = tempfile::tempdir().unwrap();
    let socks = Socks::start(
        state.path(),
        &["--allow", "127.0.0.1", "--auth", "alice:s3cr:et"],
    );
    let proxy = socks.proxy();
    let url = format!("http://{web}/");
    fetch_ok("--socks5", &proxy, &url, &["--proxy-user", "alice:s3cr:et"]);
    fetch_refused("--socks5", &proxy, &url, &["--proxy-user", "alice:wrong"]);
    fetch_refused("--socks5", &proxy, &url, &["--proxy-user", "bob:s3cr:et"]);
    fetch_refused("--socks5", &proxy, &url, &[]);
    // Raw: offering only "no authentication" gets 0xFF and a close.
    let mut s = connect(socks.addr);
    s.write_all(&[5, 1, 0]).unwrap();
    assert_eq!(until_closed(s, "no-auth client"), [5, 0xFF]);
    // Wrong password: a non-zero RFC 1929 status, then a close.
    let mut s = connect(socks.addr);
    s.write_all(&[5, 1, 2]).unwrap();
    let mut chosen = [0u8; 2];
    s.read_exact(&mut chosen).unwrap();
    assert_eq!(chosen, [5, 2]);
    s.write_all(&[1, 5, b'a', b'l', b'i', b'c', b'e', 2, b'n', b'o'])
        .unwrap();
    let reply = until_closed(s, "wrong password");
    assert_eq!(reply.len(), 2, "{reply:?}");
    assert_ne!(reply[1], 0, "wrong password accepted");
    assert!(!socks.banner.contains("s3cr"), "{}", socks.banner);
}

#[test]
fn cluster_names_resolve_through_cluster_dns_with_defaults_from_the_state() {
    let web = http_server();
    let dns = Dnsmasq::start(&[
        ("web.default.svc.cluster.local", "127.0.0.1"),
        ("outside.default.svc.cluster.local", "127.0.0.2"),
    ]);
    // Node IP 127.0.0.1, so the default allowlist (pods, Services, node) admits the web
    // server and nothing else on loopback.
    let state = state_with_cluster("127.0.0.1");
    let socks = Socks::start(state.path(), &["--dns-server", &dns.addr.to_string()]);
    assert!(
        socks
            .banner
            .contains("destinations allowed: 10.244.0.0/16, 10.96.0.0/12, 127.0.0.1/32"),
        "{}",
        socks.banner
    );
    let proxy = socks.proxy();
    let port = web.port();
    for name in [
        "web.default.svc.cluster.local",
        "web.default.svc",
        "WEB.default.svc.cluster.local.",
    ] {
        fetch_ok(
            "--socks5-hostname",
            &proxy,
            &format!("http://{name}:{port}/"),
            &[],
        );
    }
    // Resolved, but to an address outside the allowlist.
    let err = fetch_refused(
        "--socks5-hostname",
        &proxy,
        &format!("http://outside.default.svc.cluster.local:{port}/"),
        &[],
    );
    assert!(err.contains("(2)") || err.contains("not allowed"), "{err}");
    // Unknown to cluster DNS: host unreachable (4), promptly.
    let mut missing = vec![5, 1, 0, 3];
    let name = b"nothing.default.svc.cluster.local";
    missing.push(name.len() as u8);
    missing.extend_from_slice(name);
    missing.extend_from_slice(&port.to_be_bytes());
    let start = Instant::now();
    assert_eq!(request(socks.addr, &missing), 4);
    assert!(start.elapsed() < BOUND);
}

#[test]
fn a_non_loopback_bind_is_a_warning() {
    let web = http_server();
    let state = tempfile::tempdir().unwrap();
    let socks = Socks::start(
        state.path(),
        &[
            "--bind",
            "0.0.0.0",
            "--allow",
            "127.0.0.1",
            "--allow-client",
            "127.0.0.1",
        ],
    );
    assert!(
        socks.banner.contains("listening on 0.0.0.0:"),
        "{}",
        socks.banner
    );
    // Loopback clients are still admitted.
    fetch_ok(
        "--socks5",
        &socks.proxy().replace("0.0.0.0", "127.0.0.1"),
        &format!("http://{web}/"),
        &[],
    );
    socks.wait_for_log(&["WARN", "which other hosts can reach"]);
}

/// Runs `kinit socks` expecting it to refuse to start; returns its stderr. A proxy that
/// starts anyway is killed after a few seconds and fails the test.
fn refuses_to_start(state_dir: &Path, args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kinit"))
        .arg("--state-dir")
        .arg(state_dir)
        .args(["socks", "--port", "0"])
        .args(args)
        .env_remove("KINIT_SOCKS_AUTH")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the kinit binary runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "kinit socks {args:?} started: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "kinit socks {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_non_loopback_bind_needs_a_password_or_named_clients() {
    let state = tempfile::tempdir().unwrap();
    for bind in ["0.0.0.0", "::"] {
        let err = refuses_to_start(state.path(), &["--bind", bind, "--allow", "127.0.0.1"]);
        assert!(
            err.starts_with(&format!(
                "error: --bind {bind} lets other hosts reach the proxy"
            )) && err.contains("--auth-file")
                && err.contains("--allow-client")
                && err.lines().count() == 1,
            "{err}"
        );
    }
    // With a password, the default clients are loopback plus the bind address's networks.
    let file = state.path().join("auth");
    std::fs::write(&file, "alice:s3cret\n").unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let socks = Socks::start(
        state.path(),
        &[
            "--bind",
            "0.0.0.0",
            "--allow",
            "127.0.0.1",
            "--auth-file",
            file.to_str().unwrap(),
        ],
    );
    assert!(
        socks
            .banner
            .contains("authentication: username/password required (user alice)"),
        "{}",
        socks.banner
    );
}

/// A `kinit socks --detach`; stopped when dropped (it is not this process's child).
/// While another kinit starts or stops the background proxy (it holds `<state>/socks.lock`),
/// `--detach` refuses at once and starts nothing.
#[test]
fn a_second_detach_refuses_while_one_holds_the_socks_lock() {
    let state = tempfile::tempdir().unwrap();
    let held = std::fs::File::create(state.path().join("socks.lock")).unwrap();
    held.try_lock().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kinit"))
        .arg("--state-dir")
        .arg(state.path())
        .args(["socks", "--port", "0", "--allow", "127.0.0.1", "--detach"])
        .env_remove("KINIT_SOCKS_AUTH")
        .stdin(Stdio::null())
        .output()
        .expect("the kinit binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("another kinit"), "{stderr}");
    assert!(!state.path().join("socks.json").exists());
    drop(held);
    let proxy = Detached::start(state.path(), &["--allow", "127.0.0.1"], &[]);
    assert!(proxy.pid > 0);
}

struct Detached {
    pid: i32,
    addr: SocketAddr,
    stderr: String,
}

impl Detached {
    fn start(state_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Detached {
        let out = Command::new(env!("CARGO_BIN_EXE_kinit"))
            .arg("--state-dir")
            .arg(state_dir)
            .args(["socks", "--port", "0"])
            .args(args)
            .arg("--detach")
            .env_remove("KINIT_SOCKS_AUTH")
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("the kinit binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "kinit socks --detach: {stderr}");
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(state_dir.join("socks.json")).unwrap()).unwrap();
        let pid = record["pid"].as_i64().unwrap() as i32;
        let addr = record["listen"].as_str().unwrap().parse().unwrap();
        Detached { pid, addr, stderr }
    }

    /// A file of /proc/PID, NUL separators shown as spaces.
    fn proc_file(&self, name: &str) -> String {
        let bytes = std::fs::read(format!("/proc/{}/{name}", self.pid)).unwrap();
        String::from_utf8_lossy(&bytes).replace('\0', " ")
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        let pid = nix::unistd::Pid::from_raw(self.pid);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(7);
        while Path::new(&format!("/proc/{}", self.pid)).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = kill(pid, Signal::SIGKILL);
    }
}

#[test]
fn a_detached_proxy_never_has_the_password_on_its_command_line() {
    let web = http_server();
    let url = format!("http://{web}/");
    let file_dir = tempfile::tempdir().unwrap();
    let file = file_dir.path().join("auth");
    std::fs::write(&file, "alice:s3cret-file\n").unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let file = file.to_str().unwrap().to_string();
    // (password, arguments, environment)
    let cli = ["--auth", "alice:s3cret-cli"];
    let by_file = ["--auth-file", file.as_str()];
    let env = [("KINIT_SOCKS_AUTH", "alice:s3cret-env")];
    let cases = [
        ("s3cret-cli", &cli[..], &[][..]),
        ("s3cret-env", &[][..], &env[..]),
        ("s3cret-file", &by_file[..], &[][..]),
    ];
    for (password, auth_args, env) in cases {
        let state = tempfile::tempdir().unwrap();
        let mut args = vec!["--allow", "127.0.0.1"];
        args.extend(auth_args.iter().copied());
        let proxy = Detached::start(state.path(), &args, env);
        let cmdline = proxy.proc_file("cmdline");
        assert!(cmdline.contains("socks"), "{cmdline}");
        assert!(!cmdline.contains(password), "{password} in ps: {cmdline}");
        let environ = proxy.proc_file("environ");
        assert!(!environ.contains(password), "{password} in the environment");
        // The child did get the password: it requires exactly it.
        let user = format!("alice:{password}");
        fetch_ok(
            "--socks5",
            &proxy.addr.to_string(),
            &url,
            &["--proxy-user", &user],
        );
        fetch_refused(
            "--socks5",
            &proxy.addr.to_string(),
            &url,
            &["--proxy-user", "alice:wrong"],
        );
        fetch_refused("--socks5", &proxy.addr.to_string(), &url, &[]);
        // Only a password typed on the command line earns the warning.
        assert_eq!(
            proxy.stderr.contains("visible") || proxy.stderr.contains("`ps`"),
            password == "s3cret-cli",
            "{password}: {}",
            proxy.stderr
        );
        let log = std::fs::read_to_string(state.path().join("socks.log")).unwrap();
        assert!(!log.contains(password), "{password} in the log: {log}");
    }
}

#[test]
fn a_detached_proxys_log_is_rotated_at_its_size_bound() {
    const MAX: u64 = 8192;
    let state = tempfile::tempdir().unwrap();
    let proxy = Detached::start(
        state.path(),
        &[
            "-v",
            "--allow",
            "127.0.0.1",
            "--log-max-size",
            &MAX.to_string(),
        ],
        &[],
    );
    let log = state.path().join("socks.log");
    let old = state.path().join("socks.log.1");
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    // -v logs a line per failed handshake (about 85 bytes): bursts of about 8 KiB, each
    // followed by time for the once-a-second size check.
    const SLACK: u64 = 10 * 1024;
    let mut written = 0;
    for _ in 0..5 {
        for _ in 0..100 {
            let mut s = connect(proxy.addr);
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
            until_closed(s, "HTTP client");
        }
        std::thread::sleep(Duration::from_millis(1500));
        written += 100;
        assert!(size(&log) < MAX + SLACK, "socks.log grew to {}", size(&log));
    }
    let (current, previous) = (size(&log), size(&old));
    assert!(
        (MAX..MAX + SLACK).contains(&previous),
        "socks.log.1 is {previous} bytes"
    );
    assert!(current < MAX + SLACK, "socks.log is {current} bytes");
    assert!(!state.path().join("socks.log.2").exists());
    // Older lines were dropped: the two files hold less than was logged.
    let text = std::fs::read_to_string(&log).unwrap() + &std::fs::read_to_string(&old).unwrap();
    let lines = text.matches("handshake failed").count();
    assert!(
        lines > 0 && lines < written,
        "{lines} of {written} lines kept"
    );
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("earlier lines are in"),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
}

#[test]
fn pac_and_missing_state() {
    let state = state_with_cluster("10.0.2.15");
    let out = Command::new(env!("CARGO_BIN_EXE_kinit"))
        .arg("--state-dir")
        .arg(state.path())
        .args(["socks", "--pac"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let pac = String::from_utf8_lossy(&out.stdout);
    for want in [
        "function FindProxyForURL(url, host)",
        "SOCKS5 127.0.0.1:8082",
        "dnsDomainIs(host, \".cluster.local\")",
        "isInNet(host, \"10.244.0.0\", \"255.255.0.0\")",
        "isInNet(host, \"10.96.0.0\", \"255.240.0.0\")",
        "isInNet(host, \"10.0.2.15\", \"255.255.255.255\")",
    ] {
        assert!(pac.contains(want), "{want} missing: {pac}");
    }
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kinit"))
        .arg("--state-dir")
        .arg(empty.path())
        .arg("socks")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.starts_with("error: no cluster in")
            && err.contains("--allow")
            && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn broken_and_unsupported_handshakes_get_a_reply_or_a_close_in_bound() {
    let web = http_server();
    let state = tempfile::tempdir().unwrap();
    let socks = Socks::start(state.path(), &["--allow", "127.0.0.1"]);
    let p = socks.addr;

    // BIND, UDP ASSOCIATE and an unknown command: "command not supported".
    for cmd in [2u8, 3, 9] {
        assert_eq!(request(p, &connect_request(cmd, web)), 7, "command {cmd}");
    }
    // An unknown address type: "address type not supported", or a close.
    let mut s = connect(p);
    greet(&mut s);
    s.write_all(&[5, 1, 0, 9, 1, 2, 3, 4, 0, 80]).unwrap();
    let got = until_closed(s, "address type 9");
    assert!(got.is_empty() || got[1] == 8, "{got:?}");

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("SOCKS4", vec![4, 1, 0, 80, 127, 0, 0, 1, 0]),
        ("HTTP", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("no methods", vec![5, 0]),
        ("only GSSAPI", vec![5, 1, 1]),
        ("truncated greeting", vec![5, 3, 0]),
        ("truncated request", vec![5, 1, 0, 5, 1, 0, 1, 127, 0]),
        ("truncated name", vec![5, 1, 0, 5, 1, 0, 3, 20, b'a', b'b']),
        (
            "bad request version",
            vec![5, 1, 0, 4, 1, 0, 1, 127, 0, 0, 1, 0, 80],
        ),
        (
            "name not UTF-8",
            vec![5, 1, 0, 5, 1, 0, 3, 2, 0xff, 0xfe, 0, 80],
        ),
        ("empty name", vec![5, 1, 0, 5, 1, 0, 3, 0, 0, 80]),
        (
            "name with dots only",
            vec![5, 1, 0, 5, 1, 0, 3, 2, b'.', b'.', 0, 80],
        ),
    ];
    for (what, bytes) in &cases {
        // Once with the write side left open (the server must not wait for more forever),
        // once with it shut (the server sees end of stream).
        for shut in [false, true] {
            let mut s = connect(p);
            s.write_all(bytes).unwrap();
            if shut {
                let _ = s.shutdown(std::net::Shutdown::Write);
            }
            let got = until_closed(s, what);
            // Whatever came back is a SOCKS reply: a method choice and maybe a failure.
            if let Some(&v) = got.first() {
                assert_eq!(v, 5, "{what}: {got:?}");
            }
            if got.len() > 2 {
                assert_ne!(
                    got[3], 0,
                    "{what}: a failed request reported success: {got:?}"
                );
            }
        }
    }

    // Idle, and slowloris: one byte at a time, each well within any per-read timeout.
    let start = Instant::now();
    until_closed(connect(p), "idle client");
    let idle = start.elapsed();
    assert!(
        idle >= Duration::from_secs(HANDSHAKE_SECS) - Duration::from_millis(200),
        "closed an idle client after {idle:?}, before the handshake bound"
    );
    let mut s = connect(p);
    let start = Instant::now();
    let mut closed = false;
    for b in [5u8, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0]
        .iter()
        .cycle()
        .take(40)
    {
        std::thread::sleep(Duration::from_millis(300));
        if s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        if start.elapsed() > BOUND {
            break;
        }
    }
    if !closed {
        until_closed(s, "slowloris");
    }
    assert!(
        start.elapsed() < BOUND,
        "slowloris held on for {:?}",
        start.elapsed()
    );

    // The server is still fine.
    fetch_ok("--socks5", &socks.proxy(), &format!("http://{web}/"), &[]);
}

#[test]
fn ctrl_c_stops_accepting_and_lets_open_tunnels_finish() {
    let web = http_server();
    let state = tempfile::tempdir().unwrap();
    let mut socks = Socks::start(state.path(), &["--allow", "127.0.0.1"]);
    // An open tunnel, request not sent yet.
    let mut tunnel = connect(socks.addr);
    greet(&mut tunnel);
    tunnel.write_all(&connect_request(1, web)).unwrap();
    let mut reply = [0u8; 10];
    tunnel.read_exact(&mut reply).unwrap();
    assert_eq!(reply[1], 0, "{reply:?}");

    let kill = Command::new("kill")
        .args(["-INT", &socks.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    // New connections are no longer accepted.
    let deadline = Instant::now() + Duration::from_secs(3);
    while TcpStream::connect(socks.addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The open tunnel still carries a whole response.
    tunnel.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut response = Vec::new();
    tunnel.read_to_end(&mut response).unwrap();
    let body_start = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response")
        + 4;
    assert_eq!(sha256(&response[body_start..]), sha256(&body()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = socks.child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}: {}", socks.log());
    socks.wait_for_log(&["shutting down", "kinit socks stopped: 1 tunnels"]);
}

/// A TCP server on 127.0.0.1 that echoes what it reads, byte for byte.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A tunnel through `proxy` to `target`, its CONNECT reply read.
fn tunnel(proxy: SocketAddr, target: SocketAddr) -> TcpStream {
    let mut s = connect(proxy);
    greet(&mut s);
    s.write_all(&connect_request(1, target)).unwrap();
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply[1], 0, "CONNECT refused: {reply:?}");
    s
}

/// Like [`tunnel`], but a connection closed at once (the proxy still counting one that
/// has just ended, such as `Socks::start`'s probe) is retried for a few seconds.
fn tunnel_when_free(proxy: SocketAddr, target: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut s = connect(proxy);
        let mut reply = [0u8; 2];
        if s.write_all(&[5, 1, 0]).is_ok() && s.read_exact(&mut reply).is_ok() {
            assert_eq!(reply, [5, 0]);
            s.write_all(&connect_request(1, target)).unwrap();
            let mut reply = [0u8; 10];
            s.read_exact(&mut reply).unwrap();
            assert_eq!(reply[1], 0, "CONNECT refused: {reply:?}");
            return s;
        }
        assert!(Instant::now() < deadline, "no slot for a tunnel");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn echoes(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    s.write_all(b"x").is_ok() && s.read_exact(&mut b).is_ok() && b == *b"x"
}

#[test]
fn an_idle_tunnel_is_closed_after_the_idle_timeout_and_a_busy_one_is_not() {
    let echo = echo_server();
    let state = tempfile::tempdir().unwrap();
    let socks = Socks::start(
        state.path(),
        &["--allow", "127.0.0.1", "--idle-timeout", "1"],
    );
    // Busy: a byte each 400 ms for 2.4 s, well past the timeout, all echoed.
    let mut busy = tunnel(socks.addr, echo);
    for i in 0..6 {
        assert!(echoes(&mut busy), "busy tunnel closed after {} ms", i * 400);
        std::thread::sleep(Duration::from_millis(400));
    }
    // Then silent: closed about a second later (the tunnel's peer sees end of stream).
    let start = Instant::now();
    until_closed(busy, "idle tunnel");
    let lasted = start.elapsed();
    assert!(
        lasted >= Duration::from_millis(500) && lasted < Duration::from_secs(4),
        "closed after {lasted:?} of silence"
    );
    socks.wait_for_log(&["nothing moved for 1s (--idle-timeout)"]);
}

#[test]
fn a_client_over_its_tunnel_cap_is_closed_and_others_keep_theirs() {
    let echo = echo_server();
    let state = tempfile::tempdir().unwrap();
    let socks = Socks::start(
        state.path(),
        &["--allow", "127.0.0.1", "--max-tunnels-per-client", "3"],
    );
    let mut open: Vec<TcpStream> = (0..3).map(|_| tunnel_when_free(socks.addr, echo)).collect();
    // The fourth is closed before a byte is read or written.
    for _ in 0..5 {
        let mut s = connect(socks.addr);
        let _ = s.write_all(&[5, 1, 0]);
        let got = until_closed(s, "fourth tunnel");
        assert!(got.is_empty(), "a client over its cap got {got:?}");
    }
    // The three open ones are untouched.
    for s in &mut open {
        assert!(echoes(s));
    }
    // Closing one frees its slot (once the proxy has seen the close).
    drop(open.pop());
    let mut again = tunnel_when_free(socks.addr, echo);
    assert!(echoes(&mut again));
    socks.wait_for_log(&["it has 3 connections open (--max-tunnels-per-client)"]);

    // The global cap, with room per client.
    let total = Socks::start(
        state.path(),
        &["--allow", "127.0.0.1", "--max-tunnels", "2"],
    );
    let _held: Vec<TcpStream> = (0..2).map(|_| tunnel_when_free(total.addr, echo)).collect();
    let got = until_closed(connect(total.addr), "third tunnel");
    assert!(got.is_empty(), "{got:?}");
    total.wait_for_log(&["2 connections are open (--max-tunnels)"]);
}

/// Stops a proxy with SIGINT and waits for it to exit.
fn interrupt(socks: &mut Socks) {
    let kill = Command::new("kill")
        .args(["-INT", &socks.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let start = Instant::now();
    while socks.child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(10), "did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_hundred_refusals_are_a_few_log_lines_and_a_count() {
    let web = http_server();
    let state = tempfile::tempdir().unwrap();
    // Refused as clients.
    let mut clients = Socks::start(
        state.path(),
        &["--allow", "127.0.0.1", "--allow-client", "10.0.0.0/8"],
    );
    for _ in 0..100 {
        until_closed(connect(clients.addr), "refused client");
    }
    // Refused destinations, and refused credentials.
    let mut dest = Socks::start(
        state.path(),
        &["--allow", "127.0.0.1/32", "--auth", "alice:pw"],
    );
    let other = SocketAddr::from(([127, 0, 0, 2], web.port()));
    for _ in 0..50 {
        let mut s = connect(dest.addr);
        s.write_all(&[5, 1, 2, 1, 5, b'a', b'l', b'i', b'c', b'e', 2, b'p', b'w'])
            .unwrap();
        let mut reply = [0u8; 4];
        s.read_exact(&mut reply).unwrap();
        assert_eq!(reply, [5, 2, 1, 0]);
        s.write_all(&connect_request(1, other)).unwrap();
        let mut head = [0u8; 2];
        s.read_exact(&mut head).unwrap();
        assert_eq!(head[1], 2, "destination not refused");
    }
    for _ in 0..50 {
        let mut s = connect(dest.addr);
        s.write_all(&[5, 1, 2, 1, 5, b'a', b'l', b'i', b'c', b'e', 2, b'n', b'o'])
            .unwrap();
        until_closed(s, "wrong password");
    }
    // Well within the summary interval: one line per client and proxy so far.
    std::thread::sleep(Duration::from_millis(300));
    let refusal_lines = |log: &str| log.lines().filter(|l| l.contains("refused")).count();
    assert_eq!(refusal_lines(&clients.log()), 1, "{}", clients.log());
    assert_eq!(refusal_lines(&dest.log()), 1, "{}", dest.log());
    // The rest are counted, and the count is logged at the latest when the proxy stops.
    interrupt(&mut clients);
    interrupt(&mut dest);
    // 101 refused in all: Socks::start's own probe of the port was the first.
    let log = clients.log();
    assert!(
        log.contains("client 127.0.0.1: 100 more refused")
            && log.contains("(100 from outside --allow-client)"),
        "{log}"
    );
    assert!(refusal_lines(&log) <= 3, "{log}");
    let log = dest.log();
    assert!(
        log.contains("client 127.0.0.1: 99 more refused")
            && log.contains("49 to a destination not allowed")
            && log.contains("50 with wrong or missing credentials"),
        "{log}"
    );
    assert!(refusal_lines(&log) <= 3, "{log}");
}

/// A TCP server on 127.0.0.1 that closes every connection at once.
fn sink_server() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || for _ in listener.incoming() {});
    addr
}

/// xorshift64: reproducible from a seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// A well-formed handshake to `port` on loopback: by address, IPv6 or name, with a
/// command that is mostly CONNECT.
fn valid_handshake(rng: &mut Rng, port: u16, auth: bool) -> Vec<u8> {
    let mut v = if auth {
        vec![5, 1, 2, 1, 5, b'a', b'l', b'i', b'c', b'e', 2, b'p', b'w']
    } else {
        vec![5, 1, 0]
    };
    let cmd = [1, 1, 1, 2, 3][rng.below(5)];
    v.extend_from_slice(&[5, cmd, 0]);
    match rng.below(4) {
        0 | 1 => v.extend_from_slice(&[1, 127, 0, 0, 1]),
        2 => {
            v.push(4);
            v.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        }
        _ => {
            let name: &[u8] = [
                &b"localhost"[..],
                b"web.default.svc",
                b"x.y.svc.cluster.local",
            ][rng.below(3)];
            v.push(3);
            v.push(name.len() as u8);
            v.extend_from_slice(name);
        }
    }
    v.extend_from_slice(&port.to_be_bytes());
    v
}

fn fuzz_case(rng: &mut Rng, port: u16, auth: bool) -> Vec<u8> {
    match rng.below(4) {
        0 => (0..rng.below(48)).map(|_| rng.byte()).collect(),
        1 => {
            let mut v = valid_handshake(rng, port, auth);
            v.truncate(rng.below(v.len() + 1));
            v
        }
        2 => {
            let mut v = valid_handshake(rng, port, auth);
            for _ in 0..=rng.below(3) {
                let i = rng.below(v.len());
                v[i] = rng.byte();
            }
            v
        }
        _ => {
            // Data pipelined after the request, as some clients send.
            let mut v = valid_handshake(rng, port, auth);
            v.extend((0..rng.below(64)).map(|_| rng.byte()));
            v
        }
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Thousands of random, truncated and mutated handshakes (KINIT_FUZZ_CASES, default 3000;
/// KINIT_FUZZ_SEED to replay): every connection must end, with a reply or a close, within
/// the handshake bound plus a DNS lookup, and the server must keep serving.
#[test]
fn random_and_mutated_handshakes_always_end_and_the_server_keeps_serving() {
    let web = http_server();
    let sink = sink_server();
    let state = tempfile::tempdir().unwrap();
    let mut plain = Socks::start(state.path(), &["--allow", "127.0.0.1"]);
    let mut authed = Socks::start(
        state.path(),
        &["--allow", "127.0.0.1", "--auth", "alice:pw"],
    );
    let cases: usize = env_or("KINIT_FUZZ_CASES", 3000);
    let seed: u64 = env_or("KINIT_FUZZ_SEED", 0x5EED_CAFE_F00D);
    // Handshake, then at most a 3 s name lookup (connects here are to loopback).
    let bound = Duration::from_secs(HANDSHAKE_SECS + 3 + 2);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..16 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= cases {
                        break;
                    }
                    let mut rng = Rng(seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    let auth = i % 4 == 3;
                    let proxy = if auth { &authed } else { &plain };
                    let bytes = fuzz_case(&mut rng, sink.port(), auth);
                    // Mostly the client half-closes; some leave it open, like a stalled client.
                    let keep_open = i.is_multiple_of(25);
                    let mut s =
                        TcpStream::connect_timeout(&proxy.addr, Duration::from_secs(5)).unwrap();
                    s.set_read_timeout(Some(bound)).unwrap();
                    // The server may close before all of it is written.
                    let _ = s.write_all(&bytes);
                    if !keep_open {
                        let _ = s.shutdown(std::net::Shutdown::Write);
                    }
                    let t = Instant::now();
                    let mut buf = [0u8; 256];
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) => break,
                            Ok(_) => {}
                            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                            Err(e) => panic!(
                                "case {i} (seed {seed:#x}, keep_open {keep_open}): not ended \
                                 after {:?} ({e}); sent {bytes:?}",
                                t.elapsed()
                            ),
                        }
                    }
                }
            });
        }
    });
    eprintln!(
        "{cases} handshakes (seed {seed:#x}) in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    for socks in [&mut plain, &mut authed] {
        let exited = socks.child.try_wait().unwrap();
        assert!(
            exited.is_none(),
            "kinit socks exited ({exited:?}): {}",
            socks.log()
        );
    }
    fetch_ok("--socks5", &plain.proxy(), &format!("http://{web}/"), &[]);
    fetch_ok(
        "--socks5-hostname",
        &authed.proxy(),
        &format!("http://localhost:{}/", web.port()),
        &["--proxy-user", "alice:pw"],
    );
    let log = plain.log() + &authed.log();
    assert!(!log.contains("panicked"), "{log}");
}
