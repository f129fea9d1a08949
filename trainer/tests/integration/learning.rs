//! Learning acceptance of the 2D fine-tuning loop (issue 6), on the real MoleculeNet CSVs of
//! `../shared` and the published pretrain-gnns checkpoint:
//! - GIN from random initialisation, BBBP scaffold split, 16 epochs: test ROC-AUC ≥ 0.60;
//! - GCN from a pre-trained checkpoint on BACE beats the same GCN from random initialisation at
//!   equal epochs and seed (`gcn_supervised_contextpred.pth`: `gcn_contextpred.pth` alone does
//!   not transfer to BACE, see the test);
//! - two runs with the same seed and thread count give bit-identical metrics;
//! - slow tier (`make test-slow`): GCN from `gcn_contextpred.pth` beats random initialisation on
//!   BACE at Hu et al.'s 100 epochs.
//!
//! libtorch's random generator is process-global, so the runs take turns (`common::torch_rng`).

use crate::common;

use std::path::Path;

use anges_trainer::config::{FinetuneConfig, ModelKind};
use anges_trainer::runtime::DeviceChoice;
use anges_trainer::train::{Summary, run_finetune};

/// Fine-tunes `config` on the shared datasets, the CPU with two threads, into `out`.
fn finetune(mut config: FinetuneConfig, out: &Path) -> Summary {
    config.data.data_dir = Some(common::moleculenet_dir());
    // Two threads, as on CI: the thread count is part of what makes a run reproducible.
    config.compute.device = DeviceChoice::Cpu;
    config.compute.threads = 2;
    config.out = Some(out.to_owned());
    let _turn = common::torch_rng();
    run_finetune(&config).expect("fine-tuning runs")
}

/// `anges-train --dataset DATASET --model MODEL --epochs EPOCHS`, and random init or the
/// encoder of `checkpoint` (its task head starting fresh: `--pretrained C --allow-partial`).
fn config(
    dataset: &str,
    model: ModelKind,
    epochs: usize,
    checkpoint: Option<&Path>,
) -> FinetuneConfig {
    let mut c = FinetuneConfig::new(dataset);
    c.model.kind = model;
    c.train.epochs = epochs;
    match checkpoint {
        Some(path) => {
            c.model.pretrained = Some(path.to_owned());
            c.model.allow_partial = true;
        }
        None => c.model.random_init = true,
    }
    c
}

fn test_roc_auc(s: &Summary) -> f64 {
    s.best_test
        .get(s.metric)
        .expect("the test split has both classes")
}

/// Issue 6 asks for 30 epochs; 16 give the same answer at half the cost. The runs hold a constant
/// learning rate and reseed libtorch at every epoch, so the first N epochs of a 30-epoch run are an
/// N-epoch run, and the 30-epoch run (seed 0, 2 threads) selects its epoch 16 on validation: test
/// ROC-AUC 0.6829, the same model and figure as this run's, 0.083 above the bound. Over N = 9–30
/// the selected model's test ROC-AUC stays within 0.6829–0.6944; below 9 it dips to 0.5594 (N = 7).
#[test]
fn gin_from_random_init_learns_bbbp_in_16_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let s = finetune(config("bbbp", ModelKind::Gin, 16, None), dir.path());
    assert!(
        s.pretrained.is_none(),
        "this run must start from random init"
    );
    assert_eq!(s.epochs_run, 16);
    let auc = test_roc_auc(&s);
    println!(
        "GIN, random init, BBBP scaffold, 16 epochs: best epoch {}, test ROC-AUC {auc:.4} ({:.1} s)",
        s.best_epoch, s.seconds
    );
    assert!(auc >= 0.60, "test ROC-AUC {auc:.4} < 0.60");
    // The run directory holds what the issue lists.
    for file in [
        "config.json",
        "split.json",
        "epochs.jsonl",
        "epochs.csv",
        "summary.json",
    ] {
        assert!(dir.path().join(file).is_file(), "{file} missing");
    }
    let csv = std::fs::read_to_string(dir.path().join("epochs.csv")).unwrap();
    assert_eq!(csv.lines().count(), 17, "header + one line per epoch");
}

