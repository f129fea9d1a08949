//! Reading the `config.json` of fine-tuning runs written before [`FinetuneConfig`] existed.
//!
//! Those files recorded the command-line flags as given, under `"args"`, nested as the flag
//! groups were (`data`, `model` with `threads` inside, `train`, `stop` with every policy's
//! parameters and a `variant` group, `prune`, `meter`, `out`). [`recorded_config`] reads either
//! layout and returns the [`FinetuneConfig`] the run computed, so that old runs (the committed
//! `docs/results/runs`, a run interrupted before an upgrade) still resume and replay.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use super::{
    AngesOrder, AngesParams, ComputeConfig, ConfigError, DataConfig, FinetuneConfig, MeterConfig,
    ModelConfig, ModelKind, OptimConfig, Pooling, PruneConfig, SplitKind, StopPolicy, StopSpec,
};

/// The [`FinetuneConfig`] a `config.json` records: its `"config"`, or its `"args"` (the older
/// layout) migrated.
pub fn recorded_config(config_json: &Value) -> Result<FinetuneConfig, ConfigError> {
    if let Some(config) = config_json.get("config") {
        return serde_json::from_value(config.clone())
            .map_err(|e| ConfigError(format!("config.json: \"config\": {e}")));
    }
    let Some(args) = config_json.get("args") else {
        return Err(ConfigError::new(
            "config.json holds neither \"config\" nor \"args\"",
        ));
    };
    let args: ArgsV1 = serde_json::from_value(args.clone())
        .map_err(|e| ConfigError(format!("config.json: \"args\" (an older layout): {e}")))?;
    args.into_config()
}

/// `"args"` of the first layout: the flags as given.
#[derive(Debug, Deserialize)]
struct ArgsV1 {
    data: DataV1,
    model: ModelV1,
    train: OptimConfig,
    stop: StopV1,
    prune: PruneConfig,
    meter: MeterConfig,
    out: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
struct DataV1 {
    dataset: Option<String>,
    data_dir: Option<PathBuf>,
    smiles_column: Option<String>,
    #[serde(default)]
    target: Vec<String>,
    split: SplitKind,
    split_file: Option<PathBuf>,
    seed: u64,
    max_rows: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct ModelV1 {
    model: ModelKind,
    pretrained: Option<PathBuf>,
    #[serde(default)]
    random_init: bool,
    #[serde(default)]
    allow_partial: bool,
    #[serde(default)]
    group_by_length: bool,
    #[serde(default)]
    pooling: Pooling,
    dropout: f64,
    #[serde(default)]
    gcn_l2_normalize: bool,
    #[serde(default)]
    threads: usize,
}

#[derive(Debug, Deserialize)]
struct StopV1 {
    stop: StopPolicy,
    alpha: f64,
    beta: f64,
    warmup: usize,
    #[serde(default)]
    variant: Option<VariantV1>,
    patience: usize,
    min_delta: f64,
}

#[derive(Debug, Deserialize)]
struct VariantV1 {
    ema_init: f64,
    anges_order: AngesOrder,
    anges_consecutive: usize,
}

impl ArgsV1 {
    fn into_config(self) -> Result<FinetuneConfig, ConfigError> {
        let variant = self.stop.variant.unwrap_or(VariantV1 {
            ema_init: AngesParams::literal().ema_init,
            anges_order: AngesOrder::UpdateThenCompare,
            anges_consecutive: 1,
        });
        let anges = AngesParams {
            alpha: self.stop.alpha,
            beta: self.stop.beta,
            warmup: self.stop.warmup,
            ema_init: variant.ema_init,
            order: variant.anges_order,
            consecutive: variant.anges_consecutive,
            ..AngesParams::literal()
        };
        let stop = StopSpec::from_parts(
            self.stop.stop,
            anges,
            self.stop.patience,
            self.stop.min_delta,
        )
        .map_err(ConfigError)?;
        let d = self.data;
        let m = self.model;
        Ok(FinetuneConfig {
            data: DataConfig {
                dataset: d.dataset.unwrap_or_default(),
                data_dir: d.data_dir,
                smiles_column: d.smiles_column,
                targets: d.target,
                split: d.split,
                split_file: d.split_file,
                seed: d.seed,
                max_rows: d.max_rows,
                task_type: None,
            },
            model: ModelConfig {
                kind: m.model,
                pretrained: m.pretrained,
                random_init: m.random_init,
                allow_partial: m.allow_partial,
                group_by_length: m.group_by_length,
                pooling: m.pooling,
                dropout: m.dropout,
                gcn_l2_normalize: m.gcn_l2_normalize,
                representation: Default::default(),
            },
            compute: ComputeConfig {
                threads: m.threads,
                ..ComputeConfig::default()
            },
            train: self.train,
            stop,
            prune: self.prune,
            meter: self.meter,
            out: self.out,
            resume: false,
            overwrite: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `config.json` of the first layout, as docs/results/runs holds them (abridged paths).
    const V1: &str = r#"{
      "args": {
        "data": {"dataset": "bbbp", "data_dir": "/d", "smiles_column": null, "target": [],
                 "split": "scaffold", "split_file": null, "seed": 2, "max_rows": null},
        "model": {"model": "gin", "pretrained": null, "random_init": true, "allow_partial": false,
                  "group_by_length": false, "pooling": "cls", "dropout": 0.5, "threads": 1},
        "train": {"epochs": 100, "batch_size": 32, "lr": 0.001, "weight_decay": 0.0,
                  "clip_grad": 0.0},
        "stop": {"stop": "anges", "alpha": 0.9, "beta": 0.3, "warmup": 5,
                 "variant": {"ema_init": 0.001, "anges_order": "update-then-compare",
                             "anges_consecutive": 1},
                 "patience": 10, "min_delta": 0.0},
        "prune": {"prune": "none", "keep_ratio": 0.5, "ema_beta": 0.5},
        "meter": {"meter": "auto", "socket": null},
        "out": "/runs/x"
      },
      "resolved": {"dataset": "BBBP", "metric": "roc-auc"}
    }"#;

    #[test]
    fn the_first_layout_migrates_to_what_its_flags_meant() {
        let old: Value = serde_json::from_str(V1).unwrap();
        let c = recorded_config(&old).unwrap();
        let mut want = FinetuneConfig::new("bbbp");
        want.data.data_dir = Some("/d".into());
        want.data.seed = 2;
        want.model.random_init = true;
        want.compute.threads = 1;
        want.stop = StopSpec::Anges(AngesParams {
            beta: 0.3,
            ..AngesParams::literal()
        });
        want.out = Some("/runs/x".into());
        assert_eq!(c, want);

        // The current layout reads back as written.
        let new = serde_json::json!({ "config": want, "resolved": {} });
        assert_eq!(recorded_config(&new).unwrap(), want);
        assert!(recorded_config(&serde_json::json!({})).is_err());
    }
}
