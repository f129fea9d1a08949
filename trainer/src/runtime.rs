//! libtorch runtime: device selection, OpenMP's spin-waiting bound for machines that jobs
//! share, and a one-line description of what libtorch offers here.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

use tch::Device;

/// Device requested on the command line (`--device auto|cpu|cuda:N`).
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// CUDA device 0 when libtorch sees one, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device `N`.
    Cuda(usize),
}

/// Error for a device string that is not `auto`, `cpu` or `cuda:N`.
#[derive(Debug, thiserror::Error)]
#[error("unknown device {0:?}: expected auto, cpu or cuda:N")]
pub struct BadDevice(String);

impl std::str::FromStr for DeviceChoice {
    type Err = BadDevice;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| BadDevice(s.to_owned())),
        }
    }
}

/// Error for a CUDA device that libtorch cannot see.
#[derive(Debug, thiserror::Error)]
#[error("cuda:{requested} requested but libtorch sees {available} CUDA device(s)")]
pub struct DeviceUnavailable {
    requested: usize,
    available: usize,
}

impl DeviceChoice {
    /// Resolve to a libtorch device, checking that a requested GPU exists.
    pub fn resolve(self) -> Result<Device, DeviceUnavailable> {
        let available = if tch::Cuda::is_available() {
            tch::Cuda::device_count() as usize
        } else {
            0
        };
        match self {
            DeviceChoice::Auto => Ok(if available > 0 {
                Device::Cuda(0)
            } else {
                Device::Cpu
            }),
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(n) if n < available => Ok(Device::Cuda(n)),
            DeviceChoice::Cuda(requested) => Err(DeviceUnavailable {
                requested,
                available,
            }),
        }
    }
}

/// libgomp's spin count: how many polls an idle OpenMP thread makes before it sleeps.
pub const SPIN_COUNT_VAR: &str = "GOMP_SPINCOUNT";

/// OpenMP's wait policy (`ACTIVE` spins for ever, `PASSIVE` sleeps at once).
pub const WAIT_POLICY_VAR: &str = "OMP_WAIT_POLICY";

/// The spin count the trainer runs with unless told otherwise: libgomp's own "throttled" value.
///
/// libgomp's default (300,000 polls, ≈ a millisecond here) lets a thread that waits at a barrier
/// burn its core while its partner thread is descheduled, so two 2-thread jobs on two cores took
/// 13–21 s per BBBP epoch instead of 6–7 s (docs/benchmarks.md). `OMP_WAIT_POLICY=PASSIVE`
/// fixes that but costs a lone job 10–25 % (its threads sleep between every pair of operators);
/// 1,000 polls keeps a lone job at its default speed and a shared machine near its fair share.
pub const BOUNDED_SPIN_COUNT: &str = "1000";

/// What [`bound_openmp_spinning`] did, when it returns at all.
#[derive(Debug)]
pub enum SpinSetup {
    /// The environment already names a wait policy or spin count (the user's, or ours after
    /// the re-exec): nothing to change.
    AlreadySet,
    /// The program could not be re-executed; it goes on with libgomp's defaults.
    ReexecFailed(std::io::Error),
}

/// Re-executes the current program with [`SPIN_COUNT_VAR`] = [`BOUNDED_SPIN_COUNT`] unless the
/// environment sets [`SPIN_COUNT_VAR`] or [`WAIT_POLICY_VAR`] already.
///
/// libgomp reads both variables once, when libtorch is loaded — before `main` runs — so setting
/// them from inside the process is too late and the only way to change them is to start again:
/// `exec` keeps the process id, the arguments (`arg0` included), open files and signal
/// dispositions. Call it first thing in `main`, before any thread, socket or file is opened.
/// Returns only when nothing had to change or `exec` failed (for example without `/proc`).
pub fn bound_openmp_spinning() -> SpinSetup {
    let env = |name| std::env::var_os(name);
    if env(SPIN_COUNT_VAR).is_some() || env(WAIT_POLICY_VAR).is_some() {
        return SpinSetup::AlreadySet;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return SpinSetup::ReexecFailed(e),
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| OsString::from(&exe));
    let err = std::process::Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .env(SPIN_COUNT_VAR, BOUNDED_SPIN_COUNT)
        .exec();
    SpinSetup::ReexecFailed(err)
}

/// A `--threads` value libtorch cannot take.
#[derive(Debug, thiserror::Error)]
#[error("--threads {0} is too large")]
pub struct TooManyThreads(usize);

/// Sets libtorch's CPU thread count (`0` keeps libtorch's default). Apply it before
/// [`describe`], which reports the count in force.
pub fn apply_threads(threads: usize) -> Result<(), TooManyThreads> {
    if threads > 0 {
        let n = i32::try_from(threads).map_err(|_| TooManyThreads(threads))?;
        tch::set_num_threads(n);
    }
    Ok(())
}

/// The OpenMP settings libgomp read at start-up, as `NAME=value` pairs (`unset` when absent).
fn openmp_settings() -> String {
    [WAIT_POLICY_VAR, SPIN_COUNT_VAR]
        .iter()
        .map(|name| {
            let value = std::env::var(name).unwrap_or_else(|_| "unset".to_owned());
            format!("{name}={value}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A short description of the libtorch runtime, for start-up logs: the thread count in force
/// (after [`apply_threads`]), OpenMP's waiting, CUDA.
pub fn describe() -> String {
    format!(
        "libtorch: {} CPU thread(s) (OpenMP {}), CUDA {}",
        tch::get_num_threads(),
        openmp_settings(),
        if tch::Cuda::is_available() {
            format!("available ({} device(s))", tch::Cuda::device_count())
        } else {
            "not available".to_owned()
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("auto".parse::<DeviceChoice>().unwrap(), DeviceChoice::Auto);
        assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!(
            "cuda:3".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(3)
        );
        assert!("gpu".parse::<DeviceChoice>().is_err());
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn cpu_always_resolves() {
        assert_eq!(DeviceChoice::Cpu.resolve().unwrap(), Device::Cpu);
        // A device index no machine has must be refused with a clear error, not a crash later.
        let err = DeviceChoice::Cuda(10_000).resolve().unwrap_err();
        assert!(err.to_string().contains("cuda:10000"));
    }
}
