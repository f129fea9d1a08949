//! Train/valid/test splits (80/10/10) and their `split.json` files.
//!
//! - Scaffold split exactly as Hu et al. (`splitters.scaffold_split` of pretrain-gnns): group the
//!   molecules by Bemis–Murcko scaffold with chirality, sort the groups by `(size, first index)`
//!   in *descending* order (so ties go to the group whose first molecule comes later: Python's
//!   `sorted(..., key=(len, first), reverse=True)`), and fill train while it stays ≤ 80 % of the
//!   molecules, then valid while train + valid stays ≤ 90 %, the rest to test. Deterministic.
//! - Random split (seeded): a permutation; the first ⌊0.8 n⌋ to train, the next ⌊0.1 n⌋ to valid.
//! - Random-scaffold split (seeded, pretrain-gnns `random_scaffold_split`): scaffold groups in
//!   random order; a group goes to valid if it fits in ⌊0.1 n⌋, else to test if it fits in
//!   ⌊0.1 n⌋, else to train.
//!
//! The permutations use SplitMix64 + Fisher–Yates (not NumPy's generator: a given seed gives the
//! same split on every machine and version of this crate, not the same as pretrain-gnns').
//!
//! All indices are 0-based data rows of the input file (skipped rows never appear).
//! `split.json` is `{"train": [...], "valid": [...], "test": [...]}`, each list ascending.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::data::Dataset;

/// Dataset splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SplitKind {
    /// Bemis–Murcko scaffold split exactly as Hu et al. (deterministic).
    Scaffold,
    /// Seeded random split.
    Random,
    /// Seeded random assignment of scaffold groups.
    RandomScaffold,
}

/// Fraction of the molecules in train.
pub const FRAC_TRAIN: f64 = 0.8;
/// Fraction of the molecules in valid.
pub const FRAC_VALID: f64 = 0.1;

/// Split failures.
#[derive(Debug, Error)]
pub enum SplitError {
    /// `split.json` could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `split.json` is not `{"train": [...], "valid": [...], "test": [...]}`.
    #[error("{path}: not a split file: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A split names a row the dataset does not have (out of range, or skipped).
    #[error("split names row {row}, which is not a featurised row of the dataset")]
    UnknownRow {
        /// The row.
        row: usize,
    },
    /// A row appears twice.
    #[error("split names row {row} more than once")]
    Duplicate {
        /// The row.
        row: usize,
    },
}

/// Row indices of the input file per part.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Split {
    /// Training rows (ascending).
    pub train: Vec<usize>,
    /// Validation rows (ascending).
    pub valid: Vec<usize>,
    /// Test rows (ascending).
    pub test: Vec<usize>,
}

impl Split {
    fn sorted(mut self) -> Self {
        self.train.sort_unstable();
        self.valid.sort_unstable();
        self.test.sort_unstable();
        self
    }

    /// Total number of rows.
    pub fn len(&self) -> usize {
        self.train.len() + self.valid.len() + self.test.len()
    }

    /// Whether the split is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes `split.json`.
    pub fn write(&self, path: &Path) -> Result<(), SplitError> {
        let io = |source| SplitError::Io {
            path: path.to_owned(),
            source,
        };
        let text = serde_json::to_string(self).map_err(|e| io(std::io::Error::other(e)))?;
        std::fs::write(path, text + "\n").map_err(io)
    }

