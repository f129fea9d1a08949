//! The human-readable reports: `report.md` (Markdown, linking the PNG plots) and `report.html`
//! (self-contained: both SVG plots inlined, tables as HTML, every string escaped). Both state
//! the study's setting (command, meter, metric, seeds) and the definitions of %ΔPerf and
//! %ΔEmiss.

use std::fmt::Write as _;

use super::table::{Cells, cells, frontier_cells, run_cells};
use super::{RunSource, StudyReport, metric_name};

/// The definitions both reports state, as (name, formula, explanation) in plain text.
fn definitions(report: &StudyReport) -> [(&'static str, &'static str, String); 2] {
    let direction = if report.metric.higher_is_better() {
        format!(
            "{} is higher-is-better, so the sign is kept",
            metric_name(report.metric)
        )
    } else {
        format!(
            "{} is lower-is-better, so the sign is flipped",
            metric_name(report.metric)
        )
    };
    [
        (
            "%ΔPerf",
            "100·(P_test(G) − P_test(F)) / |P_test(F)|",
            format!(
                "sign flipped for lower-is-better metrics, so that a positive value always means \
                 better than the full run ({direction}). P_test is the test metric of the weights \
                 each run delivers (the best validation epoch up to its stop); G is the run of a \
                 policy and F the full run of the same seed."
            ),
        ),
        (
            "%ΔEmiss",
            "100·(E(G) − E(F)) / E(F)",
            "E is the CO2-eq emitted by a run's epochs; F is the full run of the same seed, so a \
             negative value is a saving."
                .to_owned(),
        ),
    ]
}

/// The number of runs, and how many of them were replayed rather than trained: `5 (2
/// replayed on a live run's log, not trained)`.
fn run_count(report: &StudyReport) -> String {
    let replayed = report
        .runs
        .iter()
        .filter(|r| r.source == RunSource::Replayed)
        .count();
    if replayed == 0 {
        report.runs.len().to_string()
    } else {
        format!(
            "{} ({replayed} replayed on a live run's log, not trained)",
            report.runs.len()
        )
    }
}

/// The seeds as `0, 1, 2`.
fn seed_list(report: &StudyReport) -> String {
    let seeds: Vec<String> = report.seeds.iter().map(u64::to_string).collect();
    if seeds.is_empty() {
        "none".to_owned()
    } else {
        seeds.join(", ")
    }
}

/// `text` with the characters Markdown would interpret backslash-escaped (table cells and
/// running text).
pub(crate) fn md_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

/// `cells` as a Markdown table.
fn md_table(cells: &Cells) -> String {
    let row = |r: &[String]| {
        let escaped: Vec<String> = r.iter().map(|c| md_escape(c)).collect();
        format!("| {} |\n", escaped.join(" | "))
    };
    let mut out = row(&cells.header);
    let rule: Vec<&str> = cells
        .numeric
        .iter()
        .map(|&n| if n { "---:" } else { ":---" })
        .collect();
    out.push_str(&format!("|{}|\n", rule.join("|")));
    for r in &cells.rows {
        out.push_str(&row(r));
    }
    for note in &cells.notes {
        out.push_str(&format!("\n{}\n", md_escape(note)));
    }
    out
}

/// A fenced code block holding `text` (the fence is longer than any backtick run inside).
fn md_code(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}text\n{text}\n{fence}\n")
}

