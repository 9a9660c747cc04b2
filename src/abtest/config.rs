use serde::Deserialize;

use crate::bucket::BUCKETS;
use crate::store::Entry;

/// One test's configuration at `test:{name}:config` (`{"variants": ["control", "treatment"], "weights": [0.5, 0.5]}`):
/// `{"variants": ["control", "treatment"], "weights": [0.5, 0.5]}`, with an
/// optional `salt` to reshuffle who gets what in a new run of the test.
///
/// Weights must be non-negative with a positive sum; they are normalised, so
/// `[1, 1]` means 50/50 (weights that sum to 1 are used as they are).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestConfig {
    /// Variant names: each a valid header value, at most 64 bytes.
    pub variants: Vec<String>,
    /// One weight per variant.
    pub weights: Vec<f64>,
    /// Mixed into the bucketing, so a new salt reassigns new visitors differently.
    #[serde(default)]
    pub salt: String,
}

/// Why a test config was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidTestConfig {
    /// Not JSON of the expected shape (unknown fields are refused).
    #[error("not a test config: {0}")]
    Json(#[from] serde_json::Error),
    /// No variants, or not one weight per variant.
    #[error("needs as many weights as variants, and at least one")]
    Shape,
    /// A variant name that is empty, longer than 64 bytes or not visible ASCII.
    #[error("variant {0:?} is not a short visible-ASCII name")]
    Variant(String),
    /// A negative or non-finite weight, weights summing to zero, or a sum
    /// too large to split.
    #[error("weights must be finite, non-negative and have a finite, positive sum")]
    Weights,
}

impl TestConfig {
    /// Parses and validates a stored config.
    pub fn from_json(bytes: &[u8]) -> Result<Self, InvalidTestConfig> {
        let config: Self = serde_json::from_slice(bytes)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), InvalidTestConfig> {
        if self.variants.is_empty() || self.variants.len() != self.weights.len() {
            return Err(InvalidTestConfig::Shape);
        }
        if let Some(v) = self.variants.iter().find(|v| !is_variant_name(v)) {
            return Err(InvalidTestConfig::Variant(v.clone()));
        }
        let sum: f64 = self.weights.iter().sum();
        let bad_weight = self.weights.iter().any(|w| !w.is_finite() || *w < 0.0);
        if bad_weight || !sum.is_finite() || sum <= 0.0 {
            return Err(InvalidTestConfig::Weights);
        }
        Ok(())
    }

    /// A stored assignment, when it is one of this config's variants.
    pub(crate) fn assigned(&self, entry: &Entry) -> Option<String> {
        let stored = std::str::from_utf8(&entry.value).ok()?;
        self.variants.iter().find(|v| *v == stored).cloned()
    }

    /// The variant for a bucket (`0..BUCKETS`): cumulative normalised weights.
    pub(crate) fn choose(&self, bucket: u32) -> &str {
        let total: f64 = self.weights.iter().sum();
        let mut cumulative = 0.0;
        for (variant, weight) in self.variants.iter().zip(&self.weights) {
            cumulative += weight / total;
            if f64::from(bucket) < (cumulative * f64::from(BUCKETS)).round() {
                return variant;
            }
        }
        self.variants
            .last()
            .expect("validated: at least one variant")
    }
}

/// A variant name: 1 to 64 bytes of visible ASCII, so it is a valid header value.
pub(crate) fn is_variant_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_split_the_buckets() {
        let c =
            TestConfig::from_json(br#"{"variants": ["a", "b", "c"], "weights": [0.5, 0.3, 0.2]}"#)
                .unwrap();
        assert_eq!(c.choose(0), "a");
        assert_eq!(c.choose(4_999), "a");
        assert_eq!(c.choose(5_000), "b");
        assert_eq!(c.choose(7_999), "b");
        assert_eq!(c.choose(8_000), "c");
        assert_eq!(c.choose(9_999), "c");
        let unnormalised =
            TestConfig::from_json(br#"{"variants": ["a", "b"], "weights": [1, 3]}"#).unwrap();
        assert_eq!(unnormalised.choose(2_499), "a");
        assert_eq!(unnormalised.choose(2_500), "b");
    }

    #[test]
    fn bad_configs_are_refused() {
        for bad in [
            r#"{"variants": [], "weights": []}"#,
            r#"{"variants": ["a"], "weights": [1, 2]}"#,
            r#"{"variants": ["a", "b"], "weights": [-1, 2]}"#,
            r#"{"variants": ["a", "b"], "weights": [0, 0]}"#,
            r#"{"variants": ["a", "b"], "weights": [1e308, 1e308]}"#,
            r#"{"variants": ["a b"], "weights": [1]}"#,
            r#"{"variants": ["a"], "weights": [1], "extra": 1}"#,
            "not json",
        ] {
            assert!(TestConfig::from_json(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
