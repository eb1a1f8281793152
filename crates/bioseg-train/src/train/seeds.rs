//! Per-epoch random streams derived from the run's seed, so that a resumed run draws exactly
//! what an uninterrupted run would have drawn without storing generator state.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A generator for `purpose` (a small constant per use) in `epoch` of the run seeded `seed`.
pub fn epoch_rng(seed: u64, epoch: usize, purpose: u64) -> ChaCha8Rng {
    // SplitMix64-style mixing keeps neighbouring (seed, epoch) pairs unrelated.
    let mut z = seed
        .wrapping_add((epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(purpose.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ChaCha8Rng::seed_from_u64(z ^ (z >> 31))
}
