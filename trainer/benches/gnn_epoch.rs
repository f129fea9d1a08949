//! Throughput of one pretrain-gnns GIN epoch (5 × 300, batch 32) on BBBP-sized graphs: training
//! forward + backward + Adam step over the training part, then an evaluation forward over the
//! validation and test parts. Prints seconds per epoch with a breakdown (collation, forward,
//! backward, optimizer, evaluation), achieved GFLOP/s against the matmul FLOP count of the
//! issue, peak RSS, and a pure-matmul floor measured on the same shapes.
//!
//! The graphs are BBBP featurised by `scripts/gnn_reference.py graphs` (RDKit), cached under the
//! target folder. The split is 80/10/10 by file order (throughput only depends on sizes); labels
//! are seeded random ±1.
//!
//! `cargo bench -p anges-trainer --bench gnn_epoch` — environment: `GNN_BENCH_EPOCHS` (timed
//! epochs, default 3), `GNN_BENCH_DEVICE` (`cpu` or `cuda`), `GNN_BENCH_CSV` (another
//! MoleculeNet CSV, e.g. HIV), `GNN_BENCH_GRAPHS` (a `graphs.json` already written by
//! `scripts/gnn_reference.py graphs`, read as it is: for a machine without the venv or the build
//! tree, such as a lent GPU machine), `GNN_BENCH_THREADS`, `GNN_BENCH_LIBTORCH_ADAM` (set: libtorch's Adam
//! instead of the trainer's fused one, for comparison).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anges_trainer::featurize::GraphFeatures;
use anges_trainer::models::loss::masked_bce_with_logits;
use anges_trainer::models::{Collator, Gnn, GnnConfig, GnnKind};
use anges_trainer::train::optim::{AdamConfig, Optimizer};
use common::{env_or, peak_rss_mib, sync};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const BATCH: usize = 32;
const EMB: f64 = 300.0;
const LAYERS: f64 = 5.0;

/// A graph as `scripts/gnn_reference.py` writes it (RDKit features, nested arrays).
#[derive(serde::Deserialize)]
struct RefGraph {
    atoms: Vec<[i64; 2]>,
    edges: Vec<[i64; 2]>,
    edge_attr: Vec<[i64; 2]>,
}

impl RefGraph {
    /// The same graph in the trainer's flat layout (what the collator reads).
    fn into_features(self) -> GraphFeatures {
        let sources = self.edges.iter().map(|e| e[0]);
        let targets = self.edges.iter().map(|e| e[1]);
        GraphFeatures {
            x: self.atoms.into_iter().flatten().collect(),
            edge_index: sources.chain(targets).collect(),
            edge_attr: self.edge_attr.into_iter().flatten().collect(),
        }
    }
}

#[derive(serde::Deserialize)]
struct GraphFile {
    graphs: Vec<RefGraph>,
}

fn load_graphs() -> Vec<GraphFeatures> {
    if let Some(file) = std::env::var_os("GNN_BENCH_GRAPHS") {
        return parse_graphs(&PathBuf::from(file));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let csv = std::env::var("GNN_BENCH_CSV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("../shared/datasets/moleculenet/BBBP.csv"));
    let stem = csv
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("data")
        .to_owned();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("gnn_bench_{stem}"));
    let cache = out.join("graphs.json");
    if !cache.exists() {
        let mut csv_arg = csv.clone();
        if csv.extension().is_some_and(|e| e == "gz") {
            // The reference reads plain CSV; decompress once next to the cache.
            let plain = out.join(&stem);
            std::fs::create_dir_all(&out).expect("creating the cache folder");
            let status = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "gzip -dc '{}' > '{}'",
                    csv.display(),
                    plain.display()
                ))
                .status()
                .expect("gzip");
            assert!(status.success(), "decompressing {}", csv.display());
            csv_arg = plain;
        }
        let status = Command::new(root.join(".venv/bin/python"))
            .arg(root.join("scripts/gnn_reference.py"))
            .args(["graphs", "--out"])
            .arg(&out)
            .arg("--csv")
            .arg(&csv_arg)
            .status()
            .expect("running scripts/gnn_reference.py (run scripts/setup first)");
        assert!(status.success(), "featurising {}", csv.display());
    }
    parse_graphs(&cache)
}

