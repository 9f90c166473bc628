//! Random streams derived from the campaign's seed. Each actor and each kind of decision has
//! a stream of its own, named and numbered, so what one actor draws never depends on how many
//! draws another made before it (which depends on process timing). ChaCha8 is portable across
//! platforms and versions of `rand`, so a seed means the same schedule everywhere.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub type Stream = ChaCha8Rng;

/// The stream `name`/`index` of `seed`.
pub fn stream(seed: u64, name: &str, index: u64) -> Stream {
    let mut state = splitmix(seed ^ 0x5eed_c4a0_5eed_c4a0);
    for byte in name.bytes() {
        state = splitmix(state ^ u64::from(byte));
    }
    state = splitmix(state ^ index);
    ChaCha8Rng::seed_from_u64(state)
}

/// SplitMix64's finaliser: a good 64-bit mix, so near seeds give unrelated streams.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::stream;

    #[test]
    fn a_stream_is_the_same_for_the_same_seed_name_and_index() {
        let draw = |seed, name, index| stream(seed, name, index).random::<u64>();
        assert_eq!(draw(7, "faults", 0), draw(7, "faults", 0));
        assert_ne!(draw(7, "faults", 0), draw(8, "faults", 0));
        assert_ne!(draw(7, "faults", 0), draw(7, "faults", 1));
        assert_ne!(draw(7, "faults", 0), draw(7, "wallets", 0));
    }
}
