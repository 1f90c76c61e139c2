//! Directories held open by handle, reached without following a symbolic link that
//! someone other than root (or kinit's own user) could have made. Running as root, kinit
//! writes into a sudo user's home; a link there (`~/.kube -> /etc/cron.hourly`) or a file
//! planted under kinit's temporary name must not turn that into a write, a read or a
//! change of owner anywhere else.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::hash::{BuildHasher, RandomState};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, open, openat, readlinkat, renameat};
use nix::sys::stat::{FileStat, Mode as Perm, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fsync, geteuid, unlinkat};

use super::Mode;

/// The user kinit writes for while running as root under sudo: files it puts in their home
/// are theirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeUser {
    pub uid: Uid,
    pub gid: Gid,
    pub home: PathBuf,
}

/// A file read through a [`Dir`], and whose it was.
#[derive(Debug)]
pub struct Existing {
    pub bytes: Vec<u8>,
    pub uid: Uid,
    pub gid: Gid,
}

/// An open directory and how it was reached.
///
/// Invariants, which every read and write through it keeps:
/// - No symbolic link was followed on the way unless both the link and the directory
///   holding it belong to root (or to kinit's own user when it is not root), and none at
///   all once inside the user's home: a user can swap their own links at any moment.
/// - Whether the directory is inside the user's home is decided on the open handles (the
///   home directory is one of the directories walked through), never on the path's text.
/// - The final name is never followed either: reads refuse a link, writes replace the
///   name with a new file and never open what it points to.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
    user: Option<(Uid, Gid)>,
}

/// O_NOFOLLOW makes a link fail with ELOOP instead of being opened; the walk then decides.
const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// The kernel's own limit on links in one path (MAXSYMLINKS); also bounds retries when a
/// directory kinit creates is raced.
const MAX_STEPS: usize = 40;

impl Dir {
    /// Opens `path` as a directory, creating what is missing (0755). Directories created
    /// inside `user`'s home are given to them.
    pub fn open(path: &Path, user: Option<&HomeUser>) -> Result<Self> {
        Self::walk_to(path, user, true)?
            .with_context(|| format!("{} vanished while kinit created it", path.display()))
    }

    /// Opens `path` as a directory, or `None` when some part of it does not exist.
    pub fn open_existing(path: &Path, user: Option<&HomeUser>) -> Result<Option<Self>> {
        Self::walk_to(path, user, false)
    }

    fn walk_to(path: &Path, user: Option<&HomeUser>, create: bool) -> Result<Option<Self>> {
        let home = user.and_then(|u| {
            // A home that cannot be opened holds nothing kinit writes; the walk below
            // then treats every directory as outside it.
            let (fd, _) = walk(&u.home, None, false).ok()??;
            let stat = fstat(&fd).ok()?;
            Some(Home {
                dev: stat.st_dev,
                ino: stat.st_ino,
                uid: u.uid,
                gid: u.gid,
            })
        });
        let Some((fd, inside)) = walk(path, home.as_ref(), create)? else {
            return Ok(None);
        };
        Ok(Some(Self {
            fd,
            path: path.to_path_buf(),
            user: home.filter(|_| inside).map(|h| (h.uid, h.gid)),
        }))
    }

