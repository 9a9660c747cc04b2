//! The one stable bucketing function shared by feature-flag rollouts and
//! A/B assignment.
//!
//! `bucket(namespace, salt, key)` is
//! `floor(u64_be(SHA-256(namespace ‖ 0x1F ‖ salt ‖ 0x1F ‖ key)[0..8]) × 10 000 / 2⁶⁴)`:
//! a number in `0..10_000` (1/10,000 granularity), uniform, the same on every
//! instance and every version of this crate. The unit-separator byte between
//! inputs means `("ab", "c")` and `("a", "bc")` never collide. Raising a
//! rollout from 10 % to 20 % keeps the first 10 % in (`bucket < 1_000` implies
//! `bucket < 2_000`).

use sha2::{Digest, Sha256};

/// How many buckets there are: 10,000 (0.01 % granularity).
pub(crate) const BUCKETS: u32 = 10_000;

/// The bucket of `key` within `namespace` (a flag or test name) and `salt`.
pub(crate) fn bucket(namespace: &str, salt: &str, key: &str) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(namespace.as_bytes());
    hasher.update([0x1f]);
    hasher.update(salt.as_bytes());
    hasher.update([0x1f]);
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    let top = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    ((u128::from(top) * u128::from(BUCKETS)) >> 64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_vectors() {
        // Fixed forever (computed independently with Python's hashlib):
        // changing them would reshuffle every rollout and experiment.
        let vectors = [
            (("beta_feature", "rollout", "user-1"), 3999),
            (("beta_feature", "rollout", "user-2"), 874),
            (("checkout", "v1", "anon-abc"), 2823),
            (("", "", ""), 7218),
            (("ключ", "salt", "日本"), 298),
        ];
        for ((ns, salt, key), expected) in vectors {
            assert_eq!(bucket(ns, salt, key), expected);
        }
    }

    #[test]
    fn separators_keep_inputs_apart() {
        assert_ne!(bucket("ab", "c", "k"), bucket("a", "bc", "k"));
        assert_ne!(bucket("a", "b", "ck"), bucket("a", "bc", "k"));
    }

    #[test]
    fn buckets_are_uniform() {
        let mut counts = [0u32; 10];
        for i in 0..20_000 {
            counts[(bucket("n", "s", &i.to_string()) / 1_000) as usize] += 1;
        }
        for c in counts {
            assert!((1_800..=2_200).contains(&c), "{counts:?}");
        }
    }
}
