//! Mini-batch collation for the 2D models: the graphs of a batch become one disjoint union
//! (atoms concatenated, edge lists offset and concatenated, a graph index per atom). It reads the
//! dataset's [`GraphFeatures`] in place (no per-epoch copy); the embedding-table sizes live in
//! [`crate::featurize::graph`].
//!
//! A [`Collator`] owns two host buffers (one `i64`, one `f32`) that are cleared and refilled for
//! every batch, so collation allocates nothing per molecule; each batch costs exactly two tensor
//! creations (one copy to the device each), and the [`GraphBatch`] fields are views into them.
//! Everything that depends only on the graph structure is computed here once per batch rather
//! than in every layer: GCN normalisation coefficients and the per-atom counts of incoming edge
//! features, which turn the edge-embedding part of a message sum into a tiny matmul.

use tch::{Device, Kind, Tensor};

use super::ModelError;
use crate::featurize::GraphFeatures;
use crate::featurize::graph::{NUM_BOND_DIRS, NUM_BOND_TYPES, SELF_LOOP_BOND_TYPE};

/// Columns of the per-atom edge-feature count matrix: bond types then directions.
pub const EDGE_FEATURES: i64 = NUM_BOND_TYPES + NUM_BOND_DIRS;

/// A collated mini-batch on its device. All tensors are views into two buffers.
#[derive(Debug)]
pub struct GraphBatch {
    /// `[N]` atom-type index per atom.
    pub atom_type: Tensor,
    /// `[N]` chirality index per atom.
    pub chirality: Tensor,
    /// `[E]` source atom of each directed edge (self-loops excluded).
    pub src: Tensor,
    /// `[E]` target atom of each directed edge.
    pub dst: Tensor,
    /// `[N]` graph of each atom.
    pub graph_index: Tensor,
    /// `[E]` bond-type index of each directed edge (what GAT's per-edge attention needs).
    pub edge_type: Tensor,
    /// `[E]` bond-direction index of each directed edge.
    pub edge_dir: Tensor,
    /// `[E, 1]` GCN coefficient `deg^−½[src]·deg^−½[dst]` (degrees with self-loops).
    pub edge_norm: Tensor,
    /// `[N, 1]` GCN coefficient of each atom's self-loop, `1/deg`.
    pub self_norm: Tensor,
    /// `[N, 9]` per atom, how many incoming edges (self-loop included) have each bond type
    /// (columns 0..6) and direction (columns 6..9).
    pub edge_counts: Tensor,
    /// `[N, 9]` the same counts weighted by the GCN coefficient of each edge.
    pub edge_counts_norm: Tensor,
    /// `[B, 1]` `1 / atoms` of each graph (mean pooling).
    pub inv_graph_size: Tensor,
    /// Number of graphs `B`.
    pub num_graphs: i64,
    /// Number of atoms `N`.
    pub num_atoms: i64,
}

/// Reusable collation buffers (see the module doc).
#[derive(Debug, Default)]
pub struct Collator {
    ints: Vec<i64>,
    floats: Vec<f32>,
    degree: Vec<f32>,
}

