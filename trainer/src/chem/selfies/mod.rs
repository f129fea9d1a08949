//! SELFIES (Krenn et al. 2020): SMILES → SELFIES and back, as the `selfies` package version 2.2
//! defines them with its default semantic constraints.
//!
//! SELFIES is a string form of molecules in which every string of valid symbols decodes to a
//! valid molecule. ANGES uses it as the second representation of its 1D models
//! (`--representation selfies`); this module is the translation.
//!
//! The package derives a SELFIES string from the *SMILES string* — its atom order, where each
//! ring-bond digit and branch stands, the bond characters written — not from a canonical graph,
//! and kekulises aromatic input with its own matching. To give the same strings this module does
//! the same, in its own modules rather than on the graph [`crate::chem::Molecule`] holds (RDKit
//! order and aromaticity, ring closures moved to the end):
//!
//! - [`smiles`] reads a SMILES into the package's directed graph ([`graph`]) and writes one back;
//! - [`graph`] kekulises (with [`matching`], the package's perfect-matching steps);
//! - [`encode()`] derives the SELFIES symbols, [`decode()`] the molecule of a SELFIES string;
//! - [`alphabet`] holds the tables: elements, default constraints, the index alphabet.
//!
//! Molecules SELFIES cannot express (an atom over its capacity, e.g. pentavalent nitrogen; `*`;
//! chirality other than `@`/`@@`; a ring bond across a dot) are an error value with the reason,
//! never a panic. Parity with the package on six MoleculeNet sets is measured by the
//! integration test `selfies_parity` against `scripts/selfies_oracle.py` (docs/chemistry.md).

pub mod alphabet;
pub mod decode;
pub mod encode;
pub mod graph;
pub mod matching;
pub mod smiles;

pub use alphabet::split_symbols;
pub use decode::decode;
pub use encode::encode;

/// Why a translation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelfiesError {
    /// The SMILES is not one the package reads (syntax, or a feature SELFIES lacks).
    #[error("SMILES not readable for SELFIES: {0}")]
    Parse(String),
    /// The aromatic system has no Kekulé structure.
    #[error("kekulization failed: the aromatic atoms cannot be given alternating double bonds")]
    Kekulize,
    /// Some atom has more bonds than the default semantic constraints allow.
    #[error("violates the SELFIES semantic constraints: {0}")]
    Constraints(String),
    /// A SELFIES symbol outside the alphabet.
    #[error("invalid SELFIES symbol {0:?}")]
    Symbol(String),
    /// A malformed SELFIES string.
    #[error("malformed SELFIES: {0}")]
    Malformed(String),
    /// An inconsistency of this module (a bug): reported rather than panicking.
    #[error("internal SELFIES error: {0}")]
    Internal(String),
}

impl SelfiesError {
    /// A short name of the reason, for counts of skipped molecules: `unreadable`, `kekulize`,
    /// `constraints`, `symbol`, `malformed`, `internal`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Parse(_) => "unreadable",
            Self::Kekulize => "kekulize",
            Self::Constraints(_) => "constraints",
            Self::Symbol(_) => "symbol",
            Self::Malformed(_) => "malformed",
            Self::Internal(_) => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pairs checked against `selfies` 2.2.0 (`sf.encoder(smiles)`); the decoder pairs below too.
    const KNOWN: [(&str, &str); 14] = [
        ("C=CF", "[C][=C][F]"),
        ("c1ccccc1", "[C][=C][C][=C][C][=C][Ring1][=Branch1]"),
        (
            "c1cc[n+](C)cc1",
            "[C][=C][C][=N+1][Branch1][C][C][C][=C][Ring1][#Branch1]",
        ),
        (
            "c1ccc2[nH]ccc2c1",
            "[C][=C][C][=C][NH1][C][=C][C][Ring1][Branch1][=C][Ring1][=Branch2]",
        ),
        (
            "O=c1cc[nH]cc1",
            "[O][=C][C][=C][NH1][C][=C][Ring1][=Branch1]",
        ),
        (
            "c1ccccc1C(=O)[O-].[Na+]",
            "[C][=C][C][=C][C][=C][Ring1][=Branch1][C][=Branch1][C][=O][O-1].[Na+1]",
        ),
        (
            "C[C@H](N)C(=O)O",
            "[C][C@H1][Branch1][C][N][C][=Branch1][C][=O][O]",
        ),
        ("F/C=C/F", "[F][/C][=C][/F]"),
        (
            "C1CC[C@@H]2CCCC[C@H]2C1",
            "[C][C][C][C@@H1][C][C][C][C][C@H1][Ring1][=Branch1][C][Ring1][#Branch2]",
        ),
        ("[13CH3][2H]", "[13CH3][2H]"),
        ("[C]", "[CH0]"),
        ("C#N", "[C][#N]"),
        ("C..C", "[C].[C]"),
        ("N1CC1", "[N][C][C][Ring1][Ring1]"),
    ];

