//! What kinit changes on the host outside its state directory, and how those changes hold
//! across a reboot.
//!
//! The node needs IP forwarding, bridged traffic through iptables (br_netfilter), mounts
//! that propagate from `/` (the kubelet's pod volumes) and `/run/xtables.lock` (shared by
//! every iptables user, bind-mounted into kube-proxy). A reboot resets all four. `kinit up`
//! sets them ([`prepare`]) and writes the sysctl and module files a systemd boot applies
//! ([`persist`]); the `kinit-boot` container sets them again on every start of the Docker
//! daemon, so hosts without systemd come back too (src/commands/boot.rs).
//!
//! On a host systemd runs, a shutdown or reboot waits for the kubelet to stop every pod
//! (its graceful node shutdown, through systemd-logind's delay inhibitor lock): otherwise
//! systemd stops each pod's scope itself, and a pod whose PID 1 ignores SIGTERM holds the
//! shutdown up for systemd's stop timeout. logind grants a delay of at most
//! `InhibitDelayMaxSec` (5 s unless configured), so kinit writes a drop-in raising it to
//! the kubelet's [`SHUTDOWN_GRACE_SECONDS`] ([`persist`]) and has logind read it.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::fs::{self, Mode};
use crate::manifests;

pub mod guard;

/// Kernel settings Kubernetes networking needs: routing between pods and the outside, and
/// bridged pod traffic passing through iptables so Service rules apply to it.
pub const SYSCTLS: &[(&str, &str)] = &[
    ("net/ipv4/ip_forward", "1"),
    ("net/bridge/bridge-nf-call-iptables", "1"),
];

/// Of [`SYSCTLS`], those written for systemd-sysctl to apply at boot. Not ip_forward: the
/// Docker daemon turns that on itself as it starts, and sets the FORWARD policy to DROP
/// only when it had to. Turned on earlier at boot, it left every forwarded packet
/// accepted after a reboot (found by the VM tier); kinit-boot sets it anyway.
const PERSISTED_SYSCTLS: &[&str] = &["net/bridge/bridge-nf-call-iptables"];

/// The module that provides `net/bridge/*`.
pub const MODULES: &[&str] = &["br_netfilter"];

/// Read at boot by systemd-sysctl and systemd-modules-load (and by procps' and kmod's
/// scripts on other inits).
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/99-kinit.conf";
pub const MODULES_FILE: &str = "/etc/modules-load.d/kinit.conf";
/// Read by systemd-logind at its start and on SIGHUP.
pub const LOGIND_FILE: &str = "/etc/systemd/logind.conf.d/99-kinit.conf";

/// How long the kubelet takes at a shutdown to stop the pods, and of that the share left for
/// the critical ones (the control plane, CoreDNS), which it stops last.
pub const SHUTDOWN_GRACE_SECONDS: u32 = 30;
pub const SHUTDOWN_GRACE_CRITICAL_SECONDS: u32 = 10;

/// systemd runs the host when this directory exists (as sd_booted(3) tells).
pub const SYSTEMD_RUNNING: &str = "/run/systemd/system";
/// The D-Bus system bus, through which the kubelet asks logind for its lock.
pub const DBUS_SOCKET: &str = "/run/dbus/system_bus_socket";

/// The first line of every file [`persist`] writes: only a file that starts with it is
/// kinit's to replace or delete.
const MARKER: &str = "# Written by kinit";

pub const XTABLES_LOCK: &str = "/run/xtables.lock";

/// Makes the host ready for the node; returns what it changed, for the user.
pub fn prepare() -> Result<Vec<String>> {
    let mut changed = Vec::new();
    for (key, value) in SYSCTLS {
        if set_sysctl(key, value)? {
            changed.push(format!("{}={value}", key.replace('/', ".")));
        }
    }
    if make_root_shared()? {
        changed.push("mount --make-rshared /".into());
    }
    if ensure_xtables_lock()? {
        changed.push(format!("created {XTABLES_LOCK}"));
    }
    Ok(changed)
}

/// Whether the kubelet can take part in the host's shutdown: systemd runs the host (with
/// logind, part of every systemd install) and the system bus it asks logind over is up.
pub fn has_logind() -> bool {
    Path::new(SYSTEMD_RUNNING).is_dir() && Path::new(DBUS_SOCKET).exists()
}

#[derive(Serialize)]
struct PersistValues {
    marker: &'static str,
    sysctls: Vec<(String, &'static str)>,
    modules: &'static [&'static str],
    inhibit_delay_seconds: u32,
}

