//! Where a fine-tuning run's starting weights come from, checked before any work.
//!
//! In order ([`initial_weights`]): `--pretrained` as given; nothing with `--random-init`; else
//! the first checkpoint of the model's family in the model cache folder (`<cache>/models`, what
//! `anges-train pretrain` writes and where pretrain-gnns downloads go); else the family's
//! default ([`default_weights_name`]): the GIN and the SMILES encoder pre-trained by ANGES and
//! shipped in the repository's `models/` (installed as `<prefix>/share/anges/models`), or
//! pretrain-gnns' published `*_supervised_contextpred.pth` for GCN, GraphSAGE and GAT. When none
//! is found the run is refused, naming the places searched and where to put weights: a run
//! never falls back to random weights unasked.
//!
//! A found checkpoint is read and matched against the model before the data is featurised
//! ([`StartWeights::check`]); [`load_pretrained`] loads it into the built model.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Device;
use tch::nn::VarStore;

use super::TrainError;
use super::network;
use crate::checkpoint::{self, CheckpointError, KeyMismatch, LoadOptions};
use crate::config::{FinetuneConfig, ModelConfig, ModelKind};
use crate::data::DataOptions;
use crate::featurize::Representation;
use crate::models::HEAD_PREFIX;

/// Where a run's starting weights came from (`weights_source` in `summary.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WeightsSource {
    /// `--pretrained PATH`.
    Given,
    /// A checkpoint of the model's family in the model cache folder.
    ModelCache,
    /// The family's default: shipped with ANGES (GIN, SMILES encoder) or published by
    /// pretrain-gnns (GCN, GraphSAGE, GAT).
    Default,
    /// `--random-init`.
    RandomInit,
}

/// The default starting weights of each model family: a file (2D) or a Hugging Face folder (1D)
/// looked for by this name in the model folders ([`model_dirs`]). GCN, GraphSAGE and GAT start
/// from pretrain-gnns' published checkpoints; GIN and the 1D encoder from what `anges-train
/// pretrain` writes by default, the name under which ANGES ships its own.
pub fn default_weights_name(kind: ModelKind, representation: Representation) -> &'static str {
    match kind {
        ModelKind::Gcn => "gcn_supervised_contextpred.pth",
        ModelKind::Graphsage => "graphsage_supervised_contextpred.pth",
        ModelKind::Gat => "gat_supervised_contextpred.pth",
        ModelKind::Gin | ModelKind::Transformer => kind.pretrained_name(representation),
    }
}

/// Where a family's default comes from, for the messages.
fn default_weights_origin(kind: ModelKind, representation: Representation) -> &'static str {
    match (kind, representation) {
        (ModelKind::Gin, _) => "the GIN pre-trained by ANGES, shipped in the repository's models/",
        (ModelKind::Transformer, Representation::Smiles) => {
            "the SMILES encoder pre-trained by ANGES, shipped in the repository's models/"
        }
        (ModelKind::Transformer, Representation::Selfies) => {
            "a SELFIES encoder: ANGES ships none; `anges-train pretrain --model transformer \
             --representation selfies` writes one there"
        }
        _ => {
            "published by pretrain-gnns (Hu et al. 2020), chem/model_architecture/ of \
             github.com/snap-stanford/pretrain-gnns"
        }
    }
}

/// The folders searched for a family's default, in order: the installed copy
/// (`<exe>/../share/anges/models`), the repository's `models/` and, beside the repository, the
/// published pretrain-gnns checkpoints (`../shared/models/pretrain-gnns`) that ANGES was built
/// against.
pub fn model_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(bin) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_owned))
    {
        dirs.push(bin.join("../share/anges/models"));
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    dirs.push(repo.join("models"));
    dirs.push(repo.join("../shared/models/pretrain-gnns"));
    dirs
}

/// The family's default in the first of `dirs` that holds it.
fn default_weights(config: &ModelConfig, dirs: &[PathBuf]) -> Option<PathBuf> {
    let name = default_weights_name(config.kind, config.representation);
    dirs.iter().map(|d| d.join(name)).find(|p| {
        if config.kind.is_graph() {
            p.is_file()
        } else {
            p.join("config.json").is_file()
        }
    })
}

