//! The meter's configuration, shared by the trainer and the Python package: where emissions come
//! from ([`MeterMode`], [`MeterConfig`]) and the carbon options of the in-process meter
//! ([`CarbonConfig`], merged with the daemon's file and the defaults into a [`ResolvedCarbon`]).
//!
//! These types carry no command-line knowledge: `anges-train`'s `cli.rs` builds them from its
//! flags (with the `clap` feature, [`MeterMode`] is also a `clap::ValueEnum`), the Python
//! package from keyword arguments. The messages name the trainer's flags, which are the
//! documented names of these options (docs/green.md).

use std::path::PathBuf;

use anges_meter_engine::carbon::{CarbonFile, region_intensity};
use serde::{Deserialize, Serialize};

pub use anges_meter_engine::carbon::IntensitySource;

/// A configuration that cannot run: the message names the flag (`--lr must be > 0, …`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid options: {0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    /// The error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Where emissions come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum MeterMode {
    /// The daemon when one answers, else the in-process meter.
    #[default]
    Auto,
    /// Register with anges-meterd (fail if none answers).
    Daemon,
    /// Run the meter's sensors and accounting in this process.
    Local,
    /// No emissions (AN-GES unavailable).
    Off,
}

/// How a run is metered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MeterConfig {
    /// Where emissions come from.
    #[serde(rename = "meter")]
    pub mode: MeterMode,
    /// The daemon's socket (else the discovery of [`anges_common::client`]).
    pub socket: Option<PathBuf>,
    /// The grid's carbon intensity and the PUE of the in-process meter (a daemon applies its
    /// own). Absent from the `config.json` of runs written before it.
    #[serde(default)]
    pub carbon: CarbonConfig,
}

impl MeterConfig {
    /// Checks the carbon options (a region the table lacks, an intensity < 0, a PUE < 1, an
    /// unreadable `--meter-config`) when the run is metered, so that they fail before any work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.mode == MeterMode::Off {
            return Ok(());
        }
        self.carbon.resolve().map(drop)
    }
}

/// The carbon options of the trainer's in-process meter: the daemon's own choices
/// (`--intensity`, `--region`, `--intensity-csv`, `--pue`), over the `[carbon]` section of the
/// daemon's configuration file, over the built-in default (region `WORLD`, PUE 1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CarbonConfig {
    /// The intensity given on the command line (`None`: the file's, else the default).
    pub intensity: Option<IntensitySource>,
    /// The PUE given on the command line (`None`: the file's, else 1).
    pub pue: Option<f64>,
    /// The daemon's configuration file to read `[carbon]` from (`--meter-config`; a missing
    /// file is then an error). `None`: the user-mode daemon's file, else the system daemon's,
    /// when one exists.
    pub meter_config: Option<PathBuf>,
}

/// Where a resolved carbon option came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CarbonOrigin {
    /// The command line (or a configuration built by hand).
    Flag,
    /// The `[carbon]` section of this file.
    File(PathBuf),
    /// The built-in default.
    Default,
}

impl std::fmt::Display for CarbonOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CarbonOrigin::Flag => f.write_str("flag"),
            CarbonOrigin::File(p) => write!(f, "{}", p.display()),
            CarbonOrigin::Default => f.write_str("default"),
        }
    }
}

/// The carbon options after the flags, the file and the defaults are merged.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedCarbon {
    /// The intensity.
    pub intensity: IntensitySource,
    /// Where it came from.
    pub intensity_origin: CarbonOrigin,
    /// The PUE (≥ 1).
    pub pue: f64,
    /// Where it came from.
    pub pue_origin: CarbonOrigin,
}

/// `{ carbon = ... }`: the one section of the daemon's file the trainer reads (the other keys are
/// the daemon's and are not checked here).
#[derive(Debug, Default, Deserialize)]
struct MeterdFile {
    #[serde(default)]
    carbon: CarbonFile,
}

impl CarbonConfig {
    /// The daemon's file this configuration reads, and whether it must exist.
    fn file(&self) -> Option<(PathBuf, bool)> {
        if let Some(p) = &self.meter_config {
            return Some((p.clone(), true));
        }
        let user = dirs::config_dir().map(|d| anges_common::paths::user_config(&d));
        [
            user,
            Some(PathBuf::from(anges_common::paths::SYSTEM_CONFIG)),
        ]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .map(|p| (p, false))
    }

