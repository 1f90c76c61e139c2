//! The rules for the user's file: its owner, and never a link followed.

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
    /// `None` (the test skips) when not root.
    fn new() -> Option<Self> {
        if !as_root() {
            return None;
        }
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
        Some(Self { home, etc })
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
    new(
        "https://10.0.2.15:6443",
        "CA",
        "kubernetes-admin",
        "CERT",
        "KEY",
    )
}

/// Writes the file (0600), replacing what is there, and hands it to its owner as
/// [`update`] does.
fn write_owned(target: &Target, bytes: &[u8]) -> Result<()> {
    update(target, |_| Ok(Some(bytes.to_vec())))?;
    Ok(())
}

fn err(r: Result<impl std::fmt::Debug>) -> String {
    format!("{:#}", r.expect_err("the write should have been refused"))
}

impl Scene {
    /// Why `write` was refused; it must have left the stand-in /etc exactly as it was.
    fn refusal<T: std::fmt::Debug>(&self, write: impl FnOnce() -> Result<T>) -> String {
        let before = self.etc_state();
        let msg = err(write());
        assert_eq!(self.etc_state(), before, "{msg}");
        msg
    }
}

/// `~/.kube -> /etc/cron.hourly`: root would write `config` there, owned by the user.
#[test]
fn a_linked_kube_dir_is_refused() {
    let Some(s) = Scene::new() else {
        return;
    };
    symlink(
        s.etc.path().join("cron.hourly"),
        s.home.path().join(".kube"),
    )
    .unwrap();
    s.users(".kube");
    let msg = s.refusal(|| merge_into(&s.target(".kube/config"), &admin()));
    assert!(msg.contains(".kube is a symbolic link"), "{msg}");
    assert!(msg.contains("cron.hourly"), "{msg}");
    let msg = s.refusal(|| write_owned(&s.target(".kube/config"), b"x"));
    assert!(msg.contains(".kube is a symbolic link"), "{msg}");
}

/// `--kubeconfig ~/sub/deeper/config` with `~/sub -> /etc`: root would create
/// /etc/deeper and hand it to the user.
#[test]
fn a_linked_directory_on_the_way_is_refused() {
    let Some(s) = Scene::new() else {
        return;
    };
    symlink(s.etc.path(), s.home.path().join("sub")).unwrap();
    s.users("sub");
    let msg = s.refusal(|| write_owned(&s.target("sub/deeper/config"), b"x"));
    assert!(msg.contains("sub is a symbolic link"), "{msg}");
}

/// `~/.kube/config -> /etc/shadow`: refused by name, the link left as it is, and
/// neither the target's content nor its owner changed nor copied into the user's file.
#[test]
fn a_linked_kubeconfig_is_refused_and_its_target_untouched() {
    let Some(s) = Scene::new() else {
        return;
    };
    std::fs::create_dir(s.home.path().join(".kube")).unwrap();
    s.users(".kube");
    symlink(s.shadow(), s.home.path().join(".kube/config")).unwrap();
    let link = s.users(".kube/config");
    let msg = s.refusal(|| merge_into(&s.target(".kube/config"), &admin()));
    assert!(msg.contains(".kube/config is a symbolic link"), "{msg}");
    assert!(msg.contains("shadow"), "{msg}");
    let msg = s.refusal(|| write_owned(&s.target(".kube/config"), b"x"));
    assert!(msg.contains(".kube/config is a symbolic link"), "{msg}");
    // `kinit down --purge` rewrites the recorded file with no user named.
    let recorded = Target {
        owner: None,
        ..s.target(".kube/config")
    };
    s.refusal(|| write_owned(&recorded, b"x"));
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
    let Some(s) = Scene::new() else {
        return;
    };
    std::fs::create_dir(s.home.path().join(".kube")).unwrap();
    s.users(".kube");
    if std::fs::hard_link(s.shadow(), s.home.path().join(".kube/config")).is_err() {
        eprintln!("skipped: the stand-in home and /etc are on different filesystems");
        return;
    }
    let msg = s.refusal(|| merge_into(&s.target(".kube/config"), &admin()));
    assert!(msg.contains("hard link"), "{msg}");
}

/// The temporary file's name planted in advance, as a link to /etc/shadow and as a
/// FIFO: root must neither write through the link (then rename it into place and chown
/// its target) nor block on the FIFO. Earlier versions used `NAME.kinit-tmp-PID`.
#[test]
fn planted_temporary_names_are_left_alone() {
    let Some(s) = Scene::new() else {
        return;
    };
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
    let Some(s) = Scene::new() else {
        return;
    };
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
    let msg = s.refusal(|| remove_from(&recorded, &admin()));
    assert!(msg.contains("config is a symbolic link"), "{msg}");
}

/// Theirs or root's is decided by the directory actually reached: a path spelled
/// outside the home that leads into it through root's own link gives the user the
/// file (and the ~/.kube made for it); one that is really elsewhere stays root's.
#[test]
fn ownership_follows_where_the_file_is_not_how_it_is_spelled() {
    let Some(s) = Scene::new() else {
        return;
    };
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
