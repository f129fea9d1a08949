//! What `anges-train tradeoff` shows and writes: the Markdown tables (per group, per family, the
//! frontier with its answer, pruning), `tradeoff.json` (the whole [`Tradeoff`]),
//! `tradeoff.csv` (one row per group × policy), and the plots `frontier-<metric>.{png,svg}`
//! (every family × policy, mean test metric against mean CO2 per run, the Pareto frontier
//! drawn through) and `energy.{png,svg}` (each family's energy per epoch against its epochs to
//! the best validation).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::style::RGBColor;
use serde::Serialize;

use super::{Frontier, MeanStd, Tradeoff};
use crate::data::Metric;
use crate::evaluate::loss_unit;
use crate::report::chart::{Chart, Line, Markers, Shape};
use crate::report::files::{slug, write_csv, write_json, write_text};
use crate::report::plots::PALETTE;
use crate::report::{ReportError, metric_name, save_chart};

/// The files [`write_all`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeoffFiles {
    /// `tradeoff.json`.
    pub json: PathBuf,
    /// `tradeoff.csv`.
    pub csv: PathBuf,
    /// `tradeoff.md`: the tables.
    pub markdown: PathBuf,
    /// The PNG and SVG plots.
    pub plots: Vec<PathBuf>,
}

/// Scores in percent, errors as they are.
fn scale(metric: Metric) -> f64 {
    if metric.higher_is_better() {
        100.0
    } else {
        1.0
    }
}

fn ms(v: Option<MeanStd>, scale: f64, digits: usize) -> String {
    match v {
        Some(MeanStd { mean, std: Some(s) }) => {
            format!("{:.digits$} ± {:.digits$}", mean * scale, s * scale)
        }
        Some(MeanStd { mean, std: None }) => format!("{:.digits$}", mean * scale),
        None => "–".into(),
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

/// With its sign; a value that rounds to zero shows as `+0.0`, never `-0.0`.
fn signed(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(
        || "–".into(),
        |v| {
            let text = format!("{v:+.digits$}");
            if text
                .trim_start_matches(['+', '-'])
                .chars()
                .all(|c| c == '0' || c == '.')
            {
                text.replacen('-', "+", 1)
            } else {
                text
            }
        },
    )
}

/// Every table, in Markdown.
pub fn markdown(t: &Tradeoff) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Per dataset and family: where each policy stops, what it keeps\n\n\
         Mean ± sample std over seeds. Test: the delivered weights (best validation epoch up to \
         the stop). Δ test: against the full run, ROC-AUC points or percent of an error \
         (positive: better). mg/pt: milligrams of CO2-eq per ROC-AUC point above 50.\n"
    );
    let _ = writeln!(
        out,
        "| dataset | family | runs | J/epoch | kJ/run | best epoch | policy | stop epoch | test | Δ test | g CO2-eq | %ΔEmiss | mg/pt |"
    );
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---|---:|---|---:|---:|---:|---:|"
    );
    for g in &t.groups {
        let sc = scale(g.metric);
        for (i, p) in g.policies.iter().enumerate() {
            let head = if i == 0 {
                format!(
                    "| {} | {} | {} | {} | {} | {} |",
                    g.dataset,
                    g.family.label(),
                    g.runs,
                    ms(g.joules_per_epoch, 1.0, 0),
                    ms(g.joules_per_run, 1e-3, 1),
                    ms(Some(g.best_epoch), 1.0, 0),
                )
            } else {
                "| | | | | | |".to_owned()
            };
            let _ = writeln!(
                out,
                "{head} {} | {} | {} {} | {} | {} | {} | {} |",
                p.policy,
                ms(Some(p.stop_epoch), 1.0, 0),
                ms(p.test, sc, if sc > 1.0 { 1 } else { 3 }),
                metric_name(g.metric),
                signed(p.delta_test, 1),
                ms(p.co2_g, 1.0, 3),
                signed(p.delta_emiss_pct, 0),
                opt(p.co2_per_point.map(|g| g * 1e3), 1),
            );
        }
    }
    let _ = writeln!(
        out,
        "\n### Per family, over its datasets\n\n\
         Each dataset weighs the same. Best epoch: of the full run (and its fraction of the \
         epochs). Per policy: mean stop epoch, %ΔEmiss and Δ test against the full runs.\n"
    );
    let policy_names: Vec<String> = t
        .families
        .first()
        .map(|f| f.policies.iter().map(|p| p.policy.clone()).collect())
        .unwrap_or_default();
    let mut header = "| family | D | datasets | runs | J/epoch | kJ/run | best epoch |".to_owned();
    let mut rule = "|---|---|---|---:|---:|---:|---:|".to_owned();
    for name in &policy_names {
        let _ = write!(header, " {name}: stop, %ΔEmiss, Δ test |");
        rule.push_str("---|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    for f in &t.families {
        let mut row = format!(
            "| {} | {} | {} | {} | {} | {} | {:.0} ({:.0} %) |",
            f.family.label(),
            f.family.dimension,
            f.datasets.join(", "),
            f.runs,
            opt(f.joules_per_epoch, 0),
            opt(f.joules_per_run.map(|j| j / 1e3), 1),
            f.best_epoch,
            100.0 * f.best_epoch_fraction,
        );
        for p in &f.policies {
            let _ = write!(
                row,
                " {:.0}, {}, {} |",
                p.stop_epoch,
                signed(p.delta_emiss_pct, 0),
                signed(p.delta_test, 1)
            );
        }
        let _ = writeln!(out, "{row}");
    }
    for fr in &t.frontiers {
        out.push_str(&frontier_markdown(fr, t.tolerance));
    }
    if !t.pruning.is_empty() {
        let _ = writeln!(
            out,
            "\n### Data pruning against the full runs of the same family\n\n\
             | dataset | family | method | keep | runs | test at best valid | Δ test | g CO2-eq | %ΔEmiss |\n\
             |---|---|---|---:|---:|---|---:|---:|---:|"
        );
        for p in &t.pruning {
            let metric = t
                .groups
                .iter()
                .find(|g| g.dataset == p.dataset)
                .map_or(Metric::RocAuc, |g| g.metric);
            let sc = scale(metric);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                p.dataset,
                p.family.label(),
                p.method,
                p.keep_ratio,
                p.runs,
                ms(p.test, sc, if sc > 1.0 { 1 } else { 3 }),
                signed(p.delta_test, 1),
                ms(p.co2_g, 1.0, 3),
                signed(p.delta_emiss_pct, 0),
            );
        }
    }
    if !t.skipped.is_empty() {
        let _ = writeln!(out, "\nSkipped: {} run folder(s):", t.skipped.len());
        for (dir, why) in &t.skipped {
            let _ = writeln!(out, "- {dir}: {why}");
        }
    }
    out
}