/// Where the weights start from, from where, and whether missing keys are accepted:
/// `--pretrained` as given (partial only with `--allow-partial`); nothing with `--random-init`;
/// else the model cache folder's checkpoint or the family's default in `dirs`, whose task head
/// may be missing (they hold an encoder only). `Err`: the message of a run with no weights.
fn initial_weights(
    model: &ModelConfig,
    cache_dir: &Path,
    dirs: &[PathBuf],
) -> Result<(Option<PathBuf>, WeightsSource, bool), String> {
    if let Some(p) = &model.pretrained {
        return Ok((Some(p.clone()), WeightsSource::Given, model.allow_partial));
    }
    if model.random_init {
        return Ok((None, WeightsSource::RandomInit, false));
    }
    if let Some(found) = cached_checkpoint(model, cache_dir) {
        return Ok((Some(found), WeightsSource::ModelCache, true));
    }
    if let Some(found) = default_weights(model, dirs) {
        tracing::info!("starting from the default weights {}", found.display());
        return Ok((Some(found), WeightsSource::Default, true));
    }
    let name = default_weights_name(model.kind, model.representation);
    let cache = cache_dir.join("models");
    let searched: Vec<String> = std::iter::once(&cache)
        .chain(dirs)
        .map(|d| d.display().to_string())
        .collect();
    Err(format!(
        "no pre-trained weights for --model {model_name}: {name} ({origin}) is in none of {searched}, \
         and {cache} holds no {prefix}_* checkpoint. Put {name} in {cache}, give \
         --pretrained PATH, or pass --random-init to train from random weights",
        model_name = model.kind.name(),
        origin = default_weights_origin(model.kind, model.representation),
        searched = searched.join(", "),
        cache = cache.display(),
        prefix = model.kind.name(),
    ))
}

/// The first checkpoint of `model`'s family, by name, in `<cache>/models`, if any: a file
/// `gin_*` / `gcn_*` ending in `.pth`, `.pt` or `.safetensors` (pretrain-gnns downloads, and
/// what `anges-train pretrain` writes there: `gin_attrmask.safetensors`), or for the 1D model a
/// folder `transformer_*` holding `config.json` pre-trained on the model's representation
/// (`transformer_mlm/`, `transformer_selfies_mlm/`).
fn cached_checkpoint(config: &ModelConfig, cache_dir: &Path) -> Option<PathBuf> {
    let model = config.kind;
    let (prefix, folder) = (format!("{}_", model.name()), !model.is_graph());
    let weights = |name: &str| {
        [".pth", ".pt", ".safetensors"]
            .iter()
            .any(|e| name.ends_with(e))
    };
    let dir = cache_dir.join("models");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                return false;
            };
            name.starts_with(&prefix)
                && if folder {
                    p.join("config.json").is_file()
                        // An unreadable config.json is found (as SMILES) and refused when read.
                        && network::folder_representation(p).unwrap_or_default()
                            == config.representation
                } else {
                    p.is_file() && weights(name)
                }
        })
        .collect();
    found.sort();
    let first = found.into_iter().next()?;
    tracing::info!("using the cached checkpoint {}", first.display());
    Some(first)
}

/// Where the weights start from ([`initial_weights`]), checked before any work.
pub(super) struct StartWeights {
    /// The checkpoint (`None`: random initialisation).
    pub(super) pretrained: Option<PathBuf>,
    /// Where it came from.
    pub(super) source: WeightsSource,
    /// Whether it may lack the task head.
    pub(super) allow_partial: bool,
}

impl StartWeights {
    /// Resolves the starting weights of `config` and checks them: a 2D model's checkpoint is read
    /// (missing, truncated, malformed) and its encoder keys matched against the model (a
    /// checkpoint of the other family is named: "use --model gcn"); a 1D model's folder is read
    /// for its tokenizer and configuration. The task head, whose width depends on the data, is
    /// checked when the weights are loaded. No weights found and no `--random-init`: refused.
    pub(super) fn check(config: &FinetuneConfig) -> Result<Self, TrainError> {
        let (pretrained, source, allow_partial) = initial_weights(
            &config.model,
            &DataOptions::default().cache_dir,
            &model_dirs(),
        )
        .map_err(TrainError::Options)?;
        match (&pretrained, config.model.kind) {
            (None, _) => {}
            (Some(dir), ModelKind::Transformer) => {
                network::sequence_setup(
                    Some(dir),
                    std::iter::empty(),
                    config.model.representation,
                )?;
            }
            (Some(path), kind) => check_encoder_keys(kind, path, allow_partial)?,
        }
        Ok(Self {
            pretrained,
            source,
            allow_partial,
        })
    }
}