    #[test]
    fn encodes_like_the_package() {
        for (smiles, selfies) in KNOWN {
            assert_eq!(encode(smiles).as_deref(), Ok(selfies), "{smiles}");
        }
    }

    #[test]
    fn decodes_like_the_package() {
        for (selfies, smiles) in [
            ("[C][=C][F]", "C=CF"),
            ("[C][=C][C][=C][C][=C][Ring1][=Branch1]", "C1=CC=CC=C1"),
            ("[C][=C][Ring1][Branch1]", "C#C"),
            ("[C][C@@H1][Branch1][C][F][O][Ring1][Ring1]", "C[C@@H1](F)O"),
            ("[C][Branch1][C][F][F]", "C(F)F"),
            // F has room for one bond: the branch symbol is skipped, [C] bonds, the last [F] ends it.
            ("[F][Branch1][C][F][F]", "FCF"),
            ("[O][=O][=O]", "O=O"),
            ("[C].[O-1].[Na+1]", "C.[O-1].[Na+1]"),
            ("[C][nop][C]", "CC"),
            ("", ""),
            ("[C][epsilon][C]", "C"),
        ] {
            assert_eq!(decode(selfies).as_deref(), Ok(smiles), "{selfies}");
        }
        for bad in [
            "[C][Xyz]",
            "[C][Branch4]",
            "[C",
            "[CH5]",
            "[C+0]",
            "[=Ring4]",
        ] {
            assert!(decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn round_trips_keep_the_molecule() {
        for smiles in [
            "CC(=O)Oc1ccccc1C(=O)O",
            "C[C@@H]1CC[C@H](O)CC1",
            "F/C=C/C=C\\Cl",
            "c1ccc2c(c1)oc1ccccc12",
            "[NH3+]CC(=O)[O-]",
        ] {
            let selfies = encode(smiles).unwrap();
            let back = decode(&selfies).unwrap();
            let canon = |s: &str| {
                crate::chem::Molecule::from_smiles(s)
                    .unwrap()
                    .canonical_smiles()
                    .unwrap()
            };
            assert_eq!(canon(&back), canon(smiles), "{smiles} → {selfies} → {back}");
        }
    }

    #[test]
    fn what_selfies_cannot_write_is_an_error() {
        assert!(matches!(
            encode("CN(=O)=O"),
            Err(SelfiesError::Constraints(_))
        ));
        assert!(matches!(encode("c1cccc1"), Err(SelfiesError::Kekulize)));
        assert!(matches!(encode("C*"), Err(SelfiesError::Parse(_))));
        assert!(matches!(
            encode("[C@TH1](F)(Cl)Br"),
            Err(SelfiesError::Parse(_))
        ));
        assert!(matches!(
            encode("c1cc(C.N1)ccc1"),
            Err(SelfiesError::Parse(_))
        ));
        assert_eq!(encode("CN(=O)=O").unwrap_err().kind(), "constraints");
    }

    /// Any string at all gives a result or an error, never a panic.
    #[test]
    fn arbitrary_strings_do_not_panic() {
        use proptest::prelude::*;
        let alphabet = "CNOc1n2()[]=#@H+-/\\.%0s*Br";
        let strat = proptest::collection::vec(
            proptest::sample::select(alphabet.chars().collect::<Vec<_>>()),
            0..40,
        );
        proptest!(|(chars in strat)| {
            let s: String = chars.into_iter().collect();
            let _ = encode(&s);
            let _ = decode(&s);
            if let Ok(sf) = encode(&s) {
                prop_assert!(decode(&sf).is_ok(), "{s} → {sf}");
            }
        });
    }
}
