//! The `kinit` binary as users run it: help, `kinit certs` checked with the openssl
//! command line tool, and bad input. No Docker needed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn kinit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kinit"))
        .args(args)
        .env_remove("KINIT_STATE_DIR")
        .output()
        .expect("the kinit binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command is installed (scripts/test.sh installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
    text(&out)
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        if e.path().is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path().display().to_string());
        }
    }
    out.sort();
    out
}

#[test]
fn help_lists_every_subcommand() {
    let out = kinit(&["--help"]);
    assert!(out.status.success());
    let help = text(&out);
    for cmd in [
        "up",
        "down",
        "status",
        "socks",
        "kubeconfig",
        "logs",
        "certs",
        "example",
        "version",
        "completions",
        "man",
    ] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{cmd} "))),
            "`{cmd}` missing from help:\n{help}"
        );
    }
    assert!(help.contains("--state-dir") && help.contains("--verbose"));
}

#[test]
fn completions_and_the_man_page_come_from_the_flag_definitions() {
    for (shell, marker) in [
        ("bash", "_kinit()"),
        ("zsh", "#compdef kinit"),
        ("fish", "complete -c kinit"),
    ] {
        let out = kinit(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        assert!(
            script.contains("image-override"),
            "{shell}: a flag is missing"
        );
    }
    let out = kinit(&["man"]);
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        page.contains(".TH kinit 1") && page.contains("socks"),
        "{page}"
    );
    // --dir: a page per subcommand, so their flags are documented too.
    let dir = tempfile::tempdir().unwrap();
    let out = kinit(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let up = std::fs::read_to_string(dir.path().join("kinit-up.1")).unwrap();
    assert!(up.contains("mirror") && up.contains("pod\\-cidr"), "{up}");
    assert!(dir.path().join("kinit-socks.1").is_file());
    let bad = kinit(&["man", "--dir", "/proc/nonexistent/dir"]);
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("cannot write the man pages"),
        "{}",
        text(&bad)
    );
    if Command::new("man").arg("--version").output().is_ok() {
        // man renders it without complaint when it is installed.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kinit.1");
        std::fs::write(&file, page.as_bytes()).unwrap();
        let rendered = Command::new("man")
            .arg("-l")
            .arg(&file)
            .env("MANPAGER", "cat")
            .output()
            .unwrap();
        assert!(text(&rendered).contains("kinit"), "{}", text(&rendered));
    }
}

#[test]
fn certs_pass_openssl_verify_with_the_required_sans_and_private_modes() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let d = out_dir.to_str().unwrap();
    let certs = [
        "certs",
        "--out",
        d,
        "--node-ip",
        "10.0.2.15",
        "--hostname",
        "kinit-test",
    ];
    let out = kinit(&certs);
    assert!(out.status.success(), "{}", text(&out));

    let pki = out_dir.join("pki");
    let verify = |ca: &str, leaf: &str| {
        let ca = pki.join(ca);
        let leaf = pki.join(leaf);
        let result = openssl(&[
            "verify",
            "-CAfile",
            ca.to_str().unwrap(),
            leaf.to_str().unwrap(),
        ]);
        assert!(result.contains(": OK"), "{result}");
    };
    for leaf in [
        "apiserver.crt",
        "apiserver-kubelet-client.crt",
        "kubelet.crt",
    ] {
        verify("ca.crt", leaf);
    }
    for leaf in [
        "etcd/server.crt",
        "etcd/peer.crt",
        "etcd/healthcheck-client.crt",
        "apiserver-etcd-client.crt",
    ] {
        verify("etcd/ca.crt", leaf);
    }
    verify("front-proxy-ca.crt", "front-proxy-client.crt");

    // A leaf must not verify against a CA that did not sign it.
    let wrong = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(pki.join("etcd/ca.crt"))
        .arg(pki.join("apiserver.crt"))
        .output()
        .unwrap();
    assert!(
        !wrong.status.success(),
        "apiserver.crt verified against the etcd CA"
    );

    let api = pki.join("apiserver.crt");
    let sans = openssl(&[
        "x509",
        "-in",
        api.to_str().unwrap(),
        "-noout",
        "-ext",
        "subjectAltName",
    ]);
    for want in [
        "DNS:kubernetes,",
        "DNS:kubernetes.default,",
        "DNS:kubernetes.default.svc,",
        "DNS:kubernetes.default.svc.cluster.local",
        "DNS:kinit-test",
        "DNS:localhost",
        "IP Address:10.0.2.15",
        "IP Address:127.0.0.1",
        "IP Address:10.96.0.1",
    ] {
        assert!(sans.contains(want), "{want} missing: {sans}");
    }
    let ca = pki.join("ca.crt");
    let ca_text = openssl(&["x509", "-in", ca.to_str().unwrap(), "-noout", "-text"]);
    assert!(
        ca_text.contains("CA:TRUE") && ca_text.contains("Certificate Sign"),
        "{ca_text}"
    );
    let admin_cert = kubeconfig_cert(&out_dir.join("admin.conf"), dir.path());
    let subject = openssl(&[
        "x509",
        "-in",
        admin_cert.to_str().unwrap(),
        "-noout",
        "-subject",
        "-nameopt",
        "RFC2253",
    ]);
    assert!(
        subject.contains("CN=kubernetes-admin,O=system:masters"),
        "{subject}"
    );

    for file in files_under(&out_dir) {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        if file.ends_with(".key") || file.ends_with(".conf") {
            assert_eq!(mode, 0o600, "{file}");
        }
    }

    // A second run keeps the CA: same fingerprint.
    let fingerprint = || {
        openssl(&[
            "x509",
            "-in",
            ca.to_str().unwrap(),
            "-noout",
            "-fingerprint",
            "-sha256",
        ])
    };
    let before = fingerprint();
    let again = kinit(&certs);
    assert!(
        again.status.success() && text(&again).contains("kept"),
        "{}",
        text(&again)
    );
    assert_eq!(fingerprint(), before);
}

