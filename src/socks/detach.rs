//! `kinit socks --detach`: the same proxy as a background process of its own session,
//! recorded in the state directory so `kinit status` lists it and `kinit down` stops it.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::policy::Credentials;
use crate::fs;
use crate::layout::Layout;

/// The banner's first line, which says the proxy is listening.
const LISTENING: &str = "kinit socks: SOCKS5 proxy listening on ";
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The proxy gives open connections 5 s after SIGTERM; a little more before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(7);

/// A detached proxy, as recorded in `<state>/socks.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub pid: i32,
    pub listen: String,
    pub log: PathBuf,
}

/// One background proxy per state directory. Asked before anything else, and again under
/// the lock, where another `--detach` may just have started one.
fn refuse_if_running(layout: &Layout) -> Result<()> {
    if let Some(r) = running(layout)? {
        bail!(
            "kinit socks is already running in the background (pid {}, on {}); stop it with `kill {}` or `sudo kinit down`",
            r.pid,
            r.listen,
            r.pid
        );
    }
    Ok(())
}

/// Held while a detached proxy is started or stopped.
fn lock(layout: &Layout) -> Result<fs::Lock> {
    fs::Lock::acquire(&layout.root().join("socks.lock"))
}

fn record_path(layout: &Layout) -> PathBuf {
    layout.root().join("socks.json")
}

pub fn log_path(layout: &Layout) -> PathBuf {
    layout.root().join("socks.log")
}

/// The recorded proxy while its process still runs; a stale record reads as none.
///
/// A corrupt record (a run killed while writing it, a hand edit) reads as none too, with
/// a warning: it must not block `kinit down` or a new proxy, and a process id read from
/// it is never trusted enough to signal. [`stop`] removes it; [`spawn`] replaces it.
pub fn running(layout: &Layout) -> Result<Option<Record>> {
    let path = record_path(layout);
    let Some(bytes) = fs::read_optional(&path)? else {
        return Ok(None);
    };
    let record: Record = match serde_json::from_slice(&bytes) {
        Ok(record) => record,
        Err(e) => {
            tracing::warn!(
                "ignoring the corrupt kinit socks record {} ({e}); if a detached proxy still runs, stop it with kill",
                path.display()
            );
            return Ok(None);
        }
    };
    Ok(is_ours(record.pid).then_some(record))
}

/// The pid runs kinit socks (and is not a recycled pid of something else).
fn is_ours(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        args.iter().any(|a| a.ends_with(b"kinit")) && args.contains(&&b"socks"[..])
    })
}

