//! Every file kinit writes goes through here: atomic replacement, explicit modes, no
//! symbolic link a user could have made followed on the way, and the lock that keeps two
//! `kinit up` runs from interleaving.

mod dir;

pub use dir::{Dir, Existing, HomeUser};

use std::fs::{self as stdfs, File, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Who may read a file kinit writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 0600: private keys and kubeconfigs.
    Private,
    /// 0644: certificates and settings.
    Public,
    /// 0755: installed programs.
    Executable,
}

impl Mode {
    fn bits(self) -> u32 {
        match self {
            Mode::Private => 0o600,
            Mode::Public => 0o644,
            Mode::Executable => 0o755,
        }
    }
}

/// Writes `bytes` to `path` so readers see the old file or the new one, never half of it.
/// The mode is set on the temporary file before any byte is written, so a private key is
/// never readable by others, not even for an instant. Missing directories are created;
/// the path is walked by handle, and the temporary file created new, as [`Dir`] describes,
/// so a link a user planted on the way or beside the file is never followed as root.
pub fn write_file(path: &Path, bytes: &[u8], mode: Mode) -> Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("cannot write {}: it names no file", path.display()))?;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Dir::open(parent, None)?.write(name, bytes, mode, None)
}

/// Copies `src` to `dest` atomically with `mode`: a running program at `dest` keeps its
/// old file, new runs get the new one.
pub fn install_file(src: &Path, dest: &Path, mode: Mode) -> Result<()> {
    let bytes = stdfs::read(src).with_context(|| format!("cannot read {}", src.display()))?;
    write_file(dest, &bytes, mode)
}

/// Writes `bytes` unless the file already holds exactly them with `mode`; returns whether
/// it wrote. Components that watch their files (the kubelet's static pods) see no change
/// when there is none.
pub fn write_if_changed(path: &Path, bytes: &[u8], mode: Mode) -> Result<bool> {
    if is_current(path, bytes, mode)? {
        return Ok(false);
    }
    write_file(path, bytes, mode)?;
    Ok(true)
}

/// Whether the file holds exactly `bytes` with `mode`: what [`write_if_changed`] would
/// leave alone.
pub fn is_current(path: &Path, bytes: &[u8], mode: Mode) -> Result<bool> {
    let same_mode = stdfs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777 == mode.bits())
        .unwrap_or(false);
    Ok(same_mode && read_optional(path)?.as_deref() == Some(bytes))
}

/// Unmounts everything mounted at or below `dir`, deepest first; returns how many.
/// The kubelet's pod volumes (tmpfs for secrets, memory-backed emptyDirs) propagate to the
/// host and outlive the kubelet's container.
pub fn unmount_below(dir: &Path) -> Result<usize> {
    // Bytes, not text: any user can mount a FUSE filesystem at a path that is not UTF-8.
    let table = stdfs::read("/proc/self/mountinfo")
        .context("cannot read the mount table (/proc/self/mountinfo)")?;
    let mut points: Vec<PathBuf> = mount_points(&table)
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort();
    points.dedup();
    let mut count = 0;
    for point in points.iter().rev() {
        match nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => count += 1,
            // Already gone with a parent.
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
            Err(e) => bail!("cannot unmount {}: {e}", point.display()),
        }
    }
    Ok(count)
}

/// The mount points of a mountinfo table (the fifth field of each line), as the paths
/// they are, whatever bytes those hold.
pub fn mount_points(table: &[u8]) -> Vec<PathBuf> {
    table
        .split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(|raw| PathBuf::from(std::ffi::OsString::from_vec(unescape_mount_path(raw))))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape_mount_path(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\'
            && let Some(code) = raw.get(i + 1..i + 4)
            && let Some(v) = std::str::from_utf8(code)
                .ok()
                .and_then(|c| u8::from_str_radix(c, 8).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

/// Where a Debian or Ubuntu host keeps the system tools kinit's node runs (mount,
/// nsenter, iptables, ...), whatever PATH kinit itself was started with.
pub const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The host's system tool `name`, searched in [`SYSTEM_PATH`].
pub fn system_tool(name: &str) -> Option<PathBuf> {
    std::env::split_paths(SYSTEM_PATH)
        .map(|dir| dir.join(name))
        .find(|f| f.is_file())
}

/// Every file called `name` in the directories of $PATH, in order.
pub fn on_path(name: &str) -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|dir| dir.join(name))
                .filter(|f| f.is_file())
                .collect()
        })
        .unwrap_or_default()
}

/// Reads a file, or `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match stdfs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Creates a directory and its parents (0755) when missing.
/// Removes a file kinit wrote; Ok when it is not there.
pub fn remove_file(path: &Path) -> Result<()> {
    match stdfs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

pub fn ensure_dir(dir: &Path) -> Result<()> {
    stdfs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))
}

/// Creates a directory only its owner can enter (0700), e.g. etcd's data directory.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    ensure_dir(dir)?;
    stdfs::set_permissions(dir, stdfs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict the permissions of {}", dir.display()))
}