/// Writes the client certificate embedded in a kubeconfig to a file openssl can read.
fn kubeconfig_cert(kubeconfig: &Path, scratch: &Path) -> std::path::PathBuf {
    let yaml = std::fs::read_to_string(kubeconfig).unwrap();
    let b64 = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("client-certificate-data: "))
        .expect("client-certificate-data");
    let b64_file = scratch.join("cert.b64");
    std::fs::write(&b64_file, b64).unwrap();
    let pem = scratch.join("cert.pem");
    openssl(&[
        "base64",
        "-d",
        "-A",
        "-in",
        b64_file.to_str().unwrap(),
        "-out",
        pem.to_str().unwrap(),
    ]);
    pem
}

#[test]
fn bad_input_fails_with_one_clear_line_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let d = out_dir.to_str().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "").unwrap();
    let under_file = blocker.join("out");

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["certs", "--out", d, "--bogus"],
            "unexpected argument '--bogus'",
        ),
        (
            vec!["certs", "--out", d, "--service-cidr", "10.96.0.1/12"],
            "did you mean 10.96.0.0/12",
        ),
        (
            vec!["certs", "--out", d, "--service-cidr", "not-a-cidr"],
            "is not a CIDR",
        ),
        (
            vec!["certs", "--out", d, "--service-cidr", "10.0.0.0/8"],
            "/12 to /28",
        ),
        (
            vec!["certs", "--out", d, "--node-ip", "10.0.2.300"],
            "invalid value '10.0.2.300'",
        ),
        (
            vec!["certs", "--out", d, "--hostname", "Bad_Name"],
            "is not a valid host name",
        ),
        (
            vec!["certs", "--out", under_file.to_str().unwrap()],
            "cannot create the directory",
        ),
        (
            vec!["certs", "--out", blocker.to_str().unwrap()],
            "is not a directory",
        ),
        (vec!["--state-dir", d, "socks"], "no cluster in"),
        (
            vec!["socks", "--allow", "10.96.0.1/12"],
            "did you mean 10.96.0.0/12",
        ),
        (vec!["socks", "--auth", "alice"], "expected USER:PASSWORD"),
        (
            vec!["socks", "--auth", "alice:pw", "--auth-file", "/nonexistent"],
            "cannot be used with",
        ),
        (
            vec![
                "socks",
                "--allow",
                "10.0.0.0/8",
                "--auth-file",
                "/nonexistent",
            ],
            "cannot open /nonexistent",
        ),
        (
            vec!["socks", "--allow", "10.0.0.0/8", "--bind", "0.0.0.0"],
            "--bind 0.0.0.0 lets other hosts reach the proxy",
        ),
        (
            vec!["socks", "--log-file", "/tmp/x.log", "--detach"],
            "cannot be used with",
        ),
        (
            vec!["socks", "--bind", "localhost"],
            "invalid value 'localhost'",
        ),
        (vec!["--state-dir", d, "example", "nginx"], "no cluster in"),
        (
            vec!["example", "wordpress"],
            "there is no example \"wordpress\"",
        ),
        (
            vec!["example", "nginx", "--image-override", "redis=redis:7"],
            "has no image \"redis\"",
        ),
        (vec!["--state-dir", d, "kubeconfig"], "no cluster in"),
        (
            vec!["--state-dir", d, "up", "--kubernetes-version", "v1.20.0"],
            "Kubernetes 'v1.20.0' is not supported by this kinit; supported: v1.",
        ),
        (
            vec![
                "--state-dir",
                d,
                "up",
                "--image-repository",
                "https://r.example",
            ],
            "is not an image repository",
        ),
        (
            vec!["--state-dir", d, "up", "--mirror", "/srv/mirror"],
            "is not a mirror URL",
        ),
        (
            vec!["--state-dir", d, "up", "--addons", "storage,gateway"],
            "unknown addon 'gateway'; known addons: storage, metrics-server, load-balancer, ingress",
        ),
        (
            vec!["--state-dir", d, "addons", "enable", "gateway"],
            "unknown addon 'gateway'; known addons: storage, metrics-server, load-balancer, ingress",
        ),
        (
            vec!["--state-dir", d, "addons", "disable", "Storage"],
            "unknown addon 'Storage'; known addons: storage, metrics-server, load-balancer, ingress",
        ),
        (vec!["--state-dir", d, "addons", "list"], "no cluster in"),
        (
            vec!["--state-dir", d, "up", "--extra-arg", "etcd:v=4"],
            "'etcd' is not a component that takes extra args: use one of apiserver, \
             controller-manager, scheduler, kubelet, proxy",
        ),
        (
            vec!["--state-dir", d, "up", "--extra-arg", "apiserver:v"],
            "'apiserver:v' is not COMPONENT:flag=value",
        ),
        (
            vec!["--state-dir", d, "up", "--extra-arg", "apiserver:Bad=1"],
            "'Bad' is not a flag name",
        ),
        (
            vec![
                "--state-dir",
                d,
                "up",
                "--extra-arg",
                "apiserver:v=1",
                "--extra-arg",
                "apiserver:--v=2",
            ],
            "--extra-arg apiserver:v is given twice",
        ),
        (
            vec![
                "--state-dir",
                d,
                "up",
                "--extra-arg",
                "apiserver:v=1",
                "--no-extra-args",
            ],
            "cannot be used with",
        ),
        (
            vec!["--state-dir", d, "up", "--feature-gates", "Foo=yes"],
            "'Foo=yes' is not a feature gate setting: use Name=true or Name=false",
        ),
        (
            vec!["--state-dir", d, "up", "--audit-log=maybe"],
            "invalid value 'maybe'",
        ),
        (
            vec!["--state-dir", d, "up", "--pod-security", "strict"],
            "'strict' is not a Pod Security level: use privileged (nothing enforced), baseline or restricted",
        ),
    ];
    for (args, expected) in cases {
        let out = kinit(&args);
        let msg = text(&out);
        assert!(!out.status.success(), "{args:?} succeeded: {msg}");
        assert!(
            msg.contains(expected),
            "{args:?}: expected {expected:?} in {msg}"
        );
        assert!(msg.starts_with("error:"), "{args:?}: {msg}");
        assert!(!out_dir.exists(), "{args:?} created {d}");
    }
}