    /// Reads the regular file `name`, or `None` when there is none. A symbolic link is
    /// refused, naming where it points; so is, inside a home, a second name (hard link)
    /// for a file that is not the user's, whose content kinit would otherwise copy into a
    /// file they own.
    pub fn read(&self, name: &OsStr) -> Result<Option<Existing>> {
        let shown = self.path.join(name);
        // O_NONBLOCK: opening a FIFO planted at the name must not hang kinit.
        let flags = OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC;
        let fd = match openat(&self.fd, name, flags, Perm::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) => bail!(self.refuse_link(name)),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", shown.display())),
        };
        let stat = fstat(&fd).with_context(|| format!("cannot read {}", shown.display()))?;
        if !is(&stat, SFlag::S_IFREG) {
            bail!(
                "{} is not a regular file; kinit will not read or replace it",
                shown.display()
            );
        }
        if let Some((uid, _)) = self.user
            && stat.st_nlink > 1
            && stat.st_uid != uid.as_raw()
        {
            bail!(
                "{} is a hard link to a file owned by uid {}, not by the user (uid {uid}); \
                 kinit will not copy it into a file they own: delete it, or replace it \
                 with a copy",
                shown.display(),
                stat.st_uid
            );
        }
        let mut bytes = Vec::new();
        File::from(fd)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {}", shown.display()))?;
        Ok(Some(Existing {
            bytes,
            uid: Uid::from_raw(stat.st_uid),
            gid: Gid::from_raw(stat.st_gid),
        }))
    }

    /// Writes `bytes` to `name` so readers see the old file or the new one, never half of
    /// it. The temporary file is created new (O_EXCL|O_NOFOLLOW, a name nobody can guess),
    /// so nothing planted beside the file is opened; its mode and owner are set on the
    /// handle before the first byte; it is synced, then renamed over `name`, which
    /// replaces a link there rather than writing through it.
    ///
    /// Inside the user's home the file is theirs; elsewhere it goes to `elsewhere`, else
    /// stays root's.
    pub fn write(
        &self,
        name: &OsStr,
        bytes: &[u8],
        mode: Mode,
        elsewhere: Option<(Uid, Gid)>,
    ) -> Result<()> {
        let shown = self.path.join(name);
        let (tmp, file) = self
            .create_temp(name, mode, temp_names(name))
            .with_context(|| format!("cannot write {}", shown.display()))?;
        let result = (|| -> std::io::Result<()> {
            let mut file = file;
            // The umask may have narrowed the mode given to open.
            fchmod(&file, Perm::from_bits_truncate(mode.bits()))?;
            if let Some((uid, gid)) = self.user.or(elsewhere) {
                fchown(&file, Some(uid), Some(gid))?;
            }
            file.write_all(bytes)?;
            file.sync_all()?;
            renameat(&self.fd, tmp.as_os_str(), &self.fd, name)?;
            // The rename itself is durable only once the directory is.
            Ok(fsync(&self.fd)?)
        })();
        if result.is_err() {
            let _ = unlinkat(&self.fd, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
        result.with_context(|| format!("cannot write {}", shown.display()))
    }

    /// Creates a new file under the first free name of `names`; a name someone created
    /// first (a file, a FIFO, a link) is left alone and the next one tried.
    fn create_temp(
        &self,
        name: &OsStr,
        mode: Mode,
        names: impl Iterator<Item = OsString>,
    ) -> Result<(OsString, File)> {
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        for tmp in names.take(MAX_STEPS) {
            match openat(
                &self.fd,
                tmp.as_os_str(),
                flags,
                Perm::from_bits_truncate(mode.bits()),
            ) {
                Ok(fd) => return Ok((tmp, File::from(fd))),
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        bail!(
            "every temporary name kinit tried beside {} was taken",
            name.to_string_lossy()
        )
    }

    fn refuse_link(&self, name: &OsStr) -> String {
        let shown = self.path.join(name);
        let to = readlinkat(&self.fd, name)
            .map(|t| format!(" (to {})", Path::new(&t).display()))
            .unwrap_or_default();
        format!(
            "{} is a symbolic link{to}; kinit does not read or write through links, as \
             root it would follow wherever the link is pointed next: replace the link with \
             the file, or give kinit the file's real path",
            shown.display()
        )
    }
}

struct Home {
    dev: nix::libc::dev_t,
    ino: nix::libc::ino_t,
    uid: Uid,
    gid: Gid,
}

impl Home {
    fn is(&self, stat: &FileStat) -> bool {
        stat.st_dev == self.dev && stat.st_ino == self.ino
    }
}

/// One directory on the way, with the name it was reached by (for messages).
struct Step {
    fd: OwnedFd,
    stat: FileStat,
    name: OsString,
}

/// Walks `path` from `/` one component at a time (openat with O_NOFOLLOW), following
/// only links that root would have made (see [`Dir`]). Returns the directory and whether
/// it is inside `home`, or `None` when a component is missing and `create` is not set.
/// `..` goes back to the directory walked through, not to whatever
/// `..` the kernel would find from a link's target.
fn walk(path: &Path, home: Option<&Home>, create: bool) -> Result<Option<(OwnedFd, bool)>> {
    let path =
        std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    let root = open(Path::new("/"), DIR_FLAGS, Perm::empty()).context("cannot open /")?;
    let mut stack = vec![Step::new(root, OsString::from("/"))?];
    let mut pending: VecDeque<OsString> = names(&path).collect();
    let me = geteuid().as_raw();
    let trusted = |uid: u32| uid == 0 || uid == me;
    let mut steps = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let inside = home.is_some_and(|h| stack.iter().any(|s| h.is(&s.stat)));
        let here = stack.last().context("the walk lost its root")?;
        let at = || shown(&stack, &name);
        match openat(&here.fd, name.as_os_str(), DIR_FLAGS, Perm::empty()) {
            Ok(fd) => {
                let step = Step::new(fd, name)?;
                stack.push(step);
            }
            Err(Errno::ENOENT) if create => {
                steps += 1;
                if steps > MAX_STEPS {
                    bail!("{} keeps changing while kinit creates it", at().display());
                }
                match mkdirat(&here.fd, name.as_os_str(), Perm::from_bits_truncate(0o755)) {
                    Ok(()) => {
                        // Handed over by handle: had the user swapped in something else
                        // since, the open fails and the next round looks at it afresh.
                        if inside
                            && let Some(h) = home
                            && let Ok(fd) =
                                openat(&here.fd, name.as_os_str(), DIR_FLAGS, Perm::empty())
                        {
                            fchown(&fd, Some(h.uid), Some(h.gid)).with_context(|| {
                                format!("cannot give {} to its user", at().display())
                            })?;
                        }
                    }
                    // Someone else made it first: look again at what is there now.
                    Err(Errno::EEXIST) => {}
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("cannot create the directory {}", at().display())
                        });
                    }
                }
                pending.push_front(name);
            }
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                let link = fstatat(&here.fd, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .with_context(|| format!("cannot read {}", at().display()))?;
                if !is(&link, SFlag::S_IFLNK) {
                    bail!("{} is not a directory", at().display());
                }
                let target = readlinkat(&here.fd, name.as_os_str())
                    .with_context(|| format!("cannot read the link {}", at().display()))?;
                if inside || !trusted(link.st_uid) || !trusted(here.stat.st_uid) {
                    bail!(
                        "{} is a symbolic link (to {}) that its user can change; kinit, \
                         running as root, does not follow it: replace it with the \
                         directory it names, or give kinit the real path",
                        at().display(),
                        Path::new(&target).display()
                    );
                }
                steps += 1;
                if steps > MAX_STEPS {
                    bail!("too many symbolic links in {}", path.display());
                }
                let target = PathBuf::from(target);
                if target.is_absolute() {
                    stack.truncate(1);
                }
                for part in names(&target).collect::<Vec<_>>().into_iter().rev() {
                    pending.push_front(part);
                }
            }
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot open {}", at().display()));
            }
        }
    }
    let inside = home.is_some_and(|h| stack.iter().any(|s| h.is(&s.stat)));
    let last = stack.pop().context("the walk lost its root")?;
    Ok(Some((last.fd, inside)))
}