/// The files a boot applies, rendered.
fn persisted_files() -> Result<[(&'static str, String); 3]> {
    let values = PersistValues {
        marker: MARKER,
        sysctls: SYSCTLS
            .iter()
            .filter(|(k, _)| PERSISTED_SYSCTLS.contains(k))
            .map(|(k, v)| (k.replace('/', "."), *v))
            .collect(),
        modules: MODULES,
        inhibit_delay_seconds: SHUTDOWN_GRACE_SECONDS,
    };
    // The templates drop their final newline; the files end with one.
    let line_ended = |text: String| text + "\n";
    Ok([
        (
            SYSCTL_FILE,
            line_ended(manifests::HOST_SYSCTL.render_text(&values)?),
        ),
        (
            MODULES_FILE,
            line_ended(manifests::HOST_MODULES.render_text(&values)?),
        ),
        (
            LOGIND_FILE,
            line_ended(manifests::HOST_LOGIND.render_text(&values)?),
        ),
    ])
}

/// Writes the sysctl and module files, on hosts that have the directories for them, and
/// with `logind` (see [`has_logind`]) logind's drop-in, making its directory when systemd's
/// configuration directory has none; returns the files it wrote. A file of that name that
/// kinit did not write is left alone. A new or changed drop-in takes effect once logind
/// reloads ([`reload_logind`]).
pub fn persist(etc: &Path, logind: bool) -> Result<Vec<String>> {
    let mut written = Vec::new();
    for (path, contents) in persisted_files()? {
        let is_logind = path == LOGIND_FILE;
        let path = etc.join(path.trim_start_matches("/etc/"));
        if is_logind {
            let Some(dir) = path.parent() else { continue };
            if !logind || !dir.parent().is_some_and(Path::is_dir) {
                continue;
            }
            fs::ensure_dir(dir)?;
        }
        if !path.parent().is_some_and(Path::is_dir) {
            continue;
        }
        if !is_ours_or_missing(&path)? {
            tracing::warn!(
                "{} exists and was not written by kinit; leaving it alone",
                path.display()
            );
            continue;
        }
        if fs::write_if_changed(&path, contents.as_bytes(), Mode::Public)? {
            written.push(path.display().to_string());
        }
    }
    Ok(written)
}

/// Deletes what [`persist`] wrote; returns the files it deleted. logind's drop-in
/// directory goes too when deleting kinit's file left it empty: an empty drop-in directory
/// configures nothing, and on the hosts kinit runs on it was kinit that made it.
pub fn unpersist(etc: &Path) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for (path, _) in persisted_files()? {
        let is_logind = path == LOGIND_FILE;
        let path = etc.join(path.trim_start_matches("/etc/"));
        if is_ours_or_missing(&path)? {
            match std::fs::remove_file(&path) {
                Ok(()) => removed.push(path.display().to_string()),
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot delete {}", path.display()));
                }
            }
            if is_logind && let Some(dir) = path.parent() {
                // Fails, and is meant to, when anything else is in it.
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
    Ok(removed)
}

/// Has systemd-logind read its configuration again (it does on SIGHUP), so that a drop-in
/// [`persist`] or [`unpersist`] changed applies before the kubelet asks for its lock.
pub fn reload_logind() -> Result<()> {
    let status = std::process::Command::new(
        fs::system_tool("systemctl").unwrap_or_else(|| "systemctl".into()),
    )
    .env("PATH", fs::SYSTEM_PATH)
    .args([
        "kill",
        "--kill-whom=main",
        "--signal=SIGHUP",
        "systemd-logind.service",
    ])
    .status()
    .context("cannot run systemctl to have systemd-logind reload its configuration")?;
    if !status.success() {
        bail!(
            "`systemctl kill --signal=SIGHUP systemd-logind.service` failed ({status}); \
             run `sudo systemctl restart systemd-logind` and `kinit up` again"
        );
    }
    Ok(())
}

/// A regular file starting with [`MARKER`] (never through a symlink), or nothing there.
fn is_ours_or_missing(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", path.display())),
        Ok(meta) if !meta.file_type().is_file() => return Ok(false),
        Ok(_) => {}
    }
    let bytes = fs::read_optional(path)?.unwrap_or_default();
    Ok(bytes.starts_with(MARKER.as_bytes()))
}

/// Sets a kernel parameter unless it has the value already; whether it changed it.
/// bridge-nf-call-iptables exists only once br_netfilter is loaded.
fn set_sysctl(key: &str, value: &str) -> Result<bool> {
    let path = Path::new("/proc/sys").join(key);
    if !path.exists() && key.starts_with("net/bridge/") {
        let status = std::process::Command::new(
            fs::system_tool("modprobe").unwrap_or_else(|| "modprobe".into()),
        )
        .env("PATH", fs::SYSTEM_PATH)
        .args(MODULES)
        .status();
        if !matches!(status, Ok(s) if s.success()) || !path.exists() {
            bail!(
                "the kernel module br_netfilter is not loaded and `modprobe br_netfilter` failed; \
                 load it (sudo modprobe br_netfilter) and run `kinit up` again"
            );
        }
    }
    let current = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if current.trim() == value {
        return Ok(false);
    }
    std::fs::write(&path, value).with_context(|| {
        format!(
            "cannot set {} to {value}; set it yourself (sysctl -w) and run `kinit up` again",
            path.display()
        )
    })?;
    Ok(true)
}

/// Whether `/` propagates mounts, from a mountinfo table.
fn root_is_shared(mountinfo: &str) -> bool {
    mountinfo.lines().any(|l| {
        let fields: Vec<&str> = l.split(' ').collect();
        fields.get(4) == Some(&"/")
            && fields
                .iter()
                .skip(6)
                .take_while(|f| **f != "-")
                .any(|f| f.starts_with("shared:"))
    })
}

/// Pod volumes the kubelet mounts inside its container must show on the host, which needs
/// the host's mounts to propagate (as systemd sets up at boot, but not every init does).
fn make_root_shared() -> Result<bool> {
    // Read as bytes: another mount's path may not be UTF-8 (a user's FUSE mount), and only
    // the root's line matters here.
    let table =
        std::fs::read("/proc/self/mountinfo").context("cannot read /proc/self/mountinfo")?;
    if root_is_shared(&String::from_utf8_lossy(&table)) {
        return Ok(false);
    }
    use nix::mount::{MsFlags, mount};
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SHARED,
        None::<&str>,
    )
    .context("cannot make / a shared mount (mount --make-rshared /)")?;
    Ok(true)
}

