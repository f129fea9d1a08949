//! Attribute masking of atoms (Hu et al. 2020; pretrain-gnns `MaskAtom`): in every molecule of
//! a batch, `int(n · rate + 1)` of its `n` atoms (never zero, at most `n`) are drawn without
//! replacement from a seeded stream; their features become `[MASK_ATOM_TYPE, 0]` (the mask row
//! of the atom table, chirality unspecified) and the network must predict their original atom
//! type among [`MASK_ATOM_TYPE`] classes. Bonds are not masked (pretrain-gnns' `--mask_edge 0`,
//! its default).
//!
//! The choice is made on the host from the graphs ([`choose`]); [`apply`] then writes the mask
//! into an already collated [`GraphBatch`], whose atoms are the batch's graphs back to back.

use tch::Tensor;

use crate::featurize::GraphFeatures;
use crate::featurize::graph::MASK_ATOM_TYPE;
use crate::models::{GraphBatch, ModelError};
use crate::train::seeded::Stream;

/// The masked atoms of one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AtomMask {
    /// Batch-wide index of each masked atom (its graph's atom offset plus its index).
    pub positions: Vec<i64>,
    /// The original atom type of each masked atom (`atomic number − 1`), the target.
    pub labels: Vec<i64>,
}

/// How many of `num_atoms` atoms are masked at `rate`: pretrain-gnns' `int(n · rate + 1)`,
/// at most `n`.
pub fn masked_count(num_atoms: usize, rate: f64) -> usize {
    ((num_atoms as f64 * rate + 1.0) as usize).min(num_atoms)
}

/// Draws the masked atoms of every graph of a batch (in batch order) from `rng`.
pub fn choose(graphs: &[&GraphFeatures], rate: f64, rng: &mut Stream) -> AtomMask {
    let mut mask = AtomMask::default();
    let mut offset = 0i64;
    let mut atoms: Vec<usize> = Vec::new();
    for g in graphs {
        let n = g.num_atoms();
        let k = masked_count(n, rate);
        atoms.clear();
        atoms.extend(0..n);
        // Partial Fisher–Yates: the first k slots become a uniform sample without replacement.
        for i in 0..k {
            let j = i + rng.below(n - i);
            atoms.swap(i, j);
        }
        for &a in &atoms[..k] {
            mask.positions.push(offset + a as i64);
            mask.labels.push(g.x[2 * a]);
        }
        offset += n as i64;
    }
    mask
}

/// Writes `mask` into `batch`: the masked atoms get atom type [`MASK_ATOM_TYPE`] and chirality
/// 0. Returns the positions as a tensor on the batch's device (to gather the node states with).
pub fn apply(batch: &mut GraphBatch, mask: &AtomMask) -> Result<Tensor, ModelError> {
    if let Some(&p) = mask
        .positions
        .iter()
        .find(|&&p| p < 0 || p >= batch.num_atoms)
    {
        return Err(ModelError::Batch(format!(
            "masked atom {p} outside the batch's {} atoms",
            batch.num_atoms
        )));
    }
    let positions = Tensor::f_from_slice(&mask.positions)?.f_to_device(batch.atom_type.device())?;
    let _ = batch
        .atom_type
        .f_index_fill_(0, &positions, MASK_ATOM_TYPE)?;
    let _ = batch.chirality.f_index_fill_(0, &positions, 0)?;
    Ok(positions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::featurize::featurize_smiles;
    use crate::models::Collator;
    use tch::Device;

    fn graphs() -> Vec<GraphFeatures> {
        [
            "CCO",
            "c1ccccc1C(=O)N",
            "[Na+]",
            "C[C@H](N)C(=O)O",
            "ClC(Cl)(Cl)Br",
        ]
        .iter()
        .map(|s| featurize_smiles(s).unwrap())
        .collect()
    }

    #[test]
    fn counts_follow_pretrain_gnns_and_are_never_zero() {
        assert_eq!(masked_count(1, 0.15), 1);
        assert_eq!(masked_count(6, 0.15), 1);
        assert_eq!(masked_count(7, 0.15), 2);
        assert_eq!(masked_count(20, 0.15), 4);
        assert_eq!(masked_count(3, 1.0), 3, "capped at the atom count");
        let gs = graphs();
        let refs: Vec<&GraphFeatures> = gs.iter().collect();
        for seed in 0..50 {
            let m = choose(&refs, 0.15, &mut Stream::new(seed, 1, 0));
            let mut offset = 0;
            for g in &gs {
                let n = g.num_atoms() as i64;
                let mine: Vec<i64> = m
                    .positions
                    .iter()
                    .copied()
                    .filter(|p| (offset..offset + n).contains(p))
                    .collect();
                assert_eq!(mine.len(), masked_count(g.num_atoms(), 0.15));
                let mut unique = mine.clone();
                unique.sort_unstable();
                unique.dedup();
                assert_eq!(unique.len(), mine.len(), "without replacement");
                offset += n;
            }
        }
    }

    #[test]
    fn masks_are_seeded_and_labels_are_the_original_types() {
        let gs = graphs();
        let refs: Vec<&GraphFeatures> = gs.iter().collect();
        let a = choose(&refs, 0.3, &mut Stream::new(7, 2, 0));
        let b = choose(&refs, 0.3, &mut Stream::new(7, 2, 0));
        let c = choose(&refs, 0.3, &mut Stream::new(8, 2, 0));
        assert_eq!(a, b, "same seed, same mask");
        assert_ne!(a, c, "another seed, another mask");
        // Labels are the original types of the masked atoms.
        let types: Vec<i64> = gs
            .iter()
            .flat_map(|g| g.x.iter().step_by(2).copied())
            .collect();
        for (&p, &label) in a.positions.iter().zip(&a.labels) {
            assert_eq!(label, types[p as usize]);
            assert!(label < MASK_ATOM_TYPE);
        }
        // Applied to the collated batch: exactly those atoms carry the mask, chirality 0.
        let mut batch = Collator::new().collate(&refs, Device::Cpu).unwrap();
        let chirality_before = Vec::<i64>::try_from(&batch.chirality).unwrap();
        let positions = apply(&mut batch, &a).unwrap();
        assert_eq!(Vec::<i64>::try_from(&positions).unwrap(), a.positions);
        let after = Vec::<i64>::try_from(&batch.atom_type).unwrap();
        let chirality = Vec::<i64>::try_from(&batch.chirality).unwrap();
        for (i, (&t, &before)) in after.iter().zip(&types).enumerate() {
            if a.positions.contains(&(i as i64)) {
                assert_eq!((t, chirality[i]), (MASK_ATOM_TYPE, 0));
            } else {
                assert_eq!((t, chirality[i]), (before, chirality_before[i]));
            }
        }
        assert!(
            chirality_before.iter().any(|&c| c != 0),
            "the test has a stereocentre"
        );
    }

    #[test]
    fn positions_outside_the_batch_are_refused() {
        let gs = graphs();
        let mut batch = Collator::new().collate(&[&gs[0]], Device::Cpu).unwrap();
        let mask = AtomMask {
            positions: vec![3],
            labels: vec![5],
        };
        assert!(apply(&mut batch, &mask).is_err());
    }
}
