//! Removing a directory tree that untrusted code shaped, without ever acting outside it.
//!
//! A run's program decides what its work dir holds: symbolic links to anywhere on the host,
//! directories it made unreadable (`chmod 000`), any depth of nesting, and — while a process of
//! it survives — names that keep changing between a directory and a link
//! (`renameat2(RENAME_EXCHANGE)`). A clean-up that goes by path follows such a link at the wrong
//! moment: the security report behind this module had a `chmod 0700` walk, running as root,
//! lock host directories that a program had swapped in. So everything here works relative to
//! handles of directories already opened, and nothing is ever followed:
//!
//! * A directory is entered only through `openat(parent, name, O_NOFOLLOW | O_DIRECTORY)`,
//!   which opens a real directory or fails; a link in its place is not followed.
//! * Entries are removed with `unlinkat(parent, name)`, which removes a link, not its target.
//! * A mode is changed only through a handle to the directory itself (`fchmod`; for a
//!   directory only an `O_PATH` handle can reach, its entry in a checked `/proc/self/fd`,
//!   which resolves to that handle's directory whatever happens to the name meanwhile).
//! * Another file system is never entered (like `rm --one-file-system`).
//! * At most [`MAX_OPEN_LEVELS`] directories are held open: a deeper one is moved up to the
//!   top of the tree (a rename within it) and emptied from there. Any depth is removed with
//!   bounded file descriptors and no recursion.
//!
//! `std::fs::remove_dir_all` is just as careful with links on Linux, but stops at a directory
//! its owner cannot read, which a program can make in one call.
//!
//! A name that changes under us (a directory swapped for a link) is simply looked at again; a
//! tree that keeps changing past [`REMOVAL_BOUND`] is reported, never chased.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, RenameFlags, Stat};
use rustix::io::Errno;
use rustix::path::DecInt;

/// Directories held open at once below the top; see the [module docs](self).
const MAX_OPEN_LEVELS: usize = 32;
/// Names read from a directory at a time: a directory with a million entries is removed
/// without holding a million names.
const BATCH: usize = 512;
/// Time a removal may take. Far more than a tree written within a run's wall timeout needs;
/// reaching it means something keeps changing the tree.
const REMOVAL_BOUND: Duration = Duration::from_secs(300);
/// Attempts at finding a free name when moving a deep directory up.
const MOVE_ATTEMPTS: u32 = 1024;

/// How a directory is opened to be read: never through a link in its place.
pub(crate) const READ_DIR: OFlags =
    OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

/// Removes everything inside the directory `top`, which stays (its handle is the caller's, and
/// so is removing its entry). Never follows a symbolic link and never acts outside `top`, even
/// while something keeps changing the tree; see the [module docs](self).
///
/// # Errors
/// The first entry that cannot be removed (its directory stays, partly emptied), a directory
/// on another file system, or a tree that is still changing after [`REMOVAL_BOUND`].
pub(crate) fn remove_contents(top: BorrowedFd<'_>) -> io::Result<()> {
    let device = make_removable(top)?.st_dev;
    let deadline = Instant::now() + REMOVAL_BOUND;
    // The directories entered below `top`, deepest last, each with its name in the one above.
    let mut open: Vec<(OwnedFd, CString)> = Vec::new();
    let mut moved = 0_u64;
    loop {
        if Instant::now() > deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the tree is still changing"));
        }
        let current = open.last().map_or(top, |(dir, _)| dir.as_fd());
        let names = read_names(current)?;
        if names.is_empty() {
            let Some((dir, name)) = open.pop() else { return Ok(()) };
            drop(dir);
            let parent = open.last().map_or(top, |(dir, _)| dir.as_fd());
            match rustix::fs::unlinkat(parent, &name, AtFlags::REMOVEDIR) {
                // Gone, or no longer the directory just emptied (swapped since): the parent's
                // next reading sees whatever the name holds now.
                Ok(()) | Err(Errno::NOENT | Errno::NOTEMPTY | Errno::EXIST | Errno::NOTDIR) => {}
                Err(errno) => return Err(errno.into()),
            }
            continue;
        }
        for name in names {
            let Some(dir) = remove_or_open(current, &name, device)? else { continue };
            if open.len() < MAX_OPEN_LEVELS {
                open.push((dir, name));
                break;
            }
            drop(dir);
            move_to_top(current, &name, top, &mut moved)?;
        }
    }
}

