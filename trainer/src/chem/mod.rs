//! Chemistry: SMILES → molecular graph (RDKit semantics) and Bemis–Murcko scaffolds.
//!
//! This is the only module of the crate that talks to `cosmolkit` (a pure-Rust port of RDKit
//! 2026.09). Everything downstream sees the toolkit-neutral [`MolGraph`] and scaffold strings, so
//! the chemistry backend can be swapped by rewriting this one file.
//!
//! Semantics follow RDKit's `Chem.MolFromSmiles` with default parameters (sanitisation,
//! aromaticity perception, stereo assignment, hydrogens removed): atom order, bond order, chiral
//! tags, bond types (aromatic included) and bond directions are RDKit's. The scaffold is RDKit's
//! `MurckoScaffoldSmiles(includeChirality=True)`, computed with cosmolkit's `murcko_decompose()`
//! (its `murcko_scaffold()` is the MolHash variant and differs).

pub mod selfies;

use thiserror::Error;

/// Why a SMILES string gave no molecule.
#[derive(Debug, Error)]
pub enum ChemError {
    /// The SMILES could not be parsed or sanitised (what RDKit's `MolFromSmiles` rejects).
    #[error("invalid SMILES: {0}")]
    Parse(String),
    /// The Murcko decomposition or the SMILES writer failed on a parsed molecule.
    #[error("scaffold computation failed: {0}")]
    Scaffold(String),
}

/// RDKit chiral tag of an atom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chirality {
    /// `CHI_UNSPECIFIED`.
    Unspecified,
    /// `CHI_TETRAHEDRAL_CW`.
    TetrahedralCw,
    /// `CHI_TETRAHEDRAL_CCW`.
    TetrahedralCcw,
    /// `CHI_OTHER`.
    Other,
    /// Any newer tag (tetrahedral with permutation, allene, square planar, …), by RDKit code.
    Extended(i64),
}

/// RDKit bond type (after sanitisation, aromatic bonds are `Aromatic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BondKind {
    /// `SINGLE`.
    Single,
    /// `DOUBLE`.
    Double,
    /// `TRIPLE`.
    Triple,
    /// `AROMATIC`.
    Aromatic,
    /// Any other RDKit bond type (dative, quadruple, …), by RDKit code.
    Other(i64),
}

/// RDKit bond direction (used for double-bond stereo in SMILES, `/` and `\`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BondDir {
    /// `NONE`.
    None,
    /// `ENDUPRIGHT`.
    EndUpRight,
    /// `ENDDOWNRIGHT`.
    EndDownRight,
    /// Any other direction (wedges, `EITHERDOUBLE`, `UNKNOWN`), by RDKit code.
    Other(i64),
}

/// One atom of a [`MolGraph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Atom {
    /// Atomic number (0 for a dummy atom `*`).
    pub atomic_number: u8,
    /// Chiral tag.
    pub chirality: Chirality,
}

/// One bond of a [`MolGraph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bond {
    /// Index of the begin atom.
    pub begin: usize,
    /// Index of the end atom.
    pub end: usize,
    /// Bond type.
    pub kind: BondKind,
    /// Bond direction.
    pub dir: BondDir,
}

/// A molecular graph with hydrogens implicit, atoms and bonds in RDKit's order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MolGraph {
    /// Atoms, in RDKit atom-index order.
    pub atoms: Vec<Atom>,
    /// Bonds, in RDKit bond-index order.
    pub bonds: Vec<Bond>,
}

/// A parsed, sanitised molecule (opaque: its chemistry stays inside this module).
pub struct Molecule {
    inner: cosmolkit::Molecule,
}

impl std::fmt::Debug for Molecule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Molecule")
            .field("num_atoms", &self.inner.num_atoms())
            .field("num_bonds", &self.inner.num_bonds())
            .finish()
    }
}

impl Molecule {
    /// Parses and sanitises a SMILES string like RDKit's `Chem.MolFromSmiles(smiles)`.
    pub fn from_smiles(smiles: &str) -> Result<Self, ChemError> {
        cosmolkit::Molecule::from_smiles(smiles)
            .map(|inner| Self { inner })
            .map_err(|e| ChemError::Parse(e.to_string()))
    }

    /// Number of heavy atoms (hydrogens are implicit unless the SMILES kept them).
    pub fn num_atoms(&self) -> usize {
        self.inner.num_atoms()
    }

