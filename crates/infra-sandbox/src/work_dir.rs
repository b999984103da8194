//! The fresh directory of one run: made and locked when the run is prepared, removed once no
//! process of the run is left, and swept at start-up when a previous life of the service left
//! it behind.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, lchown};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use tracing::{debug, warn};

use crate::bubblewrap::SANDBOX_ID;
use crate::error::{SandboxError, SweepFailed};
use crate::tree_removal::{self, READ_DIR};

/// Every run dir is `<temp dir>/orchestrator-sandbox-<random>`; the prefix is how the start-up
/// sweep knows them.
const PREFIX: &str = "orchestrator-sandbox-";
/// Attempts at making a run dir that a concurrent sweep does not take first.
const CREATE_ATTEMPTS: u32 = 8;

/// The account the sandbox's user appears as to programs that ask (`getpwuid`), so tools that
/// want a user name work without the host's `/etc/passwd` (which would list its users).
const PASSWD: &str = "nobody:x:65534:65534:sandbox:/work:/usr/sbin/nologin\n";
const GROUP: &str = "nogroup:x:65534:\n";

/// `<tmp>/orchestrator-sandbox-XXXX/` with `work/` (the program's work dir, holding the run's
/// files) and `etc/passwd`, `etc/group` (bound read-only into the sandbox). Everything is owned
/// by `owner` when given (the unprivileged host user the sandbox runs as), so bubblewrap,
/// running as that user, can reach it and the program can write `work/`.
///
/// Held open and locked (`flock`) from its creation until it is removed: that lock is how
/// [`sweep_leftover_work_dirs`] tells a live run dir from a leftover. It is removed without
/// following links ([`tree_removal`]), and only when no process of the run can be left:
/// * [`remove`](Self::remove) / [`remove_now`](Self::remove_now) once the run's processes are
///   gone, [`leave`](Self::leave) when that cannot be confirmed (the next start-up sweep
///   removes it);
/// * dropped before [`mark_in_use`](Self::mark_in_use), it is removed then (nothing ran in it);
///   dropped after, it is left, with a warning.
#[derive(Debug)]
pub(crate) struct RunDir {
    path: PathBuf,
    /// The run dir itself, opened without following a link, locked while this value lives.
    root: OwnedFd,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No process was started in it: removing it is safe at any time.
    Unused,
    /// A process was started in it: only removed explicitly, once that process is gone.
    InUse,
    /// Removed, or left on purpose.
    Settled,
}

impl RunDir {
    /// A new run dir in the temp dir holding `files` (paths already checked to be plain
    /// relative ones) in its work dir.
    pub(crate) fn create(owner: Option<u32>, files: &[(PathBuf, Vec<u8>)]) -> io::Result<Self> {
        Self::create_in(&tempfile::env::temp_dir(), owner, files)
    }

    fn create_in(parent: &Path, owner: Option<u32>, files: &[(PathBuf, Vec<u8>)]) -> io::Result<Self> {
        for _ in 0..CREATE_ATTEMPTS {
            let Some(dir) = Self::make_locked(parent)? else { continue };
            // On failure `dir` is dropped unused, which removes it.
            dir.fill(owner, files)?;
            return Ok(dir);
        }
        Err(io::Error::other("every new run dir was taken by a concurrent start-up sweep"))
    }

