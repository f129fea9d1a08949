//! The aggregated table (one row per policy label, mean ± std over seeds) as cells, and its
//! terminal rendering [`table`]. The Markdown and HTML reports render the same cells.

use super::aggregate::{AggregateRow, aggregate};
use super::{RunSource, StudyReport, StudyRun, metric_name};

/// The aggregated table as text cells: a header and one row per label.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cells {
    /// Column titles.
    pub(crate) header: Vec<String>,
    /// One row of cells per label, as many as `header`.
    pub(crate) rows: Vec<Vec<String>>,
    /// Whether each column is numeric (right-aligned).
    pub(crate) numeric: Vec<bool>,
    /// Notes printed under the table, for the marks some cells carry.
    pub(crate) notes: Vec<String>,
}

/// The mark on a %ΔEmiss that is only the meter's noise, and its note.
const NOISE_MARK: &str = " (noise)";
/// The note explaining [`NOISE_MARK`].
const NOISE_NOTE: &str = "(noise): these runs stopped at the same epoch as the full run of \
                          their seed and did the same work; their %ΔEmiss is the meter's \
                          run-to-run noise, not a saving.";

/// The cells of the aggregated table of `report`.
pub(crate) fn cells(report: &StudyReport) -> Cells {
    let header = [
        "label".to_owned(),
        "runs".to_owned(),
        "epochs".to_owned(),
        format!("test {}", metric_name(report.metric)),
        "%ΔPerf".to_owned(),
        "%ΔEmiss".to_owned(),
        "kWh".to_owned(),
        "g CO2-eq".to_owned(),
        "wall s".to_owned(),
    ];
    let aggregated = aggregate(report);
    let rows = aggregated.iter().map(row_cells).collect();
    let mut numeric = vec![true; header.len()];
    numeric[0] = false;
    let mut notes = Vec::new();
    if aggregated.iter().any(|r| r.same_epochs_as_full) {
        notes.push(NOISE_NOTE.to_owned());
    }
    notes.extend(replay_notes(report));
    Cells {
        header: header.to_vec(),
        rows,
        numeric,
        notes,
    }
}

/// The cells of the per-run table of `report` (every run, all seeds).
pub(crate) fn run_cells(report: &StudyReport) -> Cells {
    let header = [
        "label".to_owned(),
        "seed".to_owned(),
        "stop".to_owned(),
        "best".to_owned(),
        format!("test {}", metric_name(report.metric)),
        "test at stop".to_owned(),
        "%ΔPerf".to_owned(),
        "%ΔEmiss".to_owned(),
        "kWh".to_owned(),
        "g CO2-eq".to_owned(),
        "wall s".to_owned(),
        "measured".to_owned(),
        "source".to_owned(),
    ];
    let rows = report
        .runs
        .iter()
        .map(|r| {
            let sig = |x: f64| stat(Some(x), None, None, false, false);
            vec![
                r.label.clone(),
                r.seed.to_string(),
                r.stop_epoch.to_string(),
                r.best_epoch.to_string(),
                value(r.test_metric, 4, false),
                value(r.test_at_stop, 4, false),
                value(r.delta_perf_pct, 2, true),
                value(r.delta_emiss_pct, 1, true),
                sig(r.kwh()),
                sig(r.co2_g),
                value(Some(r.wall_s), 1, false),
                if r.measured { "yes" } else { "no" }.to_owned(),
                source(r),
            ]
        })
        .collect();
    let mut numeric = vec![true; header.len()];
    numeric[0] = false;
    numeric[11] = false;
    numeric[12] = false;
    Cells {
        header: header.to_vec(),
        rows,
        numeric,
        notes: Vec::new(),
    }
}

