use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The one coalesced record a session is stored as, at `session:{id}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Record {
    /// The signed-in user, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Created at, ms since the epoch.
    pub created: u64,
    /// Last seen at (renewed at most once per renewal interval), ms since the epoch.
    pub seen: u64,
    /// The handler's values.
    #[serde(default)]
    pub data: BTreeMap<String, serde_json::Value>,
}

/// One change a request made, replayed onto the stored record at save time
/// so concurrent requests that change different keys both persist.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Change {
    Set(String, serde_json::Value),
    Remove(String),
    Clear,
    User(Option<String>),
}

impl Record {
    pub(crate) fn new(now: u64) -> Self {
        Self {
            created: now,
            seen: now,
            ..Self::default()
        }
    }

    pub(crate) fn apply(&mut self, change: &Change) {
        match change {
            Change::Set(k, v) => {
                self.data.insert(k.clone(), v.clone());
            }
            Change::Remove(k) => {
                self.data.remove(k);
            }
            Change::Clear => self.data.clear(),
            Change::User(u) => self.user.clone_from(u),
        }
    }

    /// Milliseconds the record may still live, or `None` when it has expired:
    /// `idle_ms` after it was last seen, `absolute_ms` after it was created.
    pub(crate) fn remaining_ms(&self, now: u64, idle_ms: u64, absolute_ms: u64) -> Option<u64> {
        let idle_end = self.seen.saturating_add(idle_ms);
        let absolute_end = self.created.saturating_add(absolute_ms);
        let end = idle_end.min(absolute_end);
        (end > now).then(|| end - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_timeouts_bound_the_lifetime() {
        let r = Record {
            created: 1_000,
            seen: 5_000,
            ..Record::default()
        };
        assert_eq!(
            r.remaining_ms(6_000, 10_000, 100_000),
            Some(9_000),
            "idle first"
        );
        assert_eq!(
            r.remaining_ms(6_000, 10_000, 8_000),
            Some(3_000),
            "absolute first"
        );
        assert_eq!(r.remaining_ms(15_000, 10_000, 100_000), None);
    }

    #[test]
    fn changes_replay_in_order() {
        let mut r = Record::new(0);
        r.apply(&Change::Set("a".into(), 1.into()));
        r.apply(&Change::Set("b".into(), 2.into()));
        r.apply(&Change::Remove("a".into()));
        r.apply(&Change::User(Some("u1".into())));
        assert_eq!(r.data.len(), 1);
        assert_eq!(r.user.as_deref(), Some("u1"));
        assert!(serde_json::from_str::<Record>(r#"{"created":1,"seen":1,"evil":1}"#).is_err());
    }
}
