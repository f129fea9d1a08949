//! Configuration: the TOML file (`/etc/anges/meterd.toml`, or `$XDG_CONFIG_HOME/anges/meterd.toml`
//! with `--user`, or `--config FILE`) merged with the flags; a flag always wins over the file.
//!
//! A missing default file means built-in defaults; a missing file named with `--config` is an
//! error. Unknown keys are errors (a typo must not silently fall back to a default). The format is
//! documented with an example in `docs/meter.md`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use anges_meter_engine::attribution::IdlePolicy;
use anges_meter_engine::carbon::IntensitySource;
use anges_meter_engine::engine::EngineConfig;
use anges_meter_engine::sensors::SensorChoice;
use anges_meter_engine::sensors::detect::GpuSelection;
use anges_meter_engine::sensors::estimate::EstimateModel;

use crate::cli::Cli;
use crate::server::{Bus, ServerConfig};

/// System configuration file.
pub use anges_common::paths::SYSTEM_CONFIG;
/// System state directory (the unit's `StateDirectory=anges`, writable under `ProtectSystem=strict`).
pub const SYSTEM_STATE_DIR: &str = "/var/lib/anges";

/// Default minimum interval between publications, ms.
pub const DEFAULT_PUBLISH_INTERVAL_MS: u64 = 100;

/// Shortest publication interval the system daemon accepts, ms. Faster readings would hand the
/// RAPL power side channel (CVE-2020-8694, "Platypus") back to every user of the socket; a
/// `--user` daemon, which serves only its own user, accepts shorter ones with a warning.
pub const MIN_SYSTEM_PUBLISH_INTERVAL_MS: u64 = 100;

/// Checks a publication interval for the mode: at least 1 ms always, at least
/// [`MIN_SYSTEM_PUBLISH_INTERVAL_MS`] in system mode; below that in `--user` mode, a warning.
pub fn check_publish_interval(ms: u64, user: bool) -> Result<(), ConfigError> {
    if ms == 0 {
        return Err(ConfigError::Invalid(
            "publish_interval_ms must be at least 1".into(),
        ));
    }
    if ms < MIN_SYSTEM_PUBLISH_INTERVAL_MS {
        if !user {
            return Err(ConfigError::Invalid(format!(
                "publish_interval_ms = {ms} is below {MIN_SYSTEM_PUBLISH_INTERVAL_MS} ms, which \
                 the system daemon refuses: faster readings reopen the RAPL power side channel \
                 (CVE-2020-8694) to every user of the socket; raise it, or meter privately with \
                 a --user daemon"
            )));
        }
        tracing::warn!(
            "publish_interval_ms = {ms} is below {MIN_SYSTEM_PUBLISH_INTERVAL_MS} ms: readings \
             this fast expose the RAPL power side channel (CVE-2020-8694); accepted only because \
             this is a --user daemon"
        );
    }
    Ok(())
}

/// `[carbon]` section (in the engine, so that the trainer's in-process meter reads it too).
pub use anges_meter_engine::carbon::CarbonFile;

/// `[limits]` section: bounds of the socket server (defaults in `SocketLimits`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Time from the first to the last byte of a request frame, ms.
    pub frame_timeout_ms: Option<u64>,
    /// Time a connection without subscriptions may stay silent, seconds.
    pub idle_timeout_s: Option<u64>,
}

/// The file's content; every key optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `auto`, `perf`, `powercap` or `estimate`.
    pub sensor: Option<SensorChoice>,
    /// Root of procfs/sysfs.
    pub sysfs_root: Option<PathBuf>,
    /// Energy sampling rate, Hz.
    pub rate_hz: Option<u32>,
    /// Accounting rate, Hz.
    pub attribution_hz: Option<f64>,
    /// Full `/proc` scan interval, ms.
    pub scan_interval_ms: Option<u64>,
    /// `"all"`, `"none"` or `"0,2"`.
    pub gpus: Option<GpuSelection>,
    /// NVML library.
    pub nvml_library: Option<String>,
    /// `busy` or `capacity`.
    pub idle_policy: Option<IdlePolicy>,
    /// State directory.
    pub state_dir: Option<PathBuf>,
    /// Persistence period, seconds.
    pub persist_interval_s: Option<f64>,
    /// Server: socket path.
    pub socket: Option<PathBuf>,
    /// Server: minimum publication interval to clients, ms.
    pub publish_interval_ms: Option<u64>,
    /// Server: Prometheus listen address.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Server: per-job series (every user's job names, uids, ids) on the Prometheus endpoint.
    pub metrics_per_job: Option<bool>,
    /// Server: publish on D-Bus.
    pub dbus: Option<bool>,
    /// Carbon intensity.
    #[serde(default)]
    pub carbon: CarbonFile,
    /// Estimation model.
    pub estimate: Option<EstimateModel>,
    /// Socket server bounds.
    #[serde(default)]
    pub limits: LimitsFile,
}