/// How a run was obtained, as its cell: `live`, `replayed from full`, and with
/// `--live-policies` whether the live run and the replay agree (`= live` / `≠ live`,
/// `= replay` / `≠ replay`).
fn source(run: &StudyRun) -> String {
    let (mut text, other) = match (run.source, &run.replayed_from) {
        (RunSource::Replayed, Some(from)) => (format!("replayed from {from}"), "live"),
        (RunSource::Replayed, None) => ("replayed".to_owned(), "live"),
        (RunSource::Live, _) => ("live".to_owned(), "replay"),
    };
    match run.live_matches_replay {
        Some(true) => text.push_str(&format!(" (= {other})")),
        Some(false) => text.push_str(&format!(" (≠ {other})")),
        None => {}
    }
    text
}

/// The notes on replayed runs: which labels were replayed on which logs (not trained, with
/// epoch-only figures), and any live run that did not match its replay.
fn replay_notes(report: &StudyReport) -> Vec<String> {
    let mut replayed: Vec<String> = Vec::new();
    for run in report
        .runs
        .iter()
        .filter(|r| r.source == RunSource::Replayed)
    {
        let from = run.replayed_from.as_deref().unwrap_or("a live run");
        let item = format!("{} (from {from})", run.label);
        if !replayed.contains(&item) {
            replayed.push(item);
        }
    }
    let mut notes = Vec::new();
    if !replayed.is_empty() {
        notes.push(format!(
            "Replayed, not trained: {}, on the log of that run of the same seed. Their kWh, \
             g CO2-eq and wall s are the logged epochs' up to their stop, and their %ΔEmiss \
             compares them with the full run's epochs alone; a live run's are its whole charge \
             (epochs plus tail) against the full run's.",
            replayed.join(", ")
        ));
    }
    let mismatched: Vec<String> = report
        .runs
        .iter()
        .filter(|r| r.source == RunSource::Live && r.live_matches_replay == Some(false))
        .map(|r| format!("{} (seed {})", r.label, r.seed))
        .collect();
    if !mismatched.is_empty() {
        notes.push(format!(
            "Live ≠ replay: {} stopped or selected another epoch than the replay of its \
             policy (see the runs' table).",
            mismatched.join(", ")
        ));
    }
    notes
}

/// The cells of the replayed β grid of `report`.
pub(crate) fn frontier_cells(report: &StudyReport) -> Cells {
    let header = ["seed", "α", "β", "warm-up", "stop", "%ΔPerf", "%ΔEmiss"];
    let rows = report
        .frontier
        .iter()
        .map(|p| {
            vec![
                p.seed.to_string(),
                format!("{}", p.alpha),
                format!("{}", p.beta),
                p.warmup.to_string(),
                p.stop_epoch.to_string(),
                value(p.delta_perf_pct, 2, true),
                value(p.delta_emiss_pct, 1, true),
            ]
        })
        .collect();
    Cells {
        header: header.iter().map(|h| (*h).to_owned()).collect(),
        rows,
        numeric: vec![true; header.len()],
        notes: Vec::new(),
    }
}

/// The cells of one aggregated row.
fn row_cells(row: &AggregateRow) -> Vec<String> {
    let spread = row.runs > 1;
    let fixed = |mean: Option<f64>, std: Option<f64>, decimals: usize, signed: bool| {
        stat(mean, std, Some(decimals), signed, spread)
    };
    vec![
        row.label.clone(),
        row.runs.to_string(),
        fixed(
            Some(row.stop_epoch_mean),
            Some(row.stop_epoch_std),
            1,
            false,
        ),
        fixed(row.test_metric_mean, row.test_metric_std, 4, false),
        fixed(row.delta_perf_pct_mean, row.delta_perf_pct_std, 2, true),
        {
            let emiss = fixed(row.delta_emiss_pct_mean, row.delta_emiss_pct_std, 1, true);
            if row.same_epochs_as_full {
                emiss + NOISE_MARK
            } else {
                emiss
            }
        },
        stat(Some(row.kwh_mean), Some(row.kwh_std), None, false, spread),
        stat(
            Some(row.co2_g_mean),
            Some(row.co2_g_std),
            None,
            false,
            spread,
        ),
        fixed(Some(row.wall_s_mean), Some(row.wall_s_std), 1, false),
    ]
}

