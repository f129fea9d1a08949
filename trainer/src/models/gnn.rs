//! The 2D models: GIN, GCN, GraphSAGE and GAT encoders exactly as pretrain-gnns (docs/spec.md
//! §4.2), mean-pooling readout and a multi-task linear head.
//!
//! Variables live at var-store paths equal to the checkpoint keys (`x_embedding1.weight`,
//! `gnns.N.mlp.0.weight`, `batch_norms.N.running_mean`, …; the head is `graph_pred_linear.*`), so
//! loading a pretrain-gnns `.pth` is a pure name match ([`crate::checkpoint::load_into`]).
//!
//! Message passing runs over incoming edges plus a self-loop with edge features `[4, 0]`.
//! For the layers whose message is `x_j + e_ij` with a fixed weight per edge (GIN, GCN,
//! GraphSAGE), `Σ_j w_ij (x_j + e_ij) = Σ_j w_ij x_j + Σ_j w_ij e_ij` and the edge embedding is
//! `emb_type + emb_dir`, so the edge part of every layer is `counts · [emb_type; emb_dir]`, a
//! `[N, 9] × [9, d]` matmul on the per-batch counts the [`Collator`](super::Collator) computed;
//! only the node part is gathered (`index_select`) and scattered (`index_add`). GAT weighs each
//! edge by an attention that depends on its own embedding, so it gathers per-edge embeddings.
//!
//! pretrain-gnns (torch_geometric 1.0) aggregates at `edge_index[0]` from `edge_index[1]`; the
//! collator aggregates at the target from the source. Molecular graphs list every bond in both
//! directions with the same features, so the two conventions give the same result.

use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use super::ModelError;
use super::batch::GraphBatch;
use super::dropout::dropout;
use crate::featurize::graph::{
    NUM_ATOM_TYPES, NUM_BOND_DIRS, NUM_BOND_TYPES, NUM_CHIRALITY, SELF_LOOP_BOND_TYPE,
};

/// Var-store prefix of the task head (what `--allow-partial` may leave missing).
pub const HEAD_PREFIX: &str = "graph_pred_linear";

/// Which message-passing layer the encoder uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GnnKind {
    /// Graph Isomorphism Network layer: sum, then MLP `d → 2d → d`.
    Gin,
    /// Graph convolution: linear, then symmetric-normalised sum (optionally row L2 normalisation).
    Gcn,
    /// GraphSAGE as pretrain-gnns' `GraphSAGEConv`: linear, mean over incoming edges and the
    /// self-loop of `x_j + e_ij`, then row L2 normalisation.
    Graphsage,
    /// Graph attention as pretrain-gnns' `GATConv`: [`GAT_HEADS`] heads, attention
    /// `LeakyReLU(0.2)` then softmax over each atom's incoming edges and self-loop, sum of
    /// `α·(x_j + e_ij)`, mean over heads plus a bias.
    Gat,
}

/// Attention heads of pretrain-gnns' `GATConv` (its default, which the checkpoints use).
pub const GAT_HEADS: i64 = 2;
/// Negative slope of the LeakyReLU on GAT attention scores.
pub const GAT_NEGATIVE_SLOPE: f64 = 0.2;

impl std::str::FromStr for GnnKind {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "gin" => Ok(Self::Gin),
            "gcn" => Ok(Self::Gcn),
            "graphsage" => Ok(Self::Graphsage),
            "gat" => Ok(Self::Gat),
            other => Err(ModelError::Config(format!(
                "unknown GNN kind {other:?} (gin|gcn|graphsage|gat)"
            ))),
        }
    }
}

/// Hyper-parameters of a [`Gnn`]; the defaults are pretrain-gnns' (5 × 300, dropout 0.5, GCN
/// without row normalisation).
#[derive(Debug, Clone, PartialEq)]
pub struct GnnConfig {
    /// Layer type.
    pub kind: GnnKind,
    /// Number of message-passing layers.
    pub num_layers: usize,
    /// Embedding width `d`.
    pub emb_dim: i64,
    /// Dropout probability after every layer (training only).
    pub dropout: f64,
    /// Outputs of the task head.
    pub num_tasks: i64,
    /// GCN only: L2-normalise each row after aggregation, as docs/spec.md §4.2 writes the layer. Off by
    /// default: pretrain-gnns' `GCNConv`, which trained the published checkpoints, has no such
    /// step (only its GraphSAGE layer normalises).
    pub gcn_l2_normalize: bool,
}

