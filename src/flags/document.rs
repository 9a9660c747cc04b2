use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bucket::{bucket, BUCKETS};

/// One flag: a plain boolean or a rule.
///
/// ```json
/// {"beta_feature": true,
///  "new_checkout": {"enabled": true, "rollout": 25, "allow": ["u1"], "deny": ["u2"], "variant": "blue"}}
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Flag {
    /// On or off for everyone.
    Bool(bool),
    /// A rule evaluated per targeting key.
    Rule(Rule),
}

/// A flag rule. Evaluation order: deny list (off), allow list (on),
/// `enabled: false` (off), `rollout` (on for that share of targeting keys),
/// else on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The kill switch: `false` turns the flag off except for the allow list.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Percentage (0–100, up to two decimals) of targeting keys that get the
    /// flag, chosen by a stable SHA-256 bucketing of the targeting key
    /// so a key stays in as the percentage grows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<f64>,
    /// Targeting keys that always get the flag (unless denied).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Targeting keys that never get the flag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// A value for non-boolean flags (string, number or any JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<serde_json::Value>,
}

fn yes() -> bool {
    true
}

/// An enabled rule with no rollout, lists or variant: on for everyone.
impl Default for Rule {
    fn default() -> Self {
        Self {
            enabled: true,
            rollout: None,
            allow: Vec::new(),
            deny: Vec::new(),
            variant: None,
        }
    }
}

/// The whole flag document stored at one key (`features:flags` by default).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FlagDocument {
    /// Flags by name.
    pub flags: BTreeMap<String, Flag>,
}

/// A flag document or flag that fails validation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidFlags {
    /// Not a JSON object of flags (unknown fields included).
    #[error("invalid flag document: {0}")]
    Json(#[from] serde_json::Error),
    /// Past one of the documented limits ([`MAX_DOCUMENT_BYTES`] and the
    /// others in this module).
    #[error("flag document over a limit: {what} (at most {limit})")]
    Limit {
        /// What is too large or malformed, naming the flag when there is one.
        what: String,
        /// The limit.
        limit: usize,
    },
    /// A rollout outside 0–100.
    #[error("flag {flag:?}: rollout {rollout} is outside 0–100")]
    Rollout {
        /// The flag.
        flag: String,
        /// The rejected value.
        rollout: f64,
    },
}

/// Largest flag document, in bytes of JSON.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// Most flags in a document.
pub const MAX_FLAGS: usize = 1_000;
/// Longest flag name, in bytes (ASCII letters, digits, `_`, `-`, `.`, `:`).
pub const MAX_NAME_BYTES: usize = 128;
/// Most targeting keys in one rule's allow and deny lists together.
pub const MAX_LIST_KEYS: usize = 10_000;
/// Longest targeting key in a list, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest variant value, in bytes of JSON.
pub const MAX_VARIANT_BYTES: usize = 4 * 1024;
/// Deepest nesting of arrays and objects in a variant value.
pub const MAX_VARIANT_DEPTH: usize = 8;

fn over(what: String, limit: usize) -> InvalidFlags {
    InvalidFlags::Limit { what, limit }
}

impl FlagDocument {
    /// Parses and validates a document.
    pub fn from_json(bytes: &[u8]) -> Result<Self, InvalidFlags> {
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(over("document size".into(), MAX_DOCUMENT_BYTES));
        }
        let doc: Self = serde_json::from_slice(bytes)?;
        doc.validate()?;
        Ok(doc)
    }

    /// Checks every rule and the limits.
    pub fn validate(&self) -> Result<(), InvalidFlags> {
        if self.flags.len() > MAX_FLAGS {
            return Err(over("number of flags".into(), MAX_FLAGS));
        }
        for (name, flag) in &self.flags {
            flag.validate(name)?;
        }
        Ok(())
    }

    /// The document as stored: JSON within [`MAX_DOCUMENT_BYTES`].
    pub(crate) fn to_json(&self) -> Result<Vec<u8>, InvalidFlags> {
        self.validate()?;
        let bytes = serde_json::to_vec(self)?;
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(over("document size".into(), MAX_DOCUMENT_BYTES));
        }
        Ok(bytes)
    }
}

fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
}

/// How deeply a JSON value nests arrays and objects.
fn depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

impl Rule {
    fn validate(&self, name: &str) -> Result<(), InvalidFlags> {
        if let Some(r) = self.rollout {
            if !(0.0..=100.0).contains(&r) || r.is_nan() {
                return Err(InvalidFlags::Rollout {
                    flag: name.to_owned(),
                    rollout: r,
                });
            }
        }
        if self.allow.len() + self.deny.len() > MAX_LIST_KEYS {
            return Err(over(format!("flag {name:?}: list keys"), MAX_LIST_KEYS));
        }
        if self
            .allow
            .iter()
            .chain(&self.deny)
            .any(|k| k.len() > MAX_KEY_BYTES)
        {
            return Err(over(
                format!("flag {name:?}: list key length"),
                MAX_KEY_BYTES,
            ));
        }
        if let Some(variant) = &self.variant {
            if depth(variant) > MAX_VARIANT_DEPTH {
                return Err(over(
                    format!("flag {name:?}: variant depth"),
                    MAX_VARIANT_DEPTH,
                ));
            }
            if serde_json::to_vec(variant)?.len() > MAX_VARIANT_BYTES {
                return Err(over(
                    format!("flag {name:?}: variant size"),
                    MAX_VARIANT_BYTES,
                ));
            }
        }
        Ok(())
    }
}

impl Flag {
    pub(crate) fn validate(&self, name: &str) -> Result<(), InvalidFlags> {
        if !valid_name(name) {
            let shown: String = name.chars().take(32).collect();
            return Err(over(format!("flag name {shown:?}"), MAX_NAME_BYTES));
        }
        match self {
            Flag::Bool(_) => Ok(()),
            Flag::Rule(rule) => rule.validate(name),
        }
    }
}

/// Why a flag evaluated the way it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// A plain boolean, or a rule's `enabled` with no rollout.
    Static,
    /// The targeting key's bucket fell inside or outside the rollout.
    Rollout,
    /// The targeting key is on the allow list.
    AllowList,
    /// The targeting key is on the deny list.
    DenyList,
    /// No flag of that name: off.
    Missing,
    /// No usable flag document (never loaded, or unreadable): off.
    Error,
}

impl Reason {
    /// Every reason, in declaration order.
    pub(crate) const ALL: [Reason; 6] = [
        Self::Static,
        Self::Rollout,
        Self::AllowList,
        Self::DenyList,
        Self::Missing,
        Self::Error,
    ];

    /// The reason as metrics and traces name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::Rollout => "rollout",
            Self::AllowList => "allow_list",
            Self::DenyList => "deny_list",
            Self::Missing => "missing",
            Self::Error => "error",
        }
    }
}

/// The outcome of evaluating one flag for one request.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Whether the flag is on.
    pub enabled: bool,
    /// Why.
    pub reason: Reason,
    /// The flag's variant value, when on and it has one.
    pub variant: Option<serde_json::Value>,
}

impl Evaluation {
    pub(crate) fn off(reason: Reason) -> Self {
        Self {
            enabled: false,
            reason,
            variant: None,
        }
    }
}

