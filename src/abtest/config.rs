use serde::Deserialize;

use crate::bucket::BUCKETS;

/// One test's configuration at `test:{name}:config` (the seed's format):
/// `{"variants": ["control", "treatment"], "weights": [0.5, 0.5]}`, with an
/// optional `salt` to reshuffle who gets what in a new run of the test.
///
/// Weights must be non-negative with a positive sum; they are normalised, so
/// `[1, 1]` means 50/50 (the seed's sum-to-1 weights are accepted as they are).
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

impl TestConfig {
    /// Parses and validates a stored config.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let config: Self = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.variants.is_empty() || self.variants.len() != self.weights.len() {
            return Err("needs as many weights as variants, and at least one".into());
        }
        for v in &self.variants {
            let header_safe = v.bytes().all(|b| b.is_ascii_graphic());
            if v.is_empty() || v.len() > 64 || !header_safe {
                return Err(format!("variant {v:?} is not a short visible-ASCII name"));
            }
        }
        if self.weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
            return Err("weights must be finite and non-negative".into());
        }
        if self.weights.iter().sum::<f64>() <= 0.0 {
            return Err("weights must not all be zero".into());
        }
        Ok(())
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
            r#"{"variants": ["a b"], "weights": [1]}"#,
            r#"{"variants": ["a"], "weights": [1], "extra": 1}"#,
            "not json",
        ] {
            assert!(TestConfig::from_json(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