/// iptables creates its lock file on first use, but kube-proxy's container binds it and
/// Docker refuses to start a container whose bind source is missing. Created without
/// following a link and never truncated: another process may hold the lock.
fn ensure_xtables_lock() -> Result<bool> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(XTABLES_LOCK)
    {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot create {XTABLES_LOCK}")),
    }
}

/// Moves this process into the mount namespace of the Docker daemon, so that `/`, `/run`
/// and `/proc/sys` are the ones the daemon resolves bind mounts in (on most hosts the
/// namespace of PID 1; a daemon started with its own, or a host whose PID 1 may not be
/// inspected, differs). Needs a single-threaded process (call it before the async runtime
/// starts), the host's PID namespace and CAP_SYS_ADMIN.
pub fn enter_host_mount_namespace() -> Result<()> {
    let pid = docker_daemon().unwrap_or(1);
    let path = format!("/proc/{pid}/ns/mnt");
    let ns = std::fs::File::open(&path).with_context(|| {
        format!("cannot open the Docker daemon's mount namespace ({path}); is the PID namespace the host's?")
    })?;
    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNS)
        .context("cannot enter the Docker daemon's mount namespace")?;
    Ok(())
}

/// Where the Docker daemon writes its PID (`--pidfile`'s default), below a root.
const DOCKER_PIDFILES: [&str; 2] = ["run/docker.pid", "var/run/docker.pid"];

/// The Docker daemon's PID, proven rather than found by name (any process can call
/// itself `dockerd`): the PID its pidfile names, which only root can write, read through
/// PID 1's root (kinit-boot's own `/` is the node image's) or, where PID 1 may not be
/// inspected, through the root of a process that calls itself `dockerd` and is the one
/// that pidfile names; the process must run as root, in the host's user namespace.
fn docker_daemon() -> Option<u32> {
    let pidfile = |root: u32| {
        DOCKER_PIDFILES.iter().find_map(|f| {
            let text = std::fs::read_to_string(format!("/proc/{root}/root/{f}")).ok()?;
            text.trim().parse::<u32>().ok()
        })
    };
    let named = processes()
        .ok()?
        .into_iter()
        .filter(|(_, comm)| comm == "dockerd")
        .map(|(pid, _)| pid);
    let pid = pidfile(1).or_else(|| named.into_iter().find(|&pid| pidfile(pid) == Some(pid)))?;
    let userns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
    let host_userns = userns("1").or_else(|| userns("self"));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let same_userns = host_userns.is_some() && userns(&pid.to_string()) == host_userns;
    (runs_as_root(&status) && same_userns).then_some(pid)
}

/// Whether a `/proc/PID/status` says every uid of the process (real, effective, saved,
/// filesystem) is 0.
fn runs_as_root(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .is_some_and(|uids| {
            let uids: Vec<&str> = uids.split_whitespace().collect();
            uids.len() == 4 && uids.iter().all(|u| *u == "0")
        })
}