impl Flag {
    /// Evaluates the flag `name` for `key` (the request's targeting key, if any).
    pub fn evaluate(&self, name: &str, key: Option<&str>) -> Evaluation {
        let rule = match self {
            Flag::Bool(on) => {
                return Evaluation {
                    enabled: *on,
                    reason: Reason::Static,
                    variant: None,
                }
            }
            Flag::Rule(rule) => rule,
        };
        let listed = |list: &[String]| key.is_some_and(|k| list.iter().any(|x| x == k));
        let (enabled, reason) = if listed(&rule.deny) {
            (false, Reason::DenyList)
        } else if listed(&rule.allow) {
            (true, Reason::AllowList)
        } else if !rule.enabled {
            (false, Reason::Static)
        } else if let Some(rollout) = rule.rollout {
            let threshold = (rollout * f64::from(BUCKETS) / 100.0).round() as u32;
            let inside = key.is_some_and(|k| bucket(name, "rollout", k) < threshold);
            (inside, Reason::Rollout)
        } else {
            (true, Reason::Static)
        };
        Evaluation {
            enabled,
            reason,
            variant: enabled.then(|| rule.variant.clone()).flatten(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_past_a_limit_are_refused() {
        let limited = |json: String| {
            matches!(
                FlagDocument::from_json(json.as_bytes()),
                Err(InvalidFlags::Limit { .. })
            )
        };
        assert!(limited(format!(
            r#"{{"{}": true}}"#,
            "n".repeat(MAX_NAME_BYTES + 1)
        )));
        assert!(limited(r#"{"bad name": true}"#.to_owned()));
        assert!(limited(r#"{"": true}"#.to_owned()));
        assert!(limited(format!(
            r#"{{"f": {{"variant": "{}"}}}}"#,
            "v".repeat(MAX_VARIANT_BYTES)
        )));
        let deep = format!(
            "{}1{}",
            "[".repeat(MAX_VARIANT_DEPTH + 1),
            "]".repeat(MAX_VARIANT_DEPTH + 1)
        );
        assert!(limited(format!(r#"{{"f": {{"variant": {deep}}}}}"#)));
        let keys: Vec<String> = (0..=MAX_LIST_KEYS).map(|i| format!("\"k{i}\"")).collect();
        assert!(limited(format!(
            r#"{{"f": {{"allow": [{}]}}}}"#,
            keys.join(",")
        )));
        assert!(limited(format!(
            r#"{{"f": {{"deny": ["{}"]}}}}"#,
            "k".repeat(MAX_KEY_BYTES + 1)
        )));
        let many: Vec<String> = (0..=MAX_FLAGS)
            .map(|i| format!(r#""f{i}": true"#))
            .collect();
        assert!(limited(format!("{{{}}}", many.join(","))));
        assert!(limited(format!(
            r#"{{"f": "{}"}}"#,
            "x".repeat(MAX_DOCUMENT_BYTES)
        )));
        let fine = r#"{"beta.v2:eu-west_1": {"variant": {"a": [1, {"b": 2}]}, "allow": ["u1"]}}"#;
        assert!(FlagDocument::from_json(fine.as_bytes()).is_ok());
    }

    fn doc(json: &str) -> FlagDocument {
        FlagDocument::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn seed_booleans_and_rules_parse() {
        let d =
            doc(r#"{"beta_feature": true, "x": {"rollout": 12.5, "variant": {"color": "blue"}}}"#);
        assert_eq!(d.flags["beta_feature"], Flag::Bool(true));
        assert!(matches!(&d.flags["x"], Flag::Rule(r) if r.enabled && r.rollout == Some(12.5)));
    }

    #[test]
    fn invalid_documents_are_refused_clearly() {
        let unknown = FlagDocument::from_json(br#"{"x": {"enabeld": true}}"#).unwrap_err();
        assert!(
            unknown.to_string().contains("invalid flag document"),
            "{unknown}"
        );
        let range = FlagDocument::from_json(br#"{"x": {"rollout": 101}}"#).unwrap_err();
        assert!(range.to_string().contains("outside 0–100"), "{range}");
        assert!(FlagDocument::from_json(b"[1,2]").is_err());
    }

    #[test]
    fn deny_beats_allow_beats_kill_switch() {
        let d =
            doc(r#"{"f": {"enabled": false, "allow": ["a", "b"], "deny": ["b"], "variant": 7}}"#);
        let f = &d.flags["f"];
        assert_eq!(f.evaluate("f", Some("a")).reason, Reason::AllowList);
        assert_eq!(f.evaluate("f", Some("a")).variant, Some(7.into()));
        assert_eq!(f.evaluate("f", Some("b")).reason, Reason::DenyList);
        assert!(!f.evaluate("f", Some("c")).enabled);
        assert!(!f.evaluate("f", None).enabled);
    }
}
