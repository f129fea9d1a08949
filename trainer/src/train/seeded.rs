//! The loop's own seeded randomness (data order, pruning choices): SplitMix64 streams keyed by
//! `(seed, epoch)`, identical on every machine and independent of libtorch's generator.

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
}