/// `mean ± std` (or `mean` alone without `spread`), `-` when the mean is missing or not finite.
/// `decimals: None` picks three significant digits from the mean.
pub(crate) fn stat(
    mean: Option<f64>,
    std: Option<f64>,
    decimals: Option<usize>,
    signed: bool,
    spread: bool,
) -> String {
    let Some(mean) = mean.filter(|m| m.is_finite()) else {
        return "-".to_owned();
    };
    let decimals = decimals.unwrap_or_else(|| significant_decimals(mean, 3));
    let mut text = if signed {
        format!("{mean:+.decimals$}")
    } else {
        format!("{mean:.decimals$}")
    };
    if let Some(std) = std.filter(|s| spread && s.is_finite()) {
        text.push_str(&format!(" ± {std:.decimals$}"));
    }
    text
}

/// A single optional figure with fixed decimals, `-` when missing or not finite.
pub(crate) fn value(x: Option<f64>, decimals: usize, signed: bool) -> String {
    stat(x, None, Some(decimals), signed, false)
}

/// The number of decimals that shows `x` with `digits` significant digits (at most 8).
pub(crate) fn significant_decimals(x: f64, digits: i32) -> usize {
    if x == 0.0 || !x.is_finite() {
        return 2;
    }
    let magnitude = x.abs().log10().floor() as i32;
    (digits - 1 - magnitude).clamp(0, 8) as usize
}

