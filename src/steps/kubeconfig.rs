//! Merges the cluster into the invoking user's kubeconfig as context `kinit`, leaving
//! their other contexts alone. Under sudo the file is the real user's, owned by them, and
//! reached without following any link they could have made (see [`fs::Dir`]).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};
use nix::unistd::User;

use super::Context;
use crate::fs;
use crate::pki::kubeconfig::{self, Kubeconfig};
use crate::progress::Outcome;

/// A kubeconfig file, and for whom it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub path: PathBuf,
    /// Under sudo, the invoking user: the file is theirs when it lies in their home, as
    /// found on disk by handle (not by how the path is spelled). `None` when kinit runs
    /// for root itself, or when only the file's current owner should be kept.
    pub owner: Option<fs::HomeUser>,
}

pub async fn run(ctx: &Context) -> Result<Outcome> {
    let target = resolve_target(ctx.user_kubeconfig.as_deref())?;
    let admin = read_admin(&ctx.layout.kubeconfig("admin.conf"))?;
    let changed = merge_into(&target, &admin)?;
    // Remember the file, so `kinit down --purge` can take the context out again.
    fs::write_if_changed(
        &ctx.layout.kubeconfig_record(),
        target.path.to_string_lossy().as_bytes(),
        fs::Mode::Private,
    )?;
    let detail = format!("context \"kinit\" in {}", target.path.display());
    Ok(if changed {
        Outcome::Done(detail)
    } else {
        Outcome::AlreadyDone(detail)
    })
}

/// Adds (or refreshes) context `kinit` from `admin` in the target file; returns whether
/// the file changed (an unchanged file is not rewritten).
pub fn merge_into(target: &Target, admin: &Kubeconfig) -> Result<bool> {
    update(target, |existing| {
        let merged = kubeconfig::merge(existing, admin)
            .with_context(|| format!("cannot merge into {}", target.path.display()))?;
        Ok((existing != Some(merged.as_bytes())).then(|| merged.into_bytes()))
    })
}

pub fn read_admin(path: &Path) -> Result<Kubeconfig> {
    let bytes = fs::read_optional(path)?
        .ok_or_else(|| anyhow!("{} is missing; run `sudo kinit up`", path.display()))?;
    Kubeconfig::from_yaml(&bytes)
}

/// `--kubeconfig` when given; under sudo, the invoking user's ~/.kube/config; otherwise
/// the first file of $KUBECONFIG, or ~/.kube/config — where kubectl will look.
pub fn resolve_target(flag: Option<&Path>) -> Result<Target> {
    let sudo_user = sudo_user()?.map(|u| fs::HomeUser {
        uid: u.uid,
        gid: u.gid,
        home: u.dir,
    });
    if let Some(path) = flag {
        let path = std::path::absolute(path)
            .with_context(|| format!("cannot resolve {}", path.display()))?;
        // Whether it is in their home (theirs) or elsewhere (root's) is decided when the
        // directory is opened.
        return Ok(Target {
            path,
            owner: sudo_user,
        });
    }
    if let Some(user) = sudo_user {
        return Ok(Target {
            path: user.home.join(".kube/config"),
            owner: Some(user),
        });
    }
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .as_ref()
        .and_then(|v| std::env::split_paths(v).find(|p| !p.as_os_str().is_empty()))
    {
        return Ok(Target {
            path: first,
            owner: None,
        });
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .or_else(|| {
            User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.dir)
        })
        .ok_or_else(|| {
            anyhow!("cannot find a home directory for the kubeconfig; pass --kubeconfig")
        })?;
    Ok(Target {
        path: home.join(".kube/config"),
        owner: None,
    })
}

/// The user who ran `sudo kinit ...`, when it was not root.
fn sudo_user() -> Result<Option<User>> {
    match std::env::var("SUDO_USER") {
        Ok(name) if name != "root" => {
            User::from_name(&name).context("cannot read the user database")
        }
        _ => Ok(None),
    }
}

/// Writes the file (0600), replacing what is there, and hands it to its owner as
/// [`update`] does.
pub fn write_owned(target: &Target, bytes: &[u8]) -> Result<()> {
    update(target, |_| Ok(Some(bytes.to_vec())))?;
    Ok(())
}