/// Reads the 2D checkpoint at `path` and matches its encoder keys and shapes against a `kind`
/// model's on the CPU (nothing of it is kept); without `allow_partial` the task head must be
/// there too.
fn check_encoder_keys(kind: ModelKind, path: &Path, allow_partial: bool) -> Result<(), TrainError> {
    let failed = |source| checkpoint_error(path, source, kind);
    let state = checkpoint::read_state_dict(path).map_err(failed)?;
    let (head, encoder): (Vec<_>, Vec<_>) = state
        .into_iter()
        .partition(|(k, _)| k.starts_with(HEAD_PREFIX));
    let model = crate::config::ModelConfig {
        kind,
        ..Default::default()
    };
    let (vs, _) = network::graph_network(&model, 1, Device::Cpu)?;
    let opts = LoadOptions {
        allow_missing_prefixes: vec![HEAD_PREFIX.into()],
        strip_prefix: None,
    };
    checkpoint::load_into(&vs, encoder, &opts).map_err(failed)?;
    if head.is_empty() && !allow_partial {
        // (The variable store is a hash map: sorted, the message is the same every run.)
        let mut missing: Vec<String> = vs
            .variables()
            .into_keys()
            .filter(|k| k.starts_with(HEAD_PREFIX))
            .collect();
        missing.sort();
        return Err(failed(CheckpointError::Mismatch(KeyMismatch {
            missing,
            ..KeyMismatch::default()
        })));
    }
    Ok(())
}

/// The model family whose variable names `keys` are (pretrain-gnns' `gnns.N.mlp.*` for GIN,
/// `gnns.N.linear.*` for GCN, `gnns.N.att` / `gnns.N.weight_linear.*` for GAT, a BERT/RoBERTa
/// `encoder.layer.*` for the transformer), if any. GraphSAGE's keys are exactly GCN's, so
/// `linear.*` answers GCN for both (see [`checkpoint_error`]).
fn family_of_keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> Option<ModelKind> {
    keys.into_iter().find_map(|key| {
        let key = key.strip_prefix("gnn.").unwrap_or(key);
        let layer = key
            .strip_prefix("gnns.")
            .and_then(|rest| rest.split_once('.'))
            .map(|(_, rest)| rest);
        match layer {
            Some(rest) if rest.starts_with("mlp.") => Some(ModelKind::Gin),
            Some(rest) if rest.starts_with("linear.") => Some(ModelKind::Gcn),
            Some(rest) if rest == "att" || rest.starts_with("weight_linear.") => {
                Some(ModelKind::Gat)
            }
            _ if key.contains("encoder.layer.") => Some(ModelKind::Transformer),
            _ => None,
        }
    })
}

/// The error of a checkpoint that cannot start a `kind` model, with what to do about it: the
/// `--model` whose keys it holds (instead of the list of every key), or `--allow-partial` (only
/// the task head is missing).
fn checkpoint_error(path: &Path, source: CheckpointError, kind: ModelKind) -> TrainError {
    let other = match &source {
        CheckpointError::Mismatch(m) => family_of_keys(m.unknown.iter().map(String::as_str))
            .filter(|&other| other != kind)
            .map(|other| (other, m.unknown.len())),
        _ => None,
    };
    if let Some((other, unknown)) = other {
        // GCN and GraphSAGE checkpoints hold the same keys: name both.
        let (note, flag) = match other {
            ModelKind::Gcn => (
                "; GraphSAGE checkpoints have the same keys",
                "gcn or --model graphsage",
            ),
            other => ("", other.name()),
        };
        return TrainError::Options(format!(
            "{}: this looks like a {} checkpoint, not a {} one ({} of its keys are unknown to \
             --model {}{note}): use --model {flag}",
            path.display(),
            other.name().to_uppercase(),
            kind.name().to_uppercase(),
            unknown,
            kind.name(),
        ));
    }
    let hint = match &source {
        CheckpointError::Mismatch(m)
            if !m.missing.is_empty()
                && m.unknown.is_empty()
                && m.mis_shaped.is_empty()
                && m.missing.iter().all(|k| k.starts_with(HEAD_PREFIX)) =>
        {
            " (an encoder-only checkpoint: pass --allow-partial to start the task head from \
             random initialisation)"
                .to_owned()
        }
        _ => String::new(),
    };
    TrainError::Checkpoint {
        path: path.to_owned(),
        source,
        hint,
    }
}