impl Collator {
    /// An empty collator; buffers grow to the largest batch seen and are then reused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Collates `graphs` into one disjoint-union batch on `device`.
    pub fn collate(
        &mut self,
        graphs: &[&GraphFeatures],
        device: Device,
    ) -> Result<GraphBatch, ModelError> {
        if graphs.is_empty() {
            return Err(ModelError::Batch("empty batch".into()));
        }
        let mut n = 0usize;
        let mut e = 0usize;
        for (gi, g) in graphs.iter().enumerate() {
            g.validate()
                .map_err(|m| ModelError::Batch(format!("graph {gi} of the batch: {m}")))?;
            n += g.num_atoms();
            e += g.num_edges();
        }
        let b = graphs.len();
        let nf = EDGE_FEATURES as usize;

        // Integer buffer: atom_type N | chirality N | src E | dst E | graph_index N | edge_type E
        // | edge_dir E.
        self.ints.clear();
        self.ints.reserve(3 * n + 4 * e);
        self.ints
            .extend(graphs.iter().flat_map(|g| g.x.iter().step_by(2).copied()));
        self.ints.extend(
            graphs
                .iter()
                .flat_map(|g| g.x.iter().skip(1).step_by(2).copied()),
        );
        let mut offset = 0i64;
        for g in graphs {
            self.ints.extend(g.sources().iter().map(|&s| offset + s));
            offset += g.num_atoms() as i64;
        }
        offset = 0;
        for g in graphs {
            self.ints.extend(g.targets().iter().map(|&d| offset + d));
            offset += g.num_atoms() as i64;
        }
        for (gi, g) in graphs.iter().enumerate() {
            self.ints
                .extend(std::iter::repeat_n(gi as i64, g.num_atoms()));
        }
        for column in 0..2 {
            self.ints.extend(
                graphs
                    .iter()
                    .flat_map(|g| g.edge_attr.iter().skip(column).step_by(2).copied()),
            );
        }

        // Degrees with self-loops, counted on the source side as pretrain-gnns does.
        self.degree.clear();
        self.degree.resize(n, 1.0);
        for &s in &self.ints[2 * n..2 * n + e] {
            self.degree[s as usize] += 1.0;
        }

        // Float buffer: edge_norm E | self_norm N | counts N×9 | counts_norm N×9 | inv_size B.
        self.floats.clear();
        self.floats.resize(e + n + 2 * n * nf + b, 0.0);
        let (edge_norm, rest) = self.floats.split_at_mut(e);
        let (self_norm, rest) = rest.split_at_mut(n);
        let (counts, rest) = rest.split_at_mut(n * nf);
        let (counts_norm, inv_size) = rest.split_at_mut(n * nf);
        let srcs = &self.ints[2 * n..2 * n + e];
        let dsts = &self.ints[2 * n + e..2 * n + 2 * e];
        let attrs = graphs.iter().flat_map(|g| g.edge_attr.chunks_exact(2));
        for (k, ((&s, &d), attr)) in srcs.iter().zip(dsts).zip(attrs).enumerate() {
            let (t, dir) = (&attr[0], &attr[1]);
            let (s, d) = (s as usize, d as usize);
            let w = (self.degree[s] * self.degree[d]).sqrt().recip();
            edge_norm[k] = w;
            let row = d * nf;
            let (ct, cd) = (
                row + *t as usize,
                row + NUM_BOND_TYPES as usize + *dir as usize,
            );
            counts[ct] += 1.0;
            counts[cd] += 1.0;
            counts_norm[ct] += w;
            counts_norm[cd] += w;
        }
        for (i, (slot, deg)) in self_norm.iter_mut().zip(&self.degree).enumerate() {
            let w = deg.recip();
            *slot = w;
            let row = i * nf;
            let (ct, cd) = (
                row + SELF_LOOP_BOND_TYPE as usize,
                row + NUM_BOND_TYPES as usize,
            );
            counts[ct] += 1.0;
            counts[cd] += 1.0;
            counts_norm[ct] += w;
            counts_norm[cd] += w;
        }
        for (slot, g) in inv_size.iter_mut().zip(graphs) {
            *slot = (g.num_atoms() as f32).recip();
        }

        let ints = Tensor::f_from_slice(&self.ints)?.f_to_device(device)?;
        let floats = Tensor::f_from_slice(&self.floats)?.f_to_device(device)?;
        let (n, e, b, nf) = (n as i64, e as i64, b as i64, EDGE_FEATURES);
        let iv = |start: i64, len: i64| ints.f_narrow(0, start, len);
        let fv = |start: i64, len: i64| floats.f_narrow(0, start, len);
        Ok(GraphBatch {
            atom_type: iv(0, n)?,
            chirality: iv(n, n)?,
            src: iv(2 * n, e)?,
            dst: iv(2 * n + e, e)?,
            graph_index: iv(2 * n + 2 * e, n)?,
            edge_type: iv(3 * n + 2 * e, e)?,
            edge_dir: iv(3 * n + 3 * e, e)?,
            edge_norm: fv(0, e)?.f_view([e, 1])?,
            self_norm: fv(e, n)?.f_view([n, 1])?,
            edge_counts: fv(e + n, n * nf)?.f_view([n, nf])?,
            edge_counts_norm: fv(e + n + n * nf, n * nf)?.f_view([n, nf])?,
            inv_graph_size: fv(e + n + 2 * n * nf, b)?.f_view([b, 1])?,
            num_graphs: b,
            num_atoms: n,
        })
    }

