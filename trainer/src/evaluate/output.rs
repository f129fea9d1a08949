//! What `anges-train evaluate` shows and writes: the terminal table, `evaluation.json` (the
//! whole [`Evaluation`]), `evaluation.csv` (one row per group, family, tolerance and held-out
//! dataset, plus the pooled rows and the bound), `runs.csv` (per run: each family's held-out
//! choice at the stated tolerance, and the bound) and `frontier-<group>.{png,svg}` (held-out
//! mean loss against %ΔEmiss per family over the tolerance sweep, with the bound).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::select::{Evaluation, GroupEvaluation};
use crate::report::ReportError;
use plotters::style::RGBColor;

use crate::report::chart::{Chart, Line, Markers, Shape};
use crate::report::files::{slug, write_csv, write_json};
use crate::report::plots::PALETTE;
use crate::report::save_chart;

/// The files [`write_all`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluationFiles {
    /// `evaluation.json`.
    pub json: PathBuf,
    /// `evaluation.csv`.
    pub csv: PathBuf,
    /// `runs.csv`.
    pub runs_csv: PathBuf,
    /// `frontier-<group>.png` and `.svg`, per group.
    pub plots: Vec<PathBuf>,
}

/// One row of `evaluation.csv`.
#[derive(Debug, Serialize)]
struct CsvRow<'a> {
    group: &'a str,
    family: &'a str,
    tolerance: f64,
    held_out: &'a str,
    candidate: &'a str,
    met_tolerance: Option<bool>,
    runs: usize,
    mean_loss: f64,
    loss_unit: &'a str,
    mean_delta_perf_pct: Option<f64>,
    mean_delta_emiss_pct: f64,
    mean_stop_epoch: Option<f64>,
}

const CSV_HEADER: [&str; 12] = [
    "group",
    "family",
    "tolerance",
    "held_out",
    "candidate",
    "met_tolerance",
    "runs",
    "mean_loss",
    "loss_unit",
    "mean_delta_perf_pct",
    "mean_delta_emiss_pct",
    "mean_stop_epoch",
];

/// One row of `runs.csv`.
#[derive(Debug, Serialize)]
struct RunRow<'a> {
    group: &'a str,
    run: &'a str,
    dataset: &'a str,
    family: &'a str,
    stop_epoch: usize,
    best_epoch: Option<usize>,
    loss: f64,
    delta_perf_pct: Option<f64>,
    delta_emiss_pct: f64,
}

const RUNS_HEADER: [&str; 9] = [
    "group",
    "run",
    "dataset",
    "family",
    "stop_epoch",
    "best_epoch",
    "loss",
    "delta_perf_pct",
    "delta_emiss_pct",
];

fn csv_rows(group: &GroupEvaluation) -> Vec<CsvRow<'_>> {
    let mut rows = Vec::new();
    for family in &group.families {
        for held in &family.held_out {
            for d in &held.datasets {
                rows.push(CsvRow {
                    group: &group.init,
                    family: &family.family,
                    tolerance: held.tolerance,
                    held_out: &d.dataset,
                    candidate: &d.candidate,
                    met_tolerance: Some(d.met_tolerance),
                    runs: d.held_out.runs,
                    mean_loss: d.held_out.loss,
                    loss_unit: &group.loss_unit,
                    mean_delta_perf_pct: Some(d.held_out.delta_perf_pct),
                    mean_delta_emiss_pct: d.held_out.delta_emiss_pct,
                    mean_stop_epoch: Some(d.held_out.stop_epoch),
                });
            }
            rows.push(CsvRow {
                group: &group.init,
                family: &family.family,
                tolerance: held.tolerance,
                held_out: "pooled",
                candidate: "",
                met_tolerance: None,
                runs: held.pooled.runs,
                mean_loss: held.pooled.loss,
                loss_unit: &group.loss_unit,
                mean_delta_perf_pct: Some(held.pooled.delta_perf_pct),
                mean_delta_emiss_pct: held.pooled.delta_emiss_pct,
                mean_stop_epoch: Some(held.pooled.stop_epoch),
            });
        }
    }
    for b in &group.bound {
        rows.push(CsvRow {
            group: &group.init,
            family: "bound",
            tolerance: b.tolerance,
            held_out: "pooled",
            candidate: "hindsight",
            met_tolerance: None,
            runs: b.runs.len(),
            mean_loss: b.loss,
            loss_unit: &group.loss_unit,
            mean_delta_perf_pct: None,
            mean_delta_emiss_pct: b.delta_emiss_pct,
            mean_stop_epoch: None,
        });
    }
    rows
}

fn run_rows<'a>(group: &'a GroupEvaluation, tolerance: f64) -> Vec<RunRow<'a>> {
    let mut rows = Vec::new();
    for (i, run) in group.runs.iter().enumerate() {
        for family in &group.families {
            if let Some(Some(o)) = family.runs.get(i) {
                rows.push(RunRow {
                    group: &group.init,
                    run: &run.name,
                    dataset: &run.dataset,
                    family: &family.family,
                    stop_epoch: o.stop_epoch,
                    best_epoch: Some(o.best_epoch),
                    loss: o.loss,
                    delta_perf_pct: Some(o.delta_perf_pct),
                    delta_emiss_pct: o.delta_emiss_pct,
                });
            }
        }
        if let Some(b) = group.bound_at(tolerance).and_then(|b| b.runs.get(i)) {
            rows.push(RunRow {
                group: &group.init,
                run: &run.name,
                dataset: &run.dataset,
                family: "bound",
                stop_epoch: b.stop_epoch,
                best_epoch: None,
                loss: b.loss,
                delta_perf_pct: None,
                delta_emiss_pct: b.delta_emiss_pct,
            });
        }
    }
    rows
}

