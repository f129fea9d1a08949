//! [`write_all`]: every file of a report into one folder, and [`ReportFiles`], their paths.

use std::path::{Path, PathBuf};

use super::StudyReport;
use super::chart::{Chart, render_png, render_svg};
use super::document::{html, markdown};
use super::error::ReportError;
use super::files::{write_aggregate_csv, write_json, write_study_csv, write_text};
use super::font::{FAMILY, register};
use super::plots::{curve_chart, frontier_chart};

/// The paths of the files [`write_all`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFiles {
    /// `study.json`: the whole [`StudyReport`].
    pub study_json: PathBuf,
    /// `study.csv`: one row per run, all seeds.
    pub study_csv: PathBuf,
    /// `aggregate.csv`: one row per policy label, mean and std over seeds.
    pub aggregate_csv: PathBuf,
    /// `curve.png`: validation metric against cumulative CO2-eq.
    pub curve_png: PathBuf,
    /// `curve.svg`: the same plot as SVG.
    pub curve_svg: PathBuf,
    /// `frontier.png`: %ΔPerf against %ΔEmiss.
    pub frontier_png: PathBuf,
    /// `frontier.svg`: the same plot as SVG.
    pub frontier_svg: PathBuf,
    /// `report.html`: self-contained report.
    pub report_html: PathBuf,
    /// `report.md`: Markdown report.
    pub report_md: PathBuf,
}

impl ReportFiles {
    /// The file names inside `dir`.
    fn in_dir(dir: &Path) -> Self {
        Self {
            study_json: dir.join("study.json"),
            study_csv: dir.join("study.csv"),
            aggregate_csv: dir.join("aggregate.csv"),
            curve_png: dir.join("curve.png"),
            curve_svg: dir.join("curve.svg"),
            frontier_png: dir.join("frontier.png"),
            frontier_svg: dir.join("frontier.svg"),
            report_html: dir.join("report.html"),
            report_md: dir.join("report.md"),
        }
    }

    /// Every path, in the order listed above.
    pub fn paths(&self) -> [&Path; 9] {
        [
            &self.study_json,
            &self.study_csv,
            &self.aggregate_csv,
            &self.curve_png,
            &self.curve_svg,
            &self.frontier_png,
            &self.frontier_svg,
            &self.report_html,
            &self.report_md,
        ]
    }
}

/// Writes everything into `dir` (created if missing) and returns the paths written.
///
/// The plots' texts use the font embedded in the binary (`report::font`).
pub fn write_all(report: &StudyReport, dir: &Path) -> Result<ReportFiles, ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e))?;
    let files = ReportFiles::in_dir(dir);
    write_json(report, &files.study_json)?;
    write_study_csv(report, &files.study_csv)?;
    write_aggregate_csv(report, &files.aggregate_csv)?;

    let mut svgs = Vec::with_capacity(2);
    for (chart, png, svg) in [
        (curve_chart(report), &files.curve_png, &files.curve_svg),
        (
            frontier_chart(report),
            &files.frontier_png,
            &files.frontier_svg,
        ),
    ] {
        svgs.push(save_chart(&chart, png, svg)?);
    }

    write_text(&markdown(report), &files.report_md)?;
    write_text(&html(report, &svgs[0], &svgs[1]), &files.report_html)?;
    Ok(files)
}

/// Writes `chart` as `png` and `svg` (texts in the embedded font) and returns the SVG's text.
pub(crate) fn save_chart(chart: &Chart, png: &Path, svg: &Path) -> Result<String, ReportError> {
    register();
    let font = Some(FAMILY);
    let plot_err = |path: &Path| {
        let path = path.to_owned();
        move |message| ReportError::Plot { path, message }
    };
    let text = render_svg(chart, font).map_err(plot_err(svg))?;
    write_text(&text, svg)?;
    render_png(chart, png, font).map_err(plot_err(png))?;
    Ok(text)
}
