//! The two study plots as [`Chart`]s: `curve` (validation metric against cumulative CO2-eq,
//! one line per policy of the first seed, each stop marked) and `frontier` (%ΔPerf against
//! %ΔEmiss: the replayed β grid joined by a line, and the study's other runs as markers).

use plotters::style::RGBColor;

use super::aggregate::labels_in_order;
use super::chart::{Chart, Line, Markers, Shape};
use super::{StudyReport, metric_name};

/// Colours of the policy labels, in order of first appearance (Tableau 10).
pub(crate) const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Colours of the replayed β-grid lines, one per seed.
const GRID_PALETTE: [RGBColor; 3] = [
    RGBColor(40, 40, 40),
    RGBColor(110, 110, 110),
    RGBColor(165, 165, 165),
];

/// The label of the reference run.
const FULL: &str = "full";

/// The colour of `label` (stable across both plots).
fn label_color(labels: &[&str], label: &str) -> RGBColor {
    let index = labels.iter().position(|l| *l == label).unwrap_or(0);
    PALETTE[index % PALETTE.len()]
}

/// The seed the curve plot shows: the first of `report.seeds`, else the first run's.
pub(crate) fn curve_seed(report: &StudyReport) -> Option<u64> {
    report
        .seeds
        .first()
        .copied()
        .or_else(|| report.runs.first().map(|r| r.seed))
}

/// The caption of the curve plot (e.g. `BBBP / gin: validation ROC-AUC vs cumulative CO2-eq
/// (seed 0)`).
pub fn curve_caption(report: &StudyReport) -> String {
    let seed = curve_seed(report).map_or_else(|| "no runs".to_owned(), |s| format!("seed {s}"));
    format!(
        "{} / {}: validation {} vs cumulative CO2-eq ({seed})",
        report.dataset,
        report.model,
        metric_name(report.metric)
    )
}

/// The caption of the frontier plot.
pub fn frontier_caption(report: &StudyReport) -> String {
    format!(
        "{} / {}: %ΔPerf vs %ΔEmiss (test {}), β grid and runs",
        report.dataset,
        report.model,
        metric_name(report.metric)
    )
}

/// Validation metric against cumulative CO2-eq for every run of the first seed, with a ringed
/// marker at each run's stop epoch.
pub(crate) fn curve_chart(report: &StudyReport) -> Chart {
    let labels = labels_in_order(&report.runs);
    let seed = curve_seed(report);
    let finite =
        |x: f64, y: Option<f64>| y.filter(|y| y.is_finite() && x.is_finite()).map(|y| (x, y));
    let mut lines = Vec::new();
    let mut stops = Vec::new();
    for run in report.runs.iter().filter(|r| Some(r.seed) == seed) {
        let color = label_color(&labels, &run.label);
        let points: Vec<(f64, f64)> = run
            .epochs
            .iter()
            .filter_map(|e| finite(e.co2_g, e.valid))
            .collect();
        let stop = run
            .epochs
            .iter()
            .find(|e| e.epoch == run.stop_epoch)
            .and_then(|e| finite(e.co2_g, e.valid));
        if let Some(p) = stop {
            stops.push((p, color));
        }
        lines.push(Line {
            name: run.label.clone(),
            color,
            points,
            texts: Vec::new(),
        });
    }
    Chart {
        caption: curve_caption(report),
        x_desc: "cumulative CO2-eq (g)".to_owned(),
        y_desc: format!("validation {}", metric_name(report.metric)),
        lines,
        markers: vec![Markers {
            name: "stop epoch".to_owned(),
            shape: Shape::Ring,
            legend_color: RGBColor(200, 200, 200),
            points: stops,
        }],
        x_zero: true,
        y_zero: false,
        zero_lines: false,
    }
}

/// `value` as written in the point texts (shortest exact form: `0.5`, `0.001`).
fn param(value: f64) -> String {
    format!("{value}")
}

