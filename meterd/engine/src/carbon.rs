//! Grid carbon intensity and its integration over time.
//!
//! Intensity (gCO2eq/kWh) comes from a constant, a region code looked up in the built-in table
//! `data/regions.csv` (country figures with their sources), or a time series CSV
//! (`timestamp,g_per_kwh`, timestamp in Unix seconds or RFC 3339 `YYYY-MM-DDTHH:MM:SSZ`; step
//! function: a point holds until the next one). It is multiplied by the facility's PUE. CO2 is
//! integrated interval by interval (`ΔE × I(t) × PUE`), never total energy × current intensity.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Joules per kWh.
pub const JOULES_PER_KWH: f64 = 3.6e6;

/// The built-in region table (`code,g_per_kwh,name`, `#` comments carry the sources).
pub const REGION_TABLE: &str = include_str!("../data/regions.csv");

/// Where the intensity comes from, as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntensitySource {
    /// A constant, gCO2eq/kWh.
    Constant(f64),
    /// A region code of the built-in table (e.g. `FR`).
    Region(String),
    /// A time-series CSV file.
    Csv(PathBuf),
}

impl Default for IntensitySource {
    fn default() -> Self {
        IntensitySource::Region("WORLD".into())
    }
}

/// The `[carbon]` section of `meterd.toml`, read by the daemon and by the trainer's in-process
/// meter (`anges-train --meter-config`), so that both take the same choices from the same file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarbonFile {
    /// Constant intensity, g/kWh.
    pub intensity: Option<f64>,
    /// Region code of the built-in table.
    pub region: Option<String>,
    /// Time-series CSV.
    pub csv: Option<PathBuf>,
    /// PUE.
    pub pue: Option<f64>,
}

impl CarbonFile {
    /// The intensity source the section names (`None`: it names none); more than one of
    /// `intensity`, `region` and `csv` is an error.
    pub fn source(&self) -> Result<Option<IntensitySource>, CarbonError> {
        match (self.intensity, &self.region, &self.csv) {
            (Some(g), None, None) => Ok(Some(IntensitySource::Constant(g))),
            (None, Some(r), None) => Ok(Some(IntensitySource::Region(r.clone()))),
            (None, None, Some(p)) => Ok(Some(IntensitySource::Csv(p.clone()))),
            (None, None, None) => Ok(None),
            _ => Err(CarbonError::Invalid(
                "[carbon]: give only one of intensity, region, csv".into(),
            )),
        }
    }
}

/// Errors in carbon configuration.
#[derive(Debug, thiserror::Error)]
pub enum CarbonError {
    /// Unknown region code.
    #[error("unknown region {0:?}; known: {1}")]
    UnknownRegion(String, String),
    /// Unreadable CSV.
    #[error("cannot read intensity CSV {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Bad CSV content.
    #[error("intensity CSV {path}, line {line}: {msg}")]
    Parse {
        /// File.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// A value out of range.
    #[error("{0}")]
    Invalid(String),
}

/// Looks up a region code (case-insensitive) in the built-in table.
pub fn region_intensity(code: &str) -> Result<f64, CarbonError> {
    let mut known = Vec::new();
    for line in REGION_TABLE
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let mut f = line.split(',');
        let (Some(c), Some(v)) = (f.next(), f.next()) else {
            continue;
        };
        if c.eq_ignore_ascii_case(code.trim()) {
            return v
                .trim()
                .parse()
                .map_err(|_| CarbonError::Invalid(format!("bad region table line {line:?}")));
        }
        known.push(c);
    }
    Err(CarbonError::UnknownRegion(code.into(), known.join(" ")))
}

/// Parses a timestamp: Unix seconds, or `YYYY-MM-DDTHH:MM:SS[Z|+00:00]` (UTC).
pub fn parse_timestamp(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Ok(v) = s.parse::<f64>() {
        return Some(v);
    }
    let s = s
        .strip_suffix('Z')
        .or_else(|| s.strip_suffix("+00:00"))
        .unwrap_or(s);
    let (date, time) = s.split_once(['T', ' '])?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(|p| p.parse::<f64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next().flatten().unwrap_or(0.0));
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + hh * 3600.0 + mm * 60.0 + ss)
}

/// A resolved intensity: constant or a sorted step series, times PUE.
#[derive(Debug, Clone, PartialEq)]
pub struct Carbon {
    series: Vec<(f64, f64)>,
    pue: f64,
    label: String,
}