/// Creates `path` new, for reading and writing, with `mode`. Whatever had the name (a
/// stale file, a link someone planted) is removed first, and the file is created with
/// O_EXCL|O_NOFOLLOW: root never writes through a link, or into a file that is not its own.
pub fn create_fresh(path: &Path, mode: Mode) -> Result<File> {
    match stdfs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => bail!("cannot create {}: it is a directory", path.display()),
        Ok(_) => stdfs::remove_file(path)
            .with_context(|| format!("cannot replace {}", path.display()))?,
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode.bits())
        .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC).bits())
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// Fails early, before anything is written, when `dir` cannot be created or written to.
pub fn check_writable(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!("{} exists and is not a directory", dir.display());
    }
    ensure_dir(dir)?;
    let probe = dir.join(".kinit-write-test");
    create_fresh(&probe, Mode::Private)
        .and_then(|_| stdfs::remove_file(&probe).map_err(anyhow::Error::from))
        .with_context(|| format!("cannot write to {}", dir.display()))
}

/// Deletes a directory tree; a missing one is already deleted.
pub fn remove_tree(dir: &Path) -> Result<()> {
    match stdfs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot delete {}", dir.display())),
    }
}

/// An exclusive lock on a file, released when dropped (or when the process dies, so a
/// crashed run never leaves a stale lock behind).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes the lock or fails at once, saying that another kinit holds it.
    pub fn acquire(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent() {
            ensure_dir(parent)?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => bail!(
                "another kinit is changing this cluster right now (it holds {}); \
                 wait for it to finish and run the command again",
                path.display()
            ),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_read_as_the_bytes_they_are() {
        use std::os::unix::ffi::OsStrExt;
        let mut table = b"36 35 98:0 / /mnt/with\\040space rw - ext3 /dev/root rw\n".to_vec();
        // A FUSE mount at a path that is not UTF-8, and a line cut short.
        table.extend_from_slice(b"37 35 0:40 / /home/u/caf\xe9 rw - fuse.x x rw\n38 35\n");
        let points = mount_points(&table);
        assert_eq!(points.len(), 2, "{points:?}");
        assert_eq!(points[0], Path::new("/mnt/with space"));
        assert_eq!(points[1].as_os_str().as_bytes(), b"/home/u/caf\xe9");
    }

    /// Hidden: the kubelet ran a static pod's temporary file as a pod of its own.
    #[test]
    fn temporary_names_are_hidden_and_unpredictable() {
        let names: Vec<_> = dir::temp_names(std::ffi::OsStr::new("pod.yaml"))
            .take(2)
            .collect();
        assert!(
            names[0]
                .to_string_lossy()
                .starts_with(".pod.yaml.kinit-tmp-")
        );
        assert_ne!(names[0], names[1]);
    }

    #[test]
    fn writes_with_modes_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("a/b/key.pem");
        write_file(&key, b"one", Mode::Private).unwrap();
        write_file(&key, b"two", Mode::Private).unwrap();
        assert_eq!(stdfs::read(&key).unwrap(), b"two");
        assert_eq!(
            stdfs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let cert = dir.path().join("cert.pem");
        write_file(&cert, b"c", Mode::Public).unwrap();
        assert_eq!(
            stdfs::metadata(&cert).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let leftovers: Vec<_> = stdfs::read_dir(dir.path().join("a/b")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary files left behind");
    }

    /// Earlier versions wrote through `NAME.kinit-tmp-PID` as found, so a link planted
    /// there had root overwrite its target and then move the link into place.
    #[test]
    fn a_planted_temporary_name_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        stdfs::write(&outside, b"keep").unwrap();
        let planted = dir
            .path()
            .join(format!("key.pem.kinit-tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&outside, &planted).unwrap();
        let key = dir.path().join("key.pem");
        write_file(&key, b"new", Mode::Private).unwrap();
        assert_eq!(stdfs::read(&outside).unwrap(), b"keep");
        assert_eq!(stdfs::read_link(&planted).unwrap(), outside);
        assert!(!stdfs::symlink_metadata(&key).unwrap().is_symlink());
        assert_eq!(stdfs::read(&key).unwrap(), b"new");
    }

    #[test]
    fn second_lock_fails_while_first_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let first = Lock::acquire(&path).unwrap();
        let err = Lock::acquire(&path).unwrap_err().to_string();
        assert!(err.contains("another kinit"), "{err}");
        drop(first);
        Lock::acquire(&path).unwrap();
    }

    #[test]
    fn a_planted_link_is_replaced_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        stdfs::write(&victim, b"precious").unwrap();
        let out = dir.path().join("out");
        stdfs::create_dir(&out).unwrap();
        std::os::unix::fs::symlink(&victim, out.join(".kinit-write-test")).unwrap();
        check_writable(&out).unwrap();
        assert!(!out.join(".kinit-write-test").exists());
        std::os::unix::fs::symlink(&victim, dir.path().join("file.part")).unwrap();
        use std::io::Write;
        create_fresh(&dir.path().join("file.part"), Mode::Public)
            .unwrap()
            .write_all(b"new")
            .unwrap();
        assert_eq!(stdfs::read(&victim).unwrap(), b"precious");
        assert_eq!(stdfs::read(dir.path().join("file.part")).unwrap(), b"new");
        assert!(create_fresh(dir.path(), Mode::Public).is_err());
    }

    #[test]
    fn check_writable_rejects_files_and_read_only_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        stdfs::write(&file, b"").unwrap();
        assert!(check_writable(&file).is_err());
        assert!(
            read_optional(&dir.path().join("missing"))
                .unwrap()
                .is_none()
        );
    }
}