#[test]
fn up_and_down_refuse_to_run_without_root() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = dir.path().join("state");
    // Component settings that parse get as far as the root check.
    let component_settings = [
        "--feature-gates=",
        "--feature-gates=AllAlpha=false",
        "--extra-arg=apiserver:v=4",
        "--no-extra-args",
        "--audit-log",
        "--audit-log=false",
        "--pod-security=restricted",
    ];
    let runs = [vec!["up"], vec!["down"]]
        .into_iter()
        .chain(component_settings.map(|arg| vec!["up", arg]));
    for run in runs {
        let cmd = run[0];
        // Run as nobody when we are root; as ourselves otherwise.
        let mut command = if nix::unistd::geteuid().is_root() {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                env!("CARGO_BIN_EXE_kinit"),
            ]);
            c
        } else {
            Command::new(env!("CARGO_BIN_EXE_kinit"))
        };
        let out = command
            .args(["--state-dir", state.to_str().unwrap()])
            .args(&run)
            .output()
            .unwrap();
        let msg = text(&out);
        assert!(!out.status.success(), "{run:?}: {msg}");
        assert!(
            msg.contains(&format!("needs root: run `sudo kinit {cmd}`")),
            "{run:?}: {msg}"
        );
        assert!(!state.exists());
    }
}

#[test]
fn version_names_the_pinned_components() {
    let out = kinit(&["version"]);
    assert!(out.status.success());
    let v = text(&out);
    assert!(v.contains("kubernetes v1.") && v.contains("etcd 3."), "{v}");
}

/// A run killed between writing the cluster CA's key and its certificate (the debug
/// build's KINIT_CRASH_AT hook) must leave a PKI the next run completes.
#[test]
fn certs_killed_between_the_ca_key_and_certificate_complete_on_rerun() {
    use std::os::unix::process::ExitStatusExt;

    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let d = out_dir.to_str().unwrap();
    let certs = [
        "certs",
        "--out",
        d,
        "--node-ip",
        "10.0.2.15",
        "--hostname",
        "kinit-test",
    ];
    let killed = Command::new(env!("CARGO_BIN_EXE_kinit"))
        .args(certs)
        .env("KINIT_CRASH_AT", "ca-key-written")
        .output()
        .unwrap();
    assert_eq!(killed.status.signal(), Some(9), "{}", text(&killed));
    let pki = out_dir.join("pki");
    assert!(pki.join("ca.key").exists());
    assert!(!pki.join("ca.crt").exists());

    let out = kinit(&certs);
    assert!(out.status.success(), "{}", text(&out));
    for leaf in ["apiserver.crt", "kubelet.crt"] {
        let result = openssl(&[
            "verify",
            "-CAfile",
            pki.join("ca.crt").to_str().unwrap(),
            pki.join(leaf).to_str().unwrap(),
        ]);
        assert!(result.contains(": OK"), "{result}");
    }
}
