//! The optimiser of fine-tuning and pre-training: Adam (L2 weight decay) or AdamW (decoupled),
//! with the global gradient-norm clipping of `--clip-grad`.
//!
//! On the CPU the update is fused: one pass over each parameter reads the weight, its gradient
//! and both moments and writes the three back. libtorch's C++ Adam runs
//! about eight tensor operations per parameter, each one more pass over memory (7–8 % of a GIN
//! epoch on the build VM, `docs/benchmarks.md`). The arithmetic is `torch.optim.Adam`'s /
//! `AdamW`'s in f32, bias-corrected, checked against libtorch's optimisers in the tests below.
//! Parameters that are not contiguous f32 CPU tensors (a CUDA run) use libtorch's optimiser.
//!
//! Gradients are released after each step (`set_to_none`, through libtorch's optimiser, which
//! knows how), so that the next backward pass moves its gradient buffers into place instead of
//! adding them into zeros.

use std::collections::BTreeMap;

use tch::nn::{self, OptimizerConfig, VarStore};
use tch::{COptimizer, Device, Kind, TchError, Tensor};

/// Adam's hyper-parameters (PyTorch's defaults but the learning rate and weight decay).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Weight decay (0: none).
    pub weight_decay: f64,
    /// Decoupled weight decay (AdamW) instead of an L2 term in the gradient (Adam).
    pub decoupled: bool,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
}

impl AdamConfig {
    /// Adam with PyTorch's betas and epsilon; AdamW when `weight_decay > 0`.
    pub fn new(lr: f64, weight_decay: f64) -> Self {
        Self {
            lr,
            weight_decay,
            decoupled: weight_decay > 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Adam or AdamW over every trainable variable of a var store (see the module doc).
pub enum Optimizer {
    /// The fused CPU update.
    Fused(FusedAdam),
    /// libtorch's optimiser (parameters on another device or of another kind).
    Libtorch(nn::Optimizer),
}

impl std::fmt::Debug for Optimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Fused(_) => "Optimizer::Fused",
            Self::Libtorch(_) => "Optimizer::Libtorch",
        })
    }
}

impl Optimizer {
    /// The optimiser of `vs`'s trainable variables: fused when they are all contiguous f32 CPU
    /// tensors.
    pub fn new(vs: &VarStore, cfg: AdamConfig) -> Result<Self, TchError> {
        let params = vs.trainable_variables();
        let fusable = params
            .iter()
            .all(|p| p.device() == Device::Cpu && p.kind() == Kind::Float && p.is_contiguous());
        if fusable {
            return Ok(Self::Fused(FusedAdam::new(params, cfg)?));
        }
        Self::libtorch(vs, cfg)
    }

    /// libtorch's own Adam/AdamW over `vs`'s trainable variables.
    pub fn libtorch(vs: &VarStore, cfg: AdamConfig) -> Result<Self, TchError> {
        let (beta1, beta2, wd, eps) = (cfg.beta1, cfg.beta2, cfg.weight_decay, cfg.eps);
        let opt = if cfg.decoupled {
            let c = nn::AdamW {
                beta1,
                beta2,
                wd,
                eps,
                amsgrad: false,
            };
            c.build(vs, cfg.lr)
        } else {
            let c = nn::Adam {
                beta1,
                beta2,
                wd,
                eps,
                amsgrad: false,
            };
            c.build(vs, cfg.lr)
        }?;
        Ok(Self::Libtorch(opt))
    }

    /// Releases the gradients (the next backward pass creates them anew).
    pub fn zero_grad(&mut self) -> Result<(), TchError> {
        match self {
            Self::Fused(f) => f.releaser.zero_grad(),
            Self::Libtorch(o) => {
                o.zero_grad();
                Ok(())
            }
        }
    }

    /// Scales the gradients so that their global L2 norm is at most `max`.
    pub fn clip_grad_norm(&mut self, max: f64) {
        match self {
            Self::Fused(f) => f.clip_grad_norm(max),
            Self::Libtorch(o) => o.clip_grad_norm(max),
        }
    }

