//! Merges the cluster into the invoking user's kubeconfig as context `kinit`, leaving
//! their other contexts alone. Under sudo the file is the real user's, owned by them.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};
use nix::unistd::{Gid, Uid, User};

use super::Context;
use crate::fs;
use crate::pki::kubeconfig::{self, Kubeconfig};
use crate::progress::Outcome;

/// A kubeconfig file and who should own it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub path: PathBuf,
    pub owner: Option<(Uid, Gid)>,
}

pub async fn run(ctx: &Context) -> Result<Outcome> {
    let target = resolve_target(ctx.user_kubeconfig.as_deref())?;
    let admin = read_admin(&ctx.layout.kubeconfig("admin.conf"))?;
    let existing = fs::read_optional(&target.path)?;
    let merged = kubeconfig::merge(existing.as_deref(), &admin)
        .with_context(|| format!("cannot merge into {}", target.path.display()))?;
    let changed = existing.as_deref() != Some(merged.as_bytes());
    if changed {
        write_owned(&target, merged.as_bytes())?;
    }
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

pub fn read_admin(path: &Path) -> Result<Kubeconfig> {
    let bytes = fs::read_optional(path)?
        .ok_or_else(|| anyhow!("{} is missing; run `sudo kinit up`", path.display()))?;
    Kubeconfig::from_yaml(&bytes)
}

/// `--kubeconfig` when given; under sudo, the invoking user's ~/.kube/config; otherwise
/// the first file of $KUBECONFIG, or ~/.kube/config — where kubectl will look.
pub fn resolve_target(flag: Option<&Path>) -> Result<Target> {
    let sudo_user = sudo_user()?;
    if let Some(path) = flag {
        let path = std::path::absolute(path)
            .with_context(|| format!("cannot resolve {}", path.display()))?;
        // A file in the sudo user's home is theirs; one elsewhere (/etc/...) stays root's.
        let owner = sudo_user
            .filter(|u| path.starts_with(&u.dir))
            .map(|u| (u.uid, u.gid));
        return Ok(Target { path, owner });
    }
    if let Some(user) = sudo_user {
        return Ok(Target {
            path: user.dir.join(".kube/config"),
            owner: Some((user.uid, user.gid)),
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

/// Writes the file (0600) and hands it, and a ~/.kube it had to create, to its owner: the
/// target's, else the user who owns the existing file (the atomic rewrite would make it
/// root's). A file root owns stays root's unless the target names a user, which mends
/// files earlier versions of kinit left root-owned in a user's home.
pub fn write_owned(target: &Target, bytes: &[u8]) -> Result<()> {
    let dir = target.path.parent().unwrap_or(Path::new("/"));
    let created_dir = !dir.exists();
    let existing_owner = std::fs::metadata(&target.path)
        .ok()
        .map(|m| (Uid::from_raw(m.uid()), Gid::from_raw(m.gid())))
        .filter(|(uid, _)| !uid.is_root());
    fs::write_file(&target.path, bytes, fs::Mode::Private)?;
    if let Some((uid, gid)) = target.owner.or(existing_owner) {
        let chown = |p: &Path| {
            nix::unistd::chown(p, Some(uid), Some(gid))
                .with_context(|| format!("cannot give {} to its user", p.display()))
        };
        if created_dir {
            chown(dir)?;
        }
        chown(&target.path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rewriting a user's kubeconfig as root (`sudo kinit up --kubeconfig ~/.kube/config`,
    /// `sudo kinit down --purge`) must leave it theirs; a new file goes to the target owner.
    #[test]
    fn rewrite_keeps_the_owner_of_an_existing_file() {
        if !nix::unistd::geteuid().is_root() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs the tests as root"
            );
            eprintln!("skipped: changing a file's owner needs root (scripts/test.sh runs as root)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let owner = |p: &Path| {
            let m = std::fs::metadata(p).unwrap();
            (m.uid(), m.gid(), m.mode() & 0o777)
        };
        let give = |p: &Path, uid: u32, gid: u32| {
            nix::unistd::chown(p, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).unwrap()
        };
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
            owner: Some((Uid::from_raw(4321), Gid::from_raw(4322))),
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
            owner: Some((Uid::from_raw(1234), Gid::from_raw(1235))),
        };
        write_owned(&fresh, b"new").unwrap();
        assert_eq!(owner(&fresh.path), (1234, 1235, 0o600));
        assert_eq!(owner(fresh.path.parent().unwrap()).0, 1234);
    }
}