/// Configuration failures.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable file.
    #[error("cannot read config {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Bad TOML.
    #[error("config {path}: {source}")]
    Toml {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: toml::de::Error,
    },
    /// Inconsistent values.
    #[error("config: {0}")]
    Invalid(String),
}

/// The daemon's merged configuration: the engine's part and the servers' part.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// Engine configuration.
    pub engine: EngineConfig,
    /// Socket path (`None`: the servers' default for the mode).
    pub socket: Option<PathBuf>,
    /// Minimum publication interval to unprivileged clients, ms.
    pub publish_interval_ms: u64,
    /// Prometheus listen address.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Per-job series on the Prometheus endpoint (off by default: anyone reaching the port sees
    /// them).
    pub metrics_per_job: bool,
    /// Publish on D-Bus.
    pub dbus: bool,
    /// Which file was read, if any.
    pub config_file: Option<PathBuf>,
    /// Unprivileged developer mode (`--user`).
    pub user: bool,
    /// Socket server bounds from `[limits]`.
    pub limits: LimitsFile,
}

/// The default config path for the mode.
pub fn default_config_path(user: bool) -> PathBuf {
    if user {
        anges_common::paths::user_config(
            &dirs::config_dir().unwrap_or_else(|| PathBuf::from(".config")),
        )
    } else {
        PathBuf::from(SYSTEM_CONFIG)
    }
}

/// The default state directory for the mode (`$XDG_STATE_HOME/anges` with `--user`).
pub fn default_state_dir(user: bool) -> PathBuf {
    if user {
        dirs::state_dir()
            .or_else(|| dirs::home_dir().map(|h| h.join(".local/state")))
            .unwrap_or_else(|| PathBuf::from(".local/state"))
            .join("anges")
    } else {
        PathBuf::from(SYSTEM_STATE_DIR)
    }
}

/// Reads a config file. `required`: a missing file is an error rather than defaults.
pub fn read_file(path: &Path, required: bool) -> Result<Option<FileConfig>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
        Err(source) => {
            return Err(ConfigError::Io {
                path: path.into(),
                source,
            });
        }
    };
    toml::from_str(&text)
        .map(Some)
        .map_err(|source| ConfigError::Toml {
            path: path.into(),
            source,
        })
}

