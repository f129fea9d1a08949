//! Stopping rules on real runs (issue 30):
//! - the literal AN-GES rule replays the 21 logged random-init GIN runs exactly as it did before
//!   the variants existed (stop and best epochs pinned from that binary);
//! - `anges-train evaluate`'s figures on a few real logs equal a computation done by hand here,
//!   straight from `epochs.jsonl`;
//! - a live run of each AN-GES variant stops where the replay of its own log does.

use crate::common;

use std::path::{Path, PathBuf};

use anges_trainer::config::{FinetuneConfig, MeterMode, StopSpec};
use anges_trainer::evaluate::{self, Candidate, EvaluateConfig, Family};
use anges_trainer::policy::{AngesParams, AngesVariant, StopReason};
use anges_trainer::replay::{LoggedRun, replay};
use anges_trainer::runtime::DeviceChoice;
use anges_trainer::train::run_finetune;
use serde_json::Value;

fn logged_runs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/results/runs")
}

/// `stop/best` epochs of the literal rule at (β, W) = (0.1, 5), (0.1, 10), (0.5, 5), (0.5, 10),
/// from `anges-train replay --beta 0.1,0.5 --warmup 5,10 --json` built at 8091823 (before the
/// variants).
const LITERAL_BEFORE: &str = include_str!("../fixtures/literal_replay_8091823.txt");

#[test]
fn the_literal_rule_replays_the_logged_runs_as_before_the_variants() {
    let mut checked = 0;
    for line in LITERAL_BEFORE.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let name = fields.next().unwrap();
        let run = LoggedRun::load(&logged_runs().join(name)).unwrap();
        for ((beta, warmup), expected) in [(0.1, 5), (0.1, 10), (0.5, 5), (0.5, 10)]
            .into_iter()
            .zip(fields)
        {
            let spec = StopSpec::Anges(AngesParams {
                beta,
                warmup,
                ..AngesParams::literal()
            });
            let out = replay(&run, spec);
            let got = format!("{}/{}", out.stop_epoch, out.best_epoch);
            assert_eq!(got, expected, "{name} β={beta} W={warmup}");
            checked += 1;
        }
    }
    assert_eq!(checked, 21 * 4);
}

/// One run straight from its `epochs.jsonl`: (valid, test, cumulative CO2) per epoch.
fn by_hand(name: &str) -> (String, Vec<(f64, f64, f64)>) {
    let dir = logged_runs().join(name);
    let text = std::fs::read_to_string(dir.join("epochs.jsonl")).unwrap();
    let epochs = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["valid"]["roc_auc"].as_f64().unwrap(),
                v["test"]["roc_auc"].as_f64().unwrap(),
                v["cumulative_co2_g"].as_f64().unwrap(),
            )
        })
        .collect();
    (name.split('-').next().unwrap().to_owned(), epochs)
}

/// Patience by hand: stop after `p` epochs without a strictly better validation ROC-AUC.
fn patience_stop(epochs: &[(f64, f64, f64)], p: usize) -> usize {
    let (mut best, mut since) = (f64::NEG_INFINITY, 0);
    for (i, e) in epochs.iter().enumerate() {
        if e.0 > best {
            (best, since) = (e.0, 0);
        } else {
            since += 1;
            if since >= p {
                return i + 1;
            }
        }
    }
    epochs.len()
}

/// (loss in points, %ΔEmiss) of stopping after `stop` epochs: the first best validation epoch
/// up to it delivers its test ROC-AUC.
fn loss_and_emiss(epochs: &[(f64, f64, f64)], stop: usize) -> (f64, f64) {
    let delivered = |n: usize| {
        let mut best = 0;
        for i in 1..n {
            if epochs[i].0 > epochs[best].0 {
                best = i;
            }
        }
        epochs[best].1
    };
    let full = delivered(epochs.len());
    let last = epochs[epochs.len() - 1].2;
    (
        100.0 * (full - delivered(stop)),
        100.0 * (epochs[stop - 1].2 - last) / last,
    )
}

