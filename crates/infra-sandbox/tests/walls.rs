//! Each wall of the sandbox, tried from inside against the real bubblewrap of this machine.
//! Without bubblewrap these tests say SKIPPED and pass, except in CI (`CI=true`), where they fail.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use orchestrator_infra_sandbox::{RunOutput, RunSpec, Sandbox, SandboxError, SandboxLimits, Termination};
use support::sandbox_with;
use tokio::net::TcpListener;

fn sandbox() -> Option<Sandbox> {
    sandbox_with(SandboxLimits::default())
}

/// `python3 main.py args...` with `code` as `main.py`.
fn python(code: &str, args: &[&str]) -> RunSpec {
    RunSpec {
        program: "python3".into(),
        args: std::iter::once("main.py").chain(args.iter().copied()).map(String::from).collect(),
        files: vec![("main.py".into(), code.as_bytes().to_vec())],
        env: vec![],
    }
}

fn sh(script: &str) -> RunSpec {
    RunSpec { program: "sh".into(), args: vec!["-c".into(), script.into()], ..RunSpec::default() }
}

fn stdout(output: &RunOutput) -> String {
    output.stdout.text().into_owned()
}

/// An argument no other process on the machine has: a `sleep` duration of 1000.<unique digits>
/// seconds, so a sandboxed `sleep` can be found on the host through `/proc/*/cmdline`.
fn marker() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!("1000.{}{nanos:09}", std::process::id())
}

/// The host's processes that have `marker` as one of their arguments.
fn processes_with_arg(marker: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.split(|b| *b == 0).any(|arg| arg == marker.as_bytes()))
        })
        .collect()
}

/// The run dir (`<tmp>/orchestrator-sandbox-*`) whose work dir holds a file named `name`: how
/// a test finds its run's dir on the host, which the program inside cannot see.
fn run_dir_with(name: &str) -> Option<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .ok()?
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("orchestrator-sandbox-"))
        .map(|entry| entry.path())
        .find(|dir| dir.join("work").join(name).symlink_metadata().is_ok())
}

/// Waits (bounded) for a condition on processes the test cannot wait on directly: they are not
/// its children, and the kernel offers no event for their end.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test]
async fn a_python_script_runs_and_its_stdout_comes_back() {
    let Some(sandbox) = sandbox() else { return };
    let mut spec = python(
        "import os, sys\nsys.path.insert(0, 'lib')\nimport helper\nprint(helper.greet(), os.getcwd())\n",
        &[],
    );
    spec.files.push(("lib/helper.py".into(), b"def greet():\n    return 'hello from'\n".to_vec()));
    let output = sandbox.run(spec).await.unwrap();
    assert!(output.success(), "{output:?}");
    assert_eq!(stdout(&output), "hello from /work\n");
    assert!(!output.stdout.truncated);
    assert_eq!(output.stderr.text(), "");
}

