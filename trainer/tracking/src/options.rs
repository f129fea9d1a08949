//! Named options (a JSON object) turned into the validated types: how the Python package's
//! keyword arguments become a [`StopSpec`], a [`MeterConfig`], [`RunLabels`] and a [`Metric`].
//!
//! The names are the trainer's flags without their dashes (`--anges-variant` → `variant`,
//! `--min-delta` → `min_delta`, `--intensity-csv` → `intensity_csv`); an unknown name, a value
//! of the wrong type and an invalid value are errors naming the option, and the values are
//! checked by the same `validate` methods as the trainer's flags.

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::config::{CarbonConfig, ConfigError, IntensitySource, MeterConfig, MeterMode};
use crate::metrics::Metric;
use crate::policy::{AngesParams, AngesVariant, StopPolicy, StopSpec};
use crate::session::RunLabels;

/// Named options: `{"policy": "anges", "variant": "literal", "beta": 0.1, …}`.
pub type Options = Map<String, Value>;

/// The option names of a stopping policy ([`stop_spec`]) besides the AN-GES knobs.
pub const STOP_OPTIONS: &[&str] = &["policy", "variant", "patience", "min_delta"];

/// The option names of the meter ([`meter_config`]).
pub const METER_OPTIONS: &[&str] = &[
    "meter",
    "socket",
    "region",
    "intensity",
    "intensity_csv",
    "pue",
    "meter_config",
];

/// The option names of a run's labels ([`labels`]).
pub const LABEL_OPTIONS: &[&str] = &["dataset", "model", "init"];

/// The AN-GES parameters an option may set (over the variant's preset): their names in
/// [`AngesParams`].
pub const ANGES_OPTIONS: &[&str] = &[
    "alpha",
    "beta",
    "warmup",
    "ema_init",
    "order",
    "consecutive",
    "signal",
    "smoothing",
    "window",
];

/// `options[name]` as a `T` (`None` when absent or `null`).
fn get<T: DeserializeOwned>(options: &Options, name: &str) -> Result<Option<T>, ConfigError> {
    match options.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| ConfigError(format!("{name}={v}: {e}"))),
    }
}

/// Refuses the names of `options` that are not in `known`.
pub fn check_names(options: &Options, known: &[&[&str]]) -> Result<(), ConfigError> {
    for name in options.keys() {
        if !known.iter().any(|set| set.contains(&name.as_str())) {
            let all: Vec<&str> = known.iter().flat_map(|s| s.iter().copied()).collect();
            return Err(ConfigError(format!(
                "unknown option {name:?} (known: {})",
                all.join(", ")
            )));
        }
    }
    Ok(())
}

/// The stopping policy the options name: `policy` (`full`, `patience`, `anges`; default
/// `anges`), for AN-GES a `variant` (default: the default variant) whose preset the other
/// AN-GES options override, for patience `patience` (default 10) and `min_delta` (default 0).
/// Options of the other policies are ignored, as the trainer's flags are.
pub fn stop_spec(options: &Options) -> Result<StopSpec, ConfigError> {
    let policy: StopPolicy = get(options, "policy")?.unwrap_or(StopPolicy::Anges);
    let variant: Option<AngesVariant> = get(options, "variant")?;
    let mut anges = serde_json::to_value(variant.map_or_else(AngesParams::default, |v| v.preset()))
        .map_err(|e| ConfigError(e.to_string()))?;
    for knob in ANGES_OPTIONS {
        if let Some(v) = options.get(*knob).filter(|v| !v.is_null()) {
            anges[*knob] = v.clone();
        }
    }
    let anges: AngesParams = serde_json::from_value(anges.clone())
        .map_err(|e| ConfigError(format!("AN-GES options {anges}: {e}")))?;
    let patience = get(options, "patience")?.unwrap_or(10);
    let min_delta = get(options, "min_delta")?.unwrap_or(0.0);
    StopSpec::from_parts(policy, anges, patience, min_delta).map_err(ConfigError)
}

/// The meter the options name: `meter` (`auto`, `daemon`, `local`, `off`; default `auto`), the
/// daemon's `socket`, and the carbon options of the in-process meter (`region`, `intensity` or
/// `intensity_csv`, at most one; `pue`; `meter_config`, the daemon's file to read `[carbon]`
/// from). The carbon options are checked as the trainer checks its flags.
pub fn meter_config(options: &Options) -> Result<MeterConfig, ConfigError> {
    let mode: MeterMode = get(options, "meter")?.unwrap_or_default();
    let region: Option<String> = get(options, "region")?;
    let constant: Option<f64> = get(options, "intensity")?;
    let csv: Option<PathBuf> = get(options, "intensity_csv")?;
    let intensity = match (region, constant, csv) {
        (None, None, None) => None,
        (Some(r), None, None) => Some(IntensitySource::Region(r)),
        (None, Some(g), None) => Some(IntensitySource::Constant(g)),
        (None, None, Some(p)) => Some(IntensitySource::Csv(p)),
        _ => {
            return Err(ConfigError::new(
                "give at most one of region, intensity and intensity_csv",
            ));
        }
    };
    let config = MeterConfig {
        mode,
        socket: get(options, "socket")?,
        carbon: CarbonConfig {
            intensity,
            pue: get(options, "pue")?,
            meter_config: get(options, "meter_config")?,
        },
    };
    config.validate()?;
    Ok(config)
}

