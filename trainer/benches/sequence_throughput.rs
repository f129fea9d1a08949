//! Throughput of the 1D (SMILES Transformer) models: molecules per second in training (forward,
//! backward, AdamW step, batch 32) and in evaluation (forward without gradients), on BBBP's
//! SMILES tokenised by the atom-level regex tokeniser, for three encoder shapes:
//!
//! - `native-small`: the trainer's own from-scratch BERT ([`TransformerConfig::small`], 4 × 192,
//!   the shape of the shipped encoder); `bert-6x256`: the native shape before it (6 × 256, 8 heads);
//! - `chemberta-77m-mlm`: the shape of DeepChem/ChemBERTa-77M-MLM (RoBERTa, 3 × 384, 12 heads,
//!   feed-forward 464; values from its published `config.json`);
//! - `chemberta-zinc-base`: the shape of seyonec/ChemBERTa-zinc-base-v1 (RoBERTa, 6 × 768, 12
//!   heads, feed-forward 3072).
//!
//! Weights are random (throughput does not depend on them); the vocabulary is the regex one built
//! from BBBP, so sequences are atom-level (BPE tokenisers, as ChemBERTa's, give shorter ones).
//! Batches are drawn in a seeded random order and padded to their longest row, as in fine-tuning.
//! Per shape it prints parameters, molecules/s (train and eval), the BBBP epoch time these rates
//! give (train on 80 %, evaluate the other 20 %), achieved GFLOP/s (matmul FLOPs of the padded
//! batches: per layer 8·B·L·h² for the projections, 4·B·L·h·f for the feed-forward, 4·B·L²·h for
//! attention; training = 3 × forward), the share of the training batches' positions that are
//! padding (computed on, thrown away) and the process's peak RSS.
//!
//! `cargo bench -p anges-trainer --bench sequence_throughput` — environment:
//! Each shape is measured twice: with the fine-tuning's default random batches and with
//! `--group-by-length` batches (rows of similar length together; evaluation unchanged).
//!
//! `SEQ_BENCH_MOLECULES` (molecules timed per phase, default 512), `SEQ_BENCH_GROUP` (`0`: random
//! batches only, `1`: grouped only, default both), `SEQ_BENCH_SHAPES`
//! (comma-separated subset of the names above), `SEQ_BENCH_DEVICE` (`cpu` or `cuda`),
//! `SEQ_BENCH_THREADS`, `SEQ_BENCH_CSV` (BBBP.csv elsewhere than `../shared`, e.g. on a GPU machine
//! that has the binary but not the tree).

mod common;

use std::path::PathBuf;
use std::time::Instant;

use anges_trainer::data::table::read_table;
use anges_trainer::featurize::{RegexTokenizer, SmilesTokenizer, TokenIds};
use anges_trainer::models::{Architecture, Pooling, SequenceModel, TransformerConfig, pad_tokens};
use anges_trainer::train::group_by_length;
use anges_trainer::train::optim::{AdamConfig, Optimizer};
use common::{env_or, peak_rss_mib, sync};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const BATCH: usize = 32;
const MAX_LEN: usize = 512;

/// BBBP's SMILES, tokenised (rows the tokeniser cannot cover are skipped and counted).
fn bbbp_tokens() -> anyhow::Result<(SmilesTokenizer, Vec<TokenIds>)> {
    let csv = std::env::var_os("SEQ_BENCH_CSV").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/datasets/moleculenet/BBBP.csv")
        },
        PathBuf::from,
    );
    let smiles = read_table(&csv, "smiles", &[])?.smiles;
    let tokenizer = SmilesTokenizer::Regex(RegexTokenizer::from_corpus(
        smiles.iter().map(String::as_str),
    ));
    let mut skipped = 0;
    let tokens: Vec<TokenIds> = smiles
        .iter()
        .filter_map(|s| match tokenizer.encode(s, MAX_LEN) {
            Ok(t) => Some(t),
            Err(_) => {
                skipped += 1;
                None
            }
        })
        .collect();
    println!(
        "BBBP: {} SMILES tokenised ({skipped} skipped), vocabulary {}, mean length {:.1} tokens",
        tokens.len(),
        tokenizer.vocab_size(),
        tokens.iter().map(Vec::len).sum::<usize>() as f64 / tokens.len().max(1) as f64
    );
    Ok((tokenizer, tokens))
}

