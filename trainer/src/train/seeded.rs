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

/// Rows per sorting window of [`group_by_length`], in batches: wide enough that most batches are
/// nearly uniform in length, narrow enough that the data order stays random at the scale of an
/// epoch (Hugging Face's `LengthGroupedSampler` uses 50 too).
pub const LENGTH_GROUP_BATCHES: usize = 50;

/// Salt of the stream that orders the length-grouped batches.
const GROUP_SALT: u64 = 0x6c65_6e67_7468;

/// Reorders an already shuffled `order` so that each batch of `batch_size` holds rows of similar
/// `length`: windows of [`LENGTH_GROUP_BATCHES`] batches are sorted by length (longest first,
/// ties keeping the shuffled order), cut into batches, and the full batches are shuffled for
/// `(seed, epoch)`; a last, partial batch stays last, so that `order.chunks(batch_size)` gives
/// exactly these batches. The rows are the same, only their grouping changes: a batch is padded
/// to its longest row, so this cuts the padding that the 1D models compute on.
pub fn group_by_length(
    order: &mut [usize],
    length: impl Fn(usize) -> usize,
    batch_size: usize,
    seed: u64,
    epoch: u64,
) {
    let batch_size = batch_size.max(1);
    for window in order.chunks_mut(batch_size * LENGTH_GROUP_BATCHES) {
        window.sort_by_key(|&row| std::cmp::Reverse(length(row)));
    }
    let full = order.len() / batch_size;
    let mut batches: Vec<Vec<usize>> = order[..full * batch_size]
        .chunks(batch_size)
        .map(<[usize]>::to_vec)
        .collect();
    let mut stream = Stream::new(seed, epoch, GROUP_SALT);
    for i in (1..batches.len()).rev() {
        batches.swap(i, stream.below(i + 1));
    }
    for (slot, row) in order.iter_mut().zip(batches.into_iter().flatten()) {
        *slot = row;
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
    fn length_grouping_keeps_the_rows_and_cuts_the_padding() {
        // 1,003 rows with lengths 1..=97 in a shuffled order, batches of 8: 125 full, 3 left.
        const N: usize = 1003;
        let length = |row: usize| 1 + (row * 37) % 97;
        let mut order: Vec<usize> = (0..N).collect();
        shuffle(&mut order, 3, 1);
        let padded = |order: &[usize]| -> usize {
            order
                .chunks(8)
                .map(|b| b.len() * b.iter().map(|&r| length(r)).max().unwrap_or(0))
                .sum()
        };
        let before = padded(&order);
        let shuffled = order.clone();
        let mut grouped = order.clone();
        group_by_length(&mut grouped, length, 8, 3, 1);
        // Same rows.
        let mut rows = grouped.clone();
        rows.sort_unstable();
        assert_eq!(rows, (0..N).collect::<Vec<_>>());
        // The partial batch stays last: the shortest rows of the last window (rows 800.. of the
        // shuffled order), so chunks(8) gives the grouped batches exactly.
        let last_window = &shuffled[800..];
        let tail: Vec<usize> = grouped[N - 3..].iter().map(|&r| length(r)).collect();
        let mut window_lengths: Vec<usize> = last_window.iter().map(|&r| length(r)).collect();
        window_lengths.sort_unstable();
        let mut tail_sorted = tail.clone();
        tail_sorted.sort_unstable();
        assert_eq!(tail_sorted, window_lengths[..3]);
        let real: usize = (0..N).map(length).sum();
        let after = padded(&grouped);
        assert!(
            (after - real) * 4 < before - real,
            "padding {} -> {} (real tokens {real})",
            before - real,
            after - real
        );
        // Seeded: the same (seed, epoch) gives the same batches, another epoch another order.
        let mut again = shuffled.clone();
        group_by_length(&mut again, length, 8, 3, 1);
        assert_eq!(again, grouped);
        let mut other = shuffled;
        group_by_length(&mut other, length, 8, 3, 2);
        assert_ne!(other, grouped);
        // Batches are not simply longest-first across the epoch.
        let firsts: Vec<usize> = grouped.chunks(8).map(|b| length(b[0])).collect();
        assert!(firsts.windows(2).any(|w| w[1] > w[0]));
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