/// The terminal table (aggregated over seeds: label, epochs, test metric, %ΔPerf, %ΔEmiss, kWh,
/// g CO2-eq, wall s), as a String with aligned columns.
///
/// Each figure is `mean ± sample std` over the seeds of the label (the mean alone with one seed);
/// `-` marks a missing figure (e.g. the deltas of the full run).
pub fn table(report: &StudyReport) -> String {
    let cells = cells(report);
    let widths: Vec<usize> = (0..cells.header.len())
        .map(|c| {
            std::iter::once(&cells.header[c])
                .chain(cells.rows.iter().map(|r| &r[c]))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |row: &[String]| {
        let parts: Vec<String> = row
            .iter()
            .zip(&widths)
            .zip(&cells.numeric)
            .map(|((text, &w), &numeric)| {
                if numeric {
                    format!("{text:>w$}")
                } else {
                    format!("{text:<w$}")
                }
            })
            .collect();
        parts.join("  ").trim_end().to_owned()
    };
    let mut out = line(&cells.header);
    out.push('\n');
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    out.push_str(&rule.join("  "));
    out.push('\n');
    for row in &cells.rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    for note in &cells.notes {
        out.push_str(note);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::test_support::{report, run, two_seed_report};

    #[test]
    fn table_has_labels_and_hand_computed_figures() {
        let text = table(&two_seed_report());
        println!("{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "header, rule, two rows");
        assert!(lines[0].contains("test ROC-AUC"));
        assert!(lines[2].starts_with("full "));
        assert!(lines[3].starts_with("anges "));
        // anges: test 0.80 / 0.84 → 0.8200 ± 0.0283; %ΔEmiss −40 / −20 → −30.0 ± 14.1;
        // stop 6 / 8 → 7.0 ± 1.4; CO2 10 / 14 g → 12.0 ± 2.8.
        assert!(lines[3].contains("0.8200 ± 0.0283"), "{}", lines[3]);
        assert!(lines[3].contains("-30.0 ± 14.1"), "{}", lines[3]);
        assert!(lines[3].contains("-2.00 ± 1.41"), "{}", lines[3]);
        assert!(lines[3].contains("7.0 ± 1.4"), "{}", lines[3]);
        assert!(lines[3].contains("12.0 ± 2.8 "), "{}", lines[3]);
        // kWh: 1 and 2 → 1.50 ± 0.71.
        assert!(lines[3].contains("1.50 ± 0.71"), "{}", lines[3]);
        // The full run has no deltas.
        assert!(lines[2].contains(" - "), "{}", lines[2]);
    }

    #[test]
    fn columns_are_aligned() {
        let text = table(&two_seed_report());
        let widths: Vec<usize> = text.lines().map(|l| l.chars().count()).collect();
        // Every row ends with the right-aligned wall-clock column: same width.
        assert!(widths.iter().all(|&w| w == widths[0]), "{widths:?}\n{text}");
    }

    #[test]
    fn same_epochs_as_the_full_run_is_marked_as_noise() {
        let mut same = report(vec![
            run("full", 0, 10, Some(0.9), 3.6e6, 2.0, 3.0),
            run("anges", 0, 10, Some(0.9), 3.6e6, 1.99, 3.0),
            run("patience", 0, 6, Some(0.88), 2.0e6, 1.2, 2.0),
        ]);
        same.runs[1].delta_emiss_pct = Some(-0.5);
        same.runs[2].delta_emiss_pct = Some(-40.0);
        let text = table(&same);
        let anges = text.lines().find(|l| l.starts_with("anges")).unwrap();
        let patience = text.lines().find(|l| l.starts_with("patience")).unwrap();
        assert!(anges.contains("-0.5 (noise)"), "{text}");
        assert!(!patience.contains("(noise)"), "{text}");
        assert!(text.contains("not a saving"), "{text}");
        // Without such a row, no note.
        same.runs.remove(1);
        assert!(!table(&same).contains("not a saving"));
    }

    #[test]
    fn replayed_runs_are_marked_and_explained() {
        let mut r = report(vec![
            run("full", 0, 10, Some(0.9), 3.6e6, 2.0, 3.0),
            run("anges", 0, 10, Some(0.9), 3.6e6, 2.0, 3.0),
            run("anges-live", 0, 10, Some(0.9), 3.6e6, 1.99, 3.0),
            run("patience", 0, 6, Some(0.88), 2.0e6, 1.2, 2.0),
        ]);
        for i in [1, 3] {
            r.runs[i].source = RunSource::Replayed;
            r.runs[i].replayed_from = Some("full".to_owned());
            r.runs[i].delta_emiss_pct = Some(0.0);
        }
        r.runs[1].live_matches_replay = Some(true);
        r.runs[2].live_matches_replay = Some(true);
        let sources: Vec<String> = run_cells(&r)
            .rows
            .iter()
            .map(|row| row[12].clone())
            .collect();
        assert_eq!(
            sources,
            [
                "live",
                "replayed from full (= live)",
                "live (= replay)",
                "replayed from full"
            ]
        );
        let text = table(&r);
        // The replayed AN-GES row reached the full run's last epoch on its log: %ΔEmiss 0, not
        // meter noise; its live twin's is.
        let anges = text.lines().find(|l| l.starts_with("anges ")).unwrap();
        assert!(!anges.contains("(noise)"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("anges-live") && l.contains("(noise)"))
        );
        assert!(
            text.contains("Replayed, not trained: anges (from full), patience (from full)"),
            "{text}"
        );
        assert!(!text.contains("Live ≠ replay"), "{text}");
        r.runs[1].live_matches_replay = Some(false);
        r.runs[2].live_matches_replay = Some(false);
        assert!(table(&r).contains("Live ≠ replay: anges-live (seed 0)"));
        assert_eq!(source(&r.runs[1]), "replayed from full (≠ live)");
    }

    #[test]
    fn single_seed_shows_means_only() {
        let text = table(&report(vec![run(
            "full",
            0,
            10,
            Some(0.9),
            3.6e6,
            2.0,
            3.0,
        )]));
        assert!(!text.contains('±'), "{text}");
        assert!(text.contains("0.9000"), "{text}");
    }

    #[test]
    fn significant_digits() {
        assert_eq!(significant_decimals(0.00251, 3), 5);
        assert_eq!(significant_decimals(12.0, 3), 1);
        assert_eq!(significant_decimals(1234.0, 3), 0);
        assert_eq!(stat(Some(f64::NAN), Some(1.0), Some(2), false, true), "-");
        assert_eq!(value(Some(1.5), 1, true), "+1.5");
    }
}
