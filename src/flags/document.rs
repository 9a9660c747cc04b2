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
    /// A rollout outside 0–100.
    #[error("flag {flag:?}: rollout {rollout} is outside 0–100")]
    Rollout {
        /// The flag.
        flag: String,
        /// The rejected value.
        rollout: f64,
    },
}

impl FlagDocument {
    /// Parses and validates a document.
    pub fn from_json(bytes: &[u8]) -> Result<Self, InvalidFlags> {
        let doc: Self = serde_json::from_slice(bytes)?;
        doc.validate()?;
        Ok(doc)
    }

    /// Checks every rule.
    pub fn validate(&self) -> Result<(), InvalidFlags> {
        for (name, flag) in &self.flags {
            flag.validate(name)?;
        }
        Ok(())
    }
}

impl Flag {
    pub(crate) fn validate(&self, name: &str) -> Result<(), InvalidFlags> {
        if let Flag::Rule(Rule {
            rollout: Some(r), ..
        }) = self
        {
            if !(0.0..=100.0).contains(r) || r.is_nan() {
                return Err(InvalidFlags::Rollout {
                    flag: name.to_owned(),
                    rollout: *r,
                });
            }
        }
        Ok(())
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
