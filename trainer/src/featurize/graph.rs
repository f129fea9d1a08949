//! pretrain-gnns graph features (Hu et al., `mol_to_graph_data_obj_simple`; docs/spec.md §4.1).
//!
//! Per atom `[atomic_number − 1, chirality]` (chirality 0 unspecified, 1 CW, 2 CCW, 3 other); per
//! bond, stored in both directions (`i→j` then `j→i`, bonds in RDKit order),
//! `[type, direction]` (type 0 single, 1 double, 2 triple, 3 aromatic; direction 0 none,
//! 1 end-up-right, 2 end-down-right). Like pretrain-gnns, a molecule holding anything outside
//! these vocabularies (a dummy atom `*`, a dative bond, a wedge direction, a newer chiral tag) is
//! rejected, not silently mapped.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::chem::{BondDir, BondKind, ChemError, Chirality, MolGraph, Molecule};

/// Version of the featurisation; part of the on-disk cache key (bump on any change of output).
pub const FEATURIZER_VERSION: u32 = 1;

/// Rows of the atom-type embedding table (atomic numbers 1..=118 as 0..=117, padding, and the
/// mask token of pre-training).
pub const NUM_ATOM_TYPES: i64 = 120;
/// Rows of the chirality embedding table (unspecified, CW, CCW). The featuriser writes 3 for
/// `CHI_OTHER` as pretrain-gnns does, which no model can embed ([`GraphFeatures::validate`]).
pub const NUM_CHIRALITY: i64 = 3;
/// Rows of the bond-type embedding table (single, double, triple, aromatic, self-loop, mask).
pub const NUM_BOND_TYPES: i64 = 6;
/// Rows of the bond-direction embedding table (none, end-up-right, end-down-right).
pub const NUM_BOND_DIRS: i64 = 3;
/// Bond type value of the self-loops the GNN layers add.
pub const SELF_LOOP_BOND_TYPE: i64 = 4;
/// Bond type value of a masked bond (attribute masking).
pub const MASK_BOND_TYPE: i64 = 5;
/// Atom type value of a masked atom (attribute masking): the last row of the atom table. It is
/// also the number of classes a masked atom is predicted among (types `0..MASK_ATOM_TYPE`), as
/// pretrain-gnns' `Linear(d, 119)`.
pub const MASK_ATOM_TYPE: i64 = NUM_ATOM_TYPES - 1;

/// Why a molecule has no pretrain-gnns features.
#[derive(Debug, Error)]
pub enum FeaturizeError {
    /// RDKit semantics reject the SMILES.
    #[error(transparent)]
    Chem(#[from] ChemError),
    /// The molecule has no atoms.
    #[error("empty molecule")]
    Empty,
    /// An atom or bond is outside the pretrain-gnns vocabularies.
    #[error("unsupported by the pretrain-gnns features: {0}")]
    Unsupported(String),
}

/// A featurised molecule graph, flat row-major `i64` arrays ready for `Tensor::from_slice`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GraphFeatures {
    /// Atom features `[n_atoms, 2]`: `[atomic_number − 1, chirality]` per atom.
    pub x: Vec<i64>,
    /// Edge index `[2, 2·n_bonds]`: first the sources, then the targets.
    pub edge_index: Vec<i64>,
    /// Edge features `[2·n_bonds, 2]`: `[bond_type, direction]` per directed edge.
    pub edge_attr: Vec<i64>,
}

impl GraphFeatures {
    /// Number of atoms (nodes).
    pub fn num_atoms(&self) -> usize {
        self.x.len() / 2
    }

    /// Number of directed edges (twice the number of bonds).
    pub fn num_edges(&self) -> usize {
        self.edge_attr.len() / 2
    }

    /// Sources of the directed edges (first row of `edge_index`).
    pub fn sources(&self) -> &[i64] {
        &self.edge_index[..self.num_edges()]
    }

    /// Targets of the directed edges (second row of `edge_index`).
    pub fn targets(&self) -> &[i64] {
        &self.edge_index[self.num_edges()..]
    }

    /// Checks the arrays' shapes and every index against the embedding tables of the 2D models
    /// (what [`crate::models::Collator`] needs): `Err` says what is out of range.
    pub fn validate(&self) -> Result<(), String> {
        if self.x.is_empty() {
            return Err("graph has no atoms".into());
        }
        if self.x.len() % 2 != 0 || self.edge_attr.len() % 2 != 0 {
            return Err("feature arrays of odd length".into());
        }
        if self.edge_index.len() != self.edge_attr.len() {
            return Err(format!(
                "{} edge index entries but {} edge feature entries",
                self.edge_index.len(),
                self.edge_attr.len()
            ));
        }
        for (i, a) in self.x.chunks_exact(2).enumerate() {
            if !(0..NUM_ATOM_TYPES).contains(&a[0]) || !(0..NUM_CHIRALITY).contains(&a[1]) {
                return Err(format!(
                    "atom {i} has features [{}, {}] out of range",
                    a[0], a[1]
                ));
            }
        }
        let n = self.num_atoms() as i64;
        let ends = self.sources().iter().zip(self.targets());
        for (k, ((&s, &d), e)) in ends.zip(self.edge_attr.chunks_exact(2)).enumerate() {
            if !(0..n).contains(&s) || !(0..n).contains(&d) {
                return Err(format!("edge {k} ({s}→{d}) points outside the {n} atoms"));
            }
            if !(0..NUM_BOND_TYPES).contains(&e[0]) || !(0..NUM_BOND_DIRS).contains(&e[1]) {
                return Err(format!(
                    "edge {k} has features [{}, {}] out of range",
                    e[0], e[1]
                ));
            }
        }
        Ok(())
    }