    /// Reads a `split.json` (`--split-file`).
    pub fn read(path: &Path) -> Result<Self, SplitError> {
        let text = std::fs::read_to_string(path).map_err(|source| SplitError::Io {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str::<Self>(&text)
            .map(Self::sorted)
            .map_err(|e| SplitError::Format {
                path: path.to_owned(),
                message: e.to_string(),
            })
    }

    /// Checks the split against a dataset and maps it to dataset positions (indices into
    /// `dataset.rows`). Dataset rows the split leaves out are unused (logged).
    pub fn positions(&self, dataset: &Dataset) -> Result<SplitPositions, SplitError> {
        let pos: HashMap<usize, usize> = dataset
            .rows
            .iter()
            .enumerate()
            .map(|(p, r)| (r.row, p))
            .collect();
        let mut seen = HashSet::new();
        let mut map = |rows: &[usize]| -> Result<Vec<usize>, SplitError> {
            rows.iter()
                .map(|&row| {
                    if !seen.insert(row) {
                        return Err(SplitError::Duplicate { row });
                    }
                    pos.get(&row).copied().ok_or(SplitError::UnknownRow { row })
                })
                .collect()
        };
        let parts = SplitPositions {
            train: map(&self.train)?,
            valid: map(&self.valid)?,
            test: map(&self.test)?,
        };
        if seen.len() < dataset.rows.len() {
            tracing::warn!(
                unused = dataset.rows.len() - seen.len(),
                "the split file leaves some featurised rows out; they are not used"
            );
        }
        Ok(parts)
    }
}

/// A split as positions in `Dataset::rows` (what the training loop indexes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SplitPositions {
    /// Training positions.
    pub train: Vec<usize>,
    /// Validation positions.
    pub valid: Vec<usize>,
    /// Test positions.
    pub test: Vec<usize>,
}

/// Splits a dataset by `kind` (`seed` drives the random kinds).
pub fn make_split(dataset: &Dataset, kind: SplitKind, seed: u64) -> Split {
    let items: Vec<(usize, &str)> = dataset
        .rows
        .iter()
        .map(|r| (r.row, r.scaffold.as_str()))
        .collect();
    match kind {
        SplitKind::Scaffold => scaffold_split(&items),
        SplitKind::Random => random_split(&items.iter().map(|(r, _)| *r).collect::<Vec<_>>(), seed),
        SplitKind::RandomScaffold => random_scaffold_split(&items, seed),
    }
}

/// Scaffold groups: rows per scaffold, in order of first appearance, each ascending.
fn groups(items: &[(usize, &str)]) -> Vec<Vec<usize>> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for &(row, scaffold) in items {
        let g = *index.entry(scaffold).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(row);
    }
    for g in &mut groups {
        g.sort_unstable();
    }
    groups
}

/// Deterministic scaffold split of Hu et al. over `(row, scaffold)` pairs.
pub fn scaffold_split(items: &[(usize, &str)]) -> Split {
    let mut sets = groups(items);
    // Python: sorted(key=(len, first index), reverse=True).
    sets.sort_by(|a, b| (b.len(), b[0]).cmp(&(a.len(), a[0])));
    let n = items.len() as f64;
    let (train_cutoff, valid_cutoff) = (FRAC_TRAIN * n, (FRAC_TRAIN + FRAC_VALID) * n);
    let mut split = Split::default();
    for set in sets {
        if (split.train.len() + set.len()) as f64 > train_cutoff {
            if (split.train.len() + split.valid.len() + set.len()) as f64 > valid_cutoff {
                split.test.extend(set);
            } else {
                split.valid.extend(set);
            }
        } else {
            split.train.extend(set);
        }
    }
    split.sorted()
}

/// Seeded random split of `rows`.
pub fn random_split(rows: &[usize], seed: u64) -> Split {
    let mut perm = rows.to_vec();
    shuffle(&mut perm, seed);
    let n = rows.len() as f64;
    let n_train = (FRAC_TRAIN * n).floor() as usize;
    let n_valid = (FRAC_VALID * n).floor() as usize;
    let test = perm.split_off((n_train + n_valid).min(perm.len()));
    let valid = perm.split_off(n_train.min(perm.len()));
    Split {
        train: perm,
        valid,
        test,
    }
    .sorted()
}

