//! Dynamic data pruning of the training set (`--prune molpeg|random --keep-ratio r`), docs/spec.md §2.
//!
//! Each epoch keeps `⌈r·N⌉` of the `N` training samples (`r` is the KEPT fraction; the pruning
//! ratio is `1 − r`), and the kept samples' loss is weighted by `1/r`.
//! - `molpeg`: the samples with the largest score `s(x) = |ℓ(θ; x) − ℓ(θ_ref; x)|`, refreshed each
//!   time a sample is trained on; samples never scored rank first (score +∞); ties are broken by a
//!   key drawn from the run's seed. `θ_ref` ([`ReferenceModel`]) starts as a copy of the online
//!   model and follows it by EMA after every optimiser step.
//! - `random`: a seeded uniformly random subset of the same size each epoch (the baseline).
//!
//! Choices where docs/spec.md §2 leaves room, written down here and in docs/green.md: the online loss of
//! a sample is the one of the training forward pass (training mode, the one whose gradient is
//! taken); the reference loss comes from a forward pass of `θ_ref` in evaluation mode without
//! gradient; the EMA runs over every floating-point variable, BatchNorm running statistics
//! included, and copies the integer ones.

use tch::nn::VarStore;
use tch::{Kind, Tensor};

use super::TrainError;
use super::seeded::splitmix;
use crate::config::{PruneConfig, PruneMethod};

/// Which training samples each epoch uses.
#[derive(Debug, Clone)]
pub struct Pruner {
    method: PruneMethod,
    keep_ratio: f64,
    seed: u64,
    /// Latest MolPeg score per training sample (index into the training list); `None`: unscored.
    scores: Vec<Option<f64>>,
}

impl Pruner {
    /// A pruner over `n` training samples as `config` says (checked by
    /// [`PruneConfig::validate`]); `None` for `--prune none`.
    pub fn new(config: &PruneConfig, n: usize, seed: u64) -> Result<Option<Self>, TrainError> {
        config.validate()?;
        if config.method == PruneMethod::None {
            return Ok(None);
        }
        Ok(Some(Self {
            method: config.method,
            keep_ratio: config.keep_ratio,
            seed,
            scores: vec![None; n],
        }))
    }

    /// The method.
    pub fn method(&self) -> PruneMethod {
        self.method
    }

    /// The kept fraction `r`.
    pub fn keep_ratio(&self) -> f64 {
        self.keep_ratio
    }

    /// The loss weight of kept samples, `1/r`.
    pub fn weight(&self) -> f64 {
        1.0 / self.keep_ratio
    }

    /// `⌈r·N⌉` (at least one sample when `N > 0`).
    pub fn kept(&self) -> usize {
        let n = self.scores.len();
        // The product is rounded first so that e.g. 0.7·10 = 7.000000000000001 keeps 7.
        let k = ((self.keep_ratio * n as f64 * 1e9).round() / 1e9).ceil() as usize;
        k.clamp(usize::from(n > 0), n)
    }

    /// Indices (into the training list) of the samples of epoch `epoch`, in ascending order.
    pub fn select(&self, epoch: usize) -> Vec<usize> {
        let mut state = self.seed ^ (epoch as u64).wrapping_mul(0xa076_1d64_78bd_642f);
        let keys: Vec<u64> = (0..self.scores.len())
            .map(|_| splitmix(&mut state))
            .collect();
        let mut idx: Vec<usize> = (0..self.scores.len()).collect();
        match self.method {
            PruneMethod::Molpeg => idx.sort_by(|&a, &b| {
                let score = |i: usize| self.scores[i].unwrap_or(f64::INFINITY);
                score(b)
                    .total_cmp(&score(a))
                    .then_with(|| keys[a].cmp(&keys[b]))
            }),
            _ => idx.sort_by_key(|&i| keys[i]),
        }
        idx.truncate(self.kept());
        idx.sort_unstable();
        idx
    }

    /// Records the score of training sample `index` (non-finite scores are ignored).
    pub fn record(&mut self, index: usize, score: f64) {
        match self.scores.get_mut(index) {
            Some(slot) if score.is_finite() => *slot = Some(score),
            _ => {}
        }
    }

    /// Samples scored at least once.
    pub fn scored(&self) -> usize {
        self.scores.iter().filter(|s| s.is_some()).count()
    }

    /// The latest score of every training sample, `NaN` for unscored (what `--resume` saves).
    pub fn scores(&self) -> Vec<f64> {
        self.scores.iter().map(|s| s.unwrap_or(f64::NAN)).collect()
    }

    /// Restores what [`Pruner::scores`] gave (`NaN`: unscored); it must cover every sample.
    pub fn restore_scores(&mut self, scores: &[f64]) -> Result<(), TrainError> {
        if scores.len() != self.scores.len() {
            return Err(TrainError::Options(format!(
                "saved pruning scores cover {} samples, the training set has {}",
                scores.len(),
                self.scores.len()
            )));
        }
        for (slot, &s) in self.scores.iter_mut().zip(scores) {
            *slot = s.is_finite().then_some(s);
        }
        Ok(())
    }
}

/// The EMA reference model of MolPeg: its variables, paired with the online model's.
pub struct ReferenceModel {
    /// `(reference, online)` variable pairs, matched by name.
    pairs: Vec<(Tensor, Tensor)>,
    beta: f64,
}

impl std::fmt::Debug for ReferenceModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferenceModel")
            .field("variables", &self.pairs.len())
            .field("beta", &self.beta)
            .finish()
    }
}