    /// Merges the flags, the daemon's file and the defaults, and checks the result (a known
    /// region, an intensity ≥ 0, a PUE ≥ 1; a time-series CSV is read when the meter starts).
    pub fn resolve(&self) -> Result<ResolvedCarbon, ConfigError> {
        let (file, path) = match self.file() {
            Some((path, required)) => {
                let text = match std::fs::read_to_string(&path) {
                    Ok(t) => t,
                    Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                        String::new()
                    }
                    Err(e) => {
                        return Err(ConfigError(format!(
                            "--meter-config {}: {e}",
                            path.display()
                        )));
                    }
                };
                let file: MeterdFile = toml::from_str(&text)
                    .map_err(|e| ConfigError(format!("--meter-config {}: {e}", path.display())))?;
                (file.carbon, Some(path))
            }
            None => (CarbonFile::default(), None),
        };
        let in_file = || CarbonOrigin::File(path.clone().unwrap_or_default());
        let from_file = file
            .source()
            .map_err(|e| ConfigError(format!("--meter-config {}: {e}", in_file())))?;
        let (intensity, intensity_origin) = match (&self.intensity, from_file) {
            (Some(i), _) => (i.clone(), CarbonOrigin::Flag),
            (None, Some(i)) => (i, in_file()),
            (None, None) => (IntensitySource::default(), CarbonOrigin::Default),
        };
        let (pue, pue_origin) = match (self.pue, file.pue) {
            (Some(p), _) => (p, CarbonOrigin::Flag),
            (None, Some(p)) => (p, in_file()),
            (None, None) => (1.0, CarbonOrigin::Default),
        };
        let named = |origin: &CarbonOrigin, flag: &str, key: &str| match origin {
            CarbonOrigin::File(p) => format!("[carbon] {key} of {}", p.display()),
            _ => flag.to_owned(),
        };
        if !(pue >= 1.0 && pue.is_finite()) {
            return Err(ConfigError(format!(
                "{} must be a number >= 1 (power usage effectiveness), got {pue}",
                named(&pue_origin, "--pue", "pue")
            )));
        }
        match &intensity {
            IntensitySource::Constant(g) if !(*g >= 0.0 && g.is_finite()) => {
                return Err(ConfigError(format!(
                    "{} must be a number of g/kWh >= 0, got {g}",
                    named(&intensity_origin, "--intensity", "intensity")
                )));
            }
            IntensitySource::Region(code) => {
                if let Err(e) = region_intensity(code) {
                    return Err(ConfigError(format!(
                        "{}: {e}",
                        named(&intensity_origin, "--region", "region")
                    )));
                }
            }
            _ => {}
        }
        Ok(ResolvedCarbon {
            intensity,
            intensity_origin,
            pue,
            pue_origin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carbon_options_merge_flags_over_the_daemons_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("meterd.toml");
        std::fs::write(
            &file,
            "rate_hz = 50\n[carbon]\nregion = \"DE\"\npue = 1.2\n[estimate]\ncpu_max_watts = 40.0\n",
        )
        .unwrap();
        let mut c = CarbonConfig {
            meter_config: Some(file.clone()),
            ..CarbonConfig::default()
        };
        let r = c.resolve().unwrap();
        assert_eq!(r.intensity, IntensitySource::Region("DE".into()));
        assert_eq!(
            (r.pue, &r.pue_origin),
            (1.2, &CarbonOrigin::File(file.clone()))
        );
        c.intensity = Some(IntensitySource::Constant(10.0));
        let r = c.resolve().unwrap();
        assert_eq!(
            (r.intensity, r.intensity_origin, r.pue),
            (IntensitySource::Constant(10.0), CarbonOrigin::Flag, 1.2)
        );
        // A bad region or PUE in the file names the file; two sources are refused.
        std::fs::write(&file, "[carbon]\nregion = \"XX\"\n").unwrap();
        c.intensity = None;
        let e = c.resolve().unwrap_err().0;
        assert!(e.contains("[carbon] region of") && e.contains("XX"), "{e}");
        std::fs::write(&file, "[carbon]\nregion = \"FR\"\nintensity = 3.0\n").unwrap();
        assert!(c.resolve().unwrap_err().0.contains("only one of"));
        c.pue = Some(0.5);
        c.meter_config = Some(dir.path().join("absent.toml"));
        assert!(c.resolve().unwrap_err().0.contains("absent.toml"));
        let mut meter = MeterConfig {
            carbon: CarbonConfig {
                pue: Some(0.5),
                ..CarbonConfig::default()
            },
            ..MeterConfig::default()
        };
        meter.carbon.meter_config = Some(dir.path().join("empty.toml"));
        std::fs::write(dir.path().join("empty.toml"), "").unwrap();
        assert!(meter.validate().unwrap_err().0.contains("--pue"));
        meter.mode = MeterMode::Off;
        assert!(meter.validate().is_ok(), "unmetered: carbon is not used");
    }
}
