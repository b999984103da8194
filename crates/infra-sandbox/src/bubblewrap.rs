//! The sandbox: bubblewrap (`bwrap`) with resource limits, run as an unprivileged user.
//!
//! # What one run looks like
//!
//! ```text
//! setpriv [--reuid 65534 --regid 65534 --clear-groups] --pdeathsig KILL --
//!   bwrap --unshare-user --unshare-pid --unshare-net --unshare-ipc --unshare-uts
//!         --unshare-cgroup-try --disable-userns --die-with-parent --new-session
//!         --uid 65534 --gid 65534 --hostname sandbox --clearenv --setenv PATH /usr/bin:/bin ...
//!         --ro-bind /usr /usr  (and /bin, /lib*, /sbin: read-only binds or the same symlinks)
//!         --ro-bind /etc/ld.so.cache ... (a few files of /etc an interpreter needs)
//!         --as-pid-1 --ro-bind <run>/etc/passwd /etc/passwd --proc /proc --dev /dev
//!         --bind <run>/work /work --remount-ro /dev --remount-ro / --chdir /work --
//!     prlimit --cpu=C:C+1 --as=M --nproc=P --fsize=F --core=0 --
//!       sh -c '"$@"; exit $?' sandbox-init <program> <args>
//! ```
//!
//! # The walls, and why they are built this way
//!
//! * **Network**: a new network namespace has only its own loopback; the host's sockets,
//!   loopback services included, cannot be reached.
//! * **Files**: the root is an empty tmpfs holding only read-only binds of the system
//!   (`/usr`, `/bin`, `/sbin`, `/lib*`), a few files of `/etc` (dynamic linker cache,
//!   alternatives, time zone), a generated `passwd`/`group`, a fresh `/proc` of the sandbox's
//!   own pid namespace and a minimal `/dev`. The host's `/root`, `/home`, `/tmp`, `/var`,
//!   `/work`, `/etc` and `/proc` are not there at all. The root and `/dev` are remounted
//!   read-only last (bubblewrap makes them writable to the sandbox user otherwise), so the work
//!   dir is the one writable place. There is no `/tmp`: programs fall back to the work dir.
//! * **Identity**: uid/gid 65534 inside, no capabilities, no further user namespaces
//!   (`--disable-userns`), a new session (no terminal to inject into). Environment cleared to
//!   `PATH=/usr/bin:/bin`, `HOME=/work`, `LANG=C.UTF-8` (and `PWD=/work`, which bwrap sets)
//!   plus the run's own variables.
//! * **Limits**: set by `prlimit` inside the sandbox, after the user namespace exists, with
//!   hard values equal to the soft ones, so the program cannot raise them.
//! * **Process count, and why the sandbox runs as a non-root host user.** `RLIMIT_NPROC` is
//!   not enforced for processes whose host uid is 0: the kernel exempts `INIT_USER` whatever
//!   namespace they are in. Verified on this project's machine: as root, 500 forks succeed
//!   under `--nproc=64`; as uid 65534, the 63rd fails. So when the orchestrator runs as root,
//!   `setpriv` drops to uid/gid 65534 (`nobody`) before `bwrap`, which then needs unprivileged
//!   user namespaces (Debian and most distributions allow them; the probe checks). The limit is
//!   set inside the new user namespace, where the kernel counts per namespace, so concurrent
//!   runs (all host uid 65534) do not share one budget. Alternatives considered: a `pids`
//!   cgroup works as root but needs a writable cgroup tree (v1 here, v2 elsewhere, read-only in
//!   many containers) and a helper to enter it before `exec`; running `bwrap` as root with
//!   `--uid 65534` leaves the host uid 0 and the fork bomb unbounded. An orchestrator that
//!   does not run as root needs no `setpriv` uid change; its own uid is the sandbox's.
//! * **Kill**: the whole tree is one pid namespace, whose init (pid 1) is a shell that runs the
//!   program as its child and exits with its status. When a pid namespace's init dies the
//!   kernel kills every process in it, detached (`setsid`) grandchildren included, and lets the
//!   init be reaped only once they are all gone; the outer `bwrap` waits for exactly that
//!   (`--as-pid-1`: without it bwrap's own init outlives the program and the outer `bwrap`
//!   reports the program's exit before the namespace is gone). So a run that ends by itself
//!   ends with nothing left. To stop a run (wall timeout, output cap, dropped future) the runner
//!   kills the outer `bwrap`; the init dies with it (`--die-with-parent`) and the namespace with
//!   the init; the runner notes the init beforehand and waits until it is gone. A dropped
//!   future gets the same: the run is watched by a task of its own, which sees the drop and
//!   kills and waits as at the wall timeout. The outer `bwrap` dies with the orchestrator
//!   (`setpriv --pdeathsig KILL`; the kernel sends it when the *thread* that spawned the run
//!   ends, which for a tokio worker is the runtime's end). Killing the process group as well
//!   would add nothing (the outer `bwrap` is the only process of the run outside the
//!   namespace).
//! * **Clean-up**: the run dir is removed only after that wait, so no process of the run can
//!   still be reshaping it, and without following a symbolic link or changing a mode by path,
//!   so what the program left there (links to host directories, unreadable directories)
//!   cannot steer the removal outside it. A run dir whose sandbox could not be confirmed gone
//!   is left, logged, for [`sweep_leftover_work_dirs`](crate::sweep_leftover_work_dirs) at the
//!   next start-up.
//!
//! # What it does not bound
//!
//! Memory and CPU limits are per process (a cgroup would bound their sum); the work dir lives
//! on the host's temp file system, so the total written there is bounded only by the file-size
//! limit times the files a run manages to create before its wall timeout. No seccomp filter is
//! installed. The kernel itself is shared, as with every container.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::Command;
use tracing::{debug, info};