/// Loads the checkpoint at `path` into the built `kind` model (`allow_partial`: its task head
/// may be missing and keeps its random initialisation).
pub(super) fn load_pretrained(
    vs: &VarStore,
    path: &Path,
    allow_partial: bool,
    kind: ModelKind,
) -> Result<(), TrainError> {
    let opts = LoadOptions {
        allow_missing_prefixes: if allow_partial {
            vec![HEAD_PREFIX.into()]
        } else {
            Vec::new()
        },
        strip_prefix: None,
    };
    match checkpoint::load_file_into(vs, path, &opts) {
        Ok(report) => {
            tracing::info!(
                loaded = report.loaded.len(),
                kept = report.kept.len(),
                "loaded pre-trained weights from {}",
                path.display()
            );
            Ok(())
        }
        Err(source) => Err(checkpoint_error(path, source, kind)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_families_are_told_by_their_key_names() {
        let gcn = [
            "x_embedding1.weight",
            "gnns.0.linear.weight",
            "gnns.0.linear.bias",
        ];
        assert_eq!(family_of_keys(gcn), Some(ModelKind::Gcn));
        assert_eq!(
            family_of_keys(["gnn.gnns.4.mlp.2.bias"]),
            Some(ModelKind::Gin)
        );
        let bert = ["roberta.encoder.layer.0.attention.self.query.weight"];
        assert_eq!(family_of_keys(bert), Some(ModelKind::Transformer));
        assert_eq!(
            family_of_keys(["batch_norms.0.weight", "gnns.0.att"]),
            Some(ModelKind::Gat)
        );
        assert_eq!(
            family_of_keys(["batch_norms.0.weight", "gnns.0.bias"]),
            None
        );
    }

    #[test]
    fn cached_checkpoints_are_found_by_family() {
        let of = |kind: ModelKind| ModelConfig {
            kind,
            ..ModelConfig::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        std::fs::create_dir_all(&models).unwrap();
        for name in ["gcn_contextpred.pth", "gin_b.pth", "gin_a.pth", "gin_c.pt"] {
            std::fs::write(models.join(name), b"x").unwrap();
        }
        let gin = cached_checkpoint(&of(ModelKind::Gin), dir.path()).unwrap();
        assert!(gin.ends_with("gin_a.pth"));
        assert!(cached_checkpoint(&of(ModelKind::Gcn), dir.path()).is_some());
        assert!(cached_checkpoint(&of(ModelKind::Transformer), dir.path()).is_none());
        assert!(cached_checkpoint(&of(ModelKind::Gin), &dir.path().join("none")).is_none());

        // What `anges-train pretrain` leaves there: the checkpoint, its log, a temporary file.
        let other = tempfile::tempdir().unwrap();
        let models = other.path().join("models");
        std::fs::create_dir_all(models.join("transformer_mlm")).unwrap();
        std::fs::create_dir_all(models.join("transformer_empty")).unwrap();
        for name in [
            "gcn_attrmask.pretrain.json",
            ".gcn_attrmask.safetensors.tmp",
            "gcn_attrmask.safetensors",
            "transformer_mlm/config.json",
        ] {
            std::fs::write(models.join(name), b"x").unwrap();
        }
        let gcn = cached_checkpoint(&of(ModelKind::Gcn), other.path()).unwrap();
        assert!(
            gcn.ends_with("gcn_attrmask.safetensors"),
            "{}",
            gcn.display()
        );
        let mlm = cached_checkpoint(&of(ModelKind::Transformer), other.path()).unwrap();
        assert!(mlm.ends_with("transformer_mlm"), "{}", mlm.display());
        // A SELFIES run takes the folder pre-trained on SELFIES, a SMILES run never does.
        let selfies = ModelConfig {
            representation: crate::featurize::Representation::Selfies,
            ..of(ModelKind::Transformer)
        };
        assert!(cached_checkpoint(&selfies, other.path()).is_none());
        std::fs::create_dir_all(models.join("transformer_a_selfies")).unwrap();
        std::fs::write(
            models.join("transformer_a_selfies/config.json"),
            r#"{"representation": "selfies"}"#,
        )
        .unwrap();
        let found = cached_checkpoint(&selfies, other.path()).unwrap();
        assert!(
            found.ends_with("transformer_a_selfies"),
            "{}",
            found.display()
        );
        let mlm = cached_checkpoint(&of(ModelKind::Transformer), other.path()).unwrap();
        assert!(mlm.ends_with("transformer_mlm"), "{}", mlm.display());
        assert!(cached_checkpoint(&of(ModelKind::Gin), other.path()).is_none());
    }

    #[test]
    fn random_init_ignores_the_cache_and_pretrained_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("models")).unwrap();
        std::fs::write(dir.path().join("models/gin_attrmask.safetensors"), b"x").unwrap();
        let (found, source, partial) =
            initial_weights(&ModelConfig::default(), dir.path(), &[]).unwrap();
        assert!(found.unwrap().ends_with("gin_attrmask.safetensors") && partial);
        assert_eq!(source, WeightsSource::ModelCache);
        let random = ModelConfig {
            random_init: true,
            ..ModelConfig::default()
        };
        assert_eq!(
            initial_weights(&random, dir.path(), &[]),
            Ok((None, WeightsSource::RandomInit, false))
        );
        let given = ModelConfig {
            pretrained: Some("x.pth".into()),
            ..ModelConfig::default()
        };
        assert_eq!(
            initial_weights(&given, dir.path(), &[]),
            Ok((Some(PathBuf::from("x.pth")), WeightsSource::Given, false))
        );
    }

    #[test]
    fn defaults_come_after_the_cache_and_a_missing_default_is_refused_with_where_to_put_it() {
        let cache = tempfile::tempdir().unwrap();
        let shipped = tempfile::tempdir().unwrap();
        let published = tempfile::tempdir().unwrap();
        let dirs = [shipped.path().to_owned(), published.path().to_owned()];
        std::fs::write(shipped.path().join("gin_attrmask.safetensors"), b"x").unwrap();
        std::fs::write(published.path().join("gin_attrmask.safetensors"), b"x").unwrap();
        std::fs::write(
            published.path().join("gcn_supervised_contextpred.pth"),
            b"x",
        )
        .unwrap();
        // Not the default's name: only the cache folder takes any checkpoint of the family.
        std::fs::write(shipped.path().join("gat_contextpred.pth"), b"x").unwrap();
        std::fs::create_dir_all(shipped.path().join("transformer_mlm")).unwrap();
        std::fs::write(shipped.path().join("transformer_mlm/config.json"), b"{}").unwrap();
        let of = |kind| ModelConfig {
            kind,
            ..ModelConfig::default()
        };

        let (gin, source, partial) =
            initial_weights(&of(ModelKind::Gin), cache.path(), &dirs).unwrap();
        assert_eq!(
            gin.unwrap(),
            shipped.path().join("gin_attrmask.safetensors")
        );
        assert_eq!((source, partial), (WeightsSource::Default, true));
        let (gcn, _, _) = initial_weights(&of(ModelKind::Gcn), cache.path(), &dirs).unwrap();
        assert_eq!(
            gcn.unwrap(),
            published.path().join("gcn_supervised_contextpred.pth")
        );
        let (lm, _, _) = initial_weights(&of(ModelKind::Transformer), cache.path(), &dirs).unwrap();
        assert_eq!(lm.unwrap(), shipped.path().join("transformer_mlm"));

        // The user's own checkpoint in the cache folder comes first.
        std::fs::create_dir_all(cache.path().join("models")).unwrap();
        std::fs::write(cache.path().join("models/gin_mine.pth"), b"x").unwrap();
        let (mine, source, _) = initial_weights(&of(ModelKind::Gin), cache.path(), &dirs).unwrap();
        assert!(mine.unwrap().ends_with("gin_mine.pth"));
        assert_eq!(source, WeightsSource::ModelCache);

        // No default anywhere: refused, naming the file, the folders and the ways out.
        for (kind, representation) in [
            (ModelKind::Gat, Representation::Smiles),
            (ModelKind::Transformer, Representation::Selfies),
        ] {
            let model = ModelConfig {
                kind,
                representation,
                ..ModelConfig::default()
            };
            let err = initial_weights(&model, cache.path(), &dirs).unwrap_err();
            let name = default_weights_name(kind, representation);
            for needle in [
                name,
                &cache.path().join("models").display().to_string(),
                &shipped.path().display().to_string(),
                "--pretrained PATH",
                "--random-init",
            ] {
                assert!(err.contains(needle), "{needle:?} not in {err}");
            }
        }
    }
}