/// The frontier's table and its answer in a sentence.
fn frontier_markdown(fr: &Frontier, tolerance: f64) -> String {
    let sc = scale(fr.metric);
    let name = metric_name(fr.metric);
    let mut out = format!(
        "\n### Frontier ({name}): every family × policy over {} ({} families)\n\n\
         Mean over those datasets of each dataset's mean over seeds. Pareto: no other point has \
         a better-or-equal {name} for less or equal CO2.\n\n\
         | family | policy | {name} | g CO2-eq per run | Pareto |\n|---|---|---:|---:|---|\n",
        fr.datasets.join(", "),
        fr.families.len()
    );
    let mut order: Vec<usize> = (0..fr.points.len()).collect();
    order.sort_by(|&a, &b| fr.points[a].co2_g.total_cmp(&fr.points[b].co2_g));
    for i in order {
        let p = &fr.points[i];
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} | {:.3} | {} |",
            p.family.label(),
            p.policy,
            p.test * sc,
            p.co2_g,
            if p.pareto { "yes" } else { "" }
        );
    }
    if let Some(sentence) = answer(fr, tolerance) {
        let _ = writeln!(out, "\n{sentence}");
    }
    out
}

/// The frontier's answer to "which fine-tuning is the most sustainable", in one sentence.
pub fn answer(fr: &Frontier, tolerance: f64) -> Option<String> {
    let best = &fr.points[fr.best?];
    let cheap = &fr.points[fr.cheapest_within_tolerance?];
    let sc = scale(fr.metric);
    let name = metric_name(fr.metric);
    let unit = loss_unit(fr.metric);
    let ratio = if cheap.co2_g > 0.0 {
        format!("{:.1}× less CO2", best.co2_g / cheap.co2_g)
    } else {
        "no CO2".into()
    };
    if fr.best == fr.cheapest_within_tolerance {
        return Some(format!(
            "**Answer** (over {}): the best mean {name}, **{} with {}** ({name} {:.2} for {:.3} g \
             CO2-eq per run), is also the cheapest fine-tuning within {tolerance} {unit} of it.",
            fr.datasets.join(", "),
            best.family.label(),
            best.policy,
            best.test * sc,
            best.co2_g,
        ));
    }
    Some(format!(
        "**Answer** (over {}): the most sustainable fine-tuning within {tolerance} {unit} of the \
         best mean {name} is **{} with {}**: {name} {:.2} for {:.3} g CO2-eq per run, against \
         the best, {} with {}, at {:.2} for {:.3} g ({ratio}).",
        fr.datasets.join(", "),
        cheap.family.label(),
        cheap.policy,
        cheap.test * sc,
        cheap.co2_g,
        best.family.label(),
        best.policy,
        best.test * sc,
        best.co2_g,
    ))
}