use crate::error::{SandboxError, SandboxUnavailable};
use crate::limits::SandboxLimits;
use crate::spec::{RunOutput, RunSpec};
use crate::supervision::{StatusConvention, Teardown, captured, supervise};
use crate::work_dir::RunDir;

/// Where the work dir is, inside the sandbox; also the program's working directory and `HOME`.
pub const WORK_DIR: &str = "/work";

/// The sandbox user, inside, and on the host when the orchestrator runs as root (`nobody`).
pub(crate) const SANDBOX_ID: u32 = 65534;
const SANDBOX_PATH: &str = "/usr/bin:/bin";
/// Top-level system directories; each is bound read-only, or re-created as the same symlink
/// (on merged-/usr systems `/bin` is `usr/bin`).
const SYSTEM_DIRS: [&str; 7] = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];
/// What an interpreter wants from `/etc`, and nothing else of it.
const ETC_FILES: [&str; 5] =
    ["/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/localtime"];
/// The sandbox's init (pid 1): runs the program as its child and exits with its status (128 + n
/// for signal n), reaping orphans meanwhile. Not `exec`: the program must not be pid 1, which
/// the kernel shields from signals the program should die of (`SIGXCPU`, `SIGXFSZ`).
const INIT_SCRIPT: &str = "\"$@\"; exit $?";
/// A probe that takes longer than this counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A working bubblewrap sandbox on this machine, with the limits it enforces. Made by
/// [`Sandbox::detect`], which has run a probe through it; see the [module docs](self) for the
/// walls.
#[derive(Debug, Clone)]
pub struct Sandbox {
    limits: SandboxLimits,
    bwrap: PathBuf,
    setpriv: PathBuf,
    /// Under one of the system directories, so the same path works inside.
    prlimit: PathBuf,
    /// `sh`, the sandbox's init; under a system directory like `prlimit`.
    shell: PathBuf,
    /// `Some(65534)` when we are root and drop to `nobody` on the host first.
    host_uid: Option<u32>,
    system: Vec<Mount>,
}

/// One piece of the read-only system.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mount {
    ReadOnly(PathBuf),
    Symlink { target: PathBuf, path: PathBuf },
}