/// Starts `kinit <args without --detach>` in its own session with its output in the log,
/// waits until it listens, and records it. Returns the record and the banner it printed.
/// `auth` reaches the child through a pipe: a command line is public in `ps` and an
/// environment lingers in /proc for the process's life.
pub fn spawn(layout: &Layout, auth: Option<&Credentials>) -> Result<(Record, String)> {
    refuse_if_running(layout)?;
    fs::check_writable(layout.root()).with_context(|| {
        format!(
            "--detach records the proxy in {}; run it with sudo or pass --state-dir",
            layout.root().display()
        )
    })?;
    // Two at once would both find no record and both start a proxy; `down` stops it
    // under the same lock.
    let _lock = lock(layout)?;
    refuse_if_running(layout)?;
    let log = log_path(layout);
    // Read back through this handle, not the path: the child may rotate the file (rename
    // it to socks.log.1) right after printing its banner.
    let out = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let banner_file = out
        .try_clone()
        .with_context(|| format!("cannot open {}", log.display()))?;
    let start = out
        .metadata()
        .with_context(|| format!("cannot read {}", log.display()))?
        .len();
    let err = out
        .try_clone()
        .with_context(|| format!("cannot open {}", log.display()))?;
    let exe = std::env::current_exe().context("cannot find the kinit executable")?;
    let mut command = Command::new(exe);
    command
        .args(child_args(std::env::args_os().skip(1)))
        .arg("--log-file")
        .arg(&log)
        .env_remove(AUTH_ENV)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let secret = match auth {
        Some(creds) => {
            let fd = secret_pipe(&creds.to_secret_line())?;
            command
                .arg("--auth-file")
                .arg(format!("/proc/self/fd/{}", fd.as_raw_fd()));
            Some(fd)
        }
        None => None,
    };
    let inherited = secret.as_ref().map(AsRawFd::as_raw_fd);
    // SAFETY: setsid and fcntl are async-signal-safe and touch no memory of the parent.
    // setsid makes the proxy the leader of a new session, so closing the terminal does
    // not stop it; clearing close-on-exec hands the secret's pipe to this child only.
    unsafe {
        command.pre_exec(move || {
            if let Some(fd) = inherited {
                let fd = BorrowedFd::borrow_raw(fd);
                fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).map_err(std::io::Error::from)?;
            }
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let spawned = command.spawn();
    // The child holds its own copy of the read end now.
    drop(secret);
    let mut child = spawned.context("cannot start kinit socks in the background")?;
    let pid = i32::try_from(child.id()).context("a process id out of range")?;

    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let banner = read_from(&banner_file, &log, start)?;
        if let Some(line) = banner.lines().find(|l| l.starts_with(LISTENING)) {
            let record = Record {
                pid,
                listen: line.trim_start_matches(LISTENING).trim().to_string(),
                log: log.clone(),
            };
            let json = serde_json::to_vec_pretty(&record).context("cannot serialize the record")?;
            fs::write_file(&record_path(layout), &json, fs::Mode::Public)?;
            return Ok((record, banner));
        }
        if let Some(status) = child.try_wait().context("cannot watch kinit socks")? {
            bail!(
                "kinit socks exited ({status}) before it listened:\n{}",
                banner.trim_end()
            );
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            bail!(
                "kinit socks did not start listening within {}s:\n{}",
                START_TIMEOUT.as_secs(),
                banner.trim_end()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The environment variable `--auth` also reads; removed from the child's environment,
/// which gets the credentials through a pipe instead.
const AUTH_ENV: &str = "KINIT_SOCKS_AUTH";

/// The child's arguments: the parent's without `--detach` and without any credentials
/// (`--auth`, `--auth-file`, as `--flag value` or `--flag=value`), which reach it through
/// a pipe instead.
fn child_args(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    let mut kept = Vec::new();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--detach") => {}
            Some("--auth" | "--auth-file") => {
                args.next();
            }
            Some(a) if a.starts_with("--auth=") || a.starts_with("--auth-file=") => {}
            _ => kept.push(arg),
        }
    }
    kept
}

/// A pipe holding `secret`, its write end already closed; returns the read end
/// (close-on-exec, so no other child inherits it).
fn secret_pipe(secret: &str) -> Result<OwnedFd> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .context("cannot create a pipe for the kinit socks credentials")?;
    // A pipe holds 64 KiB; the line is at most 511 bytes, so this never blocks.
    std::fs::File::from(write)
        .write_all(format!("{secret}\n").as_bytes())
        .context("cannot pass the credentials to kinit socks")?;
    Ok(read)
}

fn read_from(mut file: &std::fs::File, log: &Path, offset: u64) -> Result<String> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))
        .with_context(|| format!("cannot read {}", log.display()))?;
    let mut text = String::new();
    for line in BufReader::new(file).lines() {
        text.push_str(&line.unwrap_or_default());
        text.push('\n');
    }
    Ok(text)
}

/// Stops a detached proxy (SIGTERM, then SIGKILL after the grace period) and removes its
/// record; returns what was stopped.
pub fn stop(layout: &Layout) -> Result<Option<Record>> {
    // A state directory that is not there has no proxy, and gets no lock file either.
    if !layout.root().is_dir() {
        return Ok(None);
    }
    let _lock = lock(layout)?;
    let found = running(layout)?;
    if let Some(r) = &found {
        let pid = Pid::from_raw(r.pid);
        kill(pid, Signal::SIGTERM)
            .map_err(|e| anyhow!("cannot stop kinit socks (pid {pid}): {e}"))?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while is_ours(r.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if is_ours(r.pid) {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
    match std::fs::remove_file(record_path(layout)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).context("cannot remove the kinit socks record"),
    }
    Ok(found)
}