/// 5 epochs rather than 10: the pre-trained GCN is ahead at every length. Test ROC-AUC at the
/// best-validation epoch of the first N epochs (seed 0, 2 threads; the first N epochs of a run are
/// an N-epoch run), pre-trained / random init: N = 1 0.747 / 0.612, 2 0.769 / 0.693, 3 0.784 /
/// 0.693, 4 0.784 / 0.737, 5–7 0.784 / 0.715, 8–9 0.806 / 0.715, 10 0.806 / 0.716. At 5 epochs
/// the lead is 0.069 (0.089 at 10; the smallest, 0.047, at 4).
#[test]
fn pretrained_gcn_beats_random_init_on_bace() {
    // The checkpoint of Hu et al.'s full strategy (graph-level supervised + context prediction).
    // `gcn_contextpred.pth` alone does not transfer to BACE at this length: over seeds 0–2 and 20
    // epochs its test ROC-AUC stays below random initialisation's (docs/models.md).
    let checkpoint =
        common::repo_root().join("../shared/models/pretrain-gnns/gcn_supervised_contextpred.pth");
    assert!(checkpoint.is_file(), "missing {}", checkpoint.display());
    let random_dir = tempfile::tempdir().unwrap();
    let random = finetune(config("bace", ModelKind::Gcn, 5, None), random_dir.path());
    let pretrained_dir = tempfile::tempdir().unwrap();
    // pretrain-gnns checkpoints hold the encoder only: the task head starts from random init.
    let with_checkpoint = config("bace", ModelKind::Gcn, 5, Some(&checkpoint));
    let pretrained = finetune(with_checkpoint, pretrained_dir.path());
    assert!(random.pretrained.is_none());
    assert!(pretrained.pretrained.is_some());
    let (r, p) = (test_roc_auc(&random), test_roc_auc(&pretrained));
    println!(
        "GCN on BACE, 5 epochs, seed 0: random init test ROC-AUC {r:.4}, \
         supervised_contextpred {p:.4}"
    );
    assert!(p > r, "pre-trained {p:.4} does not beat random init {r:.4}");
}

/// Slow tier: `make test-slow` (two 100-epoch runs, ≈ 7 min on 2 cores), not `make test`.
/// Context prediction alone overtakes random initialisation on BACE only late: behind it at
/// 10–20 epochs, ahead on 4 of 5 seeds at 60–80 and on all 5 only at 100 (docs/models.md), so no
/// shorter run makes this claim reliably. What `make test` keeps of it: the checkpoint loads to
/// PyTorch's embeddings (`gnn_parity::gcn_contextpred_embeddings_match_pytorch`), and a
/// pre-trained GCN checkpoint transfers to BACE (`pretrained_gcn_beats_random_init_on_bace`).
#[test]
#[ignore = "slow tier (two 100-epoch runs): make test-slow"]
fn gcn_contextpred_beats_random_init_on_bace_in_100_epochs() {
    // The check, at Hu et al.'s fine-tuning length: node-level context prediction alone
    // starts slowly on BACE (below random init at 10-20 epochs, docs/models.md) and ends above
    // it. On an H200 over seeds 0-4 at 100 epochs: 80.1 +/- 1.8 against 72.3 +/- 3.8 test
    // ROC-AUC, ahead on every seed.
    let checkpoint = common::repo_root().join("../shared/models/pretrain-gnns/gcn_contextpred.pth");
    assert!(checkpoint.is_file(), "missing {}", checkpoint.display());
    let random_dir = tempfile::tempdir().unwrap();
    let random = finetune(config("bace", ModelKind::Gcn, 100, None), random_dir.path());
    let pretrained_dir = tempfile::tempdir().unwrap();
    let with_checkpoint = config("bace", ModelKind::Gcn, 100, Some(&checkpoint));
    let pretrained = finetune(with_checkpoint, pretrained_dir.path());
    assert!(random.pretrained.is_none() && pretrained.pretrained.is_some());
    assert_eq!((random.epochs_run, pretrained.epochs_run), (100, 100));
    let (r, p) = (test_roc_auc(&random), test_roc_auc(&pretrained));
    println!(
        "GCN on BACE, 100 epochs, seed 0: random init test ROC-AUC {r:.4} (best epoch {}), \
         contextpred {p:.4} (best epoch {}); {:.0} s + {:.0} s",
        random.best_epoch, pretrained.best_epoch, random.seconds, pretrained.seconds
    );
    assert!(p > r, "contextpred {p:.4} does not beat random init {r:.4}");
}

#[test]
fn same_seed_and_thread_count_give_bit_identical_metrics() {
    // `--dataset bbbp --max-rows 400 --epochs 2 --seed 3` (from the model cache folder's
    // weights, if any, else random init: the same for both runs).
    let mut c = FinetuneConfig::new("bbbp");
    c.data.max_rows = Some(400);
    c.data.seed = 3;
    c.train.epochs = 2;
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = finetune(c.clone(), a_dir.path());
    let b = finetune(c, b_dir.path());
    assert_eq!(a.final_train_loss.to_bits(), b.final_train_loss.to_bits());
    assert_eq!(a.best_valid, b.best_valid);
    assert_eq!(a.final_test, b.final_test);
}
