//! `report::write_all` end to end on a synthetic study (2 seeds × full / patience / anges /
//! molpeg-0.5, 10 epochs, a 5-point β grid per seed): every file exists and parses back (JSON
//! round trip, CSV rows, PNG signature and size from the IHDR chunk, SVG and HTML content), and
//! degenerate studies (no frontier, one run, constant CO2, missing metrics, nothing at all)
//! still write every file.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anges_trainer::data::Metric;
use anges_trainer::report::{
    AggregateRow, EpochPoint, FrontierPoint, PLOT_HEIGHT, PLOT_WIDTH, ReportFiles, RunSource,
    StudyCsvRow, StudyReport, StudyRun, curve_caption, frontier_caption, table, write_all,
};

const LABELS: [&str; 4] = ["full", "patience", "anges", "molpeg-0.5"];

/// A run of `label`/`seed` stopping at `stop` out of 10 epochs, with `rate` g CO2 per epoch.
fn run(label: &str, seed: u64, stop: usize, rate: f64) -> StudyRun {
    let s = seed as f64 * 0.01;
    let epochs: Vec<EpochPoint> = (1..=stop)
        .map(|e| {
            let e_f = e as f64;
            EpochPoint {
                epoch: e,
                valid: Some(0.9 - 0.3 / e_f + s),
                test: Some(0.88 - 0.3 / e_f + s),
                co2_g: rate * e_f,
                energy_j: rate * e_f * 8000.0,
            }
        })
        .collect();
    let last = epochs.last().cloned();
    StudyRun {
        label: label.to_owned(),
        seed,
        run_dir: PathBuf::from(format!("runs/{label}/seed-{seed}")),
        stop_epoch: stop,
        best_epoch: stop,
        test_metric: last.as_ref().and_then(|e| e.test),
        test_at_stop: last.as_ref().and_then(|e| e.test),
        energy_j: last.as_ref().map_or(0.0, |e| e.energy_j),
        co2_g: last.as_ref().map_or(0.0, |e| e.co2_g),
        wall_s: 12.5 * stop as f64,
        measured: seed == 0,
        epochs,
        delta_perf_pct: None,
        delta_emiss_pct: None,
        source: RunSource::Live,
        replayed_from: None,
        live_matches_replay: None,
    }
}

/// Fills the deltas of every run against the full run of its seed.
fn fill_deltas(runs: &mut [StudyRun]) {
    let full: Vec<(u64, Option<f64>, f64)> = runs
        .iter()
        .filter(|r| r.label == "full")
        .map(|r| (r.seed, r.test_metric, r.co2_g))
        .collect();
    for r in runs.iter_mut().filter(|r| r.label != "full") {
        if let Some(&(_, p_full, e_full)) = full.iter().find(|f| f.0 == r.seed) {
            r.delta_perf_pct = match (r.test_metric, p_full) {
                (Some(g), Some(f)) => Some(100.0 * (g - f) / f.abs()),
                _ => None,
            };
            r.delta_emiss_pct = Some(100.0 * (r.co2_g - e_full) / e_full);
        }
    }
}

/// The synthetic study: 2 seeds × 4 policies, 10 epochs, 5 β per seed.
fn synthetic() -> StudyReport {
    let mut runs = Vec::new();
    for seed in [0, 1] {
        runs.push(run("full", seed, 10, 2.0));
        runs.push(run("patience", seed, 7 + seed as usize, 2.0));
        runs.push(run("anges", seed, 5, 2.0));
        runs.push(run("molpeg-0.5", seed, 10, 1.2));
    }
    fill_deltas(&mut runs);
    let frontier = [0u64, 1]
        .iter()
        .flat_map(|&seed| {
            [0.01, 0.02, 0.05, 0.1, 0.2]
                .iter()
                .enumerate()
                .map(move |(i, &beta)| {
                    let stop = 10 - 1 - i;
                    FrontierPoint {
                        seed,
                        alpha: 0.3,
                        beta,
                        warmup: 2,
                        stop_epoch: stop,
                        delta_perf_pct: Some(-0.4 * (i * i) as f64 - seed as f64 * 0.1),
                        delta_emiss_pct: Some(-10.0 * (10 - stop) as f64),
                    }
                })
        })
        .collect();
    StudyReport {
        dataset: "BBBP".to_owned(),
        model: "gin".to_owned(),
        metric: Metric::RocAuc,
        seeds: vec![0, 1],
        command: "anges-train study --dataset bbbp --model gin --seeds 0,1 --out \"r & d\""
            .to_owned(),
        meter: "local (estimated)".to_owned(),
        setting: vec![("Starting weights".to_owned(), "from scratch".to_owned())],
        runs,
        frontier,
    }
}

