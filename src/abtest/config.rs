use std::sync::{Arc, OnceLock};

use http::HeaderValue;
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

    /// The index of the variant for a bucket (`0..BUCKETS`): cumulative
    /// normalised weights.
    fn choose(&self, bucket: u32) -> usize {
        let total: f64 = self.weights.iter().sum();
        let mut cumulative = 0.0;
        for (i, weight) in self.weights.iter().enumerate() {
            cumulative += weight / total;
            if f64::from(bucket) < (cumulative * f64::from(BUCKETS)).round() {
                return i;
            }
        }
        self.variants.len() - 1
    }
}

/// A variant as requests carry it: its name and its header value, both
/// built once, so a request clones them without allocating.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Variant {
    pub(crate) name: Arc<str>,
    pub(crate) header: HeaderValue,
}

impl Variant {
    /// `name` as a variant, if it is a valid variant name.
    pub(crate) fn new(name: &str) -> Option<Self> {
        if !is_variant_name(name) {
            return None;
        }
        Some(Self {
            name: name.into(),
            header: HeaderValue::from_str(name).ok()?,
        })
    }

    /// `control`: the variant of a test without a usable config or identity.
    pub(crate) fn control() -> Self {
        static CONTROL: OnceLock<Variant> = OnceLock::new();
        let control = CONTROL.get_or_init(|| Self::new("control").expect("a valid variant name"));
        control.clone()
    }
}

/// A test config as the layer uses it: validated, with its variants built.
#[derive(Debug)]
pub(crate) struct LoadedConfig {
    config: TestConfig,
    variants: Box<[Variant]>,
}

impl LoadedConfig {
    pub(crate) fn from_json(bytes: &[u8]) -> Result<Self, InvalidTestConfig> {
        let config = TestConfig::from_json(bytes)?;
        let variants = (config.variants.iter())
            .map(|name| Variant::new(name).ok_or_else(|| InvalidTestConfig::Variant(name.clone())))
            .collect::<Result<_, _>>()?;
        Ok(Self { config, variants })
    }

    pub(crate) fn salt(&self) -> &str {
        &self.config.salt
    }

    /// A stored assignment, when it is one of this config's variants.
    pub(crate) fn assigned(&self, entry: &Entry) -> Option<&Variant> {
        let stored = &entry.value[..];
        self.variants.iter().find(|v| v.name.as_bytes() == stored)
    }

    /// The variant for a bucket (`0..BUCKETS`).
    pub(crate) fn choose(&self, bucket: u32) -> &Variant {
        &self.variants[self.config.choose(bucket)]
    }
}

/// A variant name: 1 to 64 bytes of visible ASCII, so it is a valid header value.
pub(crate) fn is_variant_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chosen(json: &str, bucket: u32) -> String {
        let config = LoadedConfig::from_json(json.as_bytes()).unwrap();
        let variant = config.choose(bucket);
        assert_eq!(variant.header, &*variant.name);
        variant.name.to_string()
    }

    #[test]
    fn weights_split_the_buckets() {
        let c = r#"{"variants": ["a", "b", "c"], "weights": [0.5, 0.3, 0.2]}"#;
        assert_eq!(chosen(c, 0), "a");
        assert_eq!(chosen(c, 4_999), "a");
        assert_eq!(chosen(c, 5_000), "b");
        assert_eq!(chosen(c, 7_999), "b");
        assert_eq!(chosen(c, 8_000), "c");
        assert_eq!(chosen(c, 9_999), "c");
        let unnormalised = r#"{"variants": ["a", "b"], "weights": [1, 3]}"#;
        assert_eq!(chosen(unnormalised, 2_499), "a");
        assert_eq!(chosen(unnormalised, 2_500), "b");
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