/// The encoder shapes measured, by name.
fn shapes(vocab: i64, pad: i64) -> Vec<(&'static str, TransformerConfig)> {
    let small = TransformerConfig::small(vocab, pad);
    let roberta = |layers, hidden, heads, ffn| TransformerConfig {
        model_type: Architecture::Roberta,
        hidden_size: hidden,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        intermediate_size: ffn,
        max_position_embeddings: MAX_LEN as i64 + 3,
        ..small.clone()
    };
    vec![
        ("native-small", small.clone()),
        (
            "bert-6x256",
            TransformerConfig {
                hidden_size: 256,
                num_hidden_layers: 6,
                num_attention_heads: 8,
                intermediate_size: 1024,
                ..small.clone()
            },
        ),
        ("chemberta-77m-mlm", roberta(3, 384, 12, 464)),
        ("chemberta-zinc-base", roberta(6, 768, 12, 3072)),
    ]
}

/// Matmul FLOPs of one forward pass over a padded `[b, l]` batch.
fn forward_flops(cfg: &TransformerConfig, b: usize, l: usize) -> f64 {
    let (b, l) = (b as f64, l as f64);
    let (h, f) = (cfg.hidden_size as f64, cfg.intermediate_size as f64);
    cfg.num_hidden_layers as f64 * (8.0 * b * l * h * h + 4.0 * b * l * h * f + 4.0 * b * l * l * h)
}

struct Phase {
    molecules: usize,
    seconds: f64,
    flops: f64,
    /// Real tokens and padded positions computed on.
    tokens: usize,
    padded: usize,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.molecules as f64 / self.seconds
    }
}

fn batches(order: &[usize], limit: usize) -> Vec<Vec<usize>> {
    order[..limit.min(order.len())]
        .chunks(BATCH)
        .map(<[usize]>::to_vec)
        .collect()
}