/// Width and height from the IHDR chunk, after checking the PNG signature.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.len() > 24, "{} is too short", path.display());
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    assert_eq!(&bytes[12..16], b"IHDR", "{}: first chunk", path.display());
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    (w, h)
}

/// `a` and `b` are the same JSON tree, numbers equal to within 2 ulps.
fn assert_same_json(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            let ulps = (x.to_bits() as i64).abs_diff(y.to_bits() as i64);
            assert!(x == y || ulps <= 2, "{at}: {x} != {y}");
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}: lengths");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                assert_same_json(x, y, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(
                x.keys().collect::<Vec<_>>(),
                y.keys().collect::<Vec<_>>(),
                "{at}"
            );
            for (k, v) in x {
                assert_same_json(v, &y[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

/// `write_all` into a fresh nested folder; checks every file is there, non-empty, and that the
/// PNGs have the plot size. Returns the folder (kept alive) and the paths.
fn write_checked(report: &StudyReport, name: &str) -> (tempfile::TempDir, ReportFiles) {
    // To look at the output: ANGES_REPORT_TEST_OUT=/some/folder cargo test --test integration report::.
    if let Some(out) = std::env::var_os("ANGES_REPORT_TEST_OUT") {
        write_all(report, &Path::new(&out).join(name)).unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("not/yet/there");
    let files = write_all(report, &dir).unwrap_or_else(|e| panic!("write_all: {e}"));
    let names = [
        "study.json",
        "study.csv",
        "aggregate.csv",
        "curve.png",
        "curve.svg",
        "frontier.png",
        "frontier.svg",
        "report.html",
        "report.md",
    ];
    for (path, name) in files.paths().iter().zip(names) {
        assert_eq!(*path, dir.join(name));
        let len = std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .len();
        assert!(len > 0, "{} is empty", path.display());
    }
    for png in [&files.curve_png, &files.frontier_png] {
        assert_eq!(
            png_size(png),
            (PLOT_WIDTH, PLOT_HEIGHT),
            "{}",
            png.display()
        );
    }
    for svg in [&files.curve_svg, &files.frontier_svg] {
        let text = std::fs::read_to_string(svg).unwrap();
        assert!(text.contains("<svg"), "{}", svg.display());
        assert!(text.trim_end().ends_with("</svg>"), "{}", svg.display());
    }
    (tmp, files)
}

#[test]
fn writes_every_file_and_they_parse_back() {
    let report = synthetic();
    let tmp = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let files = write_all(&report, tmp.path()).unwrap();
    eprintln!(
        "write_all on the synthetic study ({} runs, {} frontier points): {:.1} ms",
        report.runs.len(),
        report.frontier.len(),
        start.elapsed().as_secs_f64() * 1e3
    );
    drop(files);
    let (_tmp, files) = write_checked(&report, "synthetic");

    // study.json: the same report.
    let json = std::fs::read_to_string(&files.study_json).unwrap();
    let back: StudyReport = serde_json::from_str(&json).unwrap();
    if back != report {
        // serde_json without its `float_roundtrip` feature may misround the last bit of a
        // 17-digit float when parsing (the file itself holds the shortest exact form).
        eprintln!("study.json: floats parsed back within a few ulps, not bit for bit");
    }
    assert_same_json(
        &serde_json::to_value(&back).unwrap(),
        &serde_json::to_value(&report).unwrap(),
        "report",
    );

    // study.csv: one row per run, in order, with the scalar fields.
    let mut reader = csv::Reader::from_path(&files.study_csv).unwrap();
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header, StudyCsvRow::HEADER);
    let rows: Vec<StudyCsvRow> = reader.deserialize().collect::<Result<_, _>>().unwrap();
    assert_eq!(rows.len(), report.runs.len());
    for (row, run) in rows.iter().zip(&report.runs) {
        assert_eq!(
            (row.label.as_str(), row.seed),
            (run.label.as_str(), run.seed)
        );
        assert_eq!(row.stop_epoch, run.stop_epoch);
        assert_eq!(row.test_metric, run.test_metric);
        assert_eq!(row.delta_emiss_pct, run.delta_emiss_pct);
        assert_eq!(row.measured, run.measured);
        assert_eq!(row.run_dir, run.run_dir.display().to_string());
        assert!((row.kwh - run.kwh()).abs() < 1e-15);
    }
    assert_eq!(rows.iter().filter(|r| r.seed == 1).count(), 4);

    // aggregate.csv: one row per label, in order of appearance, 2 runs each.
    let agg: Vec<AggregateRow> = csv::Reader::from_path(&files.aggregate_csv)
        .unwrap()
        .deserialize()
        .collect::<Result<_, _>>()
        .unwrap();
    let labels: Vec<&str> = agg.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(labels, LABELS);
    assert!(agg.iter().all(|r| r.runs == 2));
    // patience stops at 7 and 8: 7.5 ± 0.707.
    assert!((agg[1].stop_epoch_mean - 7.5).abs() < 1e-12);
    assert!((agg[1].stop_epoch_std - 0.5f64.sqrt()).abs() < 1e-12);
    assert_eq!(agg[0].delta_perf_pct_mean, None);

    // Plots: captions, legends and β labels (the font is embedded).
    let curve = std::fs::read_to_string(&files.curve_svg).unwrap();
    let frontier = std::fs::read_to_string(&files.frontier_svg).unwrap();
    let caption = curve_caption(&report);
    assert_eq!(
        caption,
        "BBBP / gin: validation ROC-AUC vs cumulative CO2-eq (seed 0)"
    );
    assert!(curve.contains(&caption), "curve.svg lacks its caption");
    assert!(curve.contains("stop epoch"));
    assert!(frontier.contains(&frontier_caption(&report)));
    assert!(frontier.contains("β=0.05"), "β labels");
    assert!(frontier.contains("%ΔEmiss"), "x axis label");
    for label in &LABELS[1..] {
        assert!(curve.contains(label) && frontier.contains(label), "{label}");
    }

    // report.html: self-contained, both plots inline, every label, escaped command.
    let html = std::fs::read_to_string(&files.report_html).unwrap();
    assert_eq!(html.matches("<svg").count(), 2);
    assert!(html.contains(curve.trim()) && html.contains(frontier.trim()));
    assert!(html.contains("&quot;r &amp; d&quot;"), "command escaped");
    assert!(!html.contains("<img"), "no external images");
    for label in LABELS {
        assert!(html.contains(&format!("<td>{label}</td>")), "{label}");
    }
    assert!(html.contains("%ΔPerf") && html.contains("|P_test(F)|"));
    assert!(html.contains("local (estimated)"));

    // report.md: table, command, meter, definitions, relative plot links.
    let md = std::fs::read_to_string(&files.report_md).unwrap();
    for label in LABELS {
        assert!(
            md.contains(&format!("| {} |", label.replace('_', "\\_"))),
            "{label}"
        );
    }
    assert!(md.contains(&report.command));
    assert!(md.contains("local (estimated)"));
    assert!(md.contains("](curve.png)") && md.contains("](frontier.png)"));
    assert!(md.contains("100·(E(G) − E(F)) / E(F)"));

    // The terminal table shows every label.
    let text = table(&report);
    for label in LABELS {
        assert!(
            text.lines().any(|l| l.starts_with(label)),
            "{label}\n{text}"
        );
    }
}

#[test]
fn degenerate_studies_still_write_every_file() {
    // No frontier.
    let mut report = synthetic();
    report.frontier.clear();
    write_checked(&report, "no-frontier");

    // One run (the full one, no deltas), one seed.
    let mut one = synthetic();
    one.runs.truncate(1);
    one.seeds = vec![0];
    one.frontier.truncate(1);
    write_checked(&one, "one-run");

    // Constant CO2 (no meter: every value 0) and hence no %ΔEmiss; one epoch per run.
    let mut flat = synthetic();
    for r in &mut flat.runs {
        r.epochs.truncate(1);
        r.stop_epoch = 1;
        r.co2_g = 0.0;
        r.delta_emiss_pct = None;
        for e in &mut r.epochs {
            e.co2_g = 0.0;
        }
    }
    for p in &mut flat.frontier {
        p.delta_emiss_pct = Some(0.0);
        p.delta_perf_pct = Some(0.0);
    }
    write_checked(&flat, "flat");

    // Missing and NaN metrics everywhere, a lower-is-better metric.
    let mut missing = synthetic();
    missing.metric = Metric::Rmse;
    for r in &mut missing.runs {
        r.test_metric = None;
        r.delta_perf_pct = Some(f64::NAN);
        for e in &mut r.epochs {
            e.valid = if e.epoch % 2 == 0 {
                None
            } else {
                Some(f64::NAN)
            };
        }
    }
    for p in &mut missing.frontier {
        p.delta_perf_pct = None;
    }
    let (_tmp, files) = write_checked(&missing, "missing");
    let md = std::fs::read_to_string(&files.report_md).unwrap();
    assert!(md.contains("RMSE"));

    // Nothing at all.
    let empty = StudyReport {
        runs: Vec::new(),
        frontier: Vec::new(),
        seeds: Vec::new(),
        ..synthetic()
    };
    let (_tmp, files) = write_checked(&empty, "empty");
    let csv_text = std::fs::read_to_string(&files.study_csv).unwrap();
    assert_eq!(csv_text.lines().count(), 1, "header only");
    assert!(table(&empty).lines().count() == 2, "header and rule only");
}

#[test]
fn unwritable_folder_is_an_error_naming_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let blocker = tmp.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let err = write_all(&synthetic(), &blocker.join("sub")).unwrap_err();
    assert!(err.to_string().contains("a-file"), "{err}");
}

/// The boxes of the SVG `<text>` elements whose text starts with `prefix`: `(text, left, top,
/// right, bottom)`, the width estimated generously (0.62 em per character, DejaVu Sans' average
/// is ≈ 0.55 em).
fn svg_text_boxes(svg: &str, prefix: &str) -> Vec<(String, f64, f64, f64, f64)> {
    let attr = |tag: &str, name: &str| -> Option<f64> {
        let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        let end = start + tag[start..].find('"')?;
        tag[start..end].parse().ok()
    };
    let mut boxes = Vec::new();
    for piece in svg.split("<text").skip(1) {
        let Some(close) = piece.find('>') else {
            continue;
        };
        let (tag, rest) = (&piece[..close], &piece[close + 1..]);
        let text = rest.split("</text>").next().unwrap_or("").trim().to_owned();
        if !text.starts_with(prefix) {
            continue;
        }
        let (x, y, size) = (
            attr(tag, "x").unwrap(),
            attr(tag, "y").unwrap(),
            attr(tag, "font-size").unwrap_or(13.0),
        );
        let width = 0.62 * size * text.chars().count() as f64;
        boxes.push((text, x, y, x + width, y + size));
    }
    boxes
}

/// Issue 28: seven β values that all stop at the same epoch used to print their labels on top
/// of each other; labels are now merged where points coincide and placed where they overlap
/// nothing, and the legend stays inside the canvas.
#[test]
fn frontier_labels_never_overlap() {
    let mut report = synthetic();
    report.frontier = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5]
        .iter()
        .enumerate()
        .map(|(i, &beta)| FrontierPoint {
            seed: 0,
            alpha: 0.3,
            beta,
            warmup: 2,
            stop_epoch: 9,
            // Five share one point, two sit a hair away: every label wants the same place.
            delta_perf_pct: Some(if i < 5 { -0.4 } else { -0.41 }),
            delta_emiss_pct: Some(if i < 5 { -10.0 } else { -10.2 }),
        })
        .collect();
    report.runs[0].label = "a policy with a rather long descriptive label".to_owned();
    let (_tmp, files) = write_checked(&report, "overlap");
    let svg = std::fs::read_to_string(&files.frontier_svg).unwrap();
    let boxes = svg_text_boxes(&svg, "β=");
    assert!(!boxes.is_empty(), "no β label drawn");
    let shown: String = boxes.iter().map(|b| b.0.as_str()).collect();
    assert!(
        shown.contains("β=0.01") && shown.contains("0.5"),
        "coinciding β values are merged into one label: {boxes:?}"
    );
    for (i, a) in boxes.iter().enumerate() {
        assert!(
            a.1 >= 0.0 && a.3 <= f64::from(PLOT_WIDTH),
            "{a:?} leaves the canvas"
        );
        for b in &boxes[i + 1..] {
            let disjoint = a.3 <= b.1 || b.3 <= a.1 || a.4 <= b.2 || b.4 <= a.2;
            assert!(disjoint, "labels overlap: {a:?} and {b:?}");
        }
    }
    // Every text of the SVG (legend included) starts inside the canvas.
    for (text, x, ..) in svg_text_boxes(&svg, "") {
        assert!(
            (0.0..f64::from(PLOT_WIDTH)).contains(&x),
            "{text:?} at x = {x}"
        );
    }
}

/// Issue 28: `report.html` as a reader sees it — loaded by Debian's Chromium in headless mode
/// (installed by `scripts/setup`): it renders, both plots are drawn with a size, no image is
/// broken and the page logs nothing to the console.
#[test]
fn report_renders_in_headless_chromium() {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromium must be installed (scripts/setup installs it)");
    let (_tmp, files) = write_checked(&synthetic(), "chromium");
    let dir = files.report_html.parent().unwrap();
    // A page beside the report that loads it in a frame and writes what it finds into the DOM,
    // which `--dump-dom` prints once the page has loaded.
    std::fs::write(
        dir.join("check.html"),
        r#"<!doctype html><html><body><pre id="out">pending</pre>
<iframe id="r" src="report.html" width="1280" height="1000"></iframe>
<script>
window.addEventListener('load', () => {
  const d = document.getElementById('r').contentDocument;
  const out = {svgs: 0, blank_svgs: 0, imgs: 0, broken: [], text: 0};
  if (d) {
    for (const s of d.querySelectorAll('svg')) {
      out.svgs++;
      const r = s.getBoundingClientRect();
      if (!(r.width > 100 && r.height > 100)) out.blank_svgs++;
    }
    for (const i of d.images) {
      out.imgs++;
      if (!(i.complete && i.naturalWidth > 0)) out.broken.push(i.src);
    }
    out.text = d.body.innerText.length;
  }
  document.getElementById('out').textContent = 'RESULT' + JSON.stringify(out);
});
</script></body></html>"#,
    )
    .unwrap();
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--allow-file-access-from-files",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", dir.join("check.html").display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {log}");
    let json = dom
        .split("RESULT")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap_or_else(|| panic!("the check page did not run: {dom}\n{log}"));
    let found: serde_json::Value = serde_json::from_str(&json.replace("&quot;", "\"")).unwrap();
    assert_eq!(found["svgs"], 2, "{found}");
    assert_eq!(found["blank_svgs"], 0, "{found}");
    assert_eq!(found["broken"], serde_json::json!([]), "{found}");
    assert!(found["text"].as_u64().unwrap() > 500, "{found}");
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
}