/// The run's labels the options give (`dataset`, `model`, `init`; each optional), checked by
/// [`RunLabels::validate`].
pub fn labels(options: &Options) -> Result<RunLabels, ConfigError> {
    let labels = RunLabels {
        dataset: get(options, "dataset")?,
        model: get(options, "model")?,
        init: get(options, "init")?,
    };
    labels.validate().map_err(ConfigError)?;
    Ok(labels)
}

/// The metric named `name` (`roc-auc`, `prc-auc`, `rmse`, `mae`; `_` for `-` is accepted).
pub fn metric(name: &str) -> Result<Metric, ConfigError> {
    serde_json::from_value(Value::String(name.replace('_', "-"))).map_err(|_| {
        ConfigError(format!(
            "unknown metric {name:?}: use roc-auc, prc-auc (higher is better), rmse or mae \
             (lower is better)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::policy::{AngesOrder, AngesSignal};

    fn opts(v: Value) -> Options {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn labels_are_optional_and_checked() {
        assert_eq!(labels(&Options::new()).unwrap(), RunLabels::default());
        let l = labels(&opts(json!({"dataset": "bace", "init": "random"}))).unwrap();
        assert_eq!(
            (l.dataset.as_deref(), l.model, l.init.as_deref()),
            (Some("bace"), None, Some("random"))
        );
        let err = |v: Value| labels(&opts(v)).unwrap_err().to_string();
        assert!(err(json!({"model": " "})).contains("cannot be empty"));
        assert!(err(json!({"dataset": "a\nb"})).contains("control"));
        assert!(err(json!({"init": "x".repeat(201)})).contains("at most 200"));
        assert!(err(json!({"dataset": 3})).contains("dataset=3"));
    }

    #[test]
    fn stop_options_override_the_variants_preset() {
        assert_eq!(
            stop_spec(&Options::new()).unwrap(),
            StopSpec::Anges(AngesParams::default())
        );
        let spec = stop_spec(&opts(
            json!({"variant": "literal", "beta": 0.5, "warmup": 3}),
        ))
        .unwrap();
        assert_eq!(
            spec,
            StopSpec::Anges(AngesParams {
                beta: 0.5,
                warmup: 3,
                ..AngesParams::literal()
            })
        );
        let spec = stop_spec(&opts(json!({"variant": "history", "signal": "best",
            "order": "compare-then-update", "consecutive": 2})))
        .unwrap();
        let StopSpec::Anges(p) = spec else {
            panic!("{spec:?}")
        };
        assert_eq!(
            (p.signal, p.order, p.consecutive),
            (AngesSignal::Best, AngesOrder::CompareThenUpdate, 2)
        );
        assert_eq!(
            stop_spec(&opts(json!({"policy": "patience", "patience": 3}))).unwrap(),
            StopSpec::Patience {
                patience: 3,
                min_delta: 0.0
            }
        );
        // Invalid values name the option or the flag.
        let e = stop_spec(&opts(json!({"alpha": 2.0}))).unwrap_err().0;
        assert!(e.contains("alpha"), "{e}");
        let e = stop_spec(&opts(json!({"variant": "nope"}))).unwrap_err().0;
        assert!(e.contains("variant"), "{e}");
        let e = stop_spec(&opts(json!({"warmup": "x"}))).unwrap_err().0;
        assert!(e.contains("AN-GES options"), "{e}");
        let e = stop_spec(&opts(json!({"policy": "patience", "patience": 0})))
            .unwrap_err()
            .0;
        assert!(e.contains("--patience"), "{e}");
    }

    #[test]
    fn meter_options_build_the_trainers_configuration() {
        let c = meter_config(&opts(
            json!({"meter": "local", "intensity": 50.0, "pue": 1.5}),
        ))
        .unwrap();
        assert_eq!(c.mode, MeterMode::Local);
        assert_eq!(c.carbon.intensity, Some(IntensitySource::Constant(50.0)));
        assert_eq!(c.carbon.pue, Some(1.5));
        let e = meter_config(&opts(json!({"region": "FR", "intensity": 3.0})))
            .unwrap_err()
            .0;
        assert!(e.contains("at most one"), "{e}");
        let e = meter_config(&opts(json!({"region": "XX"}))).unwrap_err().0;
        assert!(e.contains("XX"), "{e}");
        let e = meter_config(&opts(json!({"pue": 0.5}))).unwrap_err().0;
        assert!(e.contains("--pue"), "{e}");
        let e = meter_config(&opts(json!({"meter": "sometimes"})))
            .unwrap_err()
            .0;
        assert!(e.contains("meter="), "{e}");
        let e = check_names(
            &opts(json!({"betta": 1})),
            &[STOP_OPTIONS, ANGES_OPTIONS, METER_OPTIONS],
        )
        .unwrap_err()
        .0;
        assert!(e.contains("betta") && e.contains("beta"), "{e}");
    }

    #[test]
    fn metrics_are_named_as_in_the_logs() {
        assert_eq!(metric("roc-auc").unwrap(), Metric::RocAuc);
        assert_eq!(metric("prc_auc").unwrap(), Metric::PrcAuc);
        assert!(metric("accuracy").unwrap_err().0.contains("rmse"));
    }
}
