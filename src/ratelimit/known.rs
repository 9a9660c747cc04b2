use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use lru::LruCache;
use parking_lot::Mutex;

use crate::store::RateDecision;

/// Requests the store refused, remembered until the store said they could
/// pass, so repeats are refused in process without a round trip (Envoy's
/// local cache of over-limit keys). Exact: a refused decision consumes
/// nothing, and other instances can only push the time later, so nothing is
/// refused that the store would admit — unless someone resets the bucket in
/// the store by hand, which this instance then notices after the wait.
pub(crate) struct KnownLimited {
    refused: Option<Mutex<LruCache<Box<str>, Refusal>>>,
}

struct Refusal {
    at: Instant,
    until: Instant,
    decision: RateDecision,
}

impl std::fmt::Debug for KnownLimited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.refused.as_ref().map(|r| r.lock().len());
        f.debug_struct("KnownLimited").field("held", &held).finish()
    }
}

impl KnownLimited {
    /// Remembers up to `capacity` refusals (0: none).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            refused: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
        }
    }

    /// The store's refusal of `key`, aged to now, while it still holds.
    pub(crate) fn get(&self, key: &str) -> Option<RateDecision> {
        let mut refused = self.refused.as_ref()?.lock();
        let now = Instant::now();
        let refusal = refused.get(key)?;
        if now >= refusal.until {
            refused.pop(key);
            return None;
        }
        let elapsed = now - refusal.at;
        let mut decision = refusal.decision.clone();
        for state in &mut decision.states {
            state.retry_after = state.retry_after.saturating_sub(elapsed);
            state.reset_after = state.reset_after.saturating_sub(elapsed);
        }
        Some(decision)
    }

    /// Remembers the store's refusal of `key` until it may pass.
    pub(crate) fn remember(&self, key: &str, decision: &RateDecision) {
        let Some(refused) = &self.refused else {
            return;
        };
        let wait = decision.retry_after();
        if decision.allowed || wait == Duration::ZERO {
            return;
        }
        let at = Instant::now();
        refused.lock().put(
            key.into(),
            Refusal {
                at,
                until: at + wait,
                decision: decision.clone(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RateState;

    fn refused(wait: Duration) -> RateDecision {
        RateDecision {
            allowed: false,
            states: vec![RateState {
                allowed: false,
                remaining: 0,
                retry_after: wait,
                reset_after: wait,
            }],
        }
    }

    #[test]
    fn remembers_a_refusal_until_it_lapses() {
        let known = KnownLimited::new(10);
        known.remember("k", &refused(Duration::from_millis(40)));
        let aged = known.get("k").expect("still refused");
        assert!(!aged.allowed);
        assert!(aged.states[0].retry_after <= Duration::from_millis(40));
        assert!(known.get("other").is_none());
        std::thread::sleep(Duration::from_millis(50));
        assert!(known.get("k").is_none(), "lapsed");
        let off = KnownLimited::new(0);
        off.remember("k", &refused(Duration::from_secs(9)));
        assert!(off.get("k").is_none());
    }
}
