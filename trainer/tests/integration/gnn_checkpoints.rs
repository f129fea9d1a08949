//! The nine published pretrain-gnns chem checkpoints of `../shared/models/pretrain-gnns`
//! (`{gcn,graphsage,gat}_{contextpred,supervised,supervised_contextpred}.pth`): each loads into
//! its architecture with no missing and no unknown encoder key (only the task head, which they
//! lack, stays at its initial values), and each fine-tunes for one epoch on 200 BACE molecules,
//! the run recording the checkpoint it started from in `summary.json`.
//!
//! Kept cheap for `make test`: one epoch, 200 rows, two threads, no metering.

use crate::common;

use std::path::PathBuf;

use anges_trainer::checkpoint::{self, CheckpointError, LoadOptions};
use anges_trainer::config::{FinetuneConfig, MeterMode, ModelKind};
use anges_trainer::models::{Gnn, GnnConfig, HEAD_PREFIX};
use anges_trainer::runtime::DeviceChoice;
use anges_trainer::train::run_finetune;
use tch::Device;
use tch::nn::VarStore;

const OBJECTIVES: [&str; 3] = ["contextpred", "supervised", "supervised_contextpred"];
const FAMILIES: [ModelKind; 3] = [ModelKind::Gcn, ModelKind::Graphsage, ModelKind::Gat];

/// Every published checkpoint with the model kind it belongs to.
fn published() -> Vec<(ModelKind, PathBuf)> {
    let dir = common::repo_root().join("../shared/models/pretrain-gnns");
    FAMILIES
        .iter()
        .flat_map(|&kind| {
            let dir = dir.clone();
            OBJECTIVES.iter().map(move |objective| {
                let path = dir.join(format!("{}_{objective}.pth", kind.name()));
                assert!(path.is_file(), "test input {} is missing", path.display());
                (kind, path)
            })
        })
        .collect()
}

/// A fresh 5 × 300 encoder of `kind` with a 1-task head.
fn model(kind: ModelKind) -> VarStore {
    let vs = VarStore::new(Device::Cpu);
    let cfg = GnnConfig {
        kind: kind.gnn_kind().expect("a 2D kind"),
        ..GnnConfig::default()
    };
    Gnn::new(&vs.root(), cfg).unwrap();
    vs
}

fn head_only() -> LoadOptions {
    LoadOptions {
        allow_missing_prefixes: vec![HEAD_PREFIX.into()],
        strip_prefix: None,
    }
}

#[test]
fn the_nine_published_checkpoints_load_into_their_architectures_exactly() {
    let _rng = common::torch_rng();
    for (kind, path) in published() {
        let state = checkpoint::read_state_dict(&path).unwrap();
        let keys = state.len();
        let vs = model(kind);
        // load_into refuses any missing, unknown or mis-shaped key but the allowed head.
        let report = checkpoint::load_into(&vs, state, &head_only())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(report.loaded.len(), keys, "{}", path.display());
        assert_eq!(
            report.kept,
            vec!["graph_pred_linear.bias", "graph_pred_linear.weight"],
            "{}",
            path.display()
        );
        assert_eq!(
            vs.variables().len(),
            keys + 2,
            "{}: every encoder variable comes from the checkpoint",
            path.display()
        );
    }
    // And the families are told apart: a GAT checkpoint does not fit GraphSAGE, nor GCN's a GAT.
    for (kind, file) in [
        (ModelKind::Graphsage, "gat_contextpred.pth"),
        (ModelKind::Gat, "graphsage_contextpred.pth"),
    ] {
        let path = common::repo_root()
            .join("../shared/models/pretrain-gnns")
            .join(file);
        let err = checkpoint::load_file_into(&model(kind), &path, &head_only()).unwrap_err();
        let CheckpointError::Mismatch(m) = &err else {
            panic!("{file} into {kind:?}: {err}")
        };
        assert!(!m.missing.is_empty() && !m.unknown.is_empty(), "{err}");
    }
}

#[test]
fn each_published_checkpoint_fine_tunes_one_epoch_on_bace() {
    for (kind, path) in published() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = FinetuneConfig::new("bace");
        c.data.data_dir = Some(common::moleculenet_dir());
        c.data.max_rows = Some(200);
        c.model.kind = kind;
        c.model.pretrained = Some(path.clone());
        c.model.allow_partial = true;
        c.train.epochs = 1;
        c.compute.device = DeviceChoice::Cpu;
        c.compute.threads = 2;
        c.meter.mode = MeterMode::Off;
        c.out = Some(dir.path().to_owned());
        let s = {
            let _turn = common::torch_rng();
            run_finetune(&c).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        assert_eq!((s.model, s.epochs_run), (kind, 1), "{}", path.display());
        assert!(s.final_train_loss.is_finite(), "{}", path.display());
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("summary.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            summary["pretrained"].as_str().map(PathBuf::from),
            Some(path.clone()),
            "summary.json records the starting checkpoint"
        );
        assert_eq!(summary["model"], kind.name());
        println!(
            "{} one epoch on {} BACE rows: train loss {:.4}, {:.1} s",
            path.file_name().unwrap().to_string_lossy(),
            s.rows.used,
            s.final_train_loss,
            s.seconds
        );
    }
}