impl Sandbox {
    /// Finds `bwrap`, `setpriv` and `prlimit`, then really runs `true` inside a sandbox built
    /// exactly as for [`run`](Self::run), and keeps the result. Blocks for that one probe
    /// (typically tens of milliseconds); call it at start-up.
    ///
    /// # Errors
    /// A [`SandboxUnavailable`] saying why there is no sandbox here: invalid limits, `bwrap`
    /// or a util-linux helper missing, user namespaces refused, or the probe failing.
    pub fn detect(limits: SandboxLimits) -> Result<Self, SandboxUnavailable> {
        limits.validate()?;
        let bwrap = find_program("bwrap").ok_or(SandboxUnavailable::BwrapMissing)?;
        let setpriv = find_program("setpriv").ok_or(SandboxUnavailable::ToolMissing { tool: "setpriv" })?;
        let prlimit = find_program("prlimit")
            .filter(|path| SYSTEM_DIRS.iter().any(|dir| path.starts_with(dir)))
            .ok_or(SandboxUnavailable::ToolMissing { tool: "prlimit" })?;
        let shell = find_in("sh", SANDBOX_PATH).ok_or(SandboxUnavailable::ToolMissing { tool: "sh" })?;
        if std::fs::read_to_string("/proc/sys/user/max_user_namespaces").is_ok_and(|max| max.trim() == "0") {
            return Err(SandboxUnavailable::UserNamespacesRefused {
                detail: "/proc/sys/user/max_user_namespaces is 0".to_owned(),
            });
        }
        let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).map_err(|error| {
            SandboxUnavailable::ProbeFailed {
                detail: format!("cannot tell the current user from /proc: {error}"),
            }
        })?;
        let sandbox = Self {
            limits,
            bwrap,
            setpriv,
            prlimit,
            shell,
            host_uid: (uid == 0).then_some(SANDBOX_ID),
            system: system_mounts(),
        };
        sandbox.probe()?;
        info!(bwrap = %sandbox.bwrap.display(), host_uid = sandbox.host_uid.unwrap_or(uid), "sandbox available");
        Ok(sandbox)
    }

    /// The limits every run gets.
    pub fn limits(&self) -> &SandboxLimits {
        &self.limits
    }

    /// Runs `spec.program` in a fresh sandbox: the files in a new work dir at [`WORK_DIR`],
    /// the walls and limits of the [module docs](self). Returns when every process of the run
    /// is gone; the work dir is deleted by then. Dropping the future kills the run all the same:
    /// its process tree is killed and awaited, then its work dir deleted, in the background.
    ///
    /// # Errors
    /// A [`SandboxError`] when the run could not be carried out (a malformed spec, a program
    /// that is not in the sandbox, no work dir, no start). Whatever the program does, including
    /// failing, is a [`RunOutput`].
    pub async fn run(&self, mut spec: RunSpec) -> Result<RunOutput, SandboxError> {
        spec.validate()?;
        if !spec.program.contains('/') && !spec.sets_path() && find_in(&spec.program, SANDBOX_PATH).is_none()
        {
            return Err(SandboxError::ProgramNotFound { program: spec.program });
        }
        let started = Instant::now();
        let run_dir = RunDir::prepare(self.host_uid, std::mem::take(&mut spec.files)).await?;
        let argv = self.command_line(&run_dir, &spec);
        let mut command = Command::new(&argv[0]);
        command.args(&argv[1..]).env_clear().current_dir("/");
        let child = match captured(&mut command).spawn() {
            Ok(child) => child,
            Err(source) => {
                run_dir.remove().await;
                return Err(SandboxError::Spawn { program: self.setpriv.display().to_string(), source });
            }
        };
        let finished = supervise(child, run_dir, &self.limits, Teardown::PidNamespace).await;
        let output = finished?.into_output(StatusConvention::Bwrap, started.elapsed());
        debug!(program = spec.program, termination = ?output.termination, exit_code = ?output.exit_code,
            duration_ms = output.duration.as_millis(), "sandboxed run finished");
        Ok(output)
    }

    /// The whole command line, `setpriv` first (see the module docs).
    fn command_line(&self, run_dir: &RunDir, spec: &RunSpec) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec![self.setpriv.clone().into()];
        let mut push = |args: &[&str]| argv.extend(args.iter().map(OsString::from));
        if let Some(uid) = self.host_uid {
            let id = uid.to_string();
            push(&["--reuid", &id, "--regid", &id, "--clear-groups"]);
        }
        push(&["--pdeathsig", "KILL", "--"]);
        argv.push(self.bwrap.clone().into());
        let id = SANDBOX_ID.to_string();
        let mut push = |args: &[&str]| argv.extend(args.iter().map(OsString::from));
        push(&[
            "--unshare-user",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--as-pid-1",
            "--uid",
            &id,
            "--gid",
            &id,
            "--hostname",
            "sandbox",
            "--clearenv",
            "--setenv",
            "PATH",
            SANDBOX_PATH,
            "--setenv",
            "HOME",
            WORK_DIR,
            "--setenv",
            "LANG",
            "C.UTF-8",
        ]);
        for (key, value) in &spec.env {
            push(&["--setenv", key.as_str(), value.as_str()]);
        }
        for mount in &self.system {
            match mount {
                Mount::ReadOnly(path) => {
                    argv.extend(["--ro-bind".into(), path.clone().into(), path.clone().into()]);
                }
                Mount::Symlink { target, path } => {
                    argv.extend(["--symlink".into(), target.clone().into(), path.clone().into()]);
                }
            }
        }
        for (host, inside) in run_dir.etc_files() {
            argv.extend(["--ro-bind".into(), host.into(), inside.into()]);
        }
        argv.extend(["--proc", "/proc", "--dev", "/dev", "--bind"].map(OsString::from));
        argv.extend([run_dir.work().into(), WORK_DIR.into()]);
        let limits = &self.limits;
        let cpu = limits.cpu_seconds();
        argv.extend(
            ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", WORK_DIR, "--"].map(OsString::from),
        );
        argv.push(self.prlimit.clone().into());
        argv.extend(
            [
                format!("--cpu={cpu}:{}", cpu + 1),
                format!("--as={}", limits.memory_bytes),
                format!("--nproc={}", limits.max_processes),
                format!("--fsize={}", limits.max_file_bytes),
                "--core=0".to_owned(),
                "--".to_owned(),
            ]
            .map(OsString::from),
        );
        argv.push(self.shell.clone().into());
        argv.extend(["-c", INIT_SCRIPT, "sandbox-init", &spec.program].map(OsString::from));
        argv.extend(spec.args_in(WORK_DIR).into_iter().map(OsString::from));
        argv
    }

    /// Runs `true` the way [`run`](Self::run) runs a program, synchronously.
    fn probe(&self) -> Result<(), SandboxUnavailable> {
        let failed = |detail: String| SandboxUnavailable::ProbeFailed { detail };
        let mut run_dir = RunDir::create(self.host_uid, &[])
            .map_err(|e| failed(format!("cannot prepare a work dir: {e}")))?;
        let argv = self.command_line(&run_dir, &RunSpec { program: "true".to_owned(), ..RunSpec::default() });
        let mut child = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed(format!("cannot start {}: {e}", self.setpriv.display())))?;
        // From here on the dir is removed only once bwrap (and with it the sandbox) has ended;
        // otherwise it is left to the start-up sweep.
        run_dir.mark_in_use();
        let deadline = Instant::now() + PROBE_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(failed(format!("no answer within {}s", PROBE_TIMEOUT.as_secs())));
                }
                Err(e) => return Err(failed(format!("cannot wait for the probe: {e}"))),
            }
        };
        run_dir.remove_now();
        if status.success() {
            return Ok(());
        }
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        Err(classify_probe_failure(status, &stderr))
    }
}

