//! The exclusive hold of a SQLite file: one server process at a time.
//!
//! Two servers on one SQLite file cannot share its work safely — each would take the other's
//! unfinished deliberations for a dead process's. The first to open the file takes an
//! exclusive lock (`flock`) on `<file>.lock` and keeps it for as long as it runs; a second
//! one is refused before it reads or writes anything, naming the holder's pid. The kernel
//! drops the lock when the holder's process ends, `kill -9` included, so a restart after a
//! crash is never refused — and, holding the lock, knows that nothing it finds unfinished
//! is still run by anyone.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::Fault;

/// How long a held lock is waited for before the database is reported in use. The lock may
/// be on its way out: a server that just stopped released it, but a process it (or another
/// part of the same process) spawned a moment before may not have replaced itself with its
/// program yet, and until it does it shares the lock's open file — milliseconds, longer on a
/// loaded machine.
const LOCK_WAIT: Duration = Duration::from_secs(1);

/// Pause between two tries within [`LOCK_WAIT`].
const LOCK_RETRY: Duration = Duration::from_millis(20);

/// The lock on `<database>.lock`; released when dropped (or when the process ends).
#[derive(Debug)]
pub(crate) struct ExclusiveFile {
    /// Held open: closing it releases the lock.
    _file: File,
    path: PathBuf,
}

impl ExclusiveFile {
    /// Takes the lock for `database` (waiting up to [`LOCK_WAIT`] for it), creating the lock
    /// file (mode 0600) when absent, and writes this process's pid into it for the message a
    /// second server gets. Blocking: call it off the async runtime's workers.
    ///
    /// # Errors
    /// [`Fault::InUse`] when another process holds it; [`Fault::Lock`] when the lock file
    /// cannot be opened or locked.
    pub(crate) fn take(database: &Path) -> Result<Self, Fault> {
        let mut path = database.as_os_str().to_owned();
        path.push(".lock");
        let path = PathBuf::from(path);
        let lock_error = |source| Fault::Lock { path: path.clone(), source };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(lock_error)?;
        let give_up = Instant::now() + LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < give_up => {
                    std::thread::sleep(LOCK_RETRY);
                }
                Err(TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    return Err(Fault::InUse {
                        database: database.to_owned(),
                        holder: holder.trim().parse().ok(),
                    });
                }
                Err(TryLockError::Error(source)) => return Err(lock_error(source)),
            }
        }
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| write!(file, "{}", std::process::id()))
            .map_err(lock_error)?;
        Ok(Self { _file: file, path })
    }

    /// The lock file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_second_hold_is_refused_naming_the_holder_and_granted_once_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("orchestrator.db");
        let first = ExclusiveFile::take(&database).unwrap();
        let refused = ExclusiveFile::take(&database).unwrap_err();
        match &refused {
            Fault::InUse { holder, .. } => assert_eq!(*holder, Some(std::process::id())),
            other => panic!("expected InUse, got {other:?}"),
        }
        assert!(refused.to_string().contains("in use by another orchestrator process"), "{refused}");
        drop(first);
        let second = ExclusiveFile::take(&database).unwrap();
        assert_eq!(second.path(), dir.path().join("orchestrator.db.lock"));
    }

    #[test]
    fn a_lock_released_while_it_is_being_taken_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("orchestrator.db");
        let first = ExclusiveFile::take(&database).unwrap();
        let taking = std::sync::Arc::new(std::sync::Barrier::new(2));
        let releaser = {
            let taking = std::sync::Arc::clone(&taking);
            std::thread::spawn(move || {
                taking.wait();
                drop(first);
            })
        };
        taking.wait();
        let second = ExclusiveFile::take(&database);
        releaser.join().unwrap();
        assert!(second.is_ok(), "{second:?}");
    }
}
