//! How much one run may use.

use std::time::Duration;

use crate::error::InvalidLimit;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// The resources one sandboxed run may use. Every limit but the wall timeout and the output
/// cap is a kernel resource limit (`setrlimit`), set inside the sandbox by `prlimit` with
/// equal soft and hard values (except CPU, see [`cpu_time`](Self::cpu_time)), so the program
/// cannot raise it again.
///
/// The memory, CPU and file limits are per process: with `max_processes` processes the
/// sandbox as a whole can use up to that many times as much. The wall timeout bounds the run
/// as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxLimits {
    /// CPU time of each process (`RLIMIT_CPU`, whole seconds, rounded up). At the limit the
    /// process gets `SIGXCPU` ([`Termination::CpuLimit`](crate::Termination::CpuLimit)); one
    /// that catches it gets `SIGKILL` a second later.
    pub cpu_time: Duration,
    /// Address space of each process (`RLIMIT_AS`): larger allocations fail (Python raises
    /// `MemoryError`).
    pub memory_bytes: u64,
    /// Processes and threads the sandbox user may have at once (`RLIMIT_NPROC`), counting
    /// bubblewrap's init process and the program itself: a fork bomb stops here.
    pub max_processes: u32,
    /// Largest file a process may write (`RLIMIT_FSIZE`): writing past it fails with `EFBIG`
    /// or `SIGXFSZ`.
    pub max_file_bytes: u64,
    /// Bound on the whole run, start-up included; at it the whole process tree is killed
    /// ([`Termination::TimedOut`](crate::Termination::TimedOut)).
    pub wall_timeout: Duration,
    /// Bytes kept of standard output and, separately, of standard error. A program that writes
    /// more is killed ([`Termination::OutputLimit`](crate::Termination::OutputLimit)).
    pub max_output_bytes: usize,
}

impl Default for SandboxLimits {
    /// 10 s CPU, 512 MiB address space, 64 processes, 16 MiB per file, 20 s wall, 64 KiB output.
    fn default() -> Self {
        Self {
            cpu_time: Duration::from_secs(10),
            memory_bytes: 512 * MIB,
            max_processes: 64,
            max_file_bytes: 16 * MIB,
            wall_timeout: Duration::from_secs(20),
            max_output_bytes: 64 * 1024,
        }
    }
}

impl SandboxLimits {
    /// Checks every limit is within a range where the sandbox still works and still protects.
    ///
    /// # Errors
    /// An [`InvalidLimit`] naming the first field at fault (`sandbox.<field>`).
    pub fn validate(&self) -> Result<(), InvalidLimit> {
        let error = |field, reason: &str| Err(InvalidLimit { field, reason: reason.to_owned() });
        let hour = Duration::from_secs(3600);
        if self.cpu_time.is_zero() || self.cpu_time > hour {
            return error("cpu_time", "must be within (0 s, 1 h]");
        }
        if !(16 * MIB..=64 * GIB).contains(&self.memory_bytes) {
            return error("memory_bytes", "must be within 16 MiB..=64 GiB (an interpreter needs some)");
        }
        if !(1..=4096).contains(&self.max_processes) {
            return error("max_processes", "must be within 1..=4096");
        }
        if !(1..=64 * GIB).contains(&self.max_file_bytes) {
            return error("max_file_bytes", "must be within 1 B..=64 GiB");
        }
        if self.wall_timeout.is_zero() || self.wall_timeout > hour {
            return error("wall_timeout", "must be within (0 s, 1 h]");
        }
        if !(1..=64 * MIB as usize).contains(&self.max_output_bytes) {
            return error("max_output_bytes", "must be within 1 B..=64 MiB");
        }
        Ok(())
    }

    /// `RLIMIT_CPU` in whole seconds, rounded up so a sub-second limit still allows a second.
    pub(crate) fn cpu_seconds(&self) -> u64 {
        self.cpu_time.as_secs() + u64::from(self.cpu_time.subsec_nanos() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(SandboxLimits::default().validate(), Ok(()));
    }

    #[test]
    fn each_mistake_names_its_field() {
        let ok = SandboxLimits::default();
        let cases = [
            (SandboxLimits { cpu_time: Duration::ZERO, ..ok }, "sandbox.cpu_time: must be within (0 s, 1 h]"),
            (
                SandboxLimits { memory_bytes: MIB, ..ok },
                "sandbox.memory_bytes: must be within 16 MiB..=64 GiB (an interpreter needs some)",
            ),
            (SandboxLimits { max_processes: 0, ..ok }, "sandbox.max_processes: must be within 1..=4096"),
            (
                SandboxLimits { max_file_bytes: 0, ..ok },
                "sandbox.max_file_bytes: must be within 1 B..=64 GiB",
            ),
            (
                SandboxLimits { wall_timeout: Duration::from_secs(3601), ..ok },
                "sandbox.wall_timeout: must be within (0 s, 1 h]",
            ),
            (
                SandboxLimits { max_output_bytes: 0, ..ok },
                "sandbox.max_output_bytes: must be within 1 B..=64 MiB",
            ),
        ];
        for (bad, message) in cases {
            assert_eq!(bad.validate().unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn cpu_time_rounds_up_to_whole_seconds() {
        let limits = |ms| SandboxLimits { cpu_time: Duration::from_millis(ms), ..SandboxLimits::default() };
        assert_eq!(limits(300).cpu_seconds(), 1);
        assert_eq!(limits(2000).cpu_seconds(), 2);
        assert_eq!(limits(2001).cpu_seconds(), 3);
    }
}
