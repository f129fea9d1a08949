//! Training-mode (inverted) dropout for the models, with a fast CPU mask.
//!
//! On the CPU, libtorch's `bernoulli_` is slow at the sizes of a mini-batch: a serial Mersenne
//! twister per element on most CPUs, and even its Intel MKL path took 3.6 ms per `[768, 300]`
//! mask on this project's 2-core build VM (23 % of a GIN epoch, measured with
//! `torch.profiler`). The CPU mask is instead drawn from a counter-based stream: SplitMix64 of
//! `seed + k·γ` gives the 64 bits of block `k`, cut into four 16-bit uniform draws, one per
//! element. Every element depends only on the seed and its index, so the mask is the same
//! whatever the thread count, and the seed is one draw from libtorch's generator, so
//! `tch::manual_seed` still makes runs reproducible. Other devices use libtorch's dropout.

use tch::{Device, Kind, Tensor};

use super::ModelError;

/// SplitMix64's increment (the golden ratio in 64-bit fixed point).
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// Resolution of one draw: an element is kept when its 16-bit draw is below `keep · 2^16`.
const DRAW_BITS: u32 = 16;

/// SplitMix64's output function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `mask` with `scale` (kept) or `0.0` (dropped), keeping each element with probability
/// `threshold / 2^16`, from the stream of `seed`. Branch-free: a kept element's bits are
/// `scale`'s, a dropped one's are all zero (the keep decision is a coin flip, which a branch
/// would mispredict half of the time).
fn fill_mask(mask: &mut [f32], seed: u64, threshold: u64, scale: f32) {
    const PER_BLOCK: usize = (u64::BITS / DRAW_BITS) as usize;
    let draw_mask = (1u64 << DRAW_BITS) - 1;
    let scale_bits = scale.to_bits();
    let fill = |block: &mut [f32], k: usize| {
        let bits = mix(seed.wrapping_add((k as u64).wrapping_add(1).wrapping_mul(GAMMA)));
        for (j, slot) in block.iter_mut().enumerate() {
            let keep = ((bits >> (j as u32 * DRAW_BITS)) & draw_mask) < threshold;
            *slot = f32::from_bits(scale_bits & 0u32.wrapping_sub(u32::from(keep)));
        }
    };
    let mut blocks = mask.chunks_exact_mut(PER_BLOCK);
    let mut k = 0;
    for block in &mut blocks {
        fill(block, k);
        k += 1;
    }
    fill(blocks.into_remainder(), k);
}

/// Inverted dropout with drop probability `p`: in training mode each element is zeroed with
/// probability `p` and the others are scaled by `1 / (1 − p)`; in evaluation mode (or with
/// `p = 0`) the input is returned as it is.
pub fn dropout(x: &Tensor, p: f64, train: bool) -> Result<Tensor, ModelError> {
    if !train || p <= 0.0 {
        return Ok(x.shallow_clone());
    }
    if !(0.0..1.0).contains(&p) {
        return Err(ModelError::Config(format!(
            "dropout probability {p} is not in [0, 1)"
        )));
    }
    if x.device() != Device::Cpu || x.kind() != Kind::Float {
        return Ok(x.f_dropout(p, true)?);
    }
    let seed = i64::try_from(&Tensor::f_randint(
        i64::MAX,
        [1],
        (Kind::Int64, Device::Cpu),
    )?)?;
    let keep = 1.0 - p;
    let threshold = (keep * f64::from(1u32 << DRAW_BITS)).round() as u64;
    let mask = Tensor::f_empty(x.size().as_slice(), (Kind::Float, Device::Cpu))?;
    let numel = mask.numel();
    // SAFETY: `mask` was just allocated by libtorch as a contiguous CPU tensor of `numel` f32s
    // (so `data_ptr` is aligned for f32 and valid for `numel` elements), and no other handle
    // to its storage exists while the slice lives.
    let slots = unsafe { std::slice::from_raw_parts_mut(mask.data_ptr().cast::<f32>(), numel) };
    fill_mask(slots, seed as u64, threshold, (1.0 / keep) as f32);
    Ok(x.f_mul(&mask)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_expected_share_scales_and_is_seeded() {
        let _rng = crate::test_support::torch_rng();
        let x = Tensor::ones([1000, 300], (Kind::Float, Device::Cpu));
        for p in [0.1, 0.5, 0.9] {
            tch::manual_seed(3);
            let a = dropout(&x, p, true).unwrap();
            tch::manual_seed(3);
            let b = dropout(&x, p, true).unwrap();
            assert!(a.equal(&b), "same seed, same mask");
            tch::manual_seed(4);
            assert!(
                !a.equal(&dropout(&x, p, true).unwrap()),
                "another seed, another mask"
            );
            let kept = f64::try_from(a.ne(0.0).to_kind(Kind::Float).mean(Kind::Float)).unwrap();
            assert!((kept - (1.0 - p)).abs() < 0.01, "p {p}: kept share {kept}");
            let mean = f64::try_from(a.mean(Kind::Float)).unwrap();
            assert!(
                (mean - 1.0).abs() < 0.03,
                "p {p}: inverted dropout keeps the mean ({mean})"
            );
        }
        assert!(dropout(&x, 0.0, true).unwrap().equal(&x));
        assert!(dropout(&x, 0.5, false).unwrap().equal(&x));
        assert!(dropout(&x, 1.0, true).is_err());
    }

    #[test]
    fn neighbouring_draws_are_independent() {
        // Four draws share one 64-bit block: a bias between the lanes of a block (or between
        // consecutive blocks) would show as a correlation of neighbouring keep decisions.
        let mut mask = vec![0f32; 1 << 20];
        fill_mask(&mut mask, 12345, 1 << 15, 2.0);
        let kept: Vec<f64> = mask.iter().map(|&m| f64::from(m > 0.0)).collect();
        let mean = kept.iter().sum::<f64>() / kept.len() as f64;
        assert!((mean - 0.5).abs() < 0.003, "share kept {mean}");
        for lag in 1..=8 {
            let cov = kept
                .iter()
                .zip(&kept[lag..])
                .map(|(a, b)| (a - mean) * (b - mean))
                .sum::<f64>()
                / (kept.len() - lag) as f64;
            let corr = cov / (mean * (1.0 - mean));
            assert!(corr.abs() < 0.01, "lag {lag}: correlation {corr}");
        }
    }
}
