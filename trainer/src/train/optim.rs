//! The optimiser of fine-tuning and pre-training: Adam (L2 weight decay) or AdamW (decoupled),
//! with the global gradient-norm clipping of `--clip-grad`.
//!
//! On the CPU the update is fused: one pass over each parameter reads the weight, its gradient
//! and both moments and writes the three back. libtorch's C++ Adam runs
//! about eight tensor operations per parameter, each one more pass over memory (7–8 % of a GIN
//! epoch on the build VM, `docs/benchmarks.md`). The arithmetic is `torch.optim.Adam`'s /
//! `AdamW`'s in f32, bias-corrected, checked against libtorch's optimisers in the tests below.
//!
//! On a GPU the cost is the number of kernel launches, not memory: libtorch's Adam launches about
//! ten small kernels per parameter tensor (GIN 5 × 300 has 44 of them), a third of a BBBP epoch
//! on an H200 (docs/benchmarks.md, "CUDA"). There the parameters become views into one flat buffer
//! and the update runs on the whole buffer at once, a dozen launches per step whatever the model
//! ([`FlatAdam`]). Parameters of mixed kinds or devices, or sharing storage, use libtorch's
//! optimiser.
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
    /// The whole-buffer update of parameters on another device (a GPU).
    Flat(FlatAdam),
    /// libtorch's optimiser (parameters of mixed kinds or devices).
    Libtorch(nn::Optimizer),
}

impl std::fmt::Debug for Optimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Fused(_) => "Optimizer::Fused",
            Self::Flat(_) => "Optimizer::Flat",
            Self::Libtorch(_) => "Optimizer::Libtorch",
        })
    }
}

impl Optimizer {
    /// The optimiser of `vs`'s trainable variables: fused when they are all contiguous f32 CPU
    /// tensors, flat when they are all contiguous f32 tensors of another device, else
    /// libtorch's.
    pub fn new(vs: &VarStore, cfg: AdamConfig) -> Result<Self, TchError> {
        let params = vs.trainable_variables();
        let fusable = params
            .iter()
            .all(|p| p.device() == Device::Cpu && p.kind() == Kind::Float && p.is_contiguous());
        if fusable {
            return Ok(Self::Fused(FusedAdam::new(params, cfg)?));
        }
        if FlatAdam::accepts(&params) {
            return Ok(Self::Flat(FlatAdam::new(params, cfg)?));
        }
        Self::libtorch(vs, cfg)
    }

