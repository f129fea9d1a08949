//! libtorch runtime: device selection and a one-line description of what libtorch offers here.

use tch::Device;

/// Device requested on the command line (`--device auto|cpu|cuda:N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// CUDA device 0 when libtorch sees one, else the CPU.
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

/// A short description of the libtorch runtime, for start-up logs.
pub fn describe() -> String {
    format!(
        "libtorch: {} CPU thread(s), CUDA {}",
        tch::get_num_threads(),
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
