//! Featurisation benchmark: molecules featurised per second on one core (parse + pretrain-gnns
//! features + Murcko scaffold), SELFIES encodings (and decodings) per second on one core next to
//! the `selfies` package's on the same molecules (`scripts/selfies_bench.py` in the venv), then
//! the whole HIV set (41k molecules) loaded cold (featurised on every core) and from the on-disk
//! cache.
//!
//! Run: `cargo bench -p anges-trainer --bench featurize` (HIV from ../shared, or pass a CSV path).

use std::path::PathBuf;
use std::time::Instant;

use anges_trainer::chem::Molecule;
use anges_trainer::chem::selfies;
use anges_trainer::data::dataset::featurize_row;
use anges_trainer::data::table::{read_header, read_table};
use anges_trainer::data::{DataOptions, DatasetRequest, load_dataset};
use anges_trainer::featurize::featurize_smiles;

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/datasets/moleculenet/HIV.csv.gz"));
    let header = read_header(&path)?;
    let smiles_col = if header.iter().any(|h| h == "smiles") {
        "smiles"
    } else {
        "mol"
    };
    let table = read_table(&path, smiles_col, &[])?;
    let n = table.smiles.len();

    // 1. One core: every molecule of the file, one after the other. Wall time and this thread's
    // CPU time (the machine may be shared: CPU time is what one core really spends).
    let (t, cpu) = (Instant::now(), thread_cpu_seconds());
    let mut ok = 0usize;
    for s in &table.smiles {
        ok += usize::from(featurize_row(s).is_ok());
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = thread_cpu_seconds().zip(cpu).map(|(b, a)| b - a);
    println!(
        "one core: {n} molecules ({ok} featurised) in {secs:.2} s wall = {:.0} molecules/s; \
         CPU {} = {} molecules/s per CPU-second",
        n as f64 / secs,
        cpu.map_or("n/a".into(), |c| format!("{c:.2} s")),
        cpu.map_or("n/a".into(), |c| format!("{:.0}", n as f64 / c)),
    );

    // Where the time goes, on the first 10,000 molecules: parse, + features, + scaffold.
    let sample = &table.smiles[..n.min(10_000)];
    let phase = |name: &str, f: &dyn Fn(&str)| {
        let (t, c) = (Instant::now(), thread_cpu_seconds());
        sample.iter().for_each(|s| f(s));
        let cpu = thread_cpu_seconds().zip(c).map(|(b, a)| b - a);
        println!(
            "  {name}: {:.1} µs/molecule wall, {} µs CPU",
            1e6 * t.elapsed().as_secs_f64() / sample.len() as f64,
            cpu.map_or("n/a".into(), |c| format!(
                "{:.1}",
                1e6 * c / sample.len() as f64
            )),
        );
    };
    phase("parse (sanitise, stereo)", &|s| {
        let _ = Molecule::from_smiles(s);
    });
    phase("parse + graph features", &|s| {
        let _ = featurize_smiles(s);
    });
    phase("parse + features + Murcko scaffold", &|s| {
        let _ = featurize_row(s);
    });

    // 1b. SELFIES on one core: ANGES, then the selfies package on the same molecules.
    selfies_rates(&root, &path, smiles_col, &table.smiles);

    // 2. The whole set through load_dataset: cold (all cores), then from the cache.
    let cache = tempfile::tempdir()?;
    let dir = path.parent().map(PathBuf::from);
    let opts = DataOptions {
        data_dir: dir,
        cache_dir: cache.path().to_owned(),
        allow_download: false,
        download_base: None,
        use_feature_cache: true,
    };
    let req = DatasetRequest {
        dataset: path.to_string_lossy().into_owned(),
        smiles_column: Some(smiles_col.into()),
        targets: header
            .iter()
            .filter(|h| *h != smiles_col)
            .take(1)
            .cloned()
            .collect(),
        task_type: None,
    };
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let t = Instant::now();
    let cold = load_dataset(&req, &opts)?;
    let cold_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let warm = load_dataset(&req, &opts)?;
    let warm_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        warm.from_cache && warm.rows == cold.rows,
        "cache did not round-trip"
    );
    println!(
        "whole set cold ({threads} threads): {} rows in {cold_s:.2} s; from cache: {warm_s:.3} s",
        cold.rows.len()
    );
    println!("{}", cold.summary());
    Ok(())
}

/// SELFIES encodings and decodings per second on one core: `chem::selfies` over every molecule
/// of the file, then the `selfies` package over the same ones (its encoder and decoder loops
/// timed by `scripts/selfies_bench.py`, wall and process CPU time).
fn selfies_rates(root: &std::path::Path, path: &std::path::Path, column: &str, smiles: &[String]) {
    let n = smiles.len();
    let (t, c) = (Instant::now(), thread_cpu_seconds());
    let encoded: Vec<String> = smiles
        .iter()
        .filter_map(|s| selfies::encode(s).ok())
        .collect();
    let (wall, cpu) = (
        t.elapsed().as_secs_f64(),
        thread_cpu_seconds().zip(c).map(|(b, a)| b - a),
    );
    let (t, c) = (Instant::now(), thread_cpu_seconds());
    let decoded = encoded
        .iter()
        .filter(|e| selfies::decode(e).is_ok())
        .count();
    let (dwall, dcpu) = (
        t.elapsed().as_secs_f64(),
        thread_cpu_seconds().zip(c).map(|(b, a)| b - a),
    );
    let rate = |count: usize, secs: Option<f64>| {
        secs.map_or("n/a".into(), |s| format!("{:.0}", count as f64 / s))
    };
    println!(
        "SELFIES, anges chem::selfies, one core: {n} molecules ({} encoded) in {wall:.2} s wall = \
         {:.0} encodings/s; {} encodings/s per CPU-second; decoding {decoded}: {:.0}/s wall, {}/s \
         per CPU-second",
        encoded.len(),
        n as f64 / wall,
        rate(n, cpu),
        encoded.len() as f64 / dwall,
        rate(encoded.len(), dcpu),
    );
    let python = root.join(".venv/bin/python");
    let out = std::process::Command::new(&python)
        .arg(root.join("scripts/selfies_bench.py"))
        .arg(path)
        .args(["--smiles-column", column])
        .output();
    let parsed = out
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
    let Some(p) = parsed else {
        println!(
            "SELFIES, selfies package: not run ({} or the package missing: scripts/setup)",
            python.display()
        );
        return;
    };
    let f = |k: &str| p[k].as_f64().unwrap_or(f64::NAN);
    let (m, e) = (f("molecules"), f("encoded"));
    println!(
        "SELFIES, selfies {} (Python), one core: {m} molecules ({e} encoded) in {:.2} s wall = \
         {:.0} encodings/s; {:.0} encodings/s per CPU-second; decoding: {:.0}/s wall, {:.0}/s per \
         CPU-second",
        p["selfies_version"].as_str().unwrap_or("?"),
        f("encode_wall_s"),
        m / f("encode_wall_s"),
        m / f("encode_cpu_s"),
        e / f("decode_wall_s"),
        e / f("decode_cpu_s"),
    );
    if let Some(c) = cpu {
        println!(
            "SELFIES: anges encodes {:.1}× as many molecules per CPU-second as the package",
            (n as f64 / c) / (m / f("encode_cpu_s"))
        );
    }
}

/// CPU time of the calling thread (Linux `/proc/thread-self/stat`, utime + stime), if readable.
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}