    /// The atom/bond graph with RDKit's atom order, chiral tags, bond types and directions.
    pub fn graph(&self) -> MolGraph {
        let atoms = self
            .inner
            .atoms()
            .iter()
            .map(|a| Atom {
                atomic_number: a.atomic_number(),
                chirality: chirality_from_code(a.chiral_tag().rdkit_code()),
            })
            .collect();
        let bonds = self
            .inner
            .bonds()
            .iter()
            .map(|b| Bond {
                begin: b.begin().index(),
                end: b.end().index(),
                kind: bond_kind_from_code(b.order().rdkit_code()),
                dir: bond_dir_from_code(b.direction().rdkit_code()),
            })
            .collect();
        MolGraph { atoms, bonds }
    }

    /// Canonical isomeric SMILES (RDKit's `MolToSmiles` defaults), to compare molecules written
    /// differently.
    pub fn canonical_smiles(&self) -> Result<String, ChemError> {
        let smiles = self
            .inner
            .to_smiles()
            .map_err(|e| ChemError::Parse(format!("SMILES writer: {e}")))?;
        String::from_utf8(smiles.into_bytes())
            .map_err(|_| ChemError::Parse("the SMILES writer produced invalid UTF-8".into()))
    }

    /// The Bemis–Murcko scaffold as canonical isomeric SMILES, exactly RDKit's
    /// `MurckoScaffoldSmiles(mol=mol, includeChirality=True)`; `""` for an acyclic molecule.
    pub fn murcko_scaffold(&self) -> Result<String, ChemError> {
        let scaffold = self
            .inner
            .murcko_decompose()
            .map_err(|e| ChemError::Scaffold(e.to_string()))?;
        let smiles = scaffold
            .to_smiles()
            .map_err(|e| ChemError::Scaffold(e.to_string()))?;
        String::from_utf8(smiles.into_bytes())
            .map_err(|_| ChemError::Scaffold("the SMILES writer produced invalid UTF-8".into()))
    }
}

fn chirality_from_code(code: i64) -> Chirality {
    match code {
        0 => Chirality::Unspecified,
        1 => Chirality::TetrahedralCw,
        2 => Chirality::TetrahedralCcw,
        3 => Chirality::Other,
        other => Chirality::Extended(other),
    }
}

fn bond_kind_from_code(code: i64) -> BondKind {
    match code {
        1 => BondKind::Single,
        2 => BondKind::Double,
        3 => BondKind::Triple,
        12 => BondKind::Aromatic,
        other => BondKind::Other(other),
    }
}

fn bond_dir_from_code(code: i64) -> BondDir {
    match code {
        0 => BondDir::None,
        4 => BondDir::EndUpRight,
        3 => BondDir::EndDownRight,
        other => BondDir::Other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn benzene_is_aromatic_and_in_order() {
        let g = Molecule::from_smiles("c1ccccc1O").unwrap().graph();
        assert_eq!(g.atoms.len(), 7);
        assert_eq!(g.atoms[6].atomic_number, 8);
        // RDKit adds ring-closure bonds last: 0-1 … 4-5 aromatic, 5-6 single, then 5-0.
        let kinds: Vec<_> = g.bonds.iter().map(|b| (b.begin, b.end, b.kind)).collect();
        assert_eq!(kinds[5], (5, 6, BondKind::Single));
        assert_eq!(kinds[6], (5, 0, BondKind::Aromatic));
        assert!(kinds[..5].iter().all(|b| b.2 == BondKind::Aromatic));
    }

    #[test]
    fn stereo_is_kept() {
        let g = Molecule::from_smiles("F/C=C/[C@H](Cl)Br").unwrap().graph();
        assert_eq!(g.atoms[3].chirality, Chirality::TetrahedralCcw);
        assert_eq!(g.bonds[0].dir, BondDir::EndUpRight);
        let g = Molecule::from_smiles("F\\C=C/F").unwrap().graph();
        assert_eq!(g.bonds[0].dir, BondDir::EndDownRight);
    }

    #[test]
    fn scaffolds() {
        let m = Molecule::from_smiles("CCc1ccccc1CC2CC2").unwrap();
        assert_eq!(m.murcko_scaffold().unwrap(), "c1ccc(CC2CC2)cc1");
        assert_eq!(
            Molecule::from_smiles("CCO")
                .unwrap()
                .murcko_scaffold()
                .unwrap(),
            ""
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(
            Molecule::from_smiles("C1CC(("),
            Err(ChemError::Parse(_))
        ));
        assert!(Molecule::from_smiles("C(C)(C)(C)(C)C").is_err());
    }
}