impl Step {
    fn new(fd: OwnedFd, name: OsString) -> Result<Self> {
        let stat = fstat(&fd).with_context(|| format!("cannot read {}", name.display()))?;
        Ok(Self { fd, stat, name })
    }
}

/// The components to walk: names and `..`; `/` and `.` need no step.
fn names(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

/// The physical path walked so far, then `name`.
fn shown(stack: &[Step], name: &OsStr) -> PathBuf {
    let mut path: PathBuf = stack.iter().map(|s| s.name.as_os_str()).collect();
    path.push(name);
    path
}

fn is(stat: &FileStat, kind: SFlag) -> bool {
    stat.st_mode & SFlag::S_IFMT.bits() == kind.bits()
}

/// `.NAME.kinit-tmp-<random>`: random, so nobody can plant it in advance; hidden, since the
/// kubelet ran a static pod's temporary file as a pod and held the real one back 13 s.
pub(super) fn temp_names(name: &OsStr) -> impl Iterator<Item = OsString> + '_ {
    (0u64..).map(move |i| {
        let mut tmp = OsString::from(".");
        tmp.push(name);
        tmp.push(format!(
            ".kinit-tmp-{}-{:016x}",
            std::process::id(),
            RandomState::new().hash_one(i)
        ));
        tmp
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, symlink};

    use super::*;

    fn lchown(p: &Path, uid: u32) {
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            p,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(uid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap()
    }

    /// Root follows its own links (/var/run -> /run) but never one a user made, nor any
    /// link in a directory a user may change.
    #[test]
    fn root_follows_only_roots_links() {
        if !geteuid().is_root() {
            eprintln!("skipped: links owned by another user need root");
            return;
        }
        let base = tempfile::tempdir().unwrap();
        let real = base.path().join("real");
        std::fs::create_dir(&real).unwrap();
        symlink("real", base.path().join("roots")).unwrap();
        Dir::open(&base.path().join("roots/sub"), None).unwrap();
        assert!(real.join("sub").is_dir());

        symlink("real", base.path().join("users")).unwrap();
        lchown(&base.path().join("users"), 4321);
        let err = format!(
            "{:#}",
            Dir::open(&base.path().join("users/other"), None).unwrap_err()
        );
        assert!(err.contains("users is a symbolic link (to real)"), "{err}");
        assert!(!real.join("other").exists());

        let theirs = base.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        symlink(&real, theirs.join("roots")).unwrap();
        lchown(&theirs, 4321);
        let err = format!(
            "{:#}",
            Dir::open(&theirs.join("roots/other"), None).unwrap_err()
        );
        assert!(err.contains("roots is a symbolic link"), "{err}");
        assert!(!real.join("other").exists());

        // `..` leaves the directory walked into, not the link's target.
        Dir::open(&base.path().join("roots/../beside"), None).unwrap();
        assert!(base.path().join("beside").is_dir());
    }

    /// Names someone created first are skipped, whatever they are, and left as they were.
    #[test]
    fn temporary_names_taken_first_are_skipped() {
        let base = tempfile::tempdir().unwrap();
        let outside = base.path().join("outside");
        std::fs::write(&outside, b"keep").unwrap();
        let dir = Dir::open(base.path(), None).unwrap();
        symlink(&outside, base.path().join("t1")).unwrap();
        nix::unistd::mkfifo(&base.path().join("t2"), Perm::from_bits_truncate(0o600)).unwrap();
        let names = ["t1", "t2", "t3"].into_iter().map(OsString::from);
        let (tmp, mut file) = dir
            .create_temp(OsStr::new("f"), Mode::Private, names)
            .unwrap();
        assert_eq!(tmp, "t3");
        file.write_all(b"new").unwrap();
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
        assert_eq!(std::fs::read_link(base.path().join("t1")).unwrap(), outside);
        assert!(
            std::fs::symlink_metadata(base.path().join("t2"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        let all_taken = ["t1", "t2"].into_iter().map(OsString::from);
        assert!(
            dir.create_temp(OsStr::new("f"), Mode::Private, all_taken)
                .is_err()
        );
    }

    /// A link or a FIFO where the file should be is refused on reading, not followed or
    /// waited on; writing replaces the link and leaves its target alone.
    #[test]
    fn the_final_name_is_never_followed() {
        let base = tempfile::tempdir().unwrap();
        let outside = base.path().join("outside");
        std::fs::write(&outside, b"keep").unwrap();
        symlink(&outside, base.path().join("link")).unwrap();
        nix::unistd::mkfifo(&base.path().join("fifo"), Perm::from_bits_truncate(0o600)).unwrap();
        let dir = Dir::open(base.path(), None).unwrap();
        let err = dir.read(OsStr::new("link")).unwrap_err().to_string();
        assert!(err.contains("link is a symbolic link (to "), "{err}");
        let err = dir.read(OsStr::new("fifo")).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        assert!(dir.read(OsStr::new("missing")).unwrap().is_none());
        dir.write(OsStr::new("link"), b"new", Mode::Private, None)
            .unwrap();
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
        assert_eq!(std::fs::read(base.path().join("link")).unwrap(), b"new");
    }
}