    /// Stacks per-graph label rows (`−1/0/1` classification with 0 = missing, or regression
    /// targets) into a `[B, T]` float tensor on `device`.
    pub fn labels(&mut self, rows: &[&[f32]], device: Device) -> Result<Tensor, ModelError> {
        let t = rows.first().map_or(0, |r| r.len());
        if rows.iter().any(|r| r.len() != t) {
            return Err(ModelError::Batch(
                "label rows have different lengths".into(),
            ));
        }
        self.floats.clear();
        self.floats
            .extend(rows.iter().flat_map(|r| r.iter().copied()));
        let labels = Tensor::f_from_slice(&self.floats)?
            .f_view([rows.len() as i64, t as i64])?
            .f_to_device(device)?;
        Ok(labels.to_kind(Kind::Float))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ethanol() -> GraphFeatures {
        GraphFeatures {
            x: vec![5, 0, 5, 0, 7, 0],
            edge_index: vec![0, 1, 1, 2, 1, 0, 2, 1],
            edge_attr: vec![0; 8],
        }
    }

    #[test]
    fn disjoint_union_offsets_edges_and_counts_features() {
        let (a, b) = (
            ethanol(),
            GraphFeatures {
                x: vec![6, 1],
                ..Default::default()
            },
        );
        let mut c = Collator::new();
        let batch = c.collate(&[&a, &b, &a], Device::Cpu).unwrap();
        assert_eq!((batch.num_atoms, batch.num_graphs), (7, 3));
        assert_eq!(
            Vec::<i64>::try_from(&batch.src).unwrap(),
            vec![0, 1, 1, 2, 4, 5, 5, 6]
        );
        assert_eq!(
            Vec::<i64>::try_from(&batch.graph_index).unwrap(),
            vec![0, 0, 0, 1, 2, 2, 2]
        );
        assert_eq!(Vec::<i64>::try_from(&batch.edge_type).unwrap(), vec![0; 8]);
        assert_eq!(batch.edge_dir.size(), vec![8]);
        let counts = Vec::<f32>::try_from(batch.edge_counts.flatten(0, 1)).unwrap();
        // Middle carbon: two single bonds in, plus its self-loop (type 4, direction 0).
        assert_eq!(
            &counts[9..18],
            &[2.0, 0.0, 0.0, 0.0, 1.0, 0.0, 3.0, 0.0, 0.0]
        );
        // GCN: self-loop weight 1/deg, edge weights deg^-1/2 deg^-1/2.
        let self_norm = Vec::<f32>::try_from(batch.self_norm.flatten(0, 1)).unwrap();
        assert!((self_norm[1] - 1.0 / 3.0).abs() < 1e-7 && (self_norm[3] - 1.0).abs() < 1e-7);
        let w = Vec::<f32>::try_from(batch.edge_norm.flatten(0, 1)).unwrap();
        assert!((w[0] - 1.0 / 6f32.sqrt()).abs() < 1e-7);
        let inv = Vec::<f32>::try_from(batch.inv_graph_size.flatten(0, 1)).unwrap();
        assert_eq!(inv, vec![1.0 / 3.0, 1.0, 1.0 / 3.0]);
    }

    #[test]
    fn bad_graphs_are_errors() {
        let mut c = Collator::new();
        let mut g = ethanol();
        g.edge_index[4] = 9;
        let err = c.collate(&[&g], Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("outside"), "{err}");
        let mut g = ethanol();
        g.x[1] = 3;
        assert!(c.collate(&[&g], Device::Cpu).is_err());
        assert!(
            c.collate(&[&GraphFeatures::default()], Device::Cpu)
                .is_err()
        );
        assert!(c.collate(&[], Device::Cpu).is_err());
    }
}