/// The graphs of a `graphs.json` written by `scripts/gnn_reference.py graphs`.
fn parse_graphs(file: &std::path::Path) -> Vec<GraphFeatures> {
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("reading the graphs {}: {e}", file.display()));
    serde_json::from_str::<GraphFile>(&text)
        .expect("parsing the cached graphs")
        .graphs
        .into_iter()
        .map(RefGraph::into_features)
        .collect()
}

#[derive(Default, Clone, Copy)]
struct Times {
    collate: Duration,
    forward: Duration,
    backward: Duration,
    step: Duration,
    eval: Duration,
}

impl Times {
    fn total(&self) -> f64 {
        (self.collate + self.forward + self.backward + self.step + self.eval).as_secs_f64()
    }
}

/// Forward FLOP of the two linear maps per atom and layer (300→600→300, multiply-add = 2).
fn flop_per_atom_forward() -> f64 {
    LAYERS * 2.0 * 2.0 * EMB * 2.0 * EMB
}

fn main() {
    let threads: i64 = env_or("GNN_BENCH_THREADS", 0);
    if threads > 0 {
        tch::set_num_threads(threads as i32);
    }
    let device = match std::env::var("GNN_BENCH_DEVICE").as_deref() {
        Ok("cuda") => Device::Cuda(0),
        _ => Device::Cpu,
    };
    let epochs: usize = env_or("GNN_BENCH_EPOCHS", 3);
    let graphs = load_graphs();
    let n = graphs.len();
    let (n_train, n_valid) = (n * 8 / 10, n / 10);
    let train: Vec<&GraphFeatures> = graphs[..n_train].iter().collect();
    let eval: Vec<&GraphFeatures> = graphs[n_train..].iter().collect();
    let atoms = |g: &[&GraphFeatures]| g.iter().map(|g| g.num_atoms()).sum::<usize>() as f64;
    let (train_atoms, eval_atoms) = (atoms(&train), atoms(&eval));
    let flop = flop_per_atom_forward() * (3.0 * train_atoms + eval_atoms);
    println!(
        "GIN 5x300 batch {BATCH} on {:?}, {} threads: {n} graphs ({n_train} train, {} valid+test), \
         {} atoms; {:.0} GFLOP per epoch",
        device,
        tch::get_num_threads(),
        n - n_train,
        train_atoms + eval_atoms,
        flop / 1e9
    );
    let _ = n_valid;

    tch::manual_seed(0);
    let vs = VarStore::new(device);
    let gnn = Gnn::new(
        &vs.root(),
        GnnConfig {
            kind: GnnKind::Gin,
            ..Default::default()
        },
    )
    .expect("building the GIN");
    let mut opt = if std::env::var_os("GNN_BENCH_LIBTORCH_ADAM").is_some() {
        Optimizer::libtorch(&vs, AdamConfig::new(1e-3, 0.0))
    } else {
        Optimizer::new(&vs, AdamConfig::new(1e-3, 0.0))
    }
    .expect("Adam");
    println!("optimiser: {opt:?}");
    let labels: Vec<f32> = (0..n)
        .map(|i| if (i * 7919) % 3 == 0 { 1.0 } else { -1.0 })
        .collect();
    let mut collator = Collator::new();
    let mut order: Vec<usize> = (0..n_train).collect();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;

    let mut measured: Vec<Times> = Vec::new();
    for epoch in 0..=epochs {
        let mut t = Times::default();
        // Fisher–Yates with a xorshift generator: a new order every epoch, reproducibly.
        for i in (1..order.len()).rev() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            order.swap(i, (rng % (i as u64 + 1)) as usize);
        }
        for chunk in order.chunks(BATCH) {
            let t0 = Instant::now();
            let refs: Vec<&GraphFeatures> = chunk.iter().map(|&i| train[i]).collect();
            let rows: Vec<&[f32]> = chunk
                .iter()
                .map(|&i| std::slice::from_ref(&labels[i]))
                .collect();
            let batch = collator.collate(&refs, device).expect("collate");
            let y = collator.labels(&rows, device).expect("labels");
            sync(device);
            let t1 = Instant::now();
            let logits = gnn.forward(&batch, true).expect("forward");
            let loss = masked_bce_with_logits(&logits, &y).expect("loss");
            sync(device);
            let t2 = Instant::now();
            opt.zero_grad().expect("zero_grad");
            loss.backward();
            sync(device);
            let t3 = Instant::now();
            opt.step().expect("Adam step");
            sync(device);
            let t4 = Instant::now();
            t.collate += t1 - t0;
            t.forward += t2 - t1;
            t.backward += t3 - t2;
            t.step += t4 - t3;
        }
        let t0 = Instant::now();
        tch::no_grad(|| {
            for chunk in eval.chunks(BATCH) {
                let batch = collator.collate(chunk, device).expect("collate");
                let out = gnn.forward(&batch, false).expect("forward");
                let _ = out.sigmoid().to_device(Device::Cpu);
            }
        });
        sync(device);
        t.eval = t0.elapsed();
        println!(
            "epoch {epoch}{}: {:.3} s (collate {:.3}, forward {:.3}, backward {:.3}, adam {:.3}, \
             eval {:.3})",
            if epoch == 0 { " (warm-up)" } else { "" },
            t.total(),
            t.collate.as_secs_f64(),
            t.forward.as_secs_f64(),
            t.backward.as_secs_f64(),
            t.step.as_secs_f64(),
            t.eval.as_secs_f64()
        );
        if epoch > 0 {
            measured.push(t);
        }
    }
    let mut secs: Vec<f64> = measured.iter().map(Times::total).collect();
    secs.sort_by(f64::total_cmp);
    let median = secs[secs.len() / 2];
    println!(
        "RESULT gin_epoch seconds_median={median:.3} min={:.3} gflops={:.1} peak_rss_mib={:.0}",
        secs[0],
        flop / median / 1e9,
        peak_rss_mib()
    );
    matmul_floor(device, train_atoms, eval_atoms, train.len().div_ceil(BATCH));
}