/// Takes context `kinit` (as in `admin`) out of the target file; returns whether there
/// was a file to change. Nothing is created when the file or its directory is gone.
///
/// For `kinit down --purge`: reading the file by path and handing the result to
/// [`write_owned`] would let a link swapped in between have root copy whatever it points
/// at into the user's file; here the file is read and replaced through one handle.
pub fn remove_from(target: &Target, admin: &Kubeconfig) -> Result<bool> {
    let Some(dir) = fs::Dir::open_existing(parent(&target.path), target.owner.as_ref())
        .with_context(|| format!("cannot open {}", target.path.display()))?
    else {
        return Ok(false);
    };
    rewrite(&dir, target, |existing| {
        existing
            .map(|bytes| {
                kubeconfig::remove(bytes, admin)
                    .map(String::into_bytes)
                    .with_context(|| {
                        format!(
                            "cannot take the kinit context out of {}",
                            target.path.display()
                        )
                    })
            })
            .transpose()
    })
}

/// Rewrites the target file (0600) with what `edit` makes of its content (`None`: no
/// file; an edit of `None`: leave it as it is); returns whether it wrote. A missing
/// directory (~/.kube) is created, as the user's when in their home.
///
/// The file is read and replaced through one directory handle, so what is written is
/// derived from the very file it replaces; a link at the file or on the way there is
/// refused (the error names it) before anything is written. The new file is the user's
/// when it lies in their home; elsewhere it keeps the owner the old file had, unless that
/// was root: the atomic rewrite would otherwise make a user's file root's, while a
/// root-owned file stays root's.
pub fn update(
    target: &Target,
    edit: impl FnOnce(Option<&[u8]>) -> Result<Option<Vec<u8>>>,
) -> Result<bool> {
    let dir = fs::Dir::open(parent(&target.path), target.owner.as_ref())
        .with_context(|| format!("cannot write {}", target.path.display()))?;
    rewrite(&dir, target, edit)
}