    /// The whole-buffer Adam/AdamW over `vs`'s trainable variables, whatever their device (the
    /// default on a GPU; on the CPU for tests). Their storage moves into one flat buffer.
    pub fn flat(vs: &VarStore, cfg: AdamConfig) -> Result<Self, TchError> {
        let params = vs.trainable_variables();
        if !FlatAdam::accepts(&params) {
            return Err(TchError::Kind(
                "flat Adam: the parameters are not contiguous f32 tensors of one device with \
                 storage of their own"
                    .into(),
            ));
        }
        Ok(Self::Flat(FlatAdam::new(params, cfg)?))
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
            Self::Flat(f) => f.releaser.zero_grad(),
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
            Self::Flat(f) => f.clip_grad_norm(max),
            Self::Libtorch(o) => o.clip_grad_norm(max),
        }
    }

    /// One update from the current gradients; parameters without a gradient are left as they
    /// are. The fused and flat updates release the gradients they used.
    pub fn step(&mut self) -> Result<(), TchError> {
        match self {
            Self::Fused(f) => f.step(),
            Self::Flat(f) => f.step(),
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
    /// over), on the host; `None` for libtorch's optimiser, whose state tch cannot read.
    pub fn moments(&self, vs: &VarStore) -> Result<Option<BTreeMap<String, Moments>>, TchError> {
        let names = names_by_storage(vs);
        let named = |param: &Tensor| names.get(&(param.data_ptr() as usize)).cloned();
        match self {
            Self::Fused(f) => Ok(Some(
                f.slots
                    .iter()
                    .filter_map(|slot| {
                        let moments = Moments {
                            exp_avg: slot.exp_avg.clone(),
                            exp_avg_sq: slot.exp_avg_sq.clone(),
                            steps: slot.steps,
                        };
                        Some((named(&slot.param)?, moments))
                    })
                    .collect(),
            )),
            Self::Flat(f) => f.moments(named).map(Some),
            Self::Libtorch(_) => Ok(None),
        }
    }

    /// Restores the state that [`Optimizer::moments`] gave, parameter by parameter name; every
    /// parameter must be there with moments of its size, and nothing else may be. A state that
    /// is refused leaves the optimiser as it was.
    pub fn restore_moments(
        &mut self,
        vs: &VarStore,
        mut saved: BTreeMap<String, Moments>,
    ) -> Result<(), String> {
        let names = names_by_storage(vs);
        let params: Vec<(&Tensor, usize)> = match self {
            Self::Fused(f) => f
                .slots
                .iter()
                .map(|slot| (&slot.param, slot.exp_avg.len()))
                .collect(),
            Self::Flat(f) => f.params.iter().map(|(p, _, n)| (p, *n as usize)).collect(),
            Self::Libtorch(_) => return Err(LIBTORCH_STATE.into()),
        };
        // Every check first, in the optimiser's parameter order; only then is anything written.
        let mut picked = Vec::with_capacity(params.len());
        for (param, n) in params {
            let name = names
                .get(&(param.data_ptr() as usize))
                .ok_or("a parameter of the optimiser is not in the model")?;
            let m = saved
                .remove(name)
                .ok_or_else(|| format!("no optimiser state for {name}"))?;
            if m.exp_avg.len() != n || m.exp_avg_sq.len() != n || m.steps < 0 {
                return Err(format!(
                    "optimiser state of {name}: {} and {} moments, {} steps, for {n} elements",
                    m.exp_avg.len(),
                    m.exp_avg_sq.len(),
                    m.steps
                ));
            }
            picked.push(m);
        }
        if let Some(extra) = saved.keys().next() {
            return Err(format!(
                "optimiser state for {extra}, which the model lacks"
            ));
        }
        match self {
            Self::Fused(f) => {
                for (slot, m) in f.slots.iter_mut().zip(picked) {
                    (slot.exp_avg, slot.exp_avg_sq, slot.steps) =
                        (m.exp_avg, m.exp_avg_sq, m.steps);
                }
                Ok(())
            }
            Self::Flat(f) => f.restore(picked),
            Self::Libtorch(_) => Err(LIBTORCH_STATE.into()),
        }
    }
}

/// Why libtorch's optimiser cannot be restored.
const LIBTORCH_STATE: &str = "libtorch's optimiser state cannot be restored (tch cannot write it)";

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

impl StepScalars {
    /// The scalars of a parameter's `steps`-th update.
    fn new(c: &AdamConfig, steps: i32) -> Self {
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
    }
}

/// A libtorch optimiser over `params` that is only used to release their gradients
/// (`zero_grad` sets them to none, which tch does not expose otherwise). It holds handles to the
/// parameters, so it follows a later `set_data` of theirs.
fn releaser(params: &[Tensor]) -> Result<COptimizer, TchError> {
    let mut releaser = COptimizer::sgd(0.0, 0.0, 0.0, 0.0, false)?;
    for p in params {
        releaser.add_parameters(p, 0)?;
    }
    Ok(releaser)
}

/// Scales the defined gradients among `grads` so that their global L2 norm is at most `max`.
fn clip_each(grads: impl Iterator<Item = Tensor>, max: f64) {
    tch::no_grad(|| {
        let grads: Vec<Tensor> = grads.filter(Tensor::defined).collect();
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

impl FusedAdam {
    fn new(params: Vec<Tensor>, cfg: AdamConfig) -> Result<Self, TchError> {
        let releaser = releaser(&params)?;
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
        clip_each(self.slots.iter().map(|s| s.param.grad()), max);
    }

    fn step(&mut self) -> Result<(), TchError> {
        let scalars = |steps: i32| StepScalars::new(&self.cfg, steps);
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
            update(
                param,
                grad,
                &mut slot.exp_avg,
                &mut slot.exp_avg_sq,
                scalars(slot.steps),
            );
        }
        drop(grads);
        self.releaser.zero_grad()
    }
}

/// Adam/AdamW in a fixed number of tensor operations per step, for parameters on a GPU (see the
/// module doc).
///
/// At construction every parameter's storage moves into one flat buffer (`set_data` to a view
/// of it, values copied), and the moments are flat buffers of the same layout. A step in which
/// every parameter has a gradient and all have had the same number of updates (fine-tuning's
/// every step) gathers the gradients into a flat buffer with one `cat` and updates all
/// parameters at once; any other step updates the parameters that have a gradient one by one,
/// each with its own bias correction, as libtorch does.
pub struct FlatAdam {
    /// The parameters (views into `flat`) and their (offset, length) in it.
    params: Vec<(Tensor, i64, i64)>,
    flat: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// The gradients gathered for a whole-buffer step.
    grad: Tensor,
    /// Whether `grad` holds this step's (clipped) gradients already.
    gathered: bool,
    /// Updates each parameter has had.
    steps: Vec<i32>,
    cfg: AdamConfig,
    /// libtorch's optimiser over the same parameters, used only to release their gradients.
    releaser: COptimizer,
    /// Steps taken on the whole buffer and parameter by parameter (for the tests and logs).
    whole_buffer_steps: u64,
    per_parameter_steps: u64,
}

impl FlatAdam {
    /// Whether `params` can share one flat buffer: contiguous f32 tensors of one device, none
    /// sharing storage with another (tied weights must stay tied).
    fn accepts(params: &[Tensor]) -> bool {
        let Some(first) = params.first() else {
            return false;
        };
        let mut storages: Vec<usize> = params.iter().map(|p| p.data_ptr() as usize).collect();
        storages.sort_unstable();
        storages.dedup();
        storages.len() == params.len()
            && params.iter().all(|p| {
                p.device() == first.device() && p.kind() == Kind::Float && p.is_contiguous()
            })
    }

    fn new(params: Vec<Tensor>, cfg: AdamConfig) -> Result<Self, TchError> {
        let device = params.first().map_or(Device::Cpu, Tensor::device);
        let total: i64 = params.iter().map(|p| p.numel() as i64).sum();
        let opts = (Kind::Float, device);
        let flat = Tensor::f_zeros([total], opts)?;
        let releaser = releaser(&params)?;
        let mut placed = Vec::with_capacity(params.len());
        let mut offset = 0;
        for mut p in params {
            let n = p.numel() as i64;
            let mut view = flat.f_narrow(0, offset, n)?.f_view(p.size().as_slice())?;
            tch::no_grad(|| -> Result<(), TchError> {
                view.f_copy_(&p)?;
                p.f_set_data(&view)
            })?;
            placed.push((p, offset, n));
            offset += n;
        }
        let steps = vec![0; placed.len()];
        Ok(Self {
            params: placed,
            exp_avg: Tensor::f_zeros([total], opts)?,
            exp_avg_sq: Tensor::f_zeros([total], opts)?,
            grad: Tensor::f_zeros([total], opts)?,
            flat,
            gathered: false,
            steps,
            cfg,
            releaser,
            whole_buffer_steps: 0,
            per_parameter_steps: 0,
        })
    }

    /// The gradients, flattened, when this step can update the whole buffer at once.
    fn whole_buffer_gradients(&self) -> Option<Vec<Tensor>> {
        if self.steps.iter().any(|&s| s != self.steps[0]) {
            return None;
        }
        self.params
            .iter()
            .map(|(p, _, _)| {
                let g = p.grad();
                g.defined().then(|| g.reshape([-1]))
            })
            .collect()
    }

    /// Gathers this step's gradients into `grad` (one `cat`).
    fn gather(&mut self, grads: &[Tensor]) -> Result<(), TchError> {
        let _ = Tensor::f_cat_out(&self.grad, grads, 0)?;
        self.gathered = true;
        Ok(())
    }

    fn clip_grad_norm(&mut self, max: f64) {
        let Some(grads) = self.whole_buffer_gradients() else {
            clip_each(self.params.iter().map(|(p, _, _)| p.grad()), max);
            return;
        };
        tch::no_grad(|| {
            if self.gather(&grads).is_err() {
                // Left to the step, which gathers again and reports the error.
                return;
            }
            let total = self.grad.norm().double_value(&[]);
            let coef = max / (total + 1e-6);
            if coef < 1.0 {
                let _ = self.grad.g_mul_scalar_(coef);
            }
        });
    }

    fn step(&mut self) -> Result<(), TchError> {
        tch::no_grad(|| -> Result<(), TchError> {
            if let Some(grads) = self.whole_buffer_gradients() {
                if !self.gathered {
                    self.gather(&grads)?;
                }
                let steps = self.steps[0] + 1;
                self.steps.fill(steps);
                let s = StepScalars::new(&self.cfg, steps);
                update_tensors(&self.flat, &self.grad, &self.exp_avg, &self.exp_avg_sq, s)?;
                self.whole_buffer_steps += 1;
            } else {
                for (i, (p, offset, n)) in self.params.iter().enumerate() {
                    let g = p.grad();
                    if !g.defined() {
                        continue;
                    }
                    self.steps[i] += 1;
                    let s = StepScalars::new(&self.cfg, self.steps[i]);
                    update_tensors(
                        &self.flat.f_narrow(0, *offset, *n)?,
                        &g.f_reshape([-1])?,
                        &self.exp_avg.f_narrow(0, *offset, *n)?,
                        &self.exp_avg_sq.f_narrow(0, *offset, *n)?,
                        s,
                    )?;
                }
                self.per_parameter_steps += 1;
            }
            Ok(())
        })?;
        self.gathered = false;
        self.releaser.zero_grad()
    }

    /// Each parameter's moments and step count, copied to the host (two transfers), by the name
    /// `named` gives it; parameters without a name are left out.
    fn moments(
        &self,
        named: impl Fn(&Tensor) -> Option<String>,
    ) -> Result<BTreeMap<String, Moments>, TchError> {
        let host = |t: &Tensor| Vec::<f32>::try_from(t.f_to_device(Device::Cpu)?);
        let (first, second) = (host(&self.exp_avg)?, host(&self.exp_avg_sq)?);
        let mut out = BTreeMap::new();
        for ((p, offset, n), &steps) in self.params.iter().zip(&self.steps) {
            let Some(name) = named(p) else { continue };
            let range = *offset as usize..(*offset + *n) as usize;
            let moments = Moments {
                exp_avg: first[range.clone()].to_vec(),
                exp_avg_sq: second[range].to_vec(),
                steps,
            };
            out.insert(name, moments);
        }
        Ok(out)
    }

    /// Sets every parameter's moments and step count to `picked` (in the order of `params`, each
    /// of its parameter's size: [`Optimizer::restore_moments`] checked them). Both moment buffers
    /// are built on the device first (two transfers) and swapped in only once both exist, so a
    /// failed transfer (a full GPU) leaves moments and step counts as they were.
    fn restore(&mut self, picked: Vec<Moments>) -> Result<(), String> {
        let total = self.exp_avg.numel();
        let (mut first, mut second) = (vec![0f32; total], vec![0f32; total]);
        for ((_, offset, n), m) in self.params.iter().zip(&picked) {
            let range = *offset as usize..(*offset + *n) as usize;
            first[range.clone()].copy_from_slice(&m.exp_avg);
            second[range].copy_from_slice(&m.exp_avg_sq);
        }
        let device = self.exp_avg.device();
        let upload = |host: &[f32]| {
            Tensor::from_slice(host)
                .f_to_device(device)
                .map_err(|e| format!("optimiser state: {e}"))
        };
        let (first, second) = (upload(&first)?, upload(&second)?);
        (self.exp_avg, self.exp_avg_sq) = (first, second);
        self.steps = picked.iter().map(|m| m.steps).collect();
        Ok(())
    }

    /// Steps taken on the whole buffer at once and parameter by parameter so far.
    pub fn step_counts(&self) -> (u64, u64) {
        (self.whole_buffer_steps, self.per_parameter_steps)
    }
}

/// The update of [`update`] in tensor operations, in place on flat views `p`, `m`, `v` of one
/// size with gradient `g` (libtorch's Adam's arithmetic; `m` by `lerp_` as `torch.optim.Adam`).
fn update_tensors(
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    s: StepScalars,
) -> Result<(), TchError> {
    let (mut p, mut m, mut v) = (p.shallow_clone(), m.shallow_clone(), v.shallow_clone());
    let g = if s.l2 != 0.0 {
        g.f_add(&p.f_mul_scalar(f64::from(s.l2))?)?
    } else {
        g.shallow_clone()
    };
    if s.decay != 1.0 {
        let _ = p.f_mul_scalar_(f64::from(s.decay))?;
    }
    let _ = m.f_lerp_(&g, f64::from(s.one_minus_beta1))?;
    let _ = v.f_mul_scalar_(f64::from(s.beta2))?;
    let _ = v.f_addcmul_(&g, &g.f_mul_scalar(f64::from(s.one_minus_beta2))?)?;
    let mut denom = v.f_sqrt()?;
    let _ = denom.f_div_scalar_(f64::from(s.bias_correction2_sqrt))?;
    let _ = denom.f_add_scalar_(f64::from(s.eps))?;
    let mut step = m.f_div(&denom)?;
    let _ = step.f_mul_scalar_(f64::from(s.step_size))?;
    let _ = p.f_sub_(&step)?;
    Ok(())
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

    /// Which optimiser a test run uses.
    #[derive(Clone, Copy, PartialEq)]
    enum Which {
        /// The default one on the CPU: the fused update.
        Fused,
        /// The whole-buffer update of GPU runs, here on the CPU.
        Flat,
        /// libtorch's, the reference.
        Libtorch,
    }

    /// Runs `steps` updates with `which`, from the same start. With `always`, every parameter
    /// is in every step's loss (the whole-buffer path); else `unused` never is and `sometimes`
    /// every other step.
    fn train(cfg: AdamConfig, which: Which, clip: f64, steps: usize) -> Vec<Vec<f32>> {
        train_with(cfg, which, clip, steps, false)
    }

    fn train_with(
        cfg: AdamConfig,
        which: Which,
        clip: f64,
        steps: usize,
        always: bool,
    ) -> Vec<Vec<f32>> {
        let _rng = crate::test_support::torch_rng();
        let (vs, w, b, unused) = model(7);
        let mut opt = which.build(&vs, cfg);
        if which == Which::Fused {
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
            if always || k % 2 == 1 {
                l += sometimes.square().sum(Kind::Float);
            }
            if always {
                l += unused.square().sum(Kind::Float) * 0.5;
            }
            l.backward();
            if clip > 0.0 {
                opt.clip_grad_norm(clip);
            }
            opt.step().unwrap();
        }
        if let Optimizer::Flat(f) = &opt {
            let (whole, per_parameter) = f.step_counts();
            let expected = if always {
                (steps as u64, 0)
            } else {
                (0, steps as u64)
            };
            assert_eq!((whole, per_parameter), expected, "flat Adam's paths");
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
        for (name, cfg, clip) in configurations() {
            let ours = train(cfg, Which::Fused, clip, 6);
            let theirs = train(cfg, Which::Libtorch, clip, 6);
            let start = train(cfg, Which::Fused, clip, 0);
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

    /// The four configurations both optimiser tests check.
    fn configurations() -> [(&'static str, AdamConfig, f64); 4] {
        [
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
        ]
    }

    #[test]
    fn flat_adam_matches_libtorch_on_either_path() {
        for (name, cfg, clip) in configurations() {
            // Whole buffer: every parameter in every step.
            let ours = train_with(cfg, Which::Flat, clip, 6, true);
            let theirs = train_with(cfg, Which::Libtorch, clip, 6, true);
            let start = train_with(cfg, Which::Flat, clip, 0, true);
            let moved = max_abs_diff(&ours, &start);
            assert!(moved > 1e-2, "{name}: the parameters moved by {moved}");
            let diff = max_abs_diff(&ours, &theirs);
            assert!(
                diff < 2e-6,
                "{name}, whole buffer: flat vs libtorch differ by {diff}"
            );
            // Parameter by parameter: one never has a gradient, one every other step.
            let ours = train(cfg, Which::Flat, clip, 6);
            let theirs = train(cfg, Which::Libtorch, clip, 6);
            let diff = max_abs_diff(&ours, &theirs);
            assert!(
                diff < 2e-6,
                "{name}, per parameter: flat vs libtorch differ by {diff}"
            );
            assert_eq!(
                ours[2], start[2],
                "{name}: a parameter without gradient is left alone"
            );
        }
    }

    #[test]
    fn flat_adam_keeps_the_parameters_in_the_var_store() {
        let _rng = crate::test_support::torch_rng();
        let (vs, w, _, _) = model(3);
        let before = Vec::<f32>::try_from(w.flatten(0, -1)).unwrap();
        let _opt = Optimizer::flat(&vs, AdamConfig::new(1e-2, 0.0)).unwrap();
        // Same values, and the var store's handle is the optimiser's parameter (one storage).
        let stored = vs.variables()["w"].shallow_clone();
        assert_eq!(Vec::<f32>::try_from(stored.flatten(0, -1)).unwrap(), before);
        assert_eq!(stored.data_ptr(), w.data_ptr());
        // Parameters sharing storage (tied weights) are refused, not untied.
        let tied = VarStore::new(Device::Cpu);
        let t = tied.root().randn("t", &[4], 0.0, 1.0);
        let mut alias = tied.root().zeros("alias", &[4]);
        tch::no_grad(|| alias.set_data(&t));
        assert!(Optimizer::flat(&tied, AdamConfig::new(1e-2, 0.0)).is_err());
    }

    impl Which {
        /// This kind of optimiser over `vs`.
        fn build(self, vs: &VarStore, cfg: AdamConfig) -> Optimizer {
            match self {
                Which::Fused => Optimizer::new(vs, cfg).unwrap(),
                Which::Flat => Optimizer::flat(vs, cfg).unwrap(),
                Which::Libtorch => Optimizer::libtorch(vs, cfg).unwrap(),
            }
        }
    }

    /// Three steps with `first`, then the weights and the saved moments moved to a fresh model
    /// under a `second` optimiser, then three more steps: the final parameters, the state saved
    /// after three steps, and the second model and optimiser.
    fn interrupted(
        cfg: AdamConfig,
        first: Which,
        second: Which,
    ) -> (
        Vec<Vec<f32>>,
        BTreeMap<String, Moments>,
        VarStore,
        Optimizer,
    ) {
        let _rng = crate::test_support::torch_rng();
        let (vs, w, b, _) = model(7);
        let mut opt = first.build(&vs, cfg);
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
        let saved = opt.moments(&vs).unwrap().unwrap();
        let (vs2, w2, b2, unused2) = model(99);
        tch::no_grad(|| {
            for (name, mut t) in vs2.variables() {
                t.copy_(&vs.variables()[&name]);
            }
        });
        let mut opt2 = second.build(&vs2, cfg);
        opt2.restore_moments(&vs2, saved.clone()).unwrap();
        for k in 3..6 {
            step(&mut opt2, &vs2, &w2, &b2, k);
        }
        let sometimes2 = vs2.variables()["sometimes"].shallow_clone();
        let resumed = [&w2, &b2, &unused2, &sometimes2]
            .iter()
            .map(|t| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap())
            .collect();
        (resumed, saved, vs2, opt2)
    }

    #[test]
    fn restored_moments_continue_the_same_trajectory() {
        let cfg = AdamConfig::new(1e-2, 0.0);
        for which in [Which::Fused, Which::Flat] {
            // Bit for bit what six uninterrupted steps give, on the fused and the flat Adam
            // (whose steps here are per parameter, as `sometimes` lags, then whole-buffer).
            let straight = train(cfg, which, 0.0, 6);
            let (resumed, saved, vs2, mut opt2) = interrupted(cfg, which, which);
            assert_eq!(saved.len(), 4);
            assert_eq!((saved["w"].steps, saved["sometimes"].steps), (3, 1));
            assert!(saved["unused"].exp_avg.iter().all(|&m| m == 0.0));
            assert!(saved["w"].exp_avg.iter().any(|&m| m != 0.0));
            assert_eq!(resumed, straight);

            // What does not fit is refused by name, and leaves the optimiser as it was.
            let before = opt2.moments(&vs2).unwrap().unwrap();
            assert_eq!((before["w"].steps, saved["w"].steps), (6, 3));
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
            assert_eq!(opt2.moments(&vs2).unwrap().unwrap(), before);
            let theirs = Optimizer::libtorch(&vs2, cfg).unwrap();
            assert!(theirs.moments(&vs2).unwrap().is_none());
        }
        // A CPU run's state continues under the flat Adam (a run resumed on a GPU): the same
        // arithmetic to the tolerance the two updates agree to.
        let straight = train(cfg, Which::Fused, 0.0, 6);
        let (resumed, _, _, _) = interrupted(cfg, Which::Fused, Which::Flat);
        for (r, s) in resumed.iter().flatten().zip(straight.iter().flatten()) {
            assert!((r - s).abs() < 2e-6, "{r} against {s}");
        }
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