/// Times only the linear maps of the epoch (same shapes, forward + backward for training atoms,
/// forward for evaluation atoms): the floor no implementation of this protocol goes below.
fn matmul_floor(device: Device, train_atoms: f64, eval_atoms: f64, train_batches: usize) {
    let rows = (train_atoms / train_batches as f64).round() as i64; // atoms per training batch
    let steps = (train_atoms / rows as f64).round() as usize;
    let eval_steps = (eval_atoms / rows as f64).round() as usize;
    let opts = (Kind::Float, device);
    let w1 = Tensor::randn([600, 300], opts).set_requires_grad(true);
    let w2 = Tensor::randn([300, 600], opts).set_requires_grad(true);
    let x = Tensor::randn([rows, 300], opts).set_requires_grad(true);
    let run = |train: bool| {
        let mut h = x.shallow_clone();
        for _ in 0..5 {
            h = h.matmul(&w1.tr()).relu().matmul(&w2.tr());
        }
        if train {
            h.sum(Kind::Float).backward();
        }
    };
    run(true);
    let t0 = Instant::now();
    for _ in 0..steps {
        run(true);
    }
    tch::no_grad(|| {
        for _ in 0..eval_steps {
            run(false);
        }
    });
    sync(device);
    let secs = t0.elapsed().as_secs_f64();
    let flop = flop_per_atom_forward() * (3.0 * train_atoms + eval_atoms);
    println!(
        "RESULT matmul_floor seconds={secs:.3} gflops={:.1} ({steps} x {rows} rows train, \
         {eval_steps} eval)",
        flop / secs / 1e9
    );
}