impl Default for GnnConfig {
    fn default() -> Self {
        Self {
            kind: GnnKind::Gin,
            num_layers: 5,
            emb_dim: 300,
            dropout: 0.5,
            num_tasks: 1,
            gcn_l2_normalize: false,
        }
    }
}

/// PyTorch's `nn.Linear` initialisation, `U(±1/√fan_in)` for weight and bias.
pub(crate) fn torch_linear(p: nn::Path, fan_in: i64, fan_out: i64) -> nn::Linear {
    let bound = 1.0 / (fan_in as f64).sqrt();
    let init = Init::Uniform {
        lo: -bound,
        up: bound,
    };
    nn::linear(
        p,
        fan_in,
        fan_out,
        nn::LinearConfig {
            ws_init: init,
            bs_init: Some(init),
            bias: true,
        },
    )
}

/// An embedding table with Xavier-uniform initialisation (as pretrain-gnns does).
fn xavier_table(p: &nn::Path, rows: i64, dim: i64) -> Tensor {
    let bound = (6.0 / (rows + dim) as f64).sqrt();
    p.var(
        "weight",
        &[rows, dim],
        Init::Uniform {
            lo: -bound,
            up: bound,
        },
    )
}

fn linear(x: &Tensor, l: &nn::Linear) -> Result<Tensor, ModelError> {
    Ok(x.f_linear(&l.ws, l.bs.as_ref())?)
}

/// `BatchNorm1d` with `num_batches_tracked`, so its buffers round-trip through checkpoints.
#[derive(Debug)]
struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    num_batches_tracked: Tensor,
}

impl BatchNorm {
    fn new(p: nn::Path, dim: i64) -> Self {
        let tracked = Tensor::zeros([], (Kind::Int64, p.device()));
        Self {
            weight: p.var("weight", &[dim], Init::Const(1.0)),
            bias: p.var("bias", &[dim], Init::Const(0.0)),
            running_mean: p.zeros_no_train("running_mean", &[dim]),
            running_var: p.ones_no_train("running_var", &[dim]),
            num_batches_tracked: p.add("num_batches_tracked", tracked, false),
        }
    }

    /// Normalises `x` (`[rows, dim]`): in training with the batch's statistics, which also
    /// update the running ones, else with the running statistics.
    ///
    /// A single row has no variance. PyTorch refuses it in training; updating the running
    /// variance with its unbiased estimate (0 / 0) would make every later evaluation NaN — seen
    /// on FreeSolv, whose last training batch can be one single-atom molecule. Such a row is
    /// normalised with the running statistics, which it leaves unchanged.
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor, ModelError> {
        let batch_statistics = train && x.size().first().is_some_and(|&rows| rows > 1);
        if batch_statistics {
            let mut t = self.num_batches_tracked.shallow_clone();
            let _ = tch::no_grad(|| t.f_add_scalar_(1))?;
        }
        Ok(x.f_batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            batch_statistics,
            0.1,
            1e-5,
            true,
        )?)
    }
}

#[derive(Debug)]
enum Conv {
    Gin {
        lin1: nn::Linear,
        lin2: nn::Linear,
    },
    Gcn {
        linear: nn::Linear,
        l2: bool,
    },
    Graphsage {
        linear: nn::Linear,
    },
    Gat {
        weight_linear: nn::Linear,
        /// `[1, heads, 2d]`: the first `d` of each head score the aggregating atom, the last `d`
        /// the message `x_j + e_ij`.
        att: Tensor,
        /// `[d]`, added after the mean over heads.
        bias: Tensor,
    },
}

/// Glorot-uniform initialisation of torch_geometric's `glorot` (`U(±√(6 / (rows + cols)))` over
/// the last two dimensions).
fn glorot(p: &nn::Path, name: &str, dims: &[i64]) -> Tensor {
    let n = dims.len();
    let bound = (6.0 / (dims[n - 2] + dims[n - 1]) as f64).sqrt();
    p.var(
        name,
        dims,
        Init::Uniform {
            lo: -bound,
            up: bound,
        },
    )
}