/// Every process this PID namespace shows, with its command name (`/proc/PID/comm`, at
/// most 15 characters). A process that ends while being read is left out.
pub fn processes() -> Result<Vec<(u32, String)>> {
    let entries = std::fs::read_dir("/proc").context("cannot list the host's processes")?;
    Ok(entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            Some((pid, comm.trim().to_string()))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_must_run_as_root_in_every_uid() {
        assert!(runs_as_root(
            "Name:\tdockerd\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n"
        ));
        // A user's process named dockerd, or one that dropped to a user after starting.
        assert!(!runs_as_root(
            "Name:\tdockerd\nUid:\t1000\t1000\t1000\t1000\n"
        ));
        assert!(!runs_as_root("Uid:\t0\t1000\t0\t0\n"));
        assert!(!runs_as_root("Name:\tdockerd\n"));
    }

    #[test]
    fn persisted_files_name_every_setting_and_only_ours_are_replaced_or_deleted() {
        let etc = tempfile::tempdir().unwrap();
        // Hosts without the directories get nothing.
        assert!(persist(etc.path(), false).unwrap().is_empty());
        for dir in ["sysctl.d", "modules-load.d"] {
            std::fs::create_dir(etc.path().join(dir)).unwrap();
        }
        assert_eq!(persist(etc.path(), false).unwrap().len(), 2);
        assert!(
            persist(etc.path(), false).unwrap().is_empty(),
            "rewritten unchanged"
        );
        let sysctl = std::fs::read_to_string(etc.path().join("sysctl.d/99-kinit.conf")).unwrap();
        assert!(sysctl.starts_with(MARKER), "{sysctl}");
        assert!(!sysctl.contains("ip_forward"), "left to Docker: {sysctl}");
        assert!(
            sysctl.contains("\nnet.bridge.bridge-nf-call-iptables = 1\n"),
            "{sysctl}"
        );
        let modules =
            std::fs::read_to_string(etc.path().join("modules-load.d/kinit.conf")).unwrap();
        assert!(modules.lines().any(|l| l == "br_netfilter"), "{modules}");

        assert_eq!(unpersist(etc.path()).unwrap().len(), 2);
        assert!(unpersist(etc.path()).unwrap().is_empty());

        // Someone else's file of the same name, or a link, stays as it is.
        let theirs = etc.path().join("sysctl.d/99-kinit.conf");
        std::fs::write(&theirs, "vm.swappiness = 1\n").unwrap();
        let elsewhere = etc.path().join("elsewhere.conf");
        std::fs::write(&elsewhere, "mine\n").unwrap();
        std::os::unix::fs::symlink(&elsewhere, etc.path().join("modules-load.d/kinit.conf"))
            .unwrap();
        assert!(persist(etc.path(), false).unwrap().is_empty());
        assert!(unpersist(etc.path()).unwrap().is_empty());
        assert_eq!(
            std::fs::read_to_string(&theirs).unwrap(),
            "vm.swappiness = 1\n"
        );
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "mine\n");
    }

    #[test]
    fn logind_drop_in_only_under_systemd_and_its_directory_goes_when_kinit_emptied_it() {
        let etc = tempfile::tempdir().unwrap();
        let dir = etc.path().join("systemd/logind.conf.d");
        let file = dir.join("99-kinit.conf");
        // No systemd configuration directory, or not asked for: nothing.
        assert!(persist(etc.path(), true).unwrap().is_empty());
        std::fs::create_dir(etc.path().join("systemd")).unwrap();
        assert!(persist(etc.path(), false).unwrap().is_empty());
        assert!(!dir.exists());

        assert_eq!(
            persist(etc.path(), true).unwrap(),
            [file.display().to_string()]
        );
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with(MARKER), "{text}");
        assert!(
            text.contains(&format!(
                "\n[Login]\nInhibitDelayMaxSec={SHUTDOWN_GRACE_SECONDS}\n"
            )),
            "{text}"
        );
        assert_eq!(unpersist(etc.path()).unwrap(), [file.display().to_string()]);
        assert!(
            !dir.exists(),
            "the directory kinit made is gone with its file"
        );

        // Another drop-in beside kinit's keeps the directory.
        persist(etc.path(), true).unwrap();
        std::fs::write(dir.join("50-admin.conf"), "[Login]\n").unwrap();
        assert_eq!(unpersist(etc.path()).unwrap().len(), 1);
        assert!(dir.join("50-admin.conf").exists());
    }

    #[test]
    fn root_propagation_is_read_from_mountinfo() {
        let shared = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n";
        let private = "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n\
                       30 22 0:5 / /dev rw shared:2 - devtmpfs udev rw\n";
        assert!(root_is_shared(shared));
        assert!(!root_is_shared(private));
    }
}