impl Carbon {
    /// Resolves `source` with `pue` (≥ 1).
    pub fn new(source: &IntensitySource, pue: f64) -> Result<Self, CarbonError> {
        if !(pue >= 1.0 && pue.is_finite()) {
            return Err(CarbonError::Invalid(format!(
                "PUE must be a number >= 1, got {pue}"
            )));
        }
        let (series, label) = match source {
            IntensitySource::Constant(g) => {
                (vec![(f64::NEG_INFINITY, *g)], format!("constant {g} g/kWh"))
            }
            IntensitySource::Region(code) => {
                let g = region_intensity(code)?;
                (
                    vec![(f64::NEG_INFINITY, g)],
                    format!("region {} ({g} g/kWh)", code.to_uppercase()),
                )
            }
            IntensitySource::Csv(path) => {
                let s = load_csv(path)?;
                let label = format!("time series {} ({} points)", path.display(), s.len());
                (s, label)
            }
        };
        if let Some((_, g)) = series.iter().find(|(_, g)| !(*g >= 0.0 && g.is_finite())) {
            return Err(CarbonError::Invalid(format!(
                "carbon intensity must be >= 0, got {g}"
            )));
        }
        Ok(Carbon { series, pue, label })
    }

    /// Grid intensity (without PUE) at Unix time `t`, g/kWh.
    pub fn intensity_at(&self, t: f64) -> f64 {
        let i = self.series.partition_point(|(ts, _)| *ts <= t);
        self.series[i.saturating_sub(1)].1
    }

    /// Grams CO2-eq for `joules` consumed at Unix time `t` (intensity × PUE).
    pub fn grams(&self, joules: f64, t: f64) -> f64 {
        joules / JOULES_PER_KWH * self.intensity_at(t) * self.pue
    }

    /// The PUE.
    pub fn pue(&self) -> f64 {
        self.pue
    }

    /// A human description for the start-up summary.
    pub fn label(&self) -> &str {
        &self.label
    }
}

fn load_csv(path: &Path) -> Result<Vec<(f64, f64)>, CarbonError> {
    let text = std::fs::read_to_string(path).map_err(|source| CarbonError::Io {
        path: path.into(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |msg: String| CarbonError::Parse {
            path: path.into(),
            line: i + 1,
            msg,
        };
        let (ts, g) = line
            .split_once(',')
            .ok_or_else(|| err("expected `timestamp,g_per_kwh`".into()))?;
        if i == 0 && ts.trim() == "timestamp" {
            continue;
        }
        let t = parse_timestamp(ts).ok_or_else(|| err(format!("bad timestamp {ts:?}")))?;
        let g: f64 = g
            .trim()
            .parse()
            .map_err(|_| err(format!("bad intensity {g:?}")))?;
        out.push((t, g));
    }
    if out.is_empty() {
        return Err(CarbonError::Parse {
            path: path.into(),
            line: 0,
            msg: "no data rows".into(),
        });
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_resolve() {
        assert_eq!(region_intensity("fr").unwrap(), 56.0);
        assert_eq!(region_intensity("WORLD").unwrap(), 481.0);
        assert!(matches!(
            region_intensity("XX"),
            Err(CarbonError::UnknownRegion(..))
        ));
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1700000000"), Some(1.7e9));
        assert_eq!(parse_timestamp("1970-01-02T00:00:00Z"), Some(86_400.0));
        assert_eq!(
            parse_timestamp("2024-03-01T12:00:00Z"),
            Some(1_709_294_400.0)
        );
        assert_eq!(parse_timestamp("nope"), None);
    }

    #[test]
    fn series_is_a_step_function_and_co2_integrates_over_time() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.csv");
        std::fs::write(&p, "timestamp,g_per_kwh\n100,200\n0,100\n").unwrap();
        let c = Carbon::new(&IntensitySource::Csv(p), 1.5).unwrap();
        assert_eq!(c.intensity_at(-5.0), 100.0);
        assert_eq!(c.intensity_at(50.0), 100.0);
        assert_eq!(c.intensity_at(100.0), 200.0);
        // 1 kWh before the change and 1 kWh after: (100 + 200) × 1.5, not 2 kWh × 200 × 1.5.
        let g = c.grams(JOULES_PER_KWH, 10.0) + c.grams(JOULES_PER_KWH, 150.0);
        assert!((g - 450.0).abs() < 1e-9);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(Carbon::new(&IntensitySource::Constant(10.0), 0.9).is_err());
        assert!(Carbon::new(&IntensitySource::Constant(-1.0), 1.0).is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.csv");
        std::fs::write(&p, "5,abc\n").unwrap();
        let e = Carbon::new(&IntensitySource::Csv(p), 1.0).unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
    }
}