/// %ΔPerf against %ΔEmiss: the β grid of each replayed seed joined by a line sorted by %ΔEmiss
/// (the points of the first seed labelled with β, or α and β when α varies too), and every
/// run other than `full` (live or replayed) as a marker of its label.
pub(crate) fn frontier_chart(report: &StudyReport) -> Chart {
    let labels = labels_in_order(&report.runs);
    let both = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) if x.is_finite() && y.is_finite() => Some((x, y)),
        _ => None,
    };
    let mut seeds: Vec<u64> = Vec::new();
    for p in &report.frontier {
        if !seeds.contains(&p.seed) {
            seeds.push(p.seed);
        }
    }
    let alpha_varies = report
        .frontier
        .iter()
        .any(|p| p.alpha.to_bits() != report.frontier[0].alpha.to_bits());
    let lines = seeds
        .iter()
        .enumerate()
        .map(|(i, &seed)| {
            let mut points: Vec<((f64, f64), String)> = report
                .frontier
                .iter()
                .filter(|p| p.seed == seed)
                .filter_map(|p| {
                    let xy = both(p.delta_emiss_pct, p.delta_perf_pct)?;
                    let text = if alpha_varies {
                        format!("α={}, β={}", param(p.alpha), param(p.beta))
                    } else {
                        format!("β={}", param(p.beta))
                    };
                    Some((xy, text))
                })
                .collect();
            points.sort_by(|a, b| a.0.0.total_cmp(&b.0.0));
            let name = if seeds.len() == 1 {
                format!("β grid replayed (seed {seed})")
            } else {
                format!("β grid, seed {seed}")
            };
            Line {
                name,
                color: GRID_PALETTE[i % GRID_PALETTE.len()],
                texts: if i == 0 {
                    points.iter().map(|(_, t)| t.clone()).collect()
                } else {
                    Vec::new()
                },
                points: points.into_iter().map(|(p, _)| p).collect(),
            }
        })
        .collect();
    let markers = labels
        .iter()
        .filter(|l| **l != FULL)
        .enumerate()
        .map(|(i, &label)| {
            let color = label_color(&labels, label);
            Markers {
                name: label.to_owned(),
                shape: Shape::CYCLE[i % Shape::CYCLE.len()],
                legend_color: color,
                points: report
                    .runs
                    .iter()
                    .filter(|r| r.label == label)
                    .filter_map(|r| both(r.delta_emiss_pct, r.delta_perf_pct))
                    .map(|p| (p, color))
                    .collect(),
            }
        })
        .collect();
    Chart {
        caption: frontier_caption(report),
        x_desc: "%ΔEmiss (vs full run, same seed)".to_owned(),
        y_desc: format!("%ΔPerf (test {})", metric_name(report.metric)),
        lines,
        markers,
        x_zero: true,
        y_zero: true,
        zero_lines: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::FrontierPoint;
    use crate::report::test_support::{report, run};

    fn point(seed: u64, beta: f64, emiss: Option<f64>, perf: Option<f64>) -> FrontierPoint {
        FrontierPoint {
            seed,
            alpha: 0.1,
            beta,
            warmup: 2,
            stop_epoch: 5,
            delta_perf_pct: perf,
            delta_emiss_pct: emiss,
        }
    }

    #[test]
    fn frontier_sorted_by_emissions_and_skips_missing() {
        let mut r = report(vec![
            run("full", 0, 10, Some(0.8), 1.0, 1.0, 1.0),
            run("anges", 0, 5, Some(0.8), 1.0, 1.0, 1.0),
        ]);
        r.runs[1].delta_emiss_pct = Some(-50.0);
        r.runs[1].delta_perf_pct = Some(-1.0);
        r.frontier = vec![
            point(0, 0.1, Some(-10.0), Some(0.0)),
            point(0, 0.5, Some(-60.0), Some(-3.0)),
            point(0, 0.3, None, Some(-1.0)),
            point(0, 0.2, Some(f64::NAN), Some(-1.0)),
            point(0, 0.4, Some(-30.0), Some(-2.0)),
        ];
        let c = frontier_chart(&r);
        assert_eq!(c.lines.len(), 1);
        assert_eq!(
            c.lines[0].points,
            vec![(-60.0, -3.0), (-30.0, -2.0), (-10.0, 0.0)]
        );
        assert_eq!(c.lines[0].texts, vec!["β=0.5", "β=0.4", "β=0.1"]);
        // `full` is the origin, not a marker series.
        assert_eq!(c.markers.len(), 1);
        assert_eq!(c.markers[0].name, "anges");
        assert_eq!(c.markers[0].points[0].0, (-50.0, -1.0));
    }

    #[test]
    fn curve_uses_first_seed_and_marks_stops() {
        let mut r = report(vec![
            run("full", 1, 10, Some(0.8), 1.0, 1.0, 1.0),
            run("full", 0, 10, Some(0.8), 1.0, 1.0, 1.0),
            run("anges", 0, 4, Some(0.8), 1.0, 1.0, 1.0),
        ]);
        r.seeds = vec![0, 1];
        let c = curve_chart(&r);
        assert_eq!(c.lines.len(), 2);
        assert_eq!(c.lines[1].name, "anges");
        assert_eq!(c.lines[1].points.len(), 4);
        assert_eq!(c.markers[0].points.len(), 2);
        // anges stops at epoch 4: its marker is its last point.
        assert_eq!(c.markers[0].points[1].0, *c.lines[1].points.last().unwrap());
        assert!(
            c.caption
                .contains("validation ROC-AUC vs cumulative CO2-eq (seed 0)")
        );
    }
}