/// One row of `tradeoff.csv`.
#[derive(Debug, Serialize)]
struct CsvRow<'a> {
    dataset: &'a str,
    dimension: &'a str,
    model: &'a str,
    init: &'a str,
    metric: &'static str,
    runs: usize,
    joules_per_epoch: Option<f64>,
    joules_per_run: Option<f64>,
    best_epoch: f64,
    policy: &'a str,
    fired: usize,
    stop_epoch: f64,
    test_mean: Option<f64>,
    test_std: Option<f64>,
    co2_g_mean: Option<f64>,
    delta_test: Option<f64>,
    delta_perf_pct: Option<f64>,
    delta_emiss_pct: Option<f64>,
    co2_g_per_point: Option<f64>,
}

const CSV_HEADER: [&str; 19] = [
    "dataset",
    "dimension",
    "model",
    "init",
    "metric",
    "runs",
    "joules_per_epoch",
    "joules_per_run",
    "best_epoch",
    "policy",
    "fired",
    "stop_epoch",
    "test_mean",
    "test_std",
    "co2_g_mean",
    "delta_test",
    "delta_perf_pct",
    "delta_emiss_pct",
    "co2_g_per_point",
];

fn csv_rows(t: &Tradeoff) -> impl Iterator<Item = CsvRow<'_>> {
    t.groups.iter().flat_map(|g| {
        g.policies.iter().map(move |p| CsvRow {
            dataset: &g.dataset,
            dimension: &g.family.dimension,
            model: &g.family.model,
            init: &g.family.init,
            metric: metric_name(g.metric),
            runs: g.runs,
            joules_per_epoch: g.joules_per_epoch.map(|m| m.mean),
            joules_per_run: g.joules_per_run.map(|m| m.mean),
            best_epoch: g.best_epoch.mean,
            policy: &p.policy,
            fired: p.fired,
            stop_epoch: p.stop_epoch.mean,
            test_mean: p.test.map(|m| m.mean),
            test_std: p.test.and_then(|m| m.std),
            co2_g_mean: p.co2_g.map(|m| m.mean),
            delta_test: p.delta_test,
            delta_perf_pct: p.delta_perf_pct,
            delta_emiss_pct: p.delta_emiss_pct,
            co2_g_per_point: p.co2_per_point,
        })
    })
}