impl DaemonConfig {
    /// Loads the file named by the flags (or the mode's default) and applies the flags on top.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        let (path, required) = match &cli.config {
            Some(p) => (p.clone(), true),
            None => (default_config_path(cli.user), false),
        };
        let file = read_file(&path, required)?;
        let config_file = file.is_some().then_some(path);
        Self::merge(cli, file.unwrap_or_default(), config_file)
    }

    /// Merges `file` and the flags (flags win; `ANGES_METER_SOCKET` counts as a flag) and checks
    /// the result (the publication interval for the mode: [`check_publish_interval`]).
    pub fn merge(
        cli: &Cli,
        file: FileConfig,
        config_file: Option<PathBuf>,
    ) -> Result<Self, ConfigError> {
        let d = EngineConfig::default();
        let carbon_flags = [
            cli.intensity.is_some(),
            cli.region.is_some(),
            cli.intensity_csv.is_some(),
        ];
        let intensity = if carbon_flags.iter().any(|&b| b) {
            match (&cli.intensity, &cli.region, &cli.intensity_csv) {
                (Some(g), _, _) => IntensitySource::Constant(*g),
                (_, Some(r), _) => IntensitySource::Region(r.clone()),
                (_, _, Some(p)) => IntensitySource::Csv(p.clone()),
                _ => d.intensity.clone(),
            }
        } else {
            file.carbon
                .source()
                .map_err(|e| ConfigError::Invalid(e.to_string()))?
                .unwrap_or_else(|| d.intensity.clone())
        };
        let gpus = match &cli.gpus {
            Some(s) => s.parse().map_err(ConfigError::Invalid)?,
            None => file.gpus.unwrap_or_default(),
        };
        let state_dir = cli
            .state_dir
            .clone()
            .or(file.state_dir)
            .unwrap_or_else(|| default_state_dir(cli.user));
        let persist_s = file
            .persist_interval_s
            .unwrap_or(d.persist_interval.as_secs_f64());
        if !(persist_s > 0.0 && persist_s.is_finite()) {
            return Err(ConfigError::Invalid(format!(
                "persist_interval_s must be > 0, got {persist_s}"
            )));
        }
        let engine = EngineConfig {
            sensor: cli.sensor.or(file.sensor).unwrap_or(d.sensor),
            sysfs_root: cli
                .sysfs_root
                .clone()
                .or(file.sysfs_root)
                .unwrap_or(d.sysfs_root),
            rate_hz: cli.rate_hz.or(file.rate_hz).unwrap_or(d.rate_hz),
            attribution_hz: cli
                .attribution_hz
                .or(file.attribution_hz)
                .unwrap_or(d.attribution_hz),
            scan_interval: file
                .scan_interval_ms
                .map_or(d.scan_interval, Duration::from_millis),
            estimate: file.estimate.unwrap_or(d.estimate),
            gpus,
            nvml_library: file.nvml_library.unwrap_or(d.nvml_library),
            intensity,
            pue: cli.pue.or(file.carbon.pue).unwrap_or(d.pue),
            idle_policy: cli
                .idle_policy
                .or(file.idle_policy)
                .unwrap_or(d.idle_policy),
            state_dir: Some(state_dir),
            persist_interval: Duration::from_secs_f64(persist_s),
        };
        let publish_interval_ms = cli
            .publish_interval_ms
            .or(file.publish_interval_ms)
            .unwrap_or(DEFAULT_PUBLISH_INTERVAL_MS);
        check_publish_interval(publish_interval_ms, cli.user)?;
        Ok(DaemonConfig {
            engine,
            socket: cli.socket_path().or(file.socket),
            publish_interval_ms,
            metrics_listen: cli.metrics_listen.or(file.metrics_listen),
            metrics_per_job: cli.metrics_per_job || file.metrics_per_job.unwrap_or(false),
            dbus: !cli.no_dbus && file.dbus.unwrap_or(true),
            config_file,
            user: cli.user,
            limits: file.limits,
        })
    }

    /// The servers' configuration for this mode.
    ///
    /// System mode: `/run/anges/meterd.sock`, mode 0660 and group `anges` when that group
    /// exists, the system bus. `--user`: `$XDG_RUNTIME_DIR/anges/meterd.sock`, mode 0600 (only the
    /// user's own jobs can connect), the session bus when `$DBUS_SESSION_BUS_ADDRESS` names one.
    pub fn server_config(&self) -> Result<ServerConfig, ConfigError> {
        let socket = match (&self.socket, self.user) {
            (Some(p), _) => p.clone(),
            (None, false) => PathBuf::from(anges_common::paths::SYSTEM_SOCKET),
            (None, true) => anges_common::paths::user_socket_from_env().ok_or_else(|| {
                ConfigError::Invalid(
                    "--user needs an absolute $XDG_RUNTIME_DIR (or give --socket)".into(),
                )
            })?,
        };
        if self.publish_interval_ms == 0 {
            return Err(ConfigError::Invalid(
                "publish_interval_ms must be at least 1".into(),
            ));
        }
        let mut cfg = ServerConfig::new(socket);
        cfg.publish_interval = Duration::from_millis(self.publish_interval_ms);
        cfg.access_root = self.engine.sysfs_root.clone();
        cfg.metrics_listen = self.metrics_listen;
        if let Some(ms) = positive("frame_timeout_ms", self.limits.frame_timeout_ms)? {
            cfg.socket_limits.frame_timeout = Duration::from_millis(ms);
        }
        if let Some(secs) = positive("idle_timeout_s", self.limits.idle_timeout_s)? {
            cfg.socket_limits.idle_timeout = Duration::from_secs(secs);
        }
        cfg.metrics_per_job = self.metrics_per_job;
        if self.user {
            cfg.socket_mode = 0o600;
        } else {
            cfg.socket_group = group_id(SOCKET_GROUP);
        }
        cfg.dbus = match (self.dbus, self.user) {
            (false, _) => None,
            (true, false) => Some(Bus::System),
            (true, true) if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some() => {
                Some(Bus::Session)
            }
            (true, true) => {
                tracing::info!("no session bus ($DBUS_SESSION_BUS_ADDRESS unset): D-Bus off");
                None
            }
        };
        Ok(cfg)
    }
}

