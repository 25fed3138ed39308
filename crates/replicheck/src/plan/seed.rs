//! Seeds: the one source of every random choice of a run.
//!
//! Each scenario draws from its own stream, derived from the run's seed and the scenario's
//! name, so that adding or removing a scenario leaves the others' plans unchanged and
//! `--scenarios login` replays exactly the login part of a full run.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// A seed for a run that was given none.
pub fn fresh() -> u64 {
    // Small enough to type back on a command line.
    rand::random::<u64>() % 1_000_000_000
}

/// A user's `{nonce}`: twelve hex digits from the stream.
pub fn nonce(rng: &mut ChaCha8Rng) -> String {
    use rand::RngExt;
    format!("{:012x}", rng.random::<u64>() & 0xffff_ffff_ffff)
}

/// The random stream for `label` within the run of `seed`. ChaCha8 streams are portable
/// and stable across versions, so a seed replays on any machine.
pub fn stream(seed: u64, label: &str) -> ChaCha8Rng {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update(label.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(&digest[..32]);
    ChaCha8Rng::from_seed(bytes)
}

#[cfg(test)]
mod tests {
    use rand::RngExt;

    use super::*;

    #[test]
    fn streams_depend_on_seed_and_label_only() {
        let a: u64 = stream(1, "login").random();
        assert_eq!(a, stream(1, "login").random::<u64>());
        assert_ne!(a, stream(2, "login").random::<u64>());
        assert_ne!(a, stream(1, "cache").random::<u64>());
    }
}