/// Up to [`BATCH`] names from `dir`, without `.` and `..`.
fn read_names(dir: BorrowedFd<'_>) -> io::Result<Vec<CString>> {
    let mut entries = Dir::read_from(dir)?;
    let mut names = Vec::new();
    while names.len() < BATCH {
        let Some(entry) = entries.read() else { break };
        let entry = entry?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// Removes `name` from `parent` if it is not a directory (a link goes, its target is never
/// looked at); opens it if it is one, ready to be emptied. `None` when there is nothing (more)
/// to do with it for now: removed, gone, or swapped for something else, which the next
/// reading of `parent` sees.
fn remove_or_open(parent: BorrowedFd<'_>, name: &CStr, device: u64) -> io::Result<Option<OwnedFd>> {
    match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(None),
        Err(Errno::ISDIR) => {}
        Err(errno) => return Err(errno.into()),
    }
    match open_dir(parent, name) {
        Ok((_, stat)) if stat.st_dev != device => {
            Err(io::Error::other("a directory of the tree is on another file system"))
        }
        Ok((dir, _)) => Ok(Some(dir)),
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => Ok(None),
        Err(errno) => Err(errno.into()),
    }
}

/// Opens the directory `name` of `parent` for reading and makes it removable, through the
/// handle. A link in its place fails (`ELOOP` or `ENOTDIR`).
fn open_dir(parent: BorrowedFd<'_>, name: &CStr) -> Result<(OwnedFd, Stat), Errno> {
    let dir = match rustix::fs::openat(parent, name, READ_DIR, Mode::empty()) {
        Ok(dir) => dir,
        Err(Errno::ACCESS) => {
            // Unreadable even to its owner (`chmod 000`), and we are not root: a handle that
            // needs no permission reaches it, its mode is changed through that handle, and the
            // directory is opened through it again (".": nothing to follow).
            let handle = rustix::fs::openat(
                parent,
                name,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            chmod_handle(handle.as_fd(), Mode::RWXU)?;
            rustix::fs::openat(&handle, c".", READ_DIR, Mode::empty())?
        }
        Err(errno) => return Err(errno),
    };
    let stat = make_removable(dir.as_fd())?;
    Ok((dir, stat))
}

/// Gives the directory `dir` (a readable handle) the owner's read, write and search rights if
/// it lacks any, so its entries can be listed and removed, and returns its status.
fn make_removable(dir: BorrowedFd<'_>) -> Result<Stat, Errno> {
    let stat = rustix::fs::fstat(dir)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
        return Err(Errno::NOTDIR);
    }
    if stat.st_mode & Mode::RWXU.bits() != Mode::RWXU.bits() {
        rustix::fs::fchmod(dir, Mode::RWXU)?;
    }
    Ok(stat)
}

/// `fchmod` for an `O_PATH` handle, which `fchmod` itself refuses: through the handle's entry
/// in `/proc/self/fd`, checked to be the real procfs, which names the handle's directory.
fn chmod_handle(handle: BorrowedFd<'_>, mode: Mode) -> Result<(), Errno> {
    let handles = rustix_linux_procfs::proc_self_fd()?;
    rustix::fs::chmodat(handles, DecInt::from_fd(handle), mode, AtFlags::empty())
}

/// Moves the directory `name` of `parent` to the top of the tree under a name of its own, to
/// be emptied from there: how a tree deeper than [`MAX_OPEN_LEVELS`] is removed.
fn move_to_top(parent: BorrowedFd<'_>, name: &CStr, top: BorrowedFd<'_>, moved: &mut u64) -> io::Result<()> {
    for _ in 0..MOVE_ATTEMPTS {
        *moved += 1;
        let new_name = format!(".removal-{moved}");
        match rustix::fs::renameat_with(parent, name, top, new_name.as_str(), RenameFlags::NOREPLACE) {
            Ok(()) | Err(Errno::NOENT) => return Ok(()),
            Err(Errno::EXIST) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
    Err(io::Error::other("no free name to move a deep directory up"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A host directory a tree points into: mode 0755 with a file and a 0751 subdirectory.
    struct Victim {
        _dir: tempfile::TempDir,
        path: PathBuf,
    }

    impl Victim {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().to_path_buf();
            fs::create_dir(path.join("sub")).unwrap();
            fs::write(path.join("sub/data"), b"keep").unwrap();
            fs::write(path.join("file"), b"keep").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
            fs::set_permissions(path.join("sub"), fs::Permissions::from_mode(0o751)).unwrap();
            Self { _dir: dir, path }
        }

        fn assert_untouched(&self) {
            let mode = |path: &Path| fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode(&self.path), 0o755);
            assert_eq!(mode(&self.path.join("sub")), 0o751);
            assert_eq!(fs::read(self.path.join("sub/data")).unwrap(), b"keep");
            assert_eq!(fs::read(self.path.join("file")).unwrap(), b"keep");
        }
    }

    fn open(path: &Path) -> OwnedFd {
        rustix::fs::open(path, READ_DIR, Mode::empty()).unwrap()
    }

    fn entries(path: &Path) -> Vec<String> {
        fs::read_dir(path).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    }

    /// Links to a host directory and to a host file, nested unreadable directories, a link
    /// inside one of them and a chain of directories deeper than the open levels.
    fn hostile_tree(top: &Path, victim: &Victim) {
        symlink(&victim.path, top.join("to-dir")).unwrap();
        symlink(victim.path.join("file"), top.join("to-file")).unwrap();
        symlink("/", top.join("to-root")).unwrap();
        fs::create_dir_all(top.join("locked/inner")).unwrap();
        symlink(&victim.path, top.join("locked/inner/to-dir")).unwrap();
        fs::write(top.join("locked/inner/file"), b"x").unwrap();
        fs::set_permissions(top.join("locked/inner"), fs::Permissions::from_mode(0o000)).unwrap();
        fs::set_permissions(top.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
        let mut deep = top.join("deep");
        for level in 0..(3 * MAX_OPEN_LEVELS + 5) {
            deep.push(format!("{level}"));
        }
        fs::create_dir_all(&deep).unwrap();
        symlink(&victim.path, deep.join("to-dir")).unwrap();
        fs::set_permissions(&deep, fs::Permissions::from_mode(0o000)).unwrap();
    }

    #[test]
    fn links_unreadable_dirs_and_deep_chains_are_removed_and_nothing_outside_is_touched() {
        let victim = Victim::new();
        let top = tempfile::tempdir().unwrap();
        hostile_tree(top.path(), &victim);
        remove_contents(open(top.path()).as_fd()).unwrap();
        assert_eq!(entries(top.path()), Vec::<String>::new());
        victim.assert_untouched();
    }

    #[test]
    fn a_tree_owned_by_an_unprivileged_user_is_removed_by_that_user_despite_chmod_000() {
        // Run by a thread that is uid 65534 without capabilities (`setresuid` for this thread
        // alone), as an orchestrator that is not root would be: `chmod 000` then really locks
        // the owner out, and the `O_PATH` way in is what removes it.
        if !rustix::process::geteuid().is_root() {
            orchestrator_test_support::skip("root", "run the tests as root", "it changes owners and users");
            return;
        }
        let victim = Victim::new();
        let top = tempfile::tempdir().unwrap();
        hostile_tree(top.path(), &victim);
        let chown = std::process::Command::new("chown")
            .args(["-R", "-h", "65534:65534"])
            .arg(top.path())
            .status()
            .unwrap();
        assert!(chown.success());
        let handle = open(top.path());
        let removed = std::thread::spawn(move || {
            let nobody = rustix::process::Uid::from_raw(65534);
            rustix::thread::set_thread_res_uid(nobody, nobody, nobody).unwrap();
            assert_eq!(rustix::process::geteuid(), nobody);
            remove_contents(handle.as_fd())
        })
        .join()
        .unwrap();
        removed.unwrap();
        assert_eq!(entries(top.path()), Vec::<String>::new());
        victim.assert_untouched();
    }

    #[test]
    fn a_link_in_place_of_a_directory_is_never_entered() {
        let victim = Victim::new();
        let top = tempfile::tempdir().unwrap();
        symlink(&victim.path, top.path().join("to-dir")).unwrap();
        let handle = open(top.path());
        let refused = open_dir(handle.as_fd(), c"to-dir").unwrap_err();
        assert!(matches!(refused, Errno::LOOP | Errno::NOTDIR), "{refused:?}");
        victim.assert_untouched();
    }

    #[test]
    fn dirs_swapped_for_links_during_the_removal_never_lead_outside() {
        let victim = Victim::new();
        for _ in 0..20 {
            let top = tempfile::tempdir().unwrap();
            let pairs: Vec<(PathBuf, PathBuf)> = (0..16)
                .map(|i| {
                    let dir = top.path().join(format!("d{i}"));
                    fs::create_dir_all(dir.join("inner/deeper")).unwrap();
                    let link = top.path().join(format!("l{i}"));
                    symlink(&victim.path, &link).unwrap();
                    (dir, link)
                })
                .collect();
            let stop = Arc::new(AtomicBool::new(false));
            let swapper = {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        for (dir, link) in &pairs {
                            let _ = rustix::fs::renameat_with(
                                rustix::fs::CWD,
                                dir,
                                rustix::fs::CWD,
                                link,
                                RenameFlags::EXCHANGE,
                            );
                        }
                    }
                })
            };
            let handle = open(top.path());
            // While the swapper runs, a removal may fail (an entry keeps changing); the next
            // one, like the start-up sweep, finishes the job.
            let during = remove_contents(handle.as_fd());
            stop.store(true, Ordering::Relaxed);
            swapper.join().unwrap();
            if during.is_err() {
                remove_contents(handle.as_fd()).unwrap();
            }
            assert_eq!(entries(top.path()), Vec::<String>::new());
            victim.assert_untouched();
        }
    }

    #[test]
    fn a_top_that_is_not_a_directory_is_refused() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let handle = rustix::fs::open(file.path(), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        let error = remove_contents(handle.as_fd()).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(Errno::NOTDIR.raw_os_error()));
    }
}