/// Seeded random-scaffold split over `(row, scaffold)` pairs.
pub fn random_scaffold_split(items: &[(usize, &str)], seed: u64) -> Split {
    let mut sets = groups(items);
    shuffle(&mut sets, seed);
    let n = items.len() as f64;
    let n_valid = (FRAC_VALID * n).floor() as usize;
    let n_test = ((1.0 - FRAC_TRAIN - FRAC_VALID) * n + 1e-9).floor() as usize;
    let mut split = Split::default();
    for set in sets {
        if split.valid.len() + set.len() <= n_valid {
            split.valid.extend(set);
        } else if split.test.len() + set.len() <= n_test {
            split.test.extend(set);
        } else {
            split.train.extend(set);
        }
    }
    split.sorted()
}

/// SplitMix64 (Steele et al.), the seed expander of the xoshiro family.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (Lemire's multiply-shift; bias < 2⁻³² for these sizes).
    fn below(&mut self, bound: usize) -> usize {
        ((u128::from(self.next()) * bound as u128) >> 64) as usize
    }
}

/// Fisher–Yates shuffle driven by SplitMix64(`seed`).
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut rng = SplitMix64(seed);
    for i in (1..items.len()).rev() {
        let j = rng.below(i + 1);
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_partition(s: &Split, n: usize) {
        let mut all: Vec<usize> = s
            .train
            .iter()
            .chain(&s.valid)
            .chain(&s.test)
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..n).collect::<Vec<_>>());
    }

    #[test]
    fn scaffold_split_orders_groups_like_hu_et_al() {
        // Groups: A = {0,1,2,3} (4), B = {4,5} (2), C = {6,7} (2), D = {8}, E = {9}.
        let sc = ["A", "A", "A", "A", "B", "B", "C", "C", "D", "E"];
        let items: Vec<(usize, &str)> = sc.iter().copied().enumerate().collect();
        let s = scaffold_split(&items);
        check_partition(&s, 10);
        // Order: A, then C (tie on size 2, larger first index first), then B, E, D.
        // train ≤ 8: A(4) + C(2) + B(2) = 8; E → valid (9 ≤ 9); D → test.
        assert_eq!(s.train, vec![0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(s.valid, vec![9]);
        assert_eq!(s.test, vec![8]);
    }

    #[test]
    fn random_splits_are_seeded_partitions() {
        let rows: Vec<usize> = (0..103).collect();
        let a = random_split(&rows, 7);
        assert_eq!(a, random_split(&rows, 7));
        assert_ne!(a, random_split(&rows, 8));
        assert_eq!((a.train.len(), a.valid.len(), a.test.len()), (82, 10, 11));
        check_partition(&a, 103);
        let names: Vec<String> = (0..103).map(|i| format!("s{}", i % 17)).collect();
        let items: Vec<(usize, &str)> = names.iter().map(String::as_str).enumerate().collect();
        let b = random_scaffold_split(&items, 3);
        assert_eq!(b, random_scaffold_split(&items, 3));
        check_partition(&b, 103);
        assert!(b.valid.len() <= 10 && b.test.len() <= 10);
        // Scaffold groups never straddle parts.
        for part in [&b.train, &b.valid, &b.test] {
            for &r in part.iter() {
                assert!(part.iter().all(|&q| q % 17 != r % 17 || part.contains(&q)));
            }
        }
        let group_of = |r: usize| {
            [&b.train, &b.valid, &b.test]
                .iter()
                .position(|p| p.contains(&r))
                .unwrap()
        };
        for r in 0..103 {
            assert_eq!(group_of(r), group_of(r % 17));
        }
    }

    #[test]
    fn split_json_round_trip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("split.json");
        let s = Split {
            train: vec![0, 2],
            valid: vec![1],
            test: vec![3],
        };
        s.write(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            r#"{"train":[0,2],"valid":[1],"test":[3]}"#
        );
        assert_eq!(Split::read(&path).unwrap(), s);
        std::fs::write(&path, r#"{"train":[0],"valid":[]}"#).unwrap();
        assert!(matches!(Split::read(&path), Err(SplitError::Format { .. })));
        assert!(matches!(
            Split::read(&dir.path().join("none.json")),
            Err(SplitError::Io { .. })
        ));
    }
}
