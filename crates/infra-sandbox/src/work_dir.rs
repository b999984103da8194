//! The fresh directory of one run, deleted when the run is over.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};

use rustix::fs::Mode;
use tempfile::TempDir;
use tracing::warn;

use crate::error::SandboxError;
use crate::tree_removal::{self, READ_DIR};

/// The account the sandbox's user appears as to programs that ask (`getpwuid`), so tools that
/// want a user name work without the host's `/etc/passwd` (which would list its users).
const PASSWD: &str = "nobody:x:65534:65534:sandbox:/work:/usr/sbin/nologin\n";
const GROUP: &str = "nogroup:x:65534:\n";

/// `<tmp>/orchestrator-sandbox-XXXX/` with `work/` (the program's work dir) and `etc/passwd`,
/// `etc/group` (bound read-only into the sandbox). Everything is owned by `owner` when given
/// (the unprivileged host user the sandbox runs as), so bubblewrap, running as that user, can
/// reach it and the program can write `work/`. Dropping it deletes it all.
#[derive(Debug)]
pub(crate) struct RunDir {
    root: TempDir,
    owner: Option<u32>,
}

impl RunDir {
    pub(crate) fn create(owner: Option<u32>) -> io::Result<Self> {
        let root = tempfile::Builder::new().prefix("orchestrator-sandbox-").tempdir()?;
        let dir = Self { root, owner };
        dir.own(dir.root.path())?;
        let work = dir.work();
        fs::create_dir(&work)?;
        fs::set_permissions(&work, fs::Permissions::from_mode(0o700))?;
        dir.own(&work)?;
        let etc = dir.root.path().join("etc");
        fs::create_dir(&etc)?;
        fs::set_permissions(&etc, fs::Permissions::from_mode(0o755))?;
        dir.own(&etc)?;
        for (name, content) in [("passwd", PASSWD), ("group", GROUP)] {
            let path = etc.join(name);
            fs::write(&path, content)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
            dir.own(&path)?;
        }
        Ok(dir)
    }

    /// [`create`](Self::create) and [`write`](Self::write), off the async threads.
    pub(crate) async fn prepare(
        owner: Option<u32>,
        files: Vec<(PathBuf, Vec<u8>)>,
    ) -> Result<Self, SandboxError> {
        let made = tokio::task::spawn_blocking(move || {
            let run_dir = Self::create(owner)?;
            run_dir.write(&files)?;
            Ok(run_dir)
        })
        .await;
        made.unwrap_or_else(|join| Err(io::Error::other(join)))
            .map_err(|source| SandboxError::WorkDir { source })
    }

    /// Deletes the directory (blocking work when a run left many files) off the async threads.
    pub(crate) async fn remove(self) {
        let _ = tokio::task::spawn_blocking(move || drop(self)).await;
    }

    /// The directory the program works in.
    pub(crate) fn work(&self) -> PathBuf {
        self.root.path().join("work")
    }

    /// The generated `/etc/passwd` and `/etc/group`, with the path each is bound on.
    pub(crate) fn etc_files(&self) -> [(PathBuf, &'static str); 2] {
        let etc = self.root.path().join("etc");
        [(etc.join("passwd"), "/etc/passwd"), (etc.join("group"), "/etc/group")]
    }

    /// Writes `files` (paths already checked to be plain relative ones) into the work dir,
    /// creating sub-directories as needed.
    pub(crate) fn write(&self, files: &[(PathBuf, Vec<u8>)]) -> io::Result<()> {
        let work = self.work();
        for (relative, bytes) in files {
            let path = work.join(relative);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
                for ancestor in parent.ancestors().take_while(|a| a.starts_with(&work) && *a != work) {
                    self.own(ancestor)?;
                }
            }
            fs::write(&path, bytes)?;
            self.own(&path)?;
        }
        Ok(())
    }

    fn own(&self, path: &Path) -> io::Result<()> {
        match self.owner {
            Some(uid) => chown(path, Some(uid), Some(uid)),
            None => Ok(()),
        }
    }
}

impl Drop for RunDir {
    /// Empties the dir through directory handles, never following a link nor changing a mode by
    /// path, whatever the program left in it (see [`tree_removal`]); the `TempDir` then
    /// removes the empty dir itself.
    fn drop(&mut self) {
        let emptied = rustix::fs::open(self.root.path(), READ_DIR, Mode::empty())
            .map_err(io::Error::from)
            .and_then(|root| tree_removal::remove_contents(root.as_fd()));
        if let Err(error) = emptied {
            warn!(%error, dir = %self.root.path().display(), "cannot remove a run dir");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn files_land_in_the_work_dir_and_everything_is_gone_after_drop() {
        let dir = RunDir::create(None).unwrap();
        dir.write(&[("main.py".into(), b"print(1)".to_vec()), ("pkg/sub/mod.py".into(), b"x = 1".to_vec())])
            .unwrap();
        let work = dir.work();
        assert_eq!(fs::read(work.join("main.py")).unwrap(), b"print(1)");
        assert_eq!(fs::read(work.join("pkg/sub/mod.py")).unwrap(), b"x = 1");
        assert!(fs::read_to_string(&dir.etc_files()[0].0).unwrap().starts_with("nobody:x:65534"));
        let locked = work.join("pkg");
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
        let root = dir.root.path().to_path_buf();
        drop(dir);
        assert!(!root.exists(), "{} is left behind", root.display());
    }
}