    /// One update from the current gradients; parameters without a gradient are left as they
    /// are. The fused update releases the gradients it used.
    pub fn step(&mut self) -> Result<(), TchError> {
        match self {
            Self::Fused(f) => f.step(),
            Self::Libtorch(o) => {
                o.step();
                Ok(())
            }
        }
    }
}

/// Adam's state of one parameter, as `--resume` saves and restores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    /// First moment, element by element.
    pub exp_avg: Vec<f32>,
    /// Second moment.
    pub exp_avg_sq: Vec<f32>,
    /// Updates the parameter has had (its bias correction).
    pub steps: i32,
}

impl Optimizer {
    /// The state of every parameter, by its name in `vs` (the store the optimiser was built
    /// over); `None` for libtorch's optimiser, whose state tch cannot read.
    pub fn moments(&self, vs: &VarStore) -> Option<BTreeMap<String, Moments>> {
        let Self::Fused(f) = self else { return None };
        let names = names_by_storage(vs);
        Some(
            f.slots
                .iter()
                .filter_map(|slot| {
                    let name = names.get(&(slot.param.data_ptr() as usize))?;
                    Some((
                        name.clone(),
                        Moments {
                            exp_avg: slot.exp_avg.clone(),
                            exp_avg_sq: slot.exp_avg_sq.clone(),
                            steps: slot.steps,
                        },
                    ))
                })
                .collect(),
        )
    }

    /// Restores the state that [`Optimizer::moments`] gave, parameter by parameter name; every
    /// parameter must be there with moments of its size.
    pub fn restore_moments(
        &mut self,
        vs: &VarStore,
        mut saved: BTreeMap<String, Moments>,
    ) -> Result<(), String> {
        let Self::Fused(f) = self else {
            return Err("libtorch's optimiser (a non-CPU run) cannot be restored".into());
        };
        let names = names_by_storage(vs);
        for slot in &mut f.slots {
            let name = names
                .get(&(slot.param.data_ptr() as usize))
                .ok_or("a parameter of the optimiser is not in the model")?;
            let m = saved
                .remove(name)
                .ok_or_else(|| format!("no optimiser state for {name}"))?;
            let n = slot.exp_avg.len();
            if m.exp_avg.len() != n || m.exp_avg_sq.len() != n || m.steps < 0 {
                return Err(format!(
                    "optimiser state of {name}: {} and {} moments, {} steps, for {n} elements",
                    m.exp_avg.len(),
                    m.exp_avg_sq.len(),
                    m.steps
                ));
            }
            (slot.exp_avg, slot.exp_avg_sq, slot.steps) = (m.exp_avg, m.exp_avg_sq, m.steps);
        }
        match saved.keys().next() {
            Some(extra) => Err(format!(
                "optimiser state for {extra}, which the model lacks"
            )),
            None => Ok(()),
        }
    }
}

/// The variables of `vs` by the address of their data (a parameter handle shares it).
fn names_by_storage(vs: &VarStore) -> BTreeMap<usize, String> {
    vs.variables()
        .into_iter()
        .map(|(name, t)| (t.data_ptr() as usize, name))
        .collect()
}

/// One parameter and its moments.
struct Slot {
    param: Tensor,
    exp_avg: Vec<f32>,
    exp_avg_sq: Vec<f32>,
    /// Updates this parameter has had (its own count, as libtorch keeps one per parameter: a
    /// step in which it has no gradient does not advance its bias correction).
    steps: i32,
}

/// The fused CPU Adam/AdamW (see the module doc).
pub struct FusedAdam {
    slots: Vec<Slot>,
    cfg: AdamConfig,
    /// libtorch's optimiser over the same parameters, used only to release their gradients.
    releaser: COptimizer,
}