/// The frontier plot: one line per family through its policies (by CO2), the Pareto frontier
/// in black, the answer ringed.
pub(crate) fn frontier_chart(fr: &Frontier) -> Chart {
    let sc = scale(fr.metric);
    let mut pareto: Vec<&super::FrontierPoint> = fr.points.iter().filter(|p| p.pareto).collect();
    pareto.sort_by(|a, b| a.co2_g.total_cmp(&b.co2_g));
    // The frontier first, so that the families' colours are drawn over it.
    let mut lines = vec![Line {
        name: "Pareto frontier".into(),
        color: RGBColor(0, 0, 0),
        points: pareto.iter().map(|p| (p.co2_g, p.test * sc)).collect(),
        texts: Vec::new(),
    }];
    for (i, family) in fr.families.iter().enumerate() {
        let mut pts: Vec<&super::FrontierPoint> =
            fr.points.iter().filter(|p| &p.family == family).collect();
        pts.sort_by(|a, b| a.co2_g.total_cmp(&b.co2_g));
        lines.push(Line {
            name: format!("{} ({})", family.label(), family.dimension),
            color: PALETTE[i % PALETTE.len()],
            points: pts.iter().map(|p| (p.co2_g, p.test * sc)).collect(),
            texts: pts.iter().map(|p| short_policy(&p.policy)).collect(),
        });
    }
    let answer = fr
        .cheapest_within_tolerance
        .map(|i| &fr.points[i])
        .map(|p| ((p.co2_g, p.test * sc), RGBColor(0, 0, 0)));
    Chart {
        caption: format!(
            "Test {} against CO2 per run, every family × policy ({})",
            metric_name(fr.metric),
            fr.datasets.join(", ")
        ),
        x_desc: "g CO2-eq per run (mean over the datasets)".into(),
        y_desc: format!("test {} (mean over the datasets)", metric_name(fr.metric)),
        lines,
        markers: vec![Markers {
            name: "most sustainable within tolerance".into(),
            shape: Shape::Ring,
            legend_color: RGBColor(0, 0, 0),
            points: answer.into_iter().collect(),
        }],
        x_zero: true,
        y_zero: false,
        zero_lines: false,
    }
}

/// `full`, `pat`, `lit`, `def`: the point texts.
fn short_policy(label: &str) -> String {
    match label {
        "full" => "full".into(),
        l if l.starts_with("patience") => "pat".into(),
        l if l.contains("literal") => "lit".into(),
        l if l.contains("default") => "def".into(),
        l => l.chars().take(4).collect(),
    }
}

/// The energy plot: per family, one point per dataset, energy per epoch against the epoch of
/// the best validation.
pub(crate) fn energy_chart(t: &Tradeoff) -> Chart {
    let markers = t
        .families
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let color = PALETTE[i % PALETTE.len()];
            Markers {
                name: format!("{} ({})", f.family.label(), f.family.dimension),
                shape: Shape::CYCLE[i % Shape::CYCLE.len()],
                legend_color: color,
                points: t
                    .groups
                    .iter()
                    .filter(|g| g.family == f.family)
                    .filter_map(|g| Some(((g.best_epoch.mean, g.joules_per_epoch?.mean), color)))
                    .collect(),
            }
        })
        .collect();
    Chart {
        caption: "Energy per epoch and epochs to the best validation, per family and dataset"
            .into(),
        x_desc: "epoch of the best validation metric (full run, mean over seeds)".into(),
        y_desc: "joules per epoch".into(),
        lines: Vec::new(),
        markers,
        x_zero: true,
        y_zero: true,
        zero_lines: false,
    }
}

/// Writes every file into `dir` (created if missing).
pub fn write_all(t: &Tradeoff, dir: &Path) -> Result<TradeoffFiles, ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e))?;
    let files = TradeoffFiles {
        json: dir.join("tradeoff.json"),
        csv: dir.join("tradeoff.csv"),
        markdown: dir.join("tradeoff.md"),
        plots: Vec::new(),
    };
    write_json(t, &files.json)?;
    write_csv(&CSV_HEADER, csv_rows(t), &files.csv)?;
    write_text(&markdown(t), &files.markdown)?;
    let mut plots = Vec::new();
    let mut charts: Vec<(String, Chart)> = t
        .frontiers
        .iter()
        .map(|fr| {
            (
                format!("frontier-{}", slug(metric_name(fr.metric))),
                frontier_chart(fr),
            )
        })
        .collect();
    charts.push(("energy".into(), energy_chart(t)));
    for (stem, chart) in charts {
        let (png, svg) = (
            dir.join(format!("{stem}.png")),
            dir.join(format!("{stem}.svg")),
        );
        save_chart(&chart, &png, &svg)?;
        plots.extend([png, svg]);
    }
    Ok(TradeoffFiles { plots, ..files })
}