/// The Markdown report; the plots are linked as `curve.png` and `frontier.png` next to it.
pub(crate) fn markdown(report: &StudyReport) -> String {
    let mut md = String::new();
    let metric = metric_name(report.metric);
    let _ = writeln!(
        md,
        "# Trade-off study: {} / {}\n",
        md_escape(&report.dataset),
        md_escape(&report.model)
    );
    let _ = writeln!(
        md,
        "- Metric: {metric} (validation selects the delivered weights, test reports)"
    );
    let _ = writeln!(md, "- Seeds: {}", seed_list(report));
    let _ = writeln!(md, "- Energy meter: {}", md_escape(&report.meter));
    for (what, value) in &report.setting {
        let _ = writeln!(md, "- {}: {}", md_escape(what), md_escape(value));
    }
    let _ = writeln!(
        md,
        "- Runs: {}; replayed β-grid points: {}\n",
        run_count(report),
        report.frontier.len()
    );
    let _ = writeln!(md, "Command:\n\n{}", md_code(&report.command));
    let _ = writeln!(md, "## Results (mean ± sample std over seeds)\n");
    md.push_str(&md_table(&cells(report)));
    md.push('\n');
    let _ = writeln!(md, "## Definitions\n");
    for (name, formula, text) in definitions(report) {
        let _ = writeln!(
            md,
            "- **{}** = `{formula}`: {}",
            md_escape(name),
            md_escape(&text)
        );
    }
    md.push('\n');
    let _ = writeln!(md, "## Plots\n");
    let _ = writeln!(
        md,
        "![validation {metric} vs cumulative CO2-eq](curve.png)\n\n\
         Validation {metric} against cumulative CO2-eq, one line per policy (first seed), the \
         ringed marker where each run stopped ([SVG](curve.svg)).\n"
    );
    let _ = writeln!(
        md,
        "![%ΔPerf vs %ΔEmiss](frontier.png)\n\n\
         %ΔPerf against %ΔEmiss: the β grid replayed on the full runs (line) and the study's runs \
         (markers) ([SVG](frontier.svg)).\n"
    );
    let _ = writeln!(md, "## Runs (all seeds)\n");
    md.push_str(&md_table(&run_cells(report)));
    md.push('\n');
    let _ = writeln!(
        md,
        "Data: [study.json](study.json) (everything, with per-epoch trajectories), \
         [study.csv](study.csv) (one row per run), [aggregate.csv](aggregate.csv) (one row per \
         policy)."
    );
    md
}