/// One message-passing layer with its bond-type and bond-direction embeddings.
#[derive(Debug)]
struct Layer {
    conv: Conv,
    emb_type: Tensor,
    emb_dir: Tensor,
}

impl Layer {
    fn new(p: nn::Path, cfg: &GnnConfig) -> Self {
        let d = cfg.emb_dim;
        let conv = match cfg.kind {
            GnnKind::Gin => Conv::Gin {
                lin1: torch_linear(&p / "mlp" / 0, d, 2 * d),
                lin2: torch_linear(&p / "mlp" / 2, 2 * d, d),
            },
            GnnKind::Gcn => Conv::Gcn {
                linear: torch_linear(&p / "linear", d, d),
                l2: cfg.gcn_l2_normalize,
            },
            GnnKind::Graphsage => Conv::Graphsage {
                linear: torch_linear(&p / "linear", d, d),
            },
            GnnKind::Gat => Conv::Gat {
                weight_linear: torch_linear(&p / "weight_linear", d, GAT_HEADS * d),
                att: glorot(&p, "att", &[1, GAT_HEADS, 2 * d]),
                bias: p.var("bias", &[d], Init::Const(0.0)),
            },
        };
        // GAT's edge embeddings are as wide as its heads together.
        let width = if cfg.kind == GnnKind::Gat {
            GAT_HEADS * d
        } else {
            d
        };
        Self {
            conv,
            emb_type: xavier_table(&(&p / "edge_embedding1"), NUM_BOND_TYPES, width),
            emb_dir: xavier_table(&(&p / "edge_embedding2"), NUM_BOND_DIRS, width),
        }
    }

    /// `Σ over incoming edges and the self-loop of w_ij·(x_j + e_ij)`.
    fn aggregate(&self, x: &Tensor, b: &GraphBatch, weighted: bool) -> Result<Tensor, ModelError> {
        let table = Tensor::f_cat(&[&self.emb_type, &self.emb_dir], 0)?;
        let gathered = x.f_index_select(0, &b.src)?;
        let (self_part, edges, counts) = if weighted {
            (
                x.f_mul(&b.self_norm)?,
                gathered.f_mul(&b.edge_norm)?,
                &b.edge_counts_norm,
            )
        } else {
            (x.shallow_clone(), gathered, &b.edge_counts)
        };
        let mut base = self_part.f_add(&counts.f_mm(&table)?)?;
        Ok(base.f_index_add_(0, &b.dst, &edges)?)
    }

    fn forward(&self, x: &Tensor, b: &GraphBatch) -> Result<Tensor, ModelError> {
        match &self.conv {
            Conv::Gin { lin1, lin2 } => {
                let agg = self.aggregate(x, b, false)?;
                linear(&linear(&agg, lin1)?.f_relu_()?, lin2)
            }
            Conv::Gcn { linear: lin, l2 } => {
                let agg = self.aggregate(&linear(x, lin)?, b, true)?;
                if !*l2 {
                    return Ok(agg);
                }
                l2_rows(&agg)
            }
            Conv::Graphsage { linear: lin } => {
                let sum = self.aggregate(&linear(x, lin)?, b, false)?;
                // Incoming edges with the self-loop: every edge counts once among the bond types.
                let degree = b
                    .edge_counts
                    .f_narrow(1, 0, NUM_BOND_TYPES)?
                    .f_sum_dim_intlist([1i64].as_slice(), true, Kind::Float)?;
                l2_rows(&sum.f_div(&degree)?)
            }
            Conv::Gat {
                weight_linear,
                att,
                bias,
            } => self.attend(x, b, weight_linear, att, bias),
        }
    }