/// Names what went wrong from bwrap's words, the user namespace case apart because its fix is
/// a system setting.
fn classify_probe_failure(status: ExitStatus, stderr: &str) -> SandboxUnavailable {
    let detail = stderr.lines().find(|line| !line.trim().is_empty()).unwrap_or("").trim();
    let detail: String = if detail.is_empty() {
        format!("bwrap ended with {status}")
    } else {
        detail.chars().take(300).collect()
    };
    let lower = detail.to_lowercase();
    if lower.contains("namespace") || lower.contains("uid map") || lower.contains("uid_map") {
        SandboxUnavailable::UserNamespacesRefused { detail }
    } else {
        SandboxUnavailable::ProbeFailed { detail }
    }
}

/// The read-only system as this machine lays it out.
fn system_mounts() -> Vec<Mount> {
    let mut mounts = Vec::new();
    for dir in SYSTEM_DIRS {
        let path = PathBuf::from(dir);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                if let Ok(target) = std::fs::read_link(&path) {
                    mounts.push(Mount::Symlink { target, path });
                }
            }
            Ok(meta) if meta.is_dir() => mounts.push(Mount::ReadOnly(path)),
            _ => {}
        }
    }
    mounts.extend(ETC_FILES.iter().map(PathBuf::from).filter(|p| p.exists()).map(Mount::ReadOnly));
    mounts
}

/// `name` in our `PATH`, or in the usual system directories.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    find_in(name, &format!("{path}:/usr/bin:/bin:/usr/sbin:/sbin"))
}