/// The scalars of one update, shared by every element.
#[derive(Clone, Copy)]
struct StepScalars {
    beta1: f32,
    beta2: f32,
    /// `1 − β₁` and `1 − β₂`, rounded from f64 as libtorch rounds its scalars (`1 − 0.999` in
    /// f32 arithmetic is 4.7e-5 off).
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    eps: f32,
    step_size: f32,
    bias_correction2_sqrt: f32,
    l2: f32,
    decay: f32,
}

impl FusedAdam {
    fn new(params: Vec<Tensor>, cfg: AdamConfig) -> Result<Self, TchError> {
        let mut releaser = COptimizer::sgd(cfg.lr, 0.0, 0.0, 0.0, false)?;
        for p in &params {
            releaser.add_parameters(p, 0)?;
        }
        let slots = params
            .into_iter()
            .map(|param| {
                let n = param.numel();
                Slot {
                    param,
                    exp_avg: vec![0.0; n],
                    exp_avg_sq: vec![0.0; n],
                    steps: 0,
                }
            })
            .collect();
        Ok(Self {
            slots,
            cfg,
            releaser,
        })
    }

    fn clip_grad_norm(&self, max: f64) {
        tch::no_grad(|| {
            let grads: Vec<Tensor> = self
                .slots
                .iter()
                .map(|s| s.param.grad())
                .filter(Tensor::defined)
                .collect();
            let total = grads
                .iter()
                .map(|g| g.square().sum(Kind::Double).double_value(&[]))
                .sum::<f64>()
                .sqrt();
            let coef = max / (total + 1e-6);
            if coef < 1.0 {
                for mut g in grads {
                    let _ = g.g_mul_scalar_(coef);
                }
            }
        });
    }

    fn step(&mut self) -> Result<(), TchError> {
        let c = self.cfg;
        let scalars = |steps: i32| {
            let bias_correction1 = 1.0 - c.beta1.powi(steps);
            let bias_correction2 = 1.0 - c.beta2.powi(steps);
            StepScalars {
                beta1: c.beta1 as f32,
                beta2: c.beta2 as f32,
                one_minus_beta1: (1.0 - c.beta1) as f32,
                one_minus_beta2: (1.0 - c.beta2) as f32,
                eps: c.eps as f32,
                step_size: (c.lr / bias_correction1) as f32,
                bias_correction2_sqrt: bias_correction2.sqrt() as f32,
                l2: if c.decoupled {
                    0.0
                } else {
                    c.weight_decay as f32
                },
                decay: if c.decoupled {
                    (1.0 - c.lr * c.weight_decay) as f32
                } else {
                    1.0
                },
            }
        };
        // Gradients, checked before anything is written.
        let mut grads = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            let g = slot.param.grad();
            if !g.defined() {
                grads.push(None);
                continue;
            }
            if g.device() != Device::Cpu || g.kind() != Kind::Float || g.size() != slot.param.size()
            {
                return Err(TchError::Kind(format!(
                    "fused Adam: gradient {:?} {:?} of a {:?} parameter",
                    g.kind(),
                    g.size(),
                    slot.param.size()
                )));
            }
            grads.push(Some(g.contiguous()));
        }
        for (slot, grad) in self.slots.iter_mut().zip(&grads) {
            let Some(grad) = grad else { continue };
            let n = slot.exp_avg.len();
            // SAFETY: `param` is a contiguous f32 CPU tensor of `n` elements (checked when the
            // optimiser was built; libtorch never changes a variable's layout in place) and
            // `grad` a contiguous f32 CPU tensor of the same size (checked above); both outlive
            // the slices, which end with this iteration. The parameter's storage is written only
            // here, while no autograd pass runs (the step comes between backward passes, under
            // this `&mut self`); it is not the gradient's storage (libtorch never aliases a leaf
            // with its gradient), and the gradient is only read.
            let (param, grad) = unsafe {
                (
                    std::slice::from_raw_parts_mut(slot.param.data_ptr().cast::<f32>(), n),
                    std::slice::from_raw_parts(grad.data_ptr().cast::<f32>(), n),
                )
            };
            slot.steps += 1;
            let s = scalars(slot.steps);
            update(param, grad, &mut slot.exp_avg, &mut slot.exp_avg_sq, s);
        }
        drop(grads);
        self.releaser.zero_grad()
    }
}