    /// GAT (pretrain-gnns' `GATConv`): with `h = W x` split into heads, every edge `j → i` and
    /// every self-loop carries `m_ij = h_j + e_ij`, scored `LeakyReLU(a_i·h_i + a_j·m_ij)` per
    /// head; the scores are softmax-normalised over the edges into `i` and `i` receives
    /// `Σ_j α_ij m_ij`, averaged over heads, plus `bias`.
    fn attend(
        &self,
        x: &Tensor,
        b: &GraphBatch,
        weight_linear: &nn::Linear,
        att: &Tensor,
        bias: &Tensor,
    ) -> Result<Tensor, ModelError> {
        let n = b.num_atoms;
        let d = bias.size().first().copied().unwrap_or(0);
        let h = linear(x, weight_linear)?.f_view([n, GAT_HEADS, d])?;
        let opts = (Kind::Int64, x.device());
        let loops = Tensor::f_arange(n, opts)?;
        let src = Tensor::f_cat(&[&b.src, &loops], 0)?;
        let dst = Tensor::f_cat(&[&b.dst, &loops], 0)?;
        let edge_type = Tensor::f_cat(
            &[
                &b.edge_type,
                &Tensor::f_full([n], SELF_LOOP_BOND_TYPE, opts)?,
            ],
            0,
        )?;
        let edge_dir = Tensor::f_cat(&[&b.edge_dir, &Tensor::f_zeros([n], opts)?], 0)?;
        let edges = edge_type.size()[0];
        let e = Tensor::f_embedding(&self.emb_type, &edge_type, -1, false, false)?
            .f_add(&Tensor::f_embedding(
                &self.emb_dir,
                &edge_dir,
                -1,
                false,
                false,
            )?)?
            .f_view([edges, GAT_HEADS, d])?;
        let messages = h.f_index_select(0, &src)?.f_add(&e)?;
        let att_self = att.f_narrow(2, 0, d)?;
        let att_msg = att.f_narrow(2, d, d)?;
        let dims = [-1i64].as_slice();
        let score_self = h
            .f_mul(&att_self)?
            .f_sum_dim_intlist(dims, false, Kind::Float)?;
        let score = score_self.f_index_select(0, &dst)?.f_add(
            &messages
                .f_mul(&att_msg)?
                .f_sum_dim_intlist(dims, false, Kind::Float)?,
        )?;
        let score = score.f_maximum(&score.f_mul_scalar(GAT_NEGATIVE_SLOPE)?)?;
        // Softmax over each atom's incoming edges (the self-loop included), shifted by the
        // group's maximum for stability, with torch_geometric's 1e-16 in the denominator.
        // (libtorch warns once that `index_reduce` is beta; tch 0.26 has no `scatter_reduce`
        // taking `amax`.)
        let top = tch::no_grad(|| {
            Tensor::f_full(
                [n, GAT_HEADS],
                f64::NEG_INFINITY,
                (score.kind(), x.device()),
            )?
            .f_index_reduce(0, &dst, &score, "amax", false)
        })?;
        let weight = score.f_sub(&top.f_index_select(0, &dst)?)?.f_exp()?;
        let total = Tensor::f_zeros([n, GAT_HEADS], (weight.kind(), x.device()))?
            .f_index_add(0, &dst, &weight)?;
        let alpha = weight.f_div(&total.f_index_select(0, &dst)?.f_add_scalar(1e-16)?)?;
        let out = Tensor::f_zeros([n, GAT_HEADS, d], (h.kind(), x.device()))?.f_index_add(
            0,
            &dst,
            &messages.f_mul(&alpha.f_unsqueeze(-1)?)?,
        )?;
        Ok(out
            .f_mean_dim([1i64].as_slice(), false, Kind::Float)?
            .f_add(bias)?)
    }
}

/// Rows divided by their L2 norm (at least 1e-12), as `F.normalize(p=2, dim=-1)`.
fn l2_rows(x: &Tensor) -> Result<Tensor, ModelError> {
    let norm = x.f_norm_scalaropt_dim(2, [1i64].as_slice(), true)?;
    Ok(x.f_div(&norm.f_clamp_min(1e-12)?)?)
}

/// A pretrain-gnns encoder with mean-pooling readout and a `Linear(d, num_tasks)` head.
#[derive(Debug)]
pub struct Gnn {
    cfg: GnnConfig,
    x_embedding1: Tensor,
    x_embedding2: Tensor,
    layers: Vec<Layer>,
    batch_norms: Vec<BatchNorm>,
    head: nn::Linear,
}