    /// A new empty run dir, open and locked; `None` when a sweep (another process of this
    /// service starting) locked it first, or already removed it: that sweep owns it now.
    fn make_locked(parent: &Path) -> io::Result<Option<Self>> {
        // Only its owner (the sandbox user, once filled) may look in: other host users have no
        // business there.
        let made = tempfile::Builder::new()
            .prefix(PREFIX)
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)?;
        let root = rustix::fs::open(made.path(), READ_DIR, Mode::empty())?;
        let path = made.keep();
        match rustix::fs::flock(&root, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => return Ok(None),
            Err(errno) => {
                // Sweeps skip what they cannot lock either, so this dir is never swept.
                warn!(%errno, dir = %path.display(), "cannot lock a run dir; a start-up sweep will not remove it");
            }
        }
        if rustix::fs::fstat(&root)?.st_nlink == 0 {
            return Ok(None);
        }
        Ok(Some(Self { path, root, state: State::Unused }))
    }

    /// Creates `work/` with `files` and `etc/`, and hands it all to `owner`: the run dir itself
    /// last, so until then no other user can reach in while paths are being used.
    fn fill(&self, owner: Option<u32>, files: &[(PathBuf, Vec<u8>)]) -> io::Result<()> {
        let own = |path: &Path| match owner {
            Some(uid) => lchown(path, Some(uid), Some(uid)),
            None => Ok(()),
        };
        let work = self.work();
        fs::create_dir(&work)?;
        fs::set_permissions(&work, fs::Permissions::from_mode(0o700))?;
        own(&work)?;
        let etc = self.path.join("etc");
        fs::create_dir(&etc)?;
        fs::set_permissions(&etc, fs::Permissions::from_mode(0o755))?;
        own(&etc)?;
        for (name, content) in [("passwd", PASSWD), ("group", GROUP)] {
            let path = etc.join(name);
            fs::write(&path, content)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
            own(&path)?;
        }
        for (relative, bytes) in files {
            let path = work.join(relative);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
                for ancestor in parent.ancestors().take_while(|a| a.starts_with(&work) && *a != work) {
                    own(ancestor)?;
                }
            }
            fs::write(&path, bytes)?;
            own(&path)?;
        }
        if let Some(uid) = owner {
            let (uid, gid) = (rustix::fs::Uid::from_raw(uid), rustix::fs::Gid::from_raw(uid));
            rustix::fs::fchown(&self.root, Some(uid), Some(gid))?;
        }
        Ok(())
    }

    /// [`create`](Self::create), off the async threads.
    pub(crate) async fn prepare(
        owner: Option<u32>,
        files: Vec<(PathBuf, Vec<u8>)>,
    ) -> Result<Self, SandboxError> {
        let made = tokio::task::spawn_blocking(move || Self::create(owner, &files)).await;
        made.unwrap_or_else(|join| Err(io::Error::other(join)))
            .map_err(|source| SandboxError::WorkDir { source })
    }

    /// Records that a process was started in this dir: from now on it is only removed
    /// explicitly, once that process is gone.
    pub(crate) fn mark_in_use(&mut self) {
        self.state = State::InUse;
    }

    /// Removes the dir (blocking work when a run left many files) off the async threads.
    /// Only once no process of the run can be left.
    pub(crate) async fn remove(self) {
        // Should the blocking task not run (the runtime shutting down), the dir is dropped
        // there and left for the start-up sweep.
        let _ = tokio::task::spawn_blocking(move || self.remove_now()).await;
    }

    /// Removes the dir, blocking; see [`remove`](Self::remove). Failing, it says so in the log
    /// and leaves the rest for the start-up sweep.
    pub(crate) fn remove_now(mut self) {
        self.remove_here();
    }

    /// Leaves the dir where it is, unlocked, for the next start-up sweep: for when the run's
    /// processes could not be confirmed gone.
    pub(crate) fn leave(mut self) {
        self.state = State::Settled;
        warn!(dir = %self.path.display(), "run dir left for the next start-up sweep");
    }

    /// The directory the program works in.
    pub(crate) fn work(&self) -> PathBuf {
        self.path.join("work")
    }

    /// The generated `/etc/passwd` and `/etc/group`, with the path each is bound on.
    pub(crate) fn etc_files(&self) -> [(PathBuf, &'static str); 2] {
        let etc = self.path.join("etc");
        [(etc.join("passwd"), "/etc/passwd"), (etc.join("group"), "/etc/group")]
    }

    fn remove_here(&mut self) {
        self.state = State::Settled;
        match self.remove_tree() {
            Ok(()) => debug!(dir = %self.path.display(), "run dir removed"),
            Err(error) => {
                warn!(%error, dir = %self.path.display(), "cannot remove a run dir; the next start-up sweep tries again");
            }
        }
    }

    fn remove_tree(&self) -> io::Result<()> {
        tree_removal::remove_contents(self.root.as_fd())?;
        let (Some(parent), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return Err(io::Error::other("a run dir path without a parent"));
        };
        let parent =
            rustix::fs::open(parent, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        remove_emptied(parent.as_fd(), name, self.root.as_fd())
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        match self.state {
            State::Unused => self.remove_here(),
            State::InUse => {
                warn!(dir = %self.path.display(), "run dir left behind; the next start-up sweep removes it");
            }
            State::Settled => {}
        }
    }
}

/// Removes the entry `name` of `parent` if it still is the directory `root` (a handle to it),
/// which has been emptied.
fn remove_emptied(parent: BorrowedFd<'_>, name: &OsStr, root: BorrowedFd<'_>) -> io::Result<()> {
    let named = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
    let held = rustix::fs::fstat(root)?;
    if (named.st_dev, named.st_ino) != (held.st_dev, held.st_ino) {
        return Err(io::Error::other("the run dir's name now holds something else"));
    }
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

/// Removes the run dirs in the temp dir (`orchestrator-sandbox-*`) that no live process of
/// this service is using: those a previous life of it left behind (killed or crashed mid-run,
/// or a run whose processes could not be confirmed gone). Call it once at start-up, before
/// serving, and log the count; it blocks (use `spawn_blocking` from async code).
///
/// # How "not in use" is told
/// Every run dir is locked (`flock`, exclusive, on the directory itself) by the process that
/// made it, from its creation until its removal. The kernel drops the lock when that process
/// ends, however it ends, so a dir the sweep can lock is a leftover, and one it cannot is a
/// live run's — of this process or of another server sharing the temp dir — and is left
/// alone. The sweep holds the lock while it removes; a server creating a run dir that a sweep
/// locked first gives it up and makes another. A process id in the dir's name was the
/// alternative, rejected: ids are reused (a server in a container is pid 1 at every start), so
/// a leftover could not be told from a live dir reliably. Run dirs made before this lock
/// existed carry none and are swept as leftovers: do not run an older version of the service
/// on the same temp dir.
///
/// Only real directories (never links) owned by this process's user, or when it is root by
/// the sandbox's user, are considered. They are removed like a finished run's: without ever
/// following a symbolic link, whatever a program left in them. One that cannot be removed is
/// logged and skipped.
///
/// # Errors
/// [`SweepFailed`] when the temp dir cannot be read.
pub fn sweep_leftover_work_dirs() -> Result<usize, SweepFailed> {
    sweep_in(&tempfile::env::temp_dir())
}

fn sweep_in(temp: &Path) -> Result<usize, SweepFailed> {
    let failed = |errno: Errno| SweepFailed { dir: temp.to_path_buf(), source: errno.into() };
    let parent = rustix::fs::open(temp, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(failed)?;
    let mut names: Vec<CString> = Vec::new();
    for entry in Dir::read_from(&parent).map_err(failed)? {
        let entry = entry.map_err(failed)?;
        if entry.file_name().to_bytes().starts_with(PREFIX.as_bytes()) {
            names.push(entry.file_name().to_owned());
        }
    }
    let euid = rustix::process::geteuid();
    let owners = [euid.as_raw(), if euid.is_root() { SANDBOX_ID } else { euid.as_raw() }];
    let mut removed = 0;
    for name in names {
        let dir = temp.join(OsStr::from_bytes(name.to_bytes()));
        match sweep_one(parent.as_fd(), &name, &owners) {
            Ok(true) => {
                debug!(dir = %dir.display(), "leftover run dir removed");
                removed += 1;
            }
            Ok(false) => {}
            Err(error) => warn!(%error, dir = %dir.display(), "cannot remove a leftover run dir"),
        }
    }
    Ok(removed)
}

/// Removes the run dir `name` of `parent` if it is a leftover; whether it was.
fn sweep_one(parent: BorrowedFd<'_>, name: &CString, owners: &[u32]) -> io::Result<bool> {
    let root = match rustix::fs::openat(parent, name, READ_DIR, Mode::empty()) {
        Ok(root) => root,
        // A link, a file or nothing (any more): not a run dir.
        Err(Errno::NOTDIR | Errno::LOOP | Errno::NOENT) => return Ok(false),
        Err(errno) => return Err(errno.into()),
    };
    if !owners.contains(&rustix::fs::fstat(&root)?.st_uid) {
        return Ok(false);
    }
    match rustix::fs::flock(&root, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(Errno::WOULDBLOCK) => return Ok(false),
        Err(errno) => return Err(errno.into()),
    }
    tree_removal::remove_contents(root.as_fd())?;
    remove_emptied(parent, OsStr::from_bytes(name.to_bytes()), root.as_fd())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::symlink;

    use super::*;

    /// Whether the test runs as root, which it needs to give files away; says SKIPPED if not.
    fn as_root() -> bool {
        let root = rustix::process::geteuid().is_root();
        if !root {
            orchestrator_test_support::skip("root", "run the tests as root", "it changes owners");
        }
        root
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn files_land_in_the_work_dir_and_everything_is_gone_after_removal() {
        let temp = tempfile::tempdir().unwrap();
        let files = [("main.py".into(), b"print(1)".to_vec()), ("pkg/sub/mod.py".into(), b"x = 1".to_vec())];
        let dir = RunDir::create_in(temp.path(), None, &files).unwrap();
        let work = dir.work();
        assert_eq!(fs::read(work.join("main.py")).unwrap(), b"print(1)");
        assert_eq!(fs::read(work.join("pkg/sub/mod.py")).unwrap(), b"x = 1");
        assert!(fs::read_to_string(&dir.etc_files()[0].0).unwrap().starts_with("nobody:x:65534"));
        assert_eq!(fs::metadata(&dir.path).unwrap().permissions().mode() & 0o777, 0o700);
        fs::set_permissions(work.join("pkg"), fs::Permissions::from_mode(0o000)).unwrap();
        dir.remove_now();
        assert_eq!(names(temp.path()), Vec::<String>::new());
    }

    #[test]
    fn a_run_dir_is_owned_by_the_sandbox_user_when_given() {
        use std::os::unix::fs::MetadataExt;
        if !as_root() {
            return;
        }
        let temp = tempfile::tempdir().unwrap();
        let dir =
            RunDir::create_in(temp.path(), Some(SANDBOX_ID), &[("a/b.txt".into(), b"b".to_vec())]).unwrap();
        let work = dir.work();
        for path in [
            dir.path.clone(),
            work.clone(),
            work.join("a"),
            work.join("a/b.txt"),
            dir.etc_files()[0].0.clone(),
        ] {
            assert_eq!(fs::symlink_metadata(&path).unwrap().uid(), SANDBOX_ID, "{}", path.display());
        }
        dir.remove_now();
        assert_eq!(names(temp.path()), Vec::<String>::new());
    }

    #[test]
    fn a_dir_no_process_used_is_removed_when_dropped_and_a_used_one_is_left() {
        let temp = tempfile::tempdir().unwrap();
        drop(RunDir::create_in(temp.path(), None, &[]).unwrap());
        assert_eq!(names(temp.path()), Vec::<String>::new());
        let mut used = RunDir::create_in(temp.path(), None, &[]).unwrap();
        used.mark_in_use();
        let path = used.path.clone();
        drop(used);
        assert!(path.is_dir(), "a dir a process may still use is never removed on drop");
    }

    #[test]
    fn the_sweep_removes_leftovers_and_leaves_live_dirs_links_and_others_alone() {
        if !as_root() {
            return;
        }
        let temp = tempfile::tempdir().unwrap();
        let victim = tempfile::tempdir().unwrap();
        fs::set_permissions(victim.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(victim.path().join("keep"), b"keep").unwrap();

        let live = RunDir::create_in(temp.path(), None, &[("main.py".into(), b"1".to_vec())]).unwrap();
        let mut crashed = RunDir::create_in(temp.path(), None, &[]).unwrap();
        crashed.mark_in_use();
        symlink(victim.path(), crashed.work().join("to-victim")).unwrap();
        fs::create_dir(crashed.work().join("locked")).unwrap();
        fs::set_permissions(crashed.work().join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
        // What a crash leaves: the dir in place, its lock gone with the process's handles.
        drop(crashed);
        // A dir of a version without the lock, and things that only look like run dirs.
        fs::create_dir_all(temp.path().join("orchestrator-sandbox-old/work")).unwrap();
        symlink(victim.path(), temp.path().join("orchestrator-sandbox-link")).unwrap();
        fs::create_dir(temp.path().join("orchestrator-sandbox-stranger")).unwrap();
        std::os::unix::fs::chown(temp.path().join("orchestrator-sandbox-stranger"), Some(4242), Some(4242))
            .unwrap();
        fs::create_dir(temp.path().join("unrelated")).unwrap();

        assert_eq!(sweep_in(temp.path()).unwrap(), 2);
        let live_name = live.path.file_name().unwrap().to_string_lossy().into_owned();
        let mut expected = vec![
            live_name,
            "orchestrator-sandbox-link".into(),
            "orchestrator-sandbox-stranger".into(),
            "unrelated".into(),
        ];
        expected.sort();
        assert_eq!(names(temp.path()), expected);
        assert_eq!(fs::read(live.work().join("main.py")).unwrap(), b"1");
        assert_eq!(fs::symlink_metadata(victim.path()).unwrap().permissions().mode() & 0o7777, 0o755);
        assert_eq!(fs::read(victim.path().join("keep")).unwrap(), b"keep");

        // Once the live run is over and its dir removed, nothing is left to sweep.
        live.remove_now();
        assert_eq!(sweep_in(temp.path()).unwrap(), 0);
    }

    #[test]
    fn a_sweep_of_a_missing_temp_dir_says_which() {
        let error = sweep_in(Path::new("/nonexistent-orchestrator-temp")).unwrap_err();
        assert_eq!(error.to_string(), "cannot search /nonexistent-orchestrator-temp for leftover run dirs");
    }
}