#[test]
fn the_evaluation_equals_a_hand_computation_on_real_logs() {
    let names = [
        "bace-gin-random-s0",
        "bace-gin-random-s1",
        "bbbp-gin-random-s0",
        "clintox-gin-random-s2",
    ];
    let dirs: Vec<PathBuf> = names.iter().map(|n| logged_runs().join(n)).collect();
    let (runs, skipped) = evaluate::load_runs(&dirs).unwrap();
    assert_eq!((runs.len(), skipped.len()), (4, 0));
    let families = [
        Family {
            name: "patience".into(),
            baseline: true,
            candidates: [5, 20]
                .map(|patience| Candidate::Policy {
                    spec: StopSpec::Patience {
                        patience,
                        min_delta: 0.0,
                    },
                })
                .to_vec(),
        },
        Family {
            name: "budget".into(),
            baseline: true,
            candidates: [10, 50].map(|epochs| Candidate::Budget { epochs }).to_vec(),
        },
    ];
    let config = EvaluateConfig {
        paths: dirs.clone(),
        tolerance: 1.0,
        sweep: vec![],
        ..EvaluateConfig::default()
    };
    let members: Vec<_> = runs.iter().collect();
    let group = evaluate::evaluate_group("random-init", &members, &families, &config);

    // By hand: each candidate's (loss, %ΔEmiss) per run.
    let hand: Vec<_> = names.iter().map(|n| by_hand(n)).collect();
    let stops = |family: usize, c: usize, epochs: &[(f64, f64, f64)]| match (family, c) {
        (0, 0) => patience_stop(epochs, 5),
        (0, _) => patience_stop(epochs, 20),
        (_, 0) => 10,
        _ => 50,
    };
    for (f, family) in group.families.iter().enumerate() {
        // In sample: the means over the four runs.
        for (c, row) in family.in_sample.iter().enumerate() {
            let per_run: Vec<(f64, f64)> = hand
                .iter()
                .map(|(_, e)| loss_and_emiss(e, stops(f, c, e)))
                .collect();
            let loss = per_run.iter().map(|x| x.0).sum::<f64>() / 4.0;
            let emiss = per_run.iter().map(|x| x.1).sum::<f64>() / 4.0;
            assert!((row.means.loss - loss).abs() < 1e-9, "{}", row.candidate);
            assert!(
                (row.means.delta_emiss_pct - emiss).abs() < 1e-9,
                "{}",
                row.candidate
            );
        }
        // Leave-datasets-out: for each dataset, the candidate with the most CO2 saved among
        // those whose mean loss on the other datasets is ≤ 1 point (else the least loss).
        let held = family.at(1.0).unwrap();
        let mut pooled = Vec::new();
        for dataset in ["bace", "bbbp", "clintox"] {
            let mean_on = |c: usize, keep: &dyn Fn(&str) -> bool| {
                let xs: Vec<(f64, f64)> = hand
                    .iter()
                    .filter(|(d, _)| keep(d))
                    .map(|(_, e)| loss_and_emiss(e, stops(f, c, e)))
                    .collect();
                let n = xs.len() as f64;
                (
                    xs.iter().map(|x| x.0).sum::<f64>() / n,
                    xs.iter().map(|x| x.1).sum::<f64>() / n,
                )
            };
            let train: Vec<(f64, f64)> = (0..2).map(|c| mean_on(c, &|d| d != dataset)).collect();
            let feasible: Vec<usize> = (0..2).filter(|&c| train[c].0 <= 1.0).collect();
            let chosen = if feasible.is_empty() {
                if train[0].0 <= train[1].0 { 0 } else { 1 }
            } else {
                *feasible
                    .iter()
                    .min_by(|&&a, &&b| train[a].1.total_cmp(&train[b].1))
                    .unwrap()
            };
            let row = (held.datasets.iter())
                .find(|d| d.dataset.eq_ignore_ascii_case(dataset))
                .unwrap();
            assert_eq!(
                row.candidate, family.in_sample[chosen].candidate,
                "{} held out {dataset}",
                family.family
            );
            pooled.extend(
                hand.iter()
                    .filter(|(d, _)| d == dataset)
                    .map(|(_, e)| loss_and_emiss(e, stops(f, chosen, e))),
            );
        }
        let n = pooled.len() as f64;
        assert_eq!(held.pooled.runs, 4);
        let loss = pooled.iter().map(|x| x.0).sum::<f64>() / n;
        assert!((held.pooled.loss - loss).abs() < 1e-9, "{}", family.family);
    }
    // The bound: per run, the earliest epoch whose delivered weights lose ≤ 1 point.
    let bound = group.bound_at(1.0).unwrap();
    for ((_, e), b) in hand.iter().zip(&bound.runs) {
        let earliest = (1..=e.len())
            .find(|&s| loss_and_emiss(e, s).0 <= 1.0)
            .unwrap();
        assert_eq!(b.stop_epoch, earliest);
        assert!((b.delta_emiss_pct - loss_and_emiss(e, earliest).1).abs() < 1e-9);
    }
}