    /// Builds the features of a molecular graph, or says what pretrain-gnns cannot represent.
    pub fn from_graph(graph: &MolGraph) -> Result<Self, FeaturizeError> {
        if graph.atoms.is_empty() {
            return Err(FeaturizeError::Empty);
        }
        let mut x = Vec::with_capacity(2 * graph.atoms.len());
        for (i, atom) in graph.atoms.iter().enumerate() {
            if !(1..=118).contains(&atom.atomic_number) {
                return Err(FeaturizeError::Unsupported(format!(
                    "atom {i} has atomic number {}",
                    atom.atomic_number
                )));
            }
            let chirality = match atom.chirality {
                Chirality::Unspecified => 0,
                Chirality::TetrahedralCw => 1,
                Chirality::TetrahedralCcw => 2,
                Chirality::Other => 3,
                Chirality::Extended(code) => {
                    return Err(FeaturizeError::Unsupported(format!(
                        "atom {i} has chiral tag {code}"
                    )));
                }
            };
            x.extend([i64::from(atom.atomic_number) - 1, chirality]);
        }
        let n = graph.bonds.len();
        let mut src = Vec::with_capacity(2 * n);
        let mut dst = Vec::with_capacity(2 * n);
        let mut edge_attr = Vec::with_capacity(4 * n);
        for (k, bond) in graph.bonds.iter().enumerate() {
            let kind = match bond.kind {
                BondKind::Single => 0,
                BondKind::Double => 1,
                BondKind::Triple => 2,
                BondKind::Aromatic => 3,
                BondKind::Other(code) => {
                    return Err(FeaturizeError::Unsupported(format!(
                        "bond {k} has bond type {code}"
                    )));
                }
            };
            let dir = match bond.dir {
                BondDir::None => 0,
                BondDir::EndUpRight => 1,
                BondDir::EndDownRight => 2,
                BondDir::Other(code) => {
                    return Err(FeaturizeError::Unsupported(format!(
                        "bond {k} has direction {code}"
                    )));
                }
            };
            let (i, j) = (index(bond.begin)?, index(bond.end)?);
            src.extend([i, j]);
            dst.extend([j, i]);
            edge_attr.extend([kind, dir, kind, dir]);
        }
        src.extend(dst);
        Ok(Self {
            x,
            edge_index: src,
            edge_attr,
        })
    }
}

fn index(i: usize) -> Result<i64, FeaturizeError> {
    i64::try_from(i).map_err(|_| FeaturizeError::Unsupported(format!("atom index {i}")))
}

/// Parses a SMILES string and computes its pretrain-gnns features.
pub fn featurize_smiles(smiles: &str) -> Result<GraphFeatures, FeaturizeError> {
    let mol = Molecule::from_smiles(smiles)?;
    GraphFeatures::from_graph(&mol.graph())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethanol_features() {
        let g = featurize_smiles("CCO").unwrap();
        assert_eq!(g.x, vec![5, 0, 5, 0, 7, 0]);
        assert_eq!(g.edge_index, vec![0, 1, 1, 2, 1, 0, 2, 1]);
        assert_eq!(g.edge_attr, vec![0; 8]);
        assert_eq!((g.num_atoms(), g.num_edges()), (3, 4));
        assert_eq!(g.sources(), &[0, 1, 1, 2]);
        assert_eq!(g.targets(), &[1, 0, 2, 1]);
    }

    #[test]
    fn validate_checks_ranges() {
        let mut g = featurize_smiles("CCO").unwrap();
        assert!(g.validate().is_ok());
        g.edge_index[0] = 9;
        assert!(g.validate().unwrap_err().contains("outside"));
        let mut g = featurize_smiles("CCO").unwrap();
        g.x[1] = 3; // CHI_OTHER: featurised, but no embedding row.
        assert!(g.validate().is_err());
        assert!(GraphFeatures::default().validate().is_err());
    }

    #[test]
    fn single_atom_has_no_edges() {
        let g = featurize_smiles("[Na+]").unwrap();
        assert_eq!(g.x, vec![10, 0]);
        assert!(g.edge_index.is_empty() && g.edge_attr.is_empty());
    }

    #[test]
    fn unsupported_and_empty() {
        assert!(matches!(
            featurize_smiles("*C"),
            Err(FeaturizeError::Unsupported(_))
        ));
        assert!(matches!(featurize_smiles(""), Err(FeaturizeError::Empty)));
        assert!(matches!(
            featurize_smiles("C1C"),
            Err(FeaturizeError::Chem(_))
        ));
    }
}
