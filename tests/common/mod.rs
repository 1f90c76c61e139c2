//! Helpers shared by the test binaries that need Docker and the offline bundle.
#![allow(dead_code)] // each test binary uses its own subset

pub mod cluster;
pub mod component_settings;
pub mod neighbour;
pub mod phases;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn docker_cli(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI is installed")
}

/// Runs `cmd` (a program and its arguments) and collects its output.
pub fn run(cmd: &[&str]) -> Output {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", cmd[0]))
}

/// Runs `cmd`, failing unless it succeeds; its standard output.
pub fn run_ok(cmd: &[&str]) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A function of scripts/lib.sh, e.g. `restart_docker`, as the scripts run it.
pub fn lib_sh(call: &str) {
    let script = format!(
        "source {}/scripts/lib.sh && {call}",
        env!("CARGO_MANIFEST_DIR")
    );
    run_ok(&["bash", "-c", &script]);
}

pub fn iptables_save() -> String {
    run_ok(&["iptables-save"])
}

/// Fails, never skips, without a Docker engine.
pub fn require_engine() {
    let out = docker_cli(&["info", "--format", "{{.ServerVersion}}"]);
    assert!(
        out.status.success(),
        "these tests need a running Docker engine (scripts/test.sh starts one): {}",
        text(&out)
    );
}

/// The offline bundle built by scripts/build-bundle.sh.
pub fn bundle() -> PathBuf {
    let dir = std::env::var_os("KINIT_BUNDLE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/kinit-build/bundle"));
    assert!(
        dir.join("images").is_dir(),
        "no offline bundle in {} (scripts/test.sh builds it; set KINIT_BUNDLE_DIR to use another)",
        dir.display()
    );
    dir
}

/// Runs `cmd` with `input` on its standard input and collects its output.
pub fn with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    child
        .stdin
        .take()
        .expect("a piped stdin")
        .write_all(input)
        .expect("the command reads its input");
    child.wait_with_output().expect("the command ends")
}