/// Live runs of every variant, with parameters that make it fire within a few epochs, stop
/// where the replay of their own logs stops.
#[test]
fn each_variant_stops_live_where_its_replay_does() {
    let mut fired = 0;
    for variant in AngesVariant::ALL {
        let params = AngesParams {
            warmup: 2,
            beta: 1.0,
            consecutive: if variant.preset().consecutive > 1 {
                2
            } else {
                1
            },
            window: if variant == AngesVariant::Window {
                2
            } else {
                1
            },
            ..variant.preset()
        };
        let mut c = FinetuneConfig::new("bbbp");
        c.data.data_dir = Some(common::moleculenet_dir());
        c.data.max_rows = Some(300);
        c.model.random_init = true;
        c.train.epochs = 8;
        c.compute.device = DeviceChoice::Cpu;
        c.compute.threads = 2;
        c.meter.mode = MeterMode::Local;
        c.stop = StopSpec::Anges(params);
        let dir = tempfile::tempdir().unwrap();
        c.out = Some(dir.path().to_owned());
        let summary = {
            let _turn = common::torch_rng();
            run_finetune(&c).unwrap()
        };
        let log = LoggedRun::load(dir.path()).unwrap();
        let again = replay(&log, StopSpec::Anges(params));
        assert_eq!(again.stop_epoch, summary.epochs_run, "{variant}");
        assert_eq!(again.best_epoch, summary.best_epoch, "{variant}");
        assert_eq!(
            again.fired,
            summary.stop_reason == StopReason::Anges,
            "{variant}"
        );
        fired += usize::from(again.fired);
        eprintln!(
            "{variant}: live stop {} (fired {}), replay stop {}",
            summary.epochs_run, again.fired, again.stop_epoch
        );
    }
    assert!(
        fired >= 4,
        "only {fired} of 6 variants fired: the test checks too little"
    );
}

/// The variants' default parameters, and the default variant, are what `anges-train evaluate`
/// chooses on the logged random-init runs: when new logs change the choice, this fails until
/// the presets (and docs/green.md) follow.
#[test]
fn the_presets_are_the_evaluations_choices_on_the_logged_runs() {
    // The presets were chosen on the 21 random-init GIN runs; the pre-trained campaign's
    // random-init GCN runs share the folder and the group, so the GIN runs are named one by one.
    let gin_runs: Vec<PathBuf> = std::fs::read_dir(logged_runs())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains("-gin-random-s"))
        })
        .collect();
    let config = EvaluateConfig {
        paths: gin_runs,
        ..EvaluateConfig::default()
    };
    let evaluation = evaluate::run_evaluate(&config).unwrap();
    let group = evaluation
        .groups
        .iter()
        .find(|g| g.init == "random-init")
        .unwrap();
    assert_eq!(group.runs.len(), 21);
    for variant in AngesVariant::ALL
        .into_iter()
        .filter(|v| *v != AngesVariant::Literal)
    {
        let family = group.family(variant.name()).unwrap();
        assert_eq!(
            family.chosen_on_all,
            StopSpec::Anges(variant.preset()).label(),
            "{variant}"
        );
    }
    assert_eq!(
        group.recommended.as_deref(),
        Some(AngesVariant::DEFAULT.name())
    );
    let plateau = group.family("plateau").unwrap().at(1.0).unwrap().pooled;
    eprintln!(
        "plateau held out: {:.2} points lost, {:.1} % CO2",
        plateau.loss, plateau.delta_emiss_pct
    );
}
