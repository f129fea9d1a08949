//! `anges-train study` replays the stopping policies instead of training them (issue 30, item 5),
//! on small real runs: GIN from random initialisation on BBBP's first rows, a few epochs, the
//! in-process meter (`--meter local`, an empty meter configuration so that no `meterd.toml` of
//! the machine changes the figures), one seed, no MolPeg.
//!
//! - Without `--live-policies` a seed trains exactly one run folder (`full`); patience and AN-GES
//!   are replayed on its log and marked so.
//! - With `--live-policies` the live patience and AN-GES runs stop at their replay's epoch and
//!   deliver its best epoch (the trajectory is bit-identical for the same seed and thread count).
//!
//! Every study holds libtorch's random generator (`common::torch_rng`) and runs on the CPU with
//! one thread: the thread count is part of what makes a run reproducible.

use crate::common;

use std::path::Path;

use anges_trainer::config::{FinetuneConfig, MeterMode};
use anges_trainer::policy::AngesParams;
use anges_trainer::report::{RunSource, StudyRun};
use anges_trainer::runtime::DeviceChoice;
use anges_trainer::study::{StudyConfig, StudyOutcome, run_study};

/// Epochs of the full run: enough for patience 2 and AN-GES with a warm-up of 2 to fire (seed 0,
/// one thread: the full run's best epoch is 1, patience stops at 3, AN-GES at 2).
const EPOCHS: usize = 5;

/// The study of GIN on BBBP's first 300 rows, `EPOCHS` epochs, seed 0, into `out`.
fn study(out: &Path, live_policies: bool) -> StudyOutcome {
    let mut base = FinetuneConfig::new("bbbp");
    base.data.data_dir = Some(common::moleculenet_dir());
    base.data.max_rows = Some(300);
    base.model.random_init = true;
    base.train.epochs = EPOCHS;
    base.compute.device = DeviceChoice::Cpu;
    base.compute.threads = 1;
    base.meter.mode = MeterMode::Local;
    let meter_config = out.with_extension("meterd.toml");
    std::fs::write(&meter_config, "").expect("write an empty meterd.toml");
    base.meter.carbon.meter_config = Some(meter_config);
    base.out = Some(out.to_owned());
    let config = StudyConfig {
        base,
        anges: AngesParams {
            warmup: 2,
            ..AngesParams::literal()
        },
        patience: 2,
        min_delta: 0.0,
        keep_ratios: Vec::new(),
        with_random: false,
        combine: false,
        live_policies,
        seeds: vec![0],
        frontier_betas: vec![0.2],
    };
    let _turn = common::torch_rng();
    run_study(&config, "anges-train study (test)".to_owned()).expect("the study runs")
}

/// The folders under `<study>/seed0/`, sorted.
fn run_folders(out: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(out.join("seed0"))
        .expect("seed0/")
        .map(|e| e.expect("a folder entry"))
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn find<'a>(runs: &'a [StudyRun], label: &str) -> &'a StudyRun {
    runs.iter()
        .find(|r| r.label == label)
        .unwrap_or_else(|| panic!("no {label} run"))
}

/// A study without `--live-policies` trains the full run only; the policies are replayed on its
/// log: marked as replayed, pointing at its folder, its epochs up to their stop.
#[test]
fn a_study_trains_one_run_per_seed_and_replays_the_policies() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("study");
    let study = study(&out, false);
    assert_eq!(run_folders(&out), ["full"]);
    let runs = &study.report.runs;
    let labels: Vec<&str> = runs.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(labels, ["full", "patience", "anges"]);
    let full = find(runs, "full");
    assert_eq!(full.source, RunSource::Live);
    assert_eq!(full.stop_epoch, EPOCHS);
    for label in ["patience", "anges"] {
        let r = find(runs, label);
        assert_eq!(r.source, RunSource::Replayed, "{label}");
        assert_eq!(r.replayed_from.as_deref(), Some("full"), "{label}");
        assert_eq!(r.live_matches_replay, None, "{label}");
        assert_eq!(r.run_dir, full.run_dir, "{label}");
        assert_eq!(r.epochs.len(), r.stop_epoch, "{label}");
        assert_eq!(r.epochs[..], full.epochs[..r.stop_epoch], "{label}");
        // Epoch-only figures against the full run's epochs alone.
        let full_epochs_g = full.epochs.last().map(|e| e.co2_g).unwrap();
        assert_eq!(r.co2_g, r.epochs[r.stop_epoch - 1].co2_g, "{label}");
        let expected = 100.0 * (r.co2_g - full_epochs_g) / full_epochs_g;
        let got = r.delta_emiss_pct.expect("a %ΔEmiss");
        assert!(
            (got - expected).abs() < 1e-9,
            "{label}: {got} vs {expected}"
        );
    }
    // study.json and study.csv say which runs were replayed.
    let json = std::fs::read_to_string(out.join("study.json")).unwrap();
    assert_eq!(
        json.matches("\"source\": \"replayed\"").count(),
        2,
        "{json}"
    );
    let csv = std::fs::read_to_string(out.join("study.csv")).unwrap();
    assert!(
        csv.lines()
            .any(|l| l.starts_with("patience,") && l.contains(",replayed,full,")),
        "{csv}"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("replayed from full"), "{md}");
}

/// `--live-policies` also trains patience and AN-GES live, each in its own folder, and their
/// stop and best epochs are the replays'.
#[test]
fn live_policies_stop_where_their_replays_stop() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("study");
    let study = study(&out, true);
    assert_eq!(run_folders(&out), ["anges-live", "full", "patience-live"]);
    let runs = &study.report.runs;
    for label in ["patience", "anges"] {
        let replayed = find(runs, label);
        let live = find(runs, &format!("{label}-live"));
        println!(
            "{label}: replayed stop {} best {}, live stop {} best {} (of {EPOCHS})",
            replayed.stop_epoch, replayed.best_epoch, live.stop_epoch, live.best_epoch
        );
        assert_eq!(replayed.source, RunSource::Replayed, "{label}");
        assert_eq!(live.source, RunSource::Live, "{label}");
        assert!(
            live.stop_epoch < EPOCHS,
            "{label} never fired: the comparison needs a stop before the last epoch (change \
             EPOCHS, the patience or the warm-up)"
        );
        assert_eq!(
            (live.stop_epoch, live.best_epoch),
            (replayed.stop_epoch, replayed.best_epoch),
            "{label}: live ≠ replay"
        );
        assert_eq!(replayed.live_matches_replay, Some(true), "{label}");
        assert_eq!(live.live_matches_replay, Some(true), "{label}");
        // The same weights, so the same test metric; the live run's P_i are the full run's.
        assert_eq!(live.test_metric, replayed.test_metric, "{label}");
        let valid = |r: &StudyRun| r.epochs.iter().map(|e| e.valid).collect::<Vec<_>>();
        assert_eq!(valid(live), valid(replayed), "{label}");
    }
}