impl ReferenceModel {
    /// Pairs the variables of `reference` (a model of the same architecture) with those of
    /// `online` and copies the online weights in: both start from the same (pre-trained) weights.
    pub fn new(reference: &VarStore, online: &VarStore, beta: f64) -> Result<Self, TrainError> {
        if !(0.0..=1.0).contains(&beta) {
            return Err(TrainError::Options(format!(
                "--ema-beta {beta} is not in [0, 1]"
            )));
        }
        let online_vars = online.variables();
        let mut pairs = Vec::new();
        let mut names: Vec<(String, Tensor)> = reference.variables().into_iter().collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, r) in names {
            let Some(o) = online_vars.get(&name) else {
                return Err(TrainError::Options(format!(
                    "reference model variable {name} has no online counterpart"
                )));
            };
            pairs.push((r, o.shallow_clone()));
        }
        let model = Self { pairs, beta };
        model.blend(0.0)?;
        Ok(model)
    }

    /// `θ_ref ← β·θ_ref + (1 − β)·θ` (after every optimiser step).
    pub fn update(&self) -> Result<(), TrainError> {
        self.blend(self.beta)
    }

    fn blend(&self, beta: f64) -> Result<(), TrainError> {
        tch::no_grad(|| -> Result<(), TrainError> {
            for (r, o) in &self.pairs {
                let mut r = r.shallow_clone();
                if matches!(
                    r.kind(),
                    Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
                ) && beta > 0.0
                {
                    let _ = r.f_mul_scalar_(beta)?;
                    let _ = r.f_add_(&o.f_mul_scalar(1.0 - beta)?)?;
                } else {
                    r.f_copy_(o)?;
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(method: PruneMethod, keep_ratio: f64) -> PruneConfig {
        PruneConfig {
            method,
            keep_ratio,
            ..PruneConfig::default()
        }
    }

    fn pruner(method: PruneMethod, r: f64, n: usize) -> Pruner {
        Pruner::new(&config(method, r), n, 42).unwrap().unwrap()
    }

    #[test]
    fn keep_ratio_means_the_kept_fraction() {
        assert_eq!(pruner(PruneMethod::Random, 0.5, 10).kept(), 5);
        assert_eq!(pruner(PruneMethod::Random, 0.7, 10).kept(), 7);
        assert_eq!(pruner(PruneMethod::Random, 0.31, 10).kept(), 4);
        assert_eq!(pruner(PruneMethod::Random, 0.01, 10).kept(), 1);
        assert_eq!(pruner(PruneMethod::Random, 1.0, 10).kept(), 10);
        assert!(
            Pruner::new(&config(PruneMethod::None, 0.5), 10, 0)
                .unwrap()
                .is_none()
        );
        for bad in [0.0, -0.1, 1.5, f64::NAN] {
            assert!(
                Pruner::new(&config(PruneMethod::Molpeg, bad), 10, 0).is_err(),
                "{bad}"
            );
        }
        assert!((pruner(PruneMethod::Molpeg, 0.25, 8).weight() - 4.0).abs() < 1e-12);
    }

    #[test]
    fn molpeg_keeps_unscored_then_the_largest_scores() {
        let mut p = pruner(PruneMethod::Molpeg, 0.5, 6);
        // Nothing scored: a seeded choice among ties, the same for the same epoch.
        assert_eq!(p.select(1), p.select(1));
        assert_eq!(p.select(1).len(), 3);
        for (i, s) in [0.1, 5.0, 0.3, 2.0, 0.2].into_iter().enumerate() {
            p.record(i, s);
        }
        p.record(0, f64::NAN); // ignored: keeps 0.1
        // Sample 5 is unscored (+∞), then 5.0 (#1), 2.0 (#3).
        assert_eq!(p.select(2), vec![1, 3, 5]);
        assert_eq!(p.scored(), 5);
        // What --resume saves restores the same choice.
        let mut again = pruner(PruneMethod::Molpeg, 0.5, 6);
        again.restore_scores(&p.scores()).unwrap();
        assert_eq!((again.select(2), again.scored()), (vec![1, 3, 5], 5));
        assert!(again.restore_scores(&[1.0]).is_err());
    }

    #[test]
    fn random_pruning_is_seeded_and_changes_each_epoch() {
        let p = pruner(PruneMethod::Random, 0.5, 100);
        let (a, b) = (p.select(1), p.select(2));
        assert_eq!(a.len(), 50);
        assert_eq!(a, p.select(1));
        assert_ne!(a, b);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        let other_seed = Pruner::new(&config(PruneMethod::Random, 0.5), 100, 7)
            .unwrap()
            .unwrap();
        assert_ne!(a, other_seed.select(1));
    }

    #[test]
    fn reference_model_follows_by_ema() {
        let _rng = crate::test_support::torch_rng();
        let online = VarStore::new(tch::Device::Cpu);
        let reference = VarStore::new(tch::Device::Cpu);
        let w = online.root().var("w", &[2], tch::nn::Init::Const(1.0));
        let r = reference.root().var("w", &[2], tch::nn::Init::Const(7.0));
        let model = ReferenceModel::new(&reference, &online, 0.5).unwrap();
        assert_eq!(Vec::<f32>::try_from(&r).unwrap(), vec![1.0, 1.0]);
        let _ = tch::no_grad(|| w.shallow_clone().fill_(3.0));
        model.update().unwrap();
        assert_eq!(Vec::<f32>::try_from(&r).unwrap(), vec![2.0, 2.0]);
        assert!(ReferenceModel::new(&reference, &online, 1.5).is_err());
        let lone = VarStore::new(tch::Device::Cpu);
        let _ = lone.root().var("other", &[1], tch::nn::Init::Const(0.0));
        assert!(ReferenceModel::new(&lone, &online, 0.5).is_err());
    }
}