/// `text` escaped for HTML text and attribute values.
pub(crate) fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// `cells` as an HTML table.
fn html_table(cells: &Cells) -> String {
    let class = |numeric: bool| if numeric { " class=\"num\"" } else { "" };
    let mut out = String::from("<table>\n<thead><tr>");
    for (h, &n) in cells.header.iter().zip(&cells.numeric) {
        let _ = write!(out, "<th{}>{}</th>", class(n), html_escape(h));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in &cells.rows {
        out.push_str("<tr>");
        for (c, &n) in row.iter().zip(&cells.numeric) {
            let _ = write!(out, "<td{}>{}</td>", class(n), html_escape(c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    for note in &cells.notes {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", html_escape(note));
    }
    out
}

/// The page's style sheet.
const STYLE: &str = "body{font-family:sans-serif;max-width:1040px;margin:2em auto;padding:0 1em;\
color:#222}table{border-collapse:collapse;margin:1em 0;font-size:0.92em}\
th,td{border-bottom:1px solid #ddd;padding:0.3em 0.7em;white-space:nowrap}\
th{background:#f4f4f4}.num{text-align:right;font-variant-numeric:tabular-nums}\
pre{background:#f6f6f6;padding:0.8em;overflow-x:auto;white-space:pre-wrap}\
figure{margin:1.5em 0}figure svg{max-width:100%;height:auto}figcaption{color:#555}\
.note{color:#555;font-size:0.9em}";

/// The self-contained HTML report, with the two plots' SVG documents inlined.
pub(crate) fn html(report: &StudyReport, curve_svg: &str, frontier_svg: &str) -> String {
    let metric = metric_name(report.metric);
    let title = format!(
        "Trade-off study: {} / {}",
        html_escape(&report.dataset),
        html_escape(&report.model)
    );
    let mut h = String::new();
    let _ = writeln!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>"
    );
    let _ = writeln!(
        h,
        "<ul>\n<li>Metric: {metric} (validation selects the delivered weights, test reports)</li>\n\
         <li>Seeds: {}</li>\n<li>Energy meter: {}</li>\n{}\
         <li>Runs: {}; replayed β-grid points: {}</li>\n</ul>",
        html_escape(&seed_list(report)),
        html_escape(&report.meter),
        report
            .setting
            .iter()
            .map(|(what, value)| format!(
                "<li>{}: {}</li>\n",
                html_escape(what),
                html_escape(value)
            ))
            .collect::<String>(),
        html_escape(&run_count(report)),
        report.frontier.len()
    );
    let _ = writeln!(
        h,
        "<p>Command:</p>\n<pre><code>{}</code></pre>",
        html_escape(&report.command)
    );
    let _ = writeln!(h, "<h2>Results (mean ± sample std over seeds)</h2>");
    h.push_str(&html_table(&cells(report)));
    let _ = writeln!(h, "<h2>Definitions</h2>\n<ul>");
    for (name, formula, text) in definitions(report) {
        let _ = writeln!(
            h,
            "<li><strong>{}</strong> = <code>{}</code>: {}</li>",
            html_escape(name),
            html_escape(formula),
            html_escape(&text)
        );
    }
    let _ = writeln!(h, "</ul>\n<h2>Plots</h2>");
    let _ = writeln!(
        h,
        "<figure>\n{curve_svg}\n<figcaption>Validation {metric} against cumulative CO2-eq, one \
         line per policy (first seed), the ringed marker where each run stopped.</figcaption>\n\
         </figure>"
    );
    let _ = writeln!(
        h,
        "<figure>\n{frontier_svg}\n<figcaption>%ΔPerf against %ΔEmiss: the β grid replayed on \
         the full runs (line) and the study's runs (markers).</figcaption>\n</figure>"
    );
    let _ = writeln!(h, "<h2>Runs (all seeds)</h2>");
    h.push_str(&html_table(&run_cells(report)));
    if !report.frontier.is_empty() {
        let _ = writeln!(h, "<h2>Replayed β grid</h2>");
        h.push_str(&html_table(&frontier_cells(report)));
    }
    let _ = writeln!(
        h,
        "<p>Data: <a href=\"study.json\">study.json</a>, <a href=\"study.csv\">study.csv</a>, \
         <a href=\"aggregate.csv\">aggregate.csv</a>.</p>\n</body>\n</html>"
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::test_support::{report, run};

    #[test]
    fn escaping() {
        assert_eq!(
            html_escape("a<b & \"c\" 'd'>"),
            "a&lt;b &amp; &quot;c&quot; &#39;d&#39;&gt;"
        );
        assert_eq!(md_escape("a|b_c*"), "a\\|b\\_c\\*");
        assert_eq!(md_code("x ``` y"), "````text\nx ``` y\n````\n");
    }

    #[test]
    fn reports_escape_strings_and_state_definitions() {
        let mut r = report(vec![run("a<b>|c", 0, 3, Some(0.5), 1.0, 1.0, 1.0)]);
        r.command = "anges-train study --dataset '<x>' && echo".to_owned();
        let page = html(&r, "<svg id=\"c\"></svg>", "<svg id=\"f\"></svg>");
        assert!(page.contains("a&lt;b&gt;|c"));
        assert!(!page.contains("a<b>"));
        assert!(page.contains("--dataset &#39;&lt;x&gt;&#39; &amp;&amp; echo"));
        assert!(page.contains("<svg id=\"c\"></svg>") && page.contains("<svg id=\"f\"></svg>"));
        assert!(page.contains("100·(P_test(G) − P_test(F)) / |P_test(F)|"));
        let md = markdown(&r);
        assert!(md.contains("a\\<b\\>\\|c"), "{md}");
        assert!(md.contains("100·(E(G) − E(F)) / E(F)"));
        assert!(md.contains("](curve.png)") && md.contains("](frontier.png)"));
        assert!(md.contains("anges-train study --dataset '<x>' && echo"));
    }

    #[test]
    fn reports_state_the_setting_lines() {
        let mut r = report(Vec::new());
        r.setting.insert(
            0,
            (
                "Carbon intensity".to_owned(),
                "56 g/kWh (region FR (56 g/kWh), flag), PUE 1.200".to_owned(),
            ),
        );
        for page in [markdown(&r), html(&r, "", "")] {
            assert!(page.contains("Carbon intensity: 56 g/kWh"), "{page}");
            assert!(page.contains("PUE 1.200"), "{page}");
            assert!(page.contains("Starting weights: from scratch"), "{page}");
        }
    }
}
