//! The GCRA arithmetic, shared by the in-memory backend and mirrored by the
//! Redis script (`lua/gcra.lua`). Times are integer microseconds.

use std::time::Duration;

use super::{GcraRequest, GcraState};

/// One bucket's inputs: its stored theoretical arrival time (if any) and rate.
pub(crate) struct Bucket {
    pub tat_us: Option<u64>,
    pub interval_us: u64,
    pub burst: u64,
    pub cost: u64,
}

/// One bucket's verdict: its state, and the new TAT to store if the whole
/// decision is allowed.
pub(crate) struct Verdict {
    pub state: GcraState,
    pub new_tat_us: u64,
}

impl Bucket {
    pub(crate) fn from_request(r: &GcraRequest, tat_us: Option<u64>) -> Self {
        Self {
            tat_us,
            interval_us: duration_us(r.rate.emission_interval).max(1),
            burst: u64::from(r.rate.burst),
            cost: u64::from(r.cost),
        }
    }

    pub(crate) fn decide(&self, now_us: u64) -> Verdict {
        let tolerance = self.interval_us.saturating_mul(self.burst);
        let tat = self.tat_us.unwrap_or(now_us).max(now_us);
        let new_tat = tat.saturating_add(self.interval_us.saturating_mul(self.cost));
        let allow_at = new_tat.saturating_sub(tolerance);
        if now_us >= allow_at {
            let used = new_tat - now_us;
            Verdict {
                state: GcraState {
                    allowed: true,
                    remaining: remaining(tolerance, used, self.interval_us),
                    retry_after: Duration::ZERO,
                    reset_after: Duration::from_micros(used),
                },
                new_tat_us: new_tat,
            }
        } else {
            let used = tat - now_us;
            Verdict {
                state: GcraState {
                    allowed: false,
                    remaining: remaining(tolerance, used, self.interval_us),
                    retry_after: Duration::from_micros(allow_at - now_us),
                    reset_after: Duration::from_micros(used),
                },
                new_tat_us: tat,
            }
        }
    }

    /// The state as it stands when another bucket denied the decision and
    /// nothing is consumed here.
    pub(crate) fn unconsumed(&self, now_us: u64, verdict: &Verdict) -> GcraState {
        let tolerance = self.interval_us.saturating_mul(self.burst);
        let used = self.tat_us.unwrap_or(now_us).max(now_us) - now_us;
        GcraState {
            remaining: remaining(tolerance, used, self.interval_us),
            reset_after: Duration::from_micros(used),
            ..verdict.state
        }
    }
}

fn remaining(tolerance: u64, used: u64, interval: u64) -> u32 {
    u32::try_from(tolerance.saturating_sub(used) / interval).unwrap_or(u32::MAX)
}

pub(crate) fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(tat_us: Option<u64>) -> Bucket {
        // 10 per second, burst 3.
        Bucket {
            tat_us,
            interval_us: 100_000,
            burst: 3,
            cost: 1,
        }
    }

    #[test]
    fn burst_then_denied_with_exact_retry_after() {
        let now = 1_000_000;
        let mut tat = None;
        for left in [2, 1, 0] {
            let v = bucket(tat).decide(now);
            assert!(v.state.allowed);
            assert_eq!(v.state.remaining, left);
            tat = Some(v.new_tat_us);
        }
        let denied = bucket(tat).decide(now);
        assert!(!denied.state.allowed);
        assert_eq!(denied.state.retry_after, Duration::from_millis(100));
        assert_eq!(denied.state.reset_after, Duration::from_millis(300));
        assert_eq!(denied.new_tat_us, tat.unwrap());
    }

    #[test]
    fn replenishes_one_unit_per_interval() {
        let v = bucket(Some(1_300_000)).decide(1_100_000);
        assert!(v.state.allowed);
        assert_eq!(v.state.remaining, 0);
        let v = bucket(Some(1_300_000)).decide(1_200_000);
        assert_eq!(v.state.remaining, 1);
    }
}
