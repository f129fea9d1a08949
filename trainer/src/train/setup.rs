//! What fine-tuning and pre-training share to run their epochs: the libtorch thread count and
//! seed, the optimiser (Adam, or AdamW with weight decay)
//! and the per-epoch progress bar ([`crate::progress`]: hidden when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};
use tch::nn::VarStore;

use super::optim::{AdamConfig, Optimizer};

use crate::config::OptimConfig;

/// Sets libtorch's CPU thread count (`0` keeps libtorch's default).
pub(crate) fn apply_threads(threads: usize) -> Result<(), String> {
    crate::runtime::apply_threads(threads).map_err(|e| e.to_string())
}

/// Seeds libtorch's process-global generator (the seed's top bit wraps into the sign).
pub(crate) fn seed_torch(seed: u64) {
    tch::manual_seed(seed as i64);
}

/// Salt of the stream that reseeds libtorch at the start of every epoch.
const EPOCH_SEED_SALT: u64 = 0x746f_7263_6865_706f;

/// Reseeds libtorch's generator for epoch `epoch` of a run seeded `seed`: what the epoch draws
/// from it (the dropout masks) depends on `(seed, epoch)` only, so that a run resumed at an epoch
/// boundary draws what an uninterrupted one does.
pub(crate) fn seed_epoch(seed: u64, epoch: usize) {
    let mut stream = super::seeded::Stream::new(seed, epoch as u64, EPOCH_SEED_SALT);
    tch::manual_seed(stream.next_u64() as i64);
}

/// Adam over every trainable variable of `vs`, or AdamW when `--weight-decay > 0` (fused on the
/// CPU, [`super::optim`]).
pub(crate) fn optimizer(vs: &VarStore, t: &OptimConfig) -> Result<Optimizer, tch::TchError> {
    Optimizer::new(vs, AdamConfig::new(t.lr, t.weight_decay))
}

/// The progress bar of one training pass of `batches` batches, `epoch {epoch}/{epochs}`; its
/// message is the running loss.
pub(crate) fn epoch_bar(batches: usize, epoch: usize, epochs: usize) -> ProgressBar {
    let bar = crate::progress::attach(ProgressBar::new(batches as u64));
    if let Ok(style) =
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} batches, loss {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(format!("{epoch}/{epochs}"));
    bar
}