fn find_in(name: &str, search_path: &str) -> Option<PathBuf> {
    search_path
        .split(':')
        .filter(|dir| Path::new(dir).is_absolute())
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| {
            std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    fn sandbox(host_uid: Option<u32>) -> Sandbox {
        Sandbox {
            limits: SandboxLimits::default(),
            bwrap: "/usr/bin/bwrap".into(),
            setpriv: "/usr/bin/setpriv".into(),
            prlimit: "/usr/bin/prlimit".into(),
            shell: "/usr/bin/sh".into(),
            host_uid,
            system: vec![
                Mount::ReadOnly("/usr".into()),
                Mount::Symlink { target: "usr/bin".into(), path: "/bin".into() },
            ],
        }
    }

    fn command_line(host_uid: Option<u32>) -> Vec<String> {
        let run_dir = RunDir::create(None, &[]).unwrap();
        let spec = RunSpec {
            program: "python3".into(),
            args: vec!["{workdir}/main.py".into()],
            env: vec![("EXTRA".into(), "1".into())],
            ..RunSpec::default()
        };
        sandbox(host_uid)
            .command_line(&run_dir, &spec)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    fn position(argv: &[String], window: &[&str]) -> Option<usize> {
        argv.windows(window.len()).position(|w| w == window)
    }

    #[test]
    fn as_root_the_run_drops_to_nobody_on_the_host_first() {
        let argv = command_line(Some(65534));
        assert_eq!(argv[..6], ["/usr/bin/setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]);
        let argv = command_line(None);
        assert_eq!(argv[..4], ["/usr/bin/setpriv", "--pdeathsig", "KILL", "--"]);
    }

    #[test]
    fn every_namespace_is_new_and_the_user_is_nobody() {
        let argv = command_line(None);
        for flag in ["--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"] {
            assert!(argv.iter().any(|a| a == flag), "{flag} missing");
        }
        assert!(position(&argv, &["--uid", "65534", "--gid", "65534"]).is_some());
        assert!(position(&argv, &["--die-with-parent", "--new-session"]).is_some());
    }

    #[test]
    fn only_the_system_the_run_dir_and_fresh_proc_and_dev_are_mounted() {
        let argv = command_line(None);
        let sources: Vec<&str> = argv
            .windows(3)
            .filter(|w| matches!(w[0].as_str(), "--bind" | "--ro-bind" | "--dev-bind"))
            .map(|w| w[1].as_str())
            .collect();
        assert_eq!(sources[0], "/usr");
        for source in &sources[1..] {
            assert!(source.contains("orchestrator-sandbox-"), "unexpected host path {source}");
        }
        let writable: Vec<&[String]> = argv.windows(3).filter(|w| w[0] == "--bind").collect();
        assert_eq!(writable.len(), 1);
        assert_eq!(writable[0][2], "/work");
        assert!(position(&argv, &["--proc", "/proc", "--dev", "/dev"]).is_some());
        let remount_root = position(&argv, &["--remount-ro", "/"]).unwrap();
        assert!(position(&argv, &["--bind"]).unwrap() < remount_root, "the root is sealed after the binds");
    }

    #[test]
    fn the_environment_is_cleared_then_set() {
        let argv = command_line(None);
        let clear = position(&argv, &["--clearenv"]).unwrap();
        assert!(position(&argv, &["--setenv", "PATH", "/usr/bin:/bin"]).unwrap() > clear);
        assert!(position(&argv, &["--setenv", "HOME", "/work"]).unwrap() > clear);
        assert!(position(&argv, &["--setenv", "EXTRA", "1"]).unwrap() > clear);
    }

    #[test]
    fn the_program_runs_under_prlimit_and_a_shell_init_with_the_work_dir_path_inside() {
        let argv = command_line(None);
        let tail = &argv[position(&argv, &["/usr/bin/prlimit"]).unwrap()..];
        assert_eq!(
            tail,
            [
                "/usr/bin/prlimit",
                "--cpu=10:11",
                "--as=536870912",
                "--nproc=64",
                "--fsize=16777216",
                "--core=0",
                "--",
                "/usr/bin/sh",
                "-c",
                "\"$@\"; exit $?",
                "sandbox-init",
                "python3",
                "/work/main.py"
            ]
        );
    }

    #[test]
    fn a_refused_user_namespace_is_named_as_such() {
        let failed = ExitStatus::from_raw(1 << 8);
        let refused = classify_probe_failure(failed, "bwrap: setting up uid map: Permission denied\n");
        assert!(matches!(refused, SandboxUnavailable::UserNamespacesRefused { .. }), "{refused:?}");
        let refused = classify_probe_failure(failed, "bwrap: No permissions to create new namespace");
        assert!(matches!(refused, SandboxUnavailable::UserNamespacesRefused { .. }), "{refused:?}");
        let other = classify_probe_failure(failed, "bwrap: Unknown option --disable-userns");
        assert_eq!(
            other.to_string(),
            "the probe run in the sandbox failed: bwrap: Unknown option --disable-userns"
        );
        assert_eq!(
            classify_probe_failure(failed, "").to_string(),
            "the probe run in the sandbox failed: bwrap ended with exit status: 1"
        );
    }

    #[test]
    fn programs_are_found_only_where_the_search_path_says() {
        assert_eq!(find_in("sh", "/usr/bin:/bin"), Some(PathBuf::from("/usr/bin/sh")));
        assert_eq!(find_in("no-such-program-4711", "/usr/bin:/bin"), None);
        assert_eq!(find_in("sh", "relative/dir"), None);
    }
}