fn main() -> anyhow::Result<()> {
    let device = match std::env::var("SEQ_BENCH_DEVICE").as_deref() {
        Ok("cuda") => Device::Cuda(0),
        _ => Device::Cpu,
    };
    let threads: i32 = env_or("SEQ_BENCH_THREADS", 0);
    if threads > 0 {
        tch::set_num_threads(threads);
    }
    let molecules: usize = env_or("SEQ_BENCH_MOLECULES", 512);
    let wanted: Option<Vec<String>> = std::env::var("SEQ_BENCH_SHAPES")
        .ok()
        .map(|v| v.split(',').map(str::to_owned).collect());
    let (tokenizer, tokens) = bbbp_tokens()?;
    let n_train = tokens.len() * 8 / 10;
    let n_eval = tokens.len() - n_train;
    tch::manual_seed(0);
    let order: Vec<usize> = Vec::<i64>::try_from(Tensor::randperm(
        tokens.len() as i64,
        (Kind::Int64, Device::Cpu),
    ))?
    .into_iter()
    .map(|i| i as usize)
    .collect();
    println!(
        "device {device:?}, {} threads, batch {BATCH}, {molecules} molecules timed per phase",
        tch::get_num_threads()
    );
    println!(
        "{:<28} {:>8} {:>12} {:>12} {:>13} {:>10} {:>10} {:>8} {:>9}",
        "shape",
        "params_M",
        "train_mol/s",
        "eval_mol/s",
        "bbbp_epoch_s",
        "train_GF/s",
        "eval_GF/s",
        "padding",
        "rss_MiB"
    );
    let vocab = tokenizer.vocab_size() as i64;
    // The same epoch order, with rows of similar length batched together (`--group-by-length`).
    let mut grouped = order.clone();
    group_by_length(&mut grouped, |row| tokens[row].len(), BATCH, 0, 1);
    let variants: &[(&str, &[usize])] = match std::env::var("SEQ_BENCH_GROUP").as_deref() {
        Ok("0") => &[("", &order)],
        Ok("1") => &[(" grouped", &grouped)],
        _ => &[("", &order), (" grouped", &grouped)],
    };
    for ((name, cfg), &(suffix, train_order)) in shapes(vocab, tokenizer.pad_id())
        .into_iter()
        .flat_map(|shape| variants.iter().map(move |v| (shape.clone(), v)))
    {
        if wanted
            .as_ref()
            .is_some_and(|w| !w.iter().any(|n| n == name))
        {
            continue;
        }
        let name = format!("{name}{suffix}");
        let vs = VarStore::new(device);
        let model = SequenceModel::new(&vs.root(), cfg.clone(), 1, Pooling::Cls)?;
        let params: i64 = vs
            .trainable_variables()
            .iter()
            .map(Tensor::numel)
            .sum::<usize>() as i64;
        let mut opt = Optimizer::new(&vs, AdamConfig::new(1e-4, 0.01))?;
        let train_batches = batches(train_order, molecules);
        // One warm-up step (allocator, kernels), not timed.
        let warm = &train_batches[0];
        let (ids, mask) = pad_tokens(&tokens, warm, tokenizer.pad_id(), device)?;
        let target = Tensor::zeros([warm.len() as i64, 1], (Kind::Float, device));
        let loss = model
            .forward_logits(&ids, &mask, true)?
            .binary_cross_entropy_with_logits::<Tensor>(&target, None, None, tch::Reduction::Mean);
        opt.zero_grad()?;
        loss.backward();
        opt.step()?;
        sync(device);

        let mut train = Phase {
            molecules: 0,
            seconds: 0.0,
            flops: 0.0,
            tokens: 0,
            padded: 0,
        };
        for batch in &train_batches {
            let start = Instant::now();
            let (ids, mask) = pad_tokens(&tokens, batch, tokenizer.pad_id(), device)?;
            let target = Tensor::zeros([batch.len() as i64, 1], (Kind::Float, device));
            let loss = model
                .forward_logits(&ids, &mask, true)?
                .binary_cross_entropy_with_logits::<Tensor>(
                    &target,
                    None,
                    None,
                    tch::Reduction::Mean,
                );
            opt.zero_grad()?;
            loss.backward();
            opt.step()?;
            sync(device);
            train.seconds += start.elapsed().as_secs_f64();
            train.molecules += batch.len();
            train.flops += 3.0 * forward_flops(&cfg, batch.len(), ids.size()[1] as usize);
            train.tokens += batch.iter().map(|&i| tokens[i].len()).sum::<usize>();
            train.padded += ids.numel();
        }
        let mut eval = Phase {
            molecules: 0,
            seconds: 0.0,
            flops: 0.0,
            tokens: 0,
            padded: 0,
        };
        let eval_order: Vec<usize> = order.iter().rev().copied().collect();
        for batch in &batches(&eval_order, molecules) {
            let start = Instant::now();
            let (ids, mask) = pad_tokens(&tokens, batch, tokenizer.pad_id(), device)?;
            let logits = tch::no_grad(|| model.forward_logits(&ids, &mask, false))?;
            let _ = logits.sigmoid().to_device(Device::Cpu);
            sync(device);
            eval.seconds += start.elapsed().as_secs_f64();
            eval.molecules += batch.len();
            eval.flops += forward_flops(&cfg, batch.len(), ids.size()[1] as usize);
        }
        let epoch = n_train as f64 / train.rate() + n_eval as f64 / eval.rate();
        println!(
            "{name:<28} {:>8.2} {:>12.1} {:>12.1} {:>13.1} {:>10.1} {:>10.1} {:>7.0}% {:>9.0}",
            params as f64 / 1e6,
            train.rate(),
            eval.rate(),
            epoch,
            train.flops / train.seconds / 1e9,
            eval.flops / eval.seconds / 1e9,
            100.0 * (1.0 - train.tokens as f64 / train.padded.max(1) as f64),
            peak_rss_mib()
        );
    }
    Ok(())
}