/// The frontier plot of one group: per family, the held-out points over the tolerance sweep
/// (x: mean %ΔEmiss, y: mean change of the test metric, `−loss`), and the bound.
pub(crate) fn frontier_chart(group: &GroupEvaluation, tolerance: f64) -> Chart {
    let finite = |(x, y): &(f64, f64)| x.is_finite() && y.is_finite();
    let mut lines = Vec::new();
    let mut chosen = Vec::new();
    for (i, family) in group.families.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let frontier = family.frontier();
        lines.push(Line {
            name: family.family.clone(),
            color,
            points: frontier
                .iter()
                .map(|p| (p.delta_emiss_pct, -p.loss))
                .filter(finite)
                .collect(),
            texts: Vec::new(),
        });
        chosen.extend(
            frontier
                .iter()
                .filter(|p| p.tolerance == tolerance)
                .map(|p| (p.delta_emiss_pct, -p.loss))
                .filter(finite)
                .map(|p| (p, color)),
        );
    }
    lines.push(Line {
        name: "hindsight bound".into(),
        color: RGBColor(0, 0, 0),
        points: group
            .bound
            .iter()
            .map(|b| (b.delta_emiss_pct, -b.loss))
            .filter(finite)
            .collect(),
        texts: Vec::new(),
    });
    Chart {
        caption: format!(
            "{}: held-out trade-off per family ({} runs, {} datasets)",
            group.init,
            group.runs.len(),
            group.datasets.len()
        ),
        x_desc: "%ΔEmiss against the full run (held-out mean)".into(),
        y_desc: format!("test metric change ({}, held-out mean)", group.loss_unit),
        lines,
        markers: vec![Markers {
            name: format!("chosen at tolerance {tolerance}"),
            shape: Shape::Ring,
            legend_color: RGBColor(200, 200, 200),
            points: chosen,
        }],
        x_zero: true,
        y_zero: true,
        zero_lines: true,
    }
}

/// Writes every file into `dir` (created if missing).
pub fn write_all(evaluation: &Evaluation, dir: &Path) -> Result<EvaluationFiles, ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e))?;
    let files = EvaluationFiles {
        json: dir.join("evaluation.json"),
        csv: dir.join("evaluation.csv"),
        runs_csv: dir.join("runs.csv"),
        plots: Vec::new(),
    };
    write_json(evaluation, &files.json)?;
    write_csv(
        &CSV_HEADER,
        evaluation.groups.iter().flat_map(csv_rows),
        &files.csv,
    )?;
    write_csv(
        &RUNS_HEADER,
        evaluation
            .groups
            .iter()
            .flat_map(|g| run_rows(g, evaluation.tolerance)),
        &files.runs_csv,
    )?;
    let mut plots = Vec::new();
    for group in &evaluation.groups {
        let stem = format!("frontier-{}", slug(&group.init));
        let (png, svg) = (
            dir.join(format!("{stem}.png")),
            dir.join(format!("{stem}.svg")),
        );
        save_chart(&frontier_chart(group, evaluation.tolerance), &png, &svg)?;
        plots.extend([png, svg]);
    }
    Ok(EvaluationFiles { plots, ..files })
}

/// The terminal table: per group, each family's held-out figures at the stated tolerance, its
/// choice on all datasets, and the bound.
pub fn table(evaluation: &Evaluation) -> String {
    let t = evaluation.tolerance;
    let mut out = String::new();
    for group in &evaluation.groups {
        let _ = writeln!(
            out,
            "{} — {} runs on {} datasets; parameters chosen on the other datasets (most CO2 \
             saved with a mean loss ≤ {t} {}), reported on the held-out one:",
            group.init,
            group.runs.len(),
            group.datasets.len(),
            group.loss_unit
        );
        let _ = writeln!(
            out,
            "  {:<12} {:>10} {:>10} {:>10} {:>8}  {:<24} chosen on all datasets",
            "family", "loss", "%ΔPerf", "%ΔEmiss", "epochs", "verdict"
        );
        for family in &group.families {
            let Some(held) = family.at(t) else { continue };
            let p = held.pooled;
            let verdict = if family.baseline {
                "baseline".to_owned()
            } else if family.meets_goal {
                "meets the goal".to_owned()
            } else if family.beyond.is_empty() {
                "beyond no baseline".to_owned()
            } else {
                format!("beyond {}", family.beyond.join(", "))
            };
            let _ = writeln!(
                out,
                "  {:<12} {:>10.2} {:>10.2} {:>10.1} {:>8.1}  {:<24} {}",
                family.family,
                p.loss,
                p.delta_perf_pct,
                p.delta_emiss_pct,
                p.stop_epoch,
                verdict,
                family.chosen_on_all
            );
        }
        if let Some(b) = group.bound_at(t) {
            let _ = writeln!(
                out,
                "  {:<12} {:>10.2} {:>10} {:>10.1} {:>8}  (earliest stop within {t} {}, run by run)",
                "bound", b.loss, "", b.delta_emiss_pct, "", group.loss_unit
            );
        }
        let _ = writeln!(
            out,
            "  goal: mean loss ≤ {t} {} with ≥ {} % CO2 saved; {}",
            group.loss_unit,
            evaluation.goal_saved_pct,
            match &group.recommended {
                Some(v) =>
                    format!("recommended default: {v} (beyond patience, least held-out loss)"),
                None => "no variant lies beyond patience: keep the literal default".into(),
            }
        );
    }
    if !evaluation.skipped.is_empty() {
        let _ = writeln!(
            out,
            "{} run(s) skipped (see the log)",
            evaluation.skipped.len()
        );
    }
    out
}