/// `torch.optim.Adam` (`l2`) / `AdamW` (`decay`) on one parameter: one sequential pass. It is
/// bound by memory bandwidth (28 bytes per element), so a second thread gains nothing (measured:
/// 0.21 s per GIN epoch on one thread or two).
fn update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: StepScalars) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
        let g = g + s.l2 * *p;
        *p *= s.decay;
        *m = s.beta1 * *m + s.one_minus_beta1 * g;
        *v = s.beta2 * *v + s.one_minus_beta2 * g * g;
        let denom = v.sqrt() / s.bias_correction2_sqrt + s.eps;
        *p -= s.step_size * *m / denom;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A var store with a matrix, a vector and a parameter that never gets a gradient.
    fn model(seed: i64) -> (VarStore, Tensor, Tensor, Tensor) {
        tch::manual_seed(seed);
        let vs = VarStore::new(Device::Cpu);
        let root = vs.root();
        let w = root.randn("w", &[70_000, 3], 0.0, 1.0);
        let b = root.randn("b", &[3], 0.0, 1.0);
        let unused = root.randn("unused", &[5], 0.0, 1.0);
        let _sometimes = root.randn("sometimes", &[4], 0.0, 1.0);
        (vs, w, b, unused)
    }

    fn loss(w: &Tensor, b: &Tensor, x: &Tensor) -> Tensor {
        (x.matmul(w) + b).tanh().square().sum(Kind::Float)
    }

    /// Runs `steps` updates with `ours` (true) or libtorch's optimiser, from the same start.
    fn train(cfg: AdamConfig, ours: bool, clip: f64, steps: usize) -> Vec<Vec<f32>> {
        let _rng = crate::test_support::torch_rng();
        let (vs, w, b, unused) = model(7);
        let mut opt = if ours {
            Optimizer::new(&vs, cfg).unwrap()
        } else {
            Optimizer::libtorch(&vs, cfg).unwrap()
        };
        if ours {
            assert!(matches!(opt, Optimizer::Fused(_)), "{opt:?}");
        }
        tch::manual_seed(11);
        let x = Tensor::randn([8, 70_000], (Kind::Float, Device::Cpu)) * 0.01;
        // A parameter in the loss of every other step only: its bias correction must count its
        // own updates, as libtorch's does.
        let sometimes = vs.variables()["sometimes"].shallow_clone();
        for k in 0..steps {
            opt.zero_grad().unwrap();
            let mut l = loss(&w, &b, &x);
            if k % 2 == 1 {
                l += sometimes.square().sum(Kind::Float);
            }
            l.backward();
            if clip > 0.0 {
                opt.clip_grad_norm(clip);
            }
            opt.step().unwrap();
        }
        [&w, &b, &unused, &sometimes]
            .iter()
            .map(|t| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap())
            .collect()
    }

    fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
        a.iter()
            .flatten()
            .zip(b.iter().flatten())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn fused_adam_and_adamw_match_libtorch() {
        for (name, cfg, clip) in [
            ("adam", AdamConfig::new(1e-2, 0.0), 0.0),
            (
                "adam + L2",
                AdamConfig {
                    decoupled: false,
                    ..AdamConfig::new(1e-2, 0.05)
                },
                0.0,
            ),
            ("adamw", AdamConfig::new(1e-2, 0.05), 0.0),
            ("adam, clipped", AdamConfig::new(1e-2, 0.0), 0.5),
        ] {
            let ours = train(cfg, true, clip, 6);
            let theirs = train(cfg, false, clip, 6);
            let start = train(cfg, true, clip, 0);
            let moved = max_abs_diff(&ours, &start);
            assert!(moved > 1e-2, "{name}: the parameters moved by {moved}");
            let diff = max_abs_diff(&ours, &theirs);
            assert!(diff < 2e-6, "{name}: fused vs libtorch differ by {diff}");
            assert_eq!(
                ours[2], start[2],
                "{name}: a parameter without gradient is left alone"
            );
        }
    }

    #[test]
    fn restored_moments_continue_the_same_trajectory() {
        let cfg = AdamConfig::new(1e-2, 0.0);
        let straight = train(cfg, true, 0.0, 6);
        // Three steps, then the weights and moments moved to a fresh model and optimiser, then
        // three more: the same parameters, bit for bit.
        let _rng = crate::test_support::torch_rng();
        let (vs, w, b, _) = model(7);
        let mut opt = Optimizer::new(&vs, cfg).unwrap();
        tch::manual_seed(11);
        let x = Tensor::randn([8, 70_000], (Kind::Float, Device::Cpu)) * 0.01;
        let step = |opt: &mut Optimizer, vs: &VarStore, w: &Tensor, b: &Tensor, k: usize| {
            opt.zero_grad().unwrap();
            let mut l = loss(w, b, &x);
            if k % 2 == 1 {
                l += vs.variables()["sometimes"].square().sum(Kind::Float);
            }
            l.backward();
            opt.step().unwrap();
        };
        for k in 0..3 {
            step(&mut opt, &vs, &w, &b, k);
        }
        let saved = opt.moments(&vs).unwrap();
        assert_eq!(saved.len(), 4);
        assert_eq!((saved["w"].steps, saved["sometimes"].steps), (3, 1));
        let (vs2, w2, b2, unused2) = model(99);
        tch::no_grad(|| {
            for (name, mut t) in vs2.variables() {
                t.copy_(&vs.variables()[&name]);
            }
        });
        let mut opt2 = Optimizer::new(&vs2, cfg).unwrap();
        opt2.restore_moments(&vs2, saved.clone()).unwrap();
        for k in 3..6 {
            step(&mut opt2, &vs2, &w2, &b2, k);
        }
        let sometimes2 = vs2.variables()["sometimes"].shallow_clone();
        let resumed: Vec<Vec<f32>> = [&w2, &b2, &unused2, &sometimes2]
            .iter()
            .map(|t| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap())
            .collect();
        assert_eq!(resumed, straight);

        // What does not fit is refused by name.
        let mut wrong = saved.clone();
        wrong.get_mut("b").unwrap().exp_avg.pop();
        let err = opt2.restore_moments(&vs2, wrong).unwrap_err();
        assert!(err.contains('b'), "{err}");
        let mut missing = saved.clone();
        missing.remove("w");
        assert!(
            opt2.restore_moments(&vs2, missing)
                .unwrap_err()
                .contains("no optimiser state for w")
        );
        let mut extra = saved;
        extra.insert("ghost".into(), extra["b"].clone());
        assert!(
            opt2.restore_moments(&vs2, extra)
                .unwrap_err()
                .contains("ghost")
        );
        let theirs = Optimizer::libtorch(&vs2, cfg).unwrap();
        assert!(theirs.moments(&vs2).is_none());
    }

    #[test]
    fn a_step_releases_the_gradients() {
        let _rng = crate::test_support::torch_rng();
        let (vs, w, b, _) = model(3);
        let mut opt = Optimizer::new(&vs, AdamConfig::new(1e-3, 0.0)).unwrap();
        loss(
            &w,
            &b,
            &Tensor::ones([2, 70_000], (Kind::Float, Device::Cpu)),
        )
        .backward();
        assert!(w.grad().defined());
        opt.step().unwrap();
        assert!(!w.grad().defined() && !b.grad().defined());
        // A step without gradients changes nothing.
        let before = Vec::<f32>::try_from(&b).unwrap();
        opt.step().unwrap();
        assert_eq!(Vec::<f32>::try_from(&b).unwrap(), before);
    }
}