impl Gnn {
    /// Creates the model's variables under `root` (use the var store's root so that names equal
    /// checkpoint keys).
    pub fn new(root: &nn::Path, cfg: GnnConfig) -> Result<Self, ModelError> {
        if cfg.num_layers < 2 {
            return Err(ModelError::Config("a GNN needs at least 2 layers".into()));
        }
        if cfg.emb_dim < 1 || cfg.num_tasks < 1 || !(0.0..1.0).contains(&cfg.dropout) {
            return Err(ModelError::Config(format!(
                "invalid GNN sizes: emb_dim {}, num_tasks {}, dropout {}",
                cfg.emb_dim, cfg.num_tasks, cfg.dropout
            )));
        }
        let d = cfg.emb_dim;
        let layers = (0..cfg.num_layers)
            .map(|i| Layer::new(root / "gnns" / i, &cfg))
            .collect();
        let batch_norms = (0..cfg.num_layers)
            .map(|i| BatchNorm::new(root / "batch_norms" / i, d))
            .collect();
        Ok(Self {
            x_embedding1: xavier_table(&(root / "x_embedding1"), NUM_ATOM_TYPES, d),
            x_embedding2: xavier_table(&(root / "x_embedding2"), NUM_CHIRALITY, d),
            layers,
            batch_norms,
            head: torch_linear(root / HEAD_PREFIX, d, cfg.num_tasks),
            cfg,
        })
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &GnnConfig {
        &self.cfg
    }

    /// `[N, d]` node representations of the last layer (JK = last).
    pub fn node_embeddings(&self, b: &GraphBatch, train: bool) -> Result<Tensor, ModelError> {
        let mut h =
            Tensor::f_embedding(&self.x_embedding1, &b.atom_type, -1, false, false)?.f_add(
                &Tensor::f_embedding(&self.x_embedding2, &b.chirality, -1, false, false)?,
            )?;
        let last = self.layers.len() - 1;
        for (i, (layer, bn)) in self.layers.iter().zip(&self.batch_norms).enumerate() {
            h = bn.forward(&layer.forward(&h, b)?, train)?;
            if i != last {
                h = h.f_relu_()?;
            }
            h = dropout(&h, self.cfg.dropout, train)?;
        }
        Ok(h)
    }

    /// `[B, d]` graph embeddings: mean of each graph's node representations.
    pub fn graph_embeddings(&self, b: &GraphBatch, train: bool) -> Result<Tensor, ModelError> {
        let h = self.node_embeddings(b, train)?;
        let sums = Tensor::f_zeros([b.num_graphs, self.cfg.emb_dim], (h.kind(), h.device()))?
            .f_index_add(0, &b.graph_index, &h)?;
        Ok(sums.f_mul(&b.inv_graph_size)?)
    }

    /// `[B, num_tasks]` logits (classification) or standardised predictions (regression).
    pub fn forward(&self, b: &GraphBatch, train: bool) -> Result<Tensor, ModelError> {
        linear(&self.graph_embeddings(b, train)?, &self.head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_row_in_training_leaves_the_running_statistics_finite() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let bn = BatchNorm::new(vs.root() / "bn", 3);
        let one = Tensor::from_slice(&[1.0f32, 2.0, 3.0]).view([1, 3]);
        let out = bn.forward(&one, true).unwrap();
        assert!(bool::try_from(out.isfinite().all()).unwrap());
        // Unchanged: mean 0, variance 1, no batch tracked.
        assert_eq!(Vec::<f32>::try_from(&bn.running_var).unwrap(), [1.0; 3]);
        assert_eq!(Vec::<f32>::try_from(&bn.running_mean).unwrap(), [0.0; 3]);
        assert_eq!(i64::try_from(&bn.num_batches_tracked).unwrap(), 0);
        // Two rows update them as PyTorch does (momentum 0.1, unbiased variance).
        let two = Tensor::from_slice(&[0.0f32, 0.0, 0.0, 2.0, 2.0, 2.0]).view([2, 3]);
        let _ = bn.forward(&two, true).unwrap();
        let var = Vec::<f32>::try_from(&bn.running_var).unwrap();
        assert!(
            var.iter().all(|v| (v - (0.9 + 0.1 * 2.0)).abs() < 1e-6),
            "{var:?}"
        );
        assert_eq!(i64::try_from(&bn.num_batches_tracked).unwrap(), 1);
        let eval = bn.forward(&one, false).unwrap();
        assert!(bool::try_from(eval.isfinite().all()).unwrap());
    }
}