fn rewrite(
    dir: &fs::Dir,
    target: &Target,
    edit: impl FnOnce(Option<&[u8]>) -> Result<Option<Vec<u8>>>,
) -> Result<bool> {
    let name = target
        .path
        .file_name()
        .ok_or_else(|| anyhow!("{} names no file", target.path.display()))?;
    let existing = dir.read(name)?;
    let Some(new) = edit(existing.as_ref().map(|e| e.bytes.as_slice()))? else {
        return Ok(false);
    };
    let keep = existing
        .map(|e| (e.uid, e.gid))
        .filter(|(uid, _)| !uid.is_root());
    dir.write(name, &new, fs::Mode::Private, keep)?;
    Ok(true)
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, symlink};

    use nix::unistd::{Gid, Uid};

    use super::*;

    /// Changing owners needs root; CI runs the tests as root.
    fn as_root() -> bool {
        if nix::unistd::geteuid().is_root() {
            return true;
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs the tests as root"
        );
        eprintln!("skipped: changing a file's owner needs root (scripts/test.sh runs as root)");
        false
    }

    fn owner(p: &Path) -> (u32, u32, u32) {
        let m = std::fs::symlink_metadata(p).unwrap();
        (m.uid(), m.gid(), m.mode() & 0o7777)
    }

    fn give(p: &Path, uid: u32, gid: u32) {
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            p,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap()
    }

    /// Rewriting a user's kubeconfig as root (`sudo kinit up --kubeconfig ~/.kube/config`,
    /// `sudo kinit down --purge`) must leave it theirs; a new file goes to the target owner.
    #[test]
    fn rewrite_keeps_the_owner_of_an_existing_file() {
        if !as_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let existing = Target {
            path: dir.path().join("config"),
            owner: None,
        };
        std::fs::write(&existing.path, b"old").unwrap();
        give(&existing.path, 4321, 4322);
        write_owned(&existing, b"new").unwrap();
        assert_eq!(owner(&existing.path), (4321, 4322, 0o600));

        // Root-owned in the user's home (as earlier versions left it): given to the user.
        give(&existing.path, 0, 0);
        let users = Target {
            owner: Some(fs::HomeUser {
                uid: Uid::from_raw(4321),
                gid: Gid::from_raw(4322),
                home: dir.path().to_path_buf(),
            }),
            ..existing.clone()
        };
        write_owned(&users, b"newer").unwrap();
        assert_eq!(owner(&existing.path), (4321, 4322, 0o600));
        // Root's file and no user named: stays root's.
        give(&existing.path, 0, 0);
        write_owned(&existing, b"newest").unwrap();
        assert_eq!(owner(&existing.path), (0, 0, 0o600));

        let fresh = Target {
            path: dir.path().join("kube/config"),
            owner: Some(fs::HomeUser {
                uid: Uid::from_raw(1234),
                gid: Gid::from_raw(1235),
                home: dir.path().to_path_buf(),
            }),
        };
        write_owned(&fresh, b"new").unwrap();
        assert_eq!(owner(&fresh.path), (1234, 1235, 0o600));
        assert_eq!(owner(fresh.path.parent().unwrap()).0, 1234);
    }

    /// A fake home owned by uid 4321, and a root-owned directory standing in for /etc:
    /// what `sudo kinit up` would see if that user had planted links in their home.
    struct Scene {
        home: tempfile::TempDir,
        etc: tempfile::TempDir,
    }

    impl Scene {
        fn new() -> Self {
            let home = tempfile::tempdir().unwrap();
            give(home.path(), 4321, 4322);
            let etc = tempfile::tempdir().unwrap();
            // /etc/shadow: root's, not world-readable, and (for the leak checks) a valid
            // kubeconfig, so that a merge through a link would succeed.
            let shadow = etc.path().join("shadow");
            std::fs::write(&shadow, SECRET).unwrap();
            std::fs::set_permissions(&shadow, std::os::unix::fs::PermissionsExt::from_mode(0o640))
                .unwrap();
            std::fs::create_dir(etc.path().join("cron.hourly")).unwrap();
            Self { home, etc }
        }

        fn target(&self, rel: &str) -> Target {
            Target {
                path: self.home.path().join(rel),
                owner: Some(fs::HomeUser {
                    uid: Uid::from_raw(4321),
                    gid: Gid::from_raw(4322),
                    home: self.home.path().to_path_buf(),
                }),
            }
        }

        /// A directory or link the user makes in their home.
        fn users(&self, rel: &str) -> PathBuf {
            let p = self.home.path().join(rel);
            give(&p, 4321, 4322);
            p
        }

        fn shadow(&self) -> PathBuf {
            self.etc.path().join("shadow")
        }

        /// Every entry under the stand-in /etc: name, owner, mode, and content.
        fn etc_state(&self) -> Vec<Entry> {
            let mut out = Vec::new();
            let mut dirs = vec![self.etc.path().to_path_buf()];
            while let Some(dir) = dirs.pop() {
                for entry in std::fs::read_dir(&dir).unwrap() {
                    let p = entry.unwrap().path();
                    let kind = std::fs::symlink_metadata(&p).unwrap().file_type();
                    let content = if kind.is_dir() {
                        dirs.push(p.clone());
                        Vec::new()
                    } else if kind.is_symlink() {
                        std::fs::read_link(&p)
                            .unwrap()
                            .into_os_string()
                            .into_encoded_bytes()
                    } else {
                        std::fs::read(&p).unwrap()
                    };
                    out.push((p.clone(), owner(&p), content));
                }
            }
            out.sort();
            out
        }
    }

    /// A path, its owner, group and mode, and its content (a link's: where it points).
    type Entry = (PathBuf, (u32, u32, u32), Vec<u8>);

    const SECRET: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: root-only\n  cluster: {server: https://secret}\nusers:\n- name: root-only\n  user: {token: root-only-token}\ncontexts:\n- name: root-only\n  context: {cluster: root-only, user: root-only}\ncurrent-context: root-only\n";

    fn admin() -> Kubeconfig {
        Kubeconfig::new(
            "https://10.0.2.15:6443",
            "CA",
            "kubernetes-admin",
            "CERT",
            "KEY",
        )
    }

    fn err(r: Result<impl std::fmt::Debug>) -> String {
        format!("{:#}", r.expect_err("the write should have been refused"))
    }

    /// `~/.kube -> /etc/cron.hourly`: root would write `config` there, owned by the user.
    #[test]
    fn a_linked_kube_dir_is_refused() {
        if !as_root() {
            return;
        }
        let s = Scene::new();
        symlink(
            s.etc.path().join("cron.hourly"),
            s.home.path().join(".kube"),
        )
        .unwrap();
        s.users(".kube");
        let before = s.etc_state();
        let msg = err(merge_into(&s.target(".kube/config"), &admin()));
        assert!(msg.contains(".kube is a symbolic link"), "{msg}");
        assert!(msg.contains("cron.hourly"), "{msg}");
        let msg = err(write_owned(&s.target(".kube/config"), b"x"));
        assert!(msg.contains(".kube is a symbolic link"), "{msg}");
        assert_eq!(s.etc_state(), before);
    }

    /// `--kubeconfig ~/sub/deeper/config` with `~/sub -> /etc`: root would create
    /// /etc/deeper and hand it to the user.
    #[test]
    fn a_linked_directory_on_the_way_is_refused() {
        if !as_root() {
            return;
        }
        let s = Scene::new();
        symlink(s.etc.path(), s.home.path().join("sub")).unwrap();
        s.users("sub");
        let before = s.etc_state();
        let msg = err(write_owned(&s.target("sub/deeper/config"), b"x"));
        assert!(msg.contains("sub is a symbolic link"), "{msg}");
        assert_eq!(s.etc_state(), before);
    }

    /// `~/.kube/config -> /etc/shadow`: refused by name, the link left as it is, and
    /// neither the target's content nor its owner changed nor copied into the user's file.
    #[test]
    fn a_linked_kubeconfig_is_refused_and_its_target_untouched() {
        if !as_root() {
            return;
        }
        let s = Scene::new();
        std::fs::create_dir(s.home.path().join(".kube")).unwrap();
        s.users(".kube");
        symlink(s.shadow(), s.home.path().join(".kube/config")).unwrap();
        let link = s.users(".kube/config");
        let before = s.etc_state();
        let msg = err(merge_into(&s.target(".kube/config"), &admin()));
        assert!(msg.contains(".kube/config is a symbolic link"), "{msg}");
        assert!(msg.contains("shadow"), "{msg}");
        let msg = err(write_owned(&s.target(".kube/config"), b"x"));
        assert!(msg.contains(".kube/config is a symbolic link"), "{msg}");
        // `kinit down --purge` rewrites the recorded file with no user named.
        let recorded = Target {
            owner: None,
            ..s.target(".kube/config")
        };
        err(write_owned(&recorded, b"x"));
        assert_eq!(s.etc_state(), before);
        assert_eq!(std::fs::read_link(&link).unwrap(), s.shadow());
        let left: Vec<_> = std::fs::read_dir(s.home.path().join(".kube"))
            .unwrap()
            .collect();
        assert_eq!(left.len(), 1, "only the link: {left:?}");
    }

    /// A hard link in the home to a root-only file (where the kernel allows making one):
    /// merging would copy root's secrets into a file the user owns.
    #[test]
    fn a_hard_link_to_roots_file_is_not_copied_to_the_user() {
        if !as_root() {
            return;
        }
        let s = Scene::new();
        std::fs::create_dir(s.home.path().join(".kube")).unwrap();
        s.users(".kube");
        if std::fs::hard_link(s.shadow(), s.home.path().join(".kube/config")).is_err() {
            eprintln!("skipped: the stand-in home and /etc are on different filesystems");
            return;
        }
        let before = s.etc_state();
        let msg = err(merge_into(&s.target(".kube/config"), &admin()));
        assert!(msg.contains("hard link"), "{msg}");
        assert_eq!(s.etc_state(), before);
    }

    /// The temporary file's name planted in advance, as a link to /etc/shadow and as a
    /// FIFO: root must neither write through the link (then rename it into place and chown
    /// its target) nor block on the FIFO. Earlier versions used `NAME.kinit-tmp-PID`.
    #[test]
    fn planted_temporary_names_are_left_alone() {
        if !as_root() {
            return;
        }
        let s = Scene::new();
        let kube = s.home.path().join(".kube");
        std::fs::create_dir(&kube).unwrap();
        s.users(".kube");
        std::fs::write(kube.join("config"), b"apiVersion: v1\nkind: Config\n").unwrap();
        s.users(".kube/config");
        let planted = kube.join(format!("config.kinit-tmp-{}", std::process::id()));
        symlink(s.shadow(), &planted).unwrap();
        s.users(&format!(".kube/config.kinit-tmp-{}", std::process::id()));
        let fifo = kube.join("config.kinit-tmp");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let before = s.etc_state();

        assert!(merge_into(&s.target(".kube/config"), &admin()).unwrap());
        let config = kube.join("config");
        assert_eq!(owner(&config), (4321, 4322, 0o600));
        let written = std::fs::read_to_string(&config).unwrap();
        assert!(written.contains("https://10.0.2.15:6443"), "{written}");
        assert!(!written.contains("root-only"), "{written}");
        assert_eq!(std::fs::read_link(&planted).unwrap(), s.shadow());
        assert!(
            std::fs::symlink_metadata(&fifo)
                .unwrap()
                .file_type()
                .is_fifo()
        );
        assert_eq!(s.etc_state(), before);
        let mut left: Vec<_> = std::fs::read_dir(&kube)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left.len(), 3, "temporary files left behind: {left:?}");
    }

    /// `kinit down --purge`: the context goes, the user's other contexts and ownership
    /// stay; a file or ~/.kube that is gone is not recreated; a link is refused.
    #[test]
    fn removal_keeps_the_rest_and_creates_nothing() {
        if !as_root() {
            return;
        }
        let s = Scene::new();
        let recorded = Target {
            owner: None,
            ..s.target(".kube/config")
        };
        assert!(!remove_from(&recorded, &admin()).unwrap());
        assert!(!s.home.path().join(".kube").exists());

        let other = SECRET.replace("root-only", "mine");
        std::fs::create_dir(s.home.path().join(".kube")).unwrap();
        s.users(".kube");
        std::fs::write(&recorded.path, &other).unwrap();
        s.users(".kube/config");
        assert!(merge_into(&s.target(".kube/config"), &admin()).unwrap());
        assert!(remove_from(&recorded, &admin()).unwrap());
        let left = std::fs::read_to_string(&recorded.path).unwrap();
        assert!(left.contains("mine") && !left.contains("kinit"), "{left}");
        assert_eq!(owner(&recorded.path), (4321, 4322, 0o600));

        std::fs::remove_file(&recorded.path).unwrap();
        symlink(s.shadow(), &recorded.path).unwrap();
        let before = s.etc_state();
        let msg = err(remove_from(&recorded, &admin()));
        assert!(msg.contains("config is a symbolic link"), "{msg}");
        assert_eq!(s.etc_state(), before);
    }

    /// Theirs or root's is decided by the directory actually reached: a path spelled
    /// outside the home that leads into it through root's own link gives the user the
    /// file (and the ~/.kube made for it); one that is really elsewhere stays root's.
    #[test]
    fn ownership_follows_where_the_file_is_not_how_it_is_spelled() {
        if !as_root() {
            return;
        }
        let s = Scene::new();
        let alias = s.etc.path().join("alias");
        symlink(s.home.path(), &alias).unwrap();
        let via_alias = Target {
            path: alias.join(".kube/config"),
            ..s.target(".kube/config")
        };
        assert!(merge_into(&via_alias, &admin()).unwrap());
        assert_eq!(
            owner(&s.home.path().join(".kube/config")),
            (4321, 4322, 0o600)
        );
        assert_eq!(owner(&s.home.path().join(".kube")).0, 4321);
        // Unchanged: not written again.
        assert!(!merge_into(&s.target(".kube/config"), &admin()).unwrap());

        let elsewhere = Target {
            path: s.etc.path().join("kubeconfig"),
            ..s.target(".kube/config")
        };
        assert!(merge_into(&elsewhere, &admin()).unwrap());
        assert_eq!(owner(&elsewhere.path), (0, 0, 0o600));
    }
}
