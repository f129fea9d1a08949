//! BERT-style token masking for masked-language modelling (Devlin et al. 2019, as Hugging
//! Face's `DataCollatorForLanguageModeling`): every non-special token of a sequence is selected
//! with probability `rate` (at least one per sequence, so that every molecule teaches
//! something); of the selected ones 80 % become the mask token, 10 % a random non-special token
//! and 10 % stay as they are; the model must predict the original token at every selected
//! position. Special tokens (`[PAD]`, `[UNK]`, `[CLS]`, `[SEP]`, `[MASK]`) are never selected and
//! never drawn as replacements. Draws come from a seeded [`Stream`].

use crate::featurize::TokenIds;
use crate::train::seeded::Stream;

/// Share of the selected tokens replaced by the mask token.
pub const MASK_SHARE: f64 = 0.8;
/// Share of the selected tokens replaced by a random token.
pub const RANDOM_SHARE: f64 = 0.1;

/// A masked sequence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaskedTokens {
    /// The model's input: the sequence with the selected tokens replaced (or kept).
    pub ids: TokenIds,
    /// Positions of the selected tokens.
    pub positions: Vec<usize>,
    /// The original token at each selected position, the target.
    pub labels: Vec<i64>,
}

/// Masks sequences over one vocabulary.
#[derive(Debug, Clone)]
pub struct TokenMasker {
    rate: f64,
    mask_id: i64,
    special: Vec<bool>,
    replacements: Vec<i64>,
}

impl TokenMasker {
    /// A masker selecting tokens at `rate` over a vocabulary of `vocab_size` ids of which
    /// `special` are special; `mask_id` is the mask token. `None` when the vocabulary has no
    /// ordinary token to draw replacements from.
    pub fn new(rate: f64, vocab_size: usize, special: &[i64], mask_id: i64) -> Option<Self> {
        let mut is_special = vec![false; vocab_size];
        for &s in special {
            if let Some(slot) = usize::try_from(s).ok().and_then(|i| is_special.get_mut(i)) {
                *slot = true;
            }
        }
        let replacements: Vec<i64> = (0..vocab_size as i64)
            .filter(|&i| !is_special[i as usize])
            .collect();
        (!replacements.is_empty()).then_some(Self {
            rate,
            mask_id,
            special: is_special,
            replacements,
        })
    }

    fn is_special(&self, id: i64) -> bool {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.special.get(i).copied())
            .unwrap_or(true)
    }

    /// Masks one sequence with draws from `rng`.
    pub fn mask(&self, ids: &[i64], rng: &mut Stream) -> MaskedTokens {
        let candidates: Vec<usize> = (0..ids.len())
            .filter(|&p| !self.is_special(ids[p]))
            .collect();
        let mut positions: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|_| rng.unit() < self.rate)
            .collect();
        if positions.is_empty() && !candidates.is_empty() {
            positions.push(candidates[rng.below(candidates.len())]);
        }
        let mut out = ids.to_vec();
        let labels = positions.iter().map(|&p| ids[p]).collect();
        for &p in &positions {
            let r = rng.unit();
            if r < MASK_SHARE {
                out[p] = self.mask_id;
            } else if r < MASK_SHARE + RANDOM_SHARE {
                out[p] = self.replacements[rng.below(self.replacements.len())];
            }
        }
        MaskedTokens {
            ids: out,
            positions,
            labels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vocabulary: 0..5 special ([PAD] [UNK] [CLS] [SEP] [MASK]), 5..25 ordinary.
    fn masker(rate: f64) -> TokenMasker {
        TokenMasker::new(rate, 25, &[0, 1, 2, 3, 4], 4).unwrap()
    }

    fn sequence(i: u64) -> Vec<i64> {
        // [CLS] tokens… [UNK] … [SEP]
        let mut ids = vec![2];
        ids.extend((0..30).map(|k| 5 + ((i * 7 + k * 3) % 20) as i64));
        ids.insert(10, 1);
        ids.push(3);
        ids
    }

    #[test]
    fn selection_is_fifteen_percent_then_eighty_ten_ten() {
        let m = masker(0.15);
        let mut rng = Stream::new(0, 1, 0);
        let (mut ordinary, mut selected, mut masked, mut random, mut kept) = (0, 0, 0, 0, 0);
        for i in 0..4000 {
            let ids = sequence(i);
            let out = m.mask(&ids, &mut rng);
            ordinary += ids.iter().filter(|&&t| t >= 5).count();
            selected += out.positions.len();
            for (&p, &label) in out.positions.iter().zip(&out.labels) {
                assert_eq!(label, ids[p], "labels are the original tokens");
                assert!(ids[p] >= 5, "special tokens are never selected");
                match out.ids[p] {
                    4 => masked += 1,
                    t if t == ids[p] => kept += 1,
                    t => {
                        assert!(t >= 5, "replacements are ordinary tokens");
                        random += 1;
                    }
                }
            }
            for p in (0..ids.len()).filter(|p| !out.positions.contains(p)) {
                assert_eq!(out.ids[p], ids[p], "unselected tokens are untouched");
            }
        }
        let share = |n: usize, of: usize| n as f64 / of as f64;
        // 120 000 ordinary tokens, ~18 000 selected: 3σ is well inside these bounds.
        assert!(
            (share(selected, ordinary) - 0.15).abs() < 0.006,
            "{selected}/{ordinary}"
        );
        assert!(
            (share(masked, selected) - 0.8).abs() < 0.015,
            "{masked}/{selected}"
        );
        // A random draw equals the original 1 time in 20, which then counts as kept.
        let random_expected = 0.1 * 19.0 / 20.0;
        assert!(
            (share(random, selected) - random_expected).abs() < 0.01,
            "{random}"
        );
        assert!(
            (share(kept, selected) - (0.2 - random_expected)).abs() < 0.01,
            "{kept}"
        );
    }

    #[test]
    fn every_sequence_gets_a_target_and_masks_are_seeded() {
        let m = masker(0.01);
        let ids = vec![2, 7, 8, 3];
        for seed in 0..100 {
            let out = m.mask(&ids, &mut Stream::new(seed, 1, 0));
            assert!(!out.positions.is_empty());
            assert!(out.positions.iter().all(|&p| p == 1 || p == 2));
        }
        let a = m.mask(&sequence(3), &mut Stream::new(5, 1, 0));
        assert_eq!(a, m.mask(&sequence(3), &mut Stream::new(5, 1, 0)));
        let only_special = m.mask(&[2, 3], &mut Stream::new(0, 0, 0));
        assert!(only_special.positions.is_empty());
        assert!(TokenMasker::new(0.15, 5, &[0, 1, 2, 3, 4], 4).is_none());
    }
}
