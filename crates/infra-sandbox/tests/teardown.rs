//! The end of a run that is cut short, tried against the real bubblewrap of this machine with
//! a program that fights its own clean-up. Without bubblewrap these tests say SKIPPED and pass,
//! except in CI (`CI=true`), where they fail.
#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use orchestrator_infra_sandbox::{RunSpec, Sandbox, SandboxLimits};

/// The sandbox with the default limits, or `None` (after saying why).
fn sandbox() -> Option<Sandbox> {
    support::sandbox_with(SandboxLimits::default())
}

/// A name no other run on the machine uses.
fn unique(what: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{what}-{}-{nanos:09}", std::process::id())
}

/// The run dir (`<tmp>/orchestrator-sandbox-*`) whose work dir holds a file named `marker`.
/// This is how the test finds its run's dir on the host: the program inside cannot see it.
fn run_dir_with(marker: &str) -> Option<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .ok()?
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("orchestrator-sandbox-"))
        .map(|entry| entry.path())
        .find(|dir| dir.join("work").join(marker).symlink_metadata().is_ok())
}

/// Polls (bounded) until `found` returns something: the test cannot be told of it otherwise.
async fn eventually<T>(what: &str, found: impl Fn() -> Option<T>) -> T {
    for _ in 0..2000 {
        if let Some(value) = found() {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Six forked workers keep exchanging directories of the work dir with symbolic links to
/// `victim` (`renameat2(RENAME_EXCHANGE)`, so at any moment either name may be either), next to
/// a directory made unreadable (`chmod 000`); once every worker is at it, the program creates
/// the marker file named by its second argument and sleeps.
const SWAPPER: &str = r#"
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
renameat2 = libc.renameat2
renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
AT_FDCWD, RENAME_EXCHANGE = -100, 2
victim, marker = sys.argv[1], sys.argv[2]
os.makedirs('locked/inner')
open('locked/inner/file', 'w').close()
os.chmod('locked/inner', 0)
os.chmod('locked', 0)
WORKERS, PAIRS = 6, 8
for w in range(WORKERS):
    if os.fork() == 0:
        pairs = []
        for p in range(PAIRS):
            d, l = f'd{w}-{p}', f'l{w}-{p}'
            os.makedirs(f'{d}/inner/deeper')
            os.symlink(victim, l)
            pairs.append((d.encode(), l.encode()))
        swaps = 0
        while True:
            for d, l in pairs:
                if renameat2(AT_FDCWD, d, AT_FDCWD, l, RENAME_EXCHANGE) != 0:
                    os._exit(1)
            swaps += 1
            if swaps == 100:
                open(f'ready-{w}', 'w').close()
for w in range(WORKERS):
    while not os.path.exists(f'ready-{w}'):
        time.sleep(0.005)
open(marker, 'w').close()
time.sleep(1000)
"#;

/// The security report's drill: a run whose future is dropped while its program swaps
/// directories for symbolic links to a host directory. The clean-up must neither change that
/// directory (nor anything under it) nor leave the run dir behind.
#[tokio::test]
async fn a_dropped_run_whose_program_swaps_dirs_for_symlinks_is_cleaned_up_without_touching_the_host() {
    let Some(sandbox) = sandbox() else { return };
    let mut failures = Vec::new();
    for attempt in 1..=10 {
        let victim = tempfile::tempdir().unwrap();
        let sub = victim.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(victim.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o751)).unwrap();
        let marker = unique("ready");
        let spec = RunSpec {
            program: "python3".into(),
            args: vec!["main.py".into(), victim.path().to_str().unwrap().into(), marker.clone()],
            files: vec![("main.py".into(), SWAPPER.as_bytes().to_vec())],
            env: vec![],
        };
        let run_dir = tokio::select! {
            output = sandbox.run(spec) => panic!("attempt {attempt}: the run ended by itself: {output:?}"),
            dir = eventually("the workers are swapping", || run_dir_with(&marker)) => dir,
        };
        // The run's future is dropped: this is the deadline or the cancel cutting it short.
        let removed = until_gone(&run_dir).await;
        let (top, below) = (mode(victim.path()), mode(&sub));
        if (top, below) != (0o755, 0o751) {
            failures.push(format!(
                "attempt {attempt}: the host dir is now {top:o} (was 755), its subdir {below:o} (was 751)"
            ));
        }
        if !removed {
            failures.push(format!("attempt {attempt}: {} is left behind", run_dir.display()));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Polls (bounded) until `dir` is gone; whether it went.
async fn until_gone(dir: &Path) -> bool {
    for _ in 0..2000 {
        if dir.symlink_metadata().is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}
