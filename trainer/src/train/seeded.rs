//! The loop's own seeded randomness (data order, pruning choices, pre-training masks):
//! SplitMix64 streams keyed by `(seed, epoch)`, identical on every machine and independent of
//! libtorch's generator.

/// One step of SplitMix64.
pub(crate) fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Seeded Fisher–Yates shuffle of `order` for `(seed, epoch)`.
pub(crate) fn shuffle(order: &mut [usize], seed: u64, epoch: u64) {
    let mut state = seed ^ epoch.wrapping_mul(0xd1b5_4a32_d192_ed03);
    for i in (1..order.len()).rev() {
        let j = (splitmix(&mut state) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
}

/// A SplitMix64 stream keyed by `(seed, epoch, salt)`; the salt keeps the streams of different
/// purposes (data order, masks) apart.
#[derive(Debug, Clone)]
pub(crate) struct Stream(u64);

impl Stream {
    /// The stream of `seed`, `epoch` and `salt`.
    pub(crate) fn new(seed: u64, epoch: u64, salt: u64) -> Self {
        let mut state = seed ^ salt.wrapping_mul(0xa076_1d64_78bd_642f);
        let _ = splitmix(&mut state);
        Self(state ^ epoch.wrapping_mul(0xd1b5_4a32_d192_ed03))
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        splitmix(&mut self.0)
    }

    /// A uniform draw in `0..n` (`n ≥ 1`; the modulo bias is below `n / 2^64`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// A uniform draw in `[0, 1)` with 53 random bits.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let base: Vec<usize> = (0..50).collect();
        let (mut a, mut b, mut c) = (base.clone(), base.clone(), base.clone());
        shuffle(&mut a, 7, 1);
        shuffle(&mut b, 7, 1);
        shuffle(&mut c, 7, 2);
        assert_eq!(a, b);
        assert_ne!(a, c);
        a.sort_unstable();
        assert_eq!(a, base);
    }

    #[test]
    fn streams_are_keyed_by_seed_epoch_and_salt() {
        let draws = |seed, epoch, salt| {
            let mut s = Stream::new(seed, epoch, salt);
            (0..4).map(|_| s.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draws(1, 2, 3), draws(1, 2, 3));
        assert_ne!(draws(1, 2, 3), draws(1, 2, 4));
        assert_ne!(draws(1, 2, 3), draws(1, 3, 3));
        assert_ne!(draws(1, 2, 3), draws(2, 2, 3));
        let mut s = Stream::new(0, 0, 0);
        let mean = (0..10_000).map(|_| s.unit()).sum::<f64>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        assert!((0..1000).all(|_| s.below(7) < 7));
    }
}