/// A `[limits]` value, which must be at least 1 when given.
fn positive(key: &str, value: Option<u64>) -> Result<Option<u64>, ConfigError> {
    match value {
        Some(0) => Err(ConfigError::Invalid(format!(
            "[limits] {key} must be at least 1"
        ))),
        v => Ok(v),
    }
}

/// Group that may connect to the system socket (created by `systemd/anges.sysusers`).
pub const SOCKET_GROUP: &str = "anges";

/// The gid of a group, if it exists.
pub fn group_id(name: &str) -> Option<u32> {
    let cname = std::ffi::CString::new(name).ok()?;
    // SAFETY: `libc::group` is plain data (integers and pointers); all-zero is a valid value.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: getgrnam_r writes only into `grp` and `buf` (whose length we pass) and sets `out`
    // to `&grp` or null; all outlive the call, and we read `gr_gid` only when `out` is non-null.
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        )
    };
    (rc == 0 && !out.is_null()).then_some(grp.gr_gid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn flags_win_over_file() {
        let file: FileConfig = toml::from_str(
            "rate_hz = 50\nsensor = \"powercap\"\nidle_policy = \"capacity\"\n[carbon]\nregion = \"FR\"\npue = 1.3\n[estimate]\ncpu_max_watts = 40.0\n",
        )
        .unwrap();
        let cli =
            Cli::try_parse_from(["anges-meterd", "--rate-hz", "200", "--state-dir", "/tmp/s"])
                .unwrap();
        let c = DaemonConfig::merge(&cli, file.clone(), None).unwrap();
        assert_eq!(c.engine.rate_hz, 200);
        assert_eq!(c.engine.sensor, SensorChoice::Powercap);
        assert_eq!(c.engine.idle_policy, IdlePolicy::Capacity);
        assert_eq!(c.engine.intensity, IntensitySource::Region("FR".into()));
        assert_eq!(c.engine.pue, 1.3);
        assert_eq!(c.engine.estimate.cpu_max_watts, Some(40.0));
        assert_eq!(c.engine.state_dir, Some(PathBuf::from("/tmp/s")));
        let cli =
            Cli::try_parse_from(["anges-meterd", "--intensity", "12", "--sensor", "estimate"])
                .unwrap();
        let c = DaemonConfig::merge(&cli, file, None).unwrap();
        assert_eq!(c.engine.intensity, IntensitySource::Constant(12.0));
        assert_eq!(c.engine.sensor, SensorChoice::Estimate);
    }

    #[test]
    fn system_mode_refuses_fast_publication_user_mode_accepts_it() {
        let file = |ms: u64| FileConfig {
            publish_interval_ms: Some(ms),
            ..FileConfig::default()
        };
        let system = Cli::try_parse_from(["anges-meterd"]).unwrap();
        let err = DaemonConfig::merge(&system, file(1), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("publish_interval_ms") && err.contains("CVE-2020-8694"),
            "{err}"
        );
        assert!(DaemonConfig::merge(&system, file(99), None).is_err());
        assert_eq!(
            DaemonConfig::merge(&system, file(100), None)
                .unwrap()
                .publish_interval_ms,
            100
        );
        let flag = Cli::try_parse_from(["anges-meterd", "--publish-interval-ms", "5"]).unwrap();
        assert!(DaemonConfig::merge(&flag, file(100), None).is_err());
        let user = Cli::try_parse_from(["anges-meterd", "--user"]).unwrap();
        assert_eq!(
            DaemonConfig::merge(&user, file(1), None)
                .unwrap()
                .publish_interval_ms,
            1
        );
        assert!(DaemonConfig::merge(&user, file(0), None).is_err());
    }

    #[test]
    fn bad_files_are_errors() {
        assert!(toml::from_str::<FileConfig>("rate_hx = 5").is_err());
        let file: FileConfig =
            toml::from_str("[carbon]\nintensity = 5.0\nregion = \"FR\"\n").unwrap();
        let cli = Cli::try_parse_from(["anges-meterd"]).unwrap();
        assert!(DaemonConfig::merge(&cli, file, None).is_err());
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.toml");
        assert!(read_file(&missing, true).is_err());
        assert_eq!(read_file(&missing, false).unwrap(), None);
    }
}