#[tokio::test]
async fn the_network_is_unreachable_even_on_host_loopback() {
    let Some(sandbox) = sandbox() else { return };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let code = "import socket, sys\n\
                for host, port in [('127.0.0.1', int(sys.argv[1])), ('1.1.1.1', 53)]:\n\
                \x20   try:\n\
                \x20       socket.create_connection((host, port), timeout=5)\n\
                \x20       print('connected', host)\n\
                \x20   except OSError as e:\n\
                \x20       print('blocked', host, type(e).__name__)\n";
    let output = sandbox.run(python(code, &[&address.port().to_string()])).await.unwrap();
    let out = stdout(&output);
    assert!(out.contains("blocked 127.0.0.1 ConnectionRefusedError"), "{out}");
    assert!(out.contains("blocked 1.1.1.1"), "{out}");
    assert!(!out.contains("connected"), "{out}");
    // Nothing reached the listener, which does accept connections from the host.
    let listener = listener.into_std().unwrap();
    assert_eq!(listener.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
    let _client = std::net::TcpStream::connect(address).unwrap();
    assert!(listener.accept().is_ok(), "the listener works from the host");
}

#[tokio::test]
async fn writing_outside_the_work_dir_fails() {
    let Some(sandbox) = sandbox() else { return };
    // A host directory anyone may write to: permissions are not what stops the program.
    let host_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(host_dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let host_target = host_dir.path().join("x");
    let targets = ["/tmp/x", "/etc/x", "/x", "/usr/x", "/dev/x", "/dev/shm/x", "/proc/x"];
    let code = "import sys\n\
                for path in sys.argv[1:]:\n\
                \x20   try:\n\
                \x20       with open(path, 'w') as f:\n\
                \x20           f.write('escaped')\n\
                \x20       print('WROTE', path)\n\
                \x20   except OSError as e:\n\
                \x20       print('denied', path)\n";
    let mut args: Vec<&str> = targets.to_vec();
    let host_target_text = host_target.to_str().unwrap();
    args.extend([host_target_text, "/work/inside"]);
    let output = sandbox.run(python(code, &args)).await.unwrap();
    let out = stdout(&output);
    for target in targets.iter().chain([&host_target_text]) {
        assert!(out.contains(&format!("denied {target}\n")), "{target}: {out}");
    }
    assert!(out.contains("WROTE /work/inside\n"), "the work dir is writable: {out}");
    assert_eq!(out.matches("WROTE").count(), 1, "{out}");
    assert!(!host_target.exists());
    assert!(!PathBuf::from("/etc/x").exists());
}

#[tokio::test]
async fn reading_a_host_file_fails() {
    let Some(sandbox) = sandbox() else { return };
    // Stand-ins for the orchestrator's database: a readable file in a host temp dir, and this
    // crate's own manifest under the project's directory.
    let host_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(host_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret = format!("secret-{}", marker());
    let database = host_dir.path().join("orchestrator.db");
    std::fs::write(&database, &secret).unwrap();
    std::fs::set_permissions(&database, std::fs::Permissions::from_mode(0o644)).unwrap();
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    assert!(std::fs::read_to_string(manifest).unwrap().contains("orchestrator-infra-sandbox"));
    let code = "import sys\n\
                for path in sys.argv[1:]:\n\
                \x20   try:\n\
                \x20       print('READ', path, open(path).read())\n\
                \x20   except OSError as e:\n\
                \x20       print('denied', path, type(e).__name__)\n";
    let paths = [database.to_str().unwrap(), manifest, "/root/.bashrc", "/etc/shadow", "/etc/hostname"];
    let output = sandbox.run(python(code, &paths)).await.unwrap();
    let out = stdout(&output);
    assert!(!out.contains("READ"), "{out}");
    assert!(!out.contains(&secret), "{out}");
    assert!(!out.contains("orchestrator-infra-sandbox"), "{out}");
    for path in paths {
        assert!(out.contains(&format!("denied {path} FileNotFoundError")), "{path}: {out}");
    }
}

#[tokio::test]
async fn the_environment_holds_only_path_home_lang_pwd_and_the_runs_own_variables() {
    let Some(sandbox) = sandbox() else { return };
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some(), "the test process has variables to hide");
    let mut spec = python("import os\nfor k, v in sorted(os.environ.items()):\n    print(f'{k}={v}')\n", &[]);
    spec.env.push(("GREETING".into(), "hi".into()));
    let output = sandbox.run(spec).await.unwrap();
    let out = stdout(&output);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["GREETING=hi", "HOME=/work", "LANG=C.UTF-8", "PATH=/usr/bin:/bin", "PWD=/work"]
    );
    assert!(!out.contains("HOSTNAME"));
}

#[tokio::test]
async fn the_program_runs_as_nobody_without_capabilities() {
    let Some(sandbox) = sandbox() else { return };
    let code = "import os\n\
                print(os.getuid(), os.geteuid(), os.getgid(), os.getegid())\n\
                print([l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1])\n\
                try:\n\
                \x20   os.setuid(0)\n\
                \x20   print('became root')\n\
                except OSError as e:\n\
                \x20   print('setuid refused', type(e).__name__)\n";
    let output = sandbox.run(python(code, &[])).await.unwrap();
    // Uid 0 does not even exist in the sandbox's user namespace: EINVAL, not EPERM.
    assert_eq!(stdout(&output), "65534 65534 65534 65534\n0000000000000000\nsetuid refused OSError\n");
}

#[tokio::test]
async fn a_fork_bomb_is_held_to_the_process_limit_and_the_run_ends() {
    let limits = SandboxLimits { max_processes: 16, ..SandboxLimits::default() };
    let Some(sandbox) = sandbox_with(limits) else { return };
    let code = "import os, time\n\
                forks = 0\n\
                try:\n\
                \x20   while True:\n\
                \x20       if os.fork() == 0:\n\
                \x20           time.sleep(1000)\n\
                \x20           os._exit(0)\n\
                \x20       forks += 1\n\
                except OSError as e:\n\
                \x20   print('stopped after', forks, type(e).__name__)\n";
    let output = sandbox.run(python(code, &[])).await.unwrap();
    let out = stdout(&output);
    let forks: u32 = out.strip_prefix("stopped after ").unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(forks < 16, "{out}");
    assert!(out.ends_with("BlockingIOError\n"), "{out}");
    // The sleeping children did not keep the run alive.
    assert_eq!(output.termination, Termination::Exited, "{output:?}");
}

#[tokio::test]
async fn a_4_gb_allocation_fails() {
    let Some(sandbox) = sandbox() else { return };
    let code = "small = bytearray(64 * 1024 ** 2)\n\
                print('64 MiB ok')\n\
                try:\n\
                \x20   big = bytearray(4 * 1024 ** 3)\n\
                \x20   print('allocated 4 GiB')\n\
                except MemoryError:\n\
                \x20   print('MemoryError')\n";
    let output = sandbox.run(python(code, &[])).await.unwrap();
    assert_eq!(stdout(&output), "64 MiB ok\nMemoryError\n", "{output:?}");
}

#[tokio::test]
async fn an_endless_loop_is_stopped_at_the_cpu_limit() {
    let limits = SandboxLimits { cpu_time: Duration::from_secs(1), ..SandboxLimits::default() };
    let Some(sandbox) = sandbox_with(limits) else { return };
    let output = sandbox.run(python("while True:\n    pass\n", &[])).await.unwrap();
    assert_eq!(output.termination, Termination::CpuLimit, "{output:?}");
    assert_eq!(output.signal, Some(24));
    assert_eq!(output.exit_code, None);
}

#[tokio::test]
async fn a_1_gb_write_is_stopped_at_the_file_size_limit() {
    let Some(sandbox) = sandbox() else { return };
    let code = "written = 0\n\
                try:\n\
                \x20   with open('big', 'wb', buffering=0) as f:\n\
                \x20       for _ in range(1024):\n\
                \x20           written += f.write(b'0' * (1 << 20))\n\
                \x20   print('wrote', written)\n\
                except OSError as e:\n\
                \x20   print('stopped', e.errno, written)\n";
    let output = sandbox.run(python(code, &[])).await.unwrap();
    // Python ignores SIGXFSZ and sees EFBIG (27) at 16 MiB.
    assert_eq!(stdout(&output), format!("stopped 27 {}\n", 16 << 20), "{output:?}");
    // A program that does not ignore it dies of SIGXFSZ.
    let output = sandbox.run(sh("head -c 1073741824 /dev/zero > big")).await.unwrap();
    assert_eq!(output.termination, Termination::FileSizeLimit, "{output:?}");
}

#[tokio::test]
async fn a_detached_grandchild_does_not_outlive_the_run() {
    let Some(sandbox) = sandbox() else { return };
    // The marker scan finds a sleeping process (so the assertion below can fail).
    let control = marker();
    let mut host_sleep =
        tokio::process::Command::new("sleep").arg(&control).kill_on_drop(true).spawn().unwrap();
    eventually("the host sleep is seen", || processes_with_arg(&control).len() == 1).await;
    host_sleep.kill().await.unwrap();

    let detached = marker();
    let script = format!("setsid sleep {detached} </dev/null >/dev/null 2>&1 & echo started");
    let output = sandbox.run(sh(&script)).await.unwrap();
    assert!(output.success(), "{output:?}");
    assert_eq!(stdout(&output), "started\n");
    assert_eq!(processes_with_arg(&detached), Vec::<u32>::new(), "the detached sleep survived");
}

#[tokio::test]
async fn at_the_wall_timeout_the_whole_tree_is_killed() {
    let limits = SandboxLimits { wall_timeout: Duration::from_secs(2), ..SandboxLimits::default() };
    let Some(sandbox) = sandbox_with(limits) else { return };
    let marker = marker();
    let script = format!("setsid sleep {marker} </dev/null >/dev/null 2>&1 & sleep {marker}");
    let output = sandbox.run(sh(&script)).await.unwrap();
    assert_eq!(output.termination, Termination::TimedOut, "{output:?}");
    assert_eq!((output.exit_code, output.signal), (None, None));
    assert_eq!(processes_with_arg(&marker), Vec::<u32>::new(), "a sleep survived the timeout");
}

#[tokio::test]
async fn dropping_a_run_kills_the_whole_tree_then_removes_its_run_dir() {
    let Some(sandbox) = sandbox() else { return };
    let marker = marker();
    let started = format!("started-{marker}");
    let script = format!(": > {started}; setsid sleep {marker} </dev/null >/dev/null 2>&1 & sleep {marker}");
    let run_dir = tokio::select! {
        output = sandbox.run(sh(&script)) => panic!("the run ended by itself: {output:?}"),
        run_dir = async {
            eventually("both sleeps started", || processes_with_arg(&marker).len() == 2).await;
            run_dir_with(&started).unwrap()
        } => run_dir,
    };
    // The run's future is gone; so must its processes be, and then its run dir.
    eventually("both sleeps gone", || processes_with_arg(&marker).is_empty()).await;
    eventually("the run dir removed", || run_dir.symlink_metadata().is_err()).await;
}

#[tokio::test]
async fn output_beyond_the_cap_is_truncated_flagged_and_ends_the_run() {
    let limits = SandboxLimits { max_output_bytes: 1000, ..SandboxLimits::default() };
    let Some(sandbox) = sandbox_with(limits) else { return };
    let output = sandbox.run(RunSpec { program: "yes".into(), ..RunSpec::default() }).await.unwrap();
    assert_eq!(output.termination, Termination::OutputLimit, "{output:?}");
    assert_eq!(output.stdout.bytes.len(), 1000);
    assert!(output.stdout.truncated);
    assert!(output.stdout.text().starts_with("y\ny\n"));
    assert!(!output.stderr.truncated);
}

#[tokio::test]
async fn a_program_missing_from_the_sandbox_is_reported_before_anything_runs() {
    let Some(sandbox) = sandbox() else { return };
    let error = sandbox.run(RunSpec { program: "no-such-program-4711".into(), ..RunSpec::default() }).await;
    assert!(matches!(error, Err(SandboxError::ProgramNotFound { .. })), "{error:?}");
}
